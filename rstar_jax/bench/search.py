"""`rstar-jax bench search`: batched MCTS vs a naive loop in the official code's style.

Ours: all problems' trees in lockstep, K candidates per leaf sharing one prefill,
children continuing from their parent's KV, kept in pages the trees own (each node's KV
written once, shared by its descendants); "before": the same search keeping a copy of
the whole path's KV per candidate (same trees). Naive: one problem at a time,
every candidate prefilled from the full path text (no sharing, no reuse), as the
official PyTorch+vLLM loop does per node. Same engine, proposer weights, sandbox
and search settings; nodes expanded per second and prefill tokens per expansion.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from typing import Sequence

from rstar_jax.search.types import Proposal, ProposalRequest, StepCandidate

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class NaiveProposer:
    """K separate copies of the full path text per request (run with one problem per batch)."""

    def __init__(self, engine, max_step_tokens: int):
        self.engine, self.max_step_tokens = engine, max_step_tokens

    def propose(self, requests: Sequence[ProposalRequest], k: int, *, temperature: float, seed: int) -> Proposal:
        from rstar_jax.search.proposers import request_seed
        from rstar_jax.steps import STEP_STOPS, build_prompt

        if len(requests) != 1:
            raise ValueError("the naive loop expands one node per call")
        r = requests[0]
        base = request_seed(seed, r)
        comps, stats = self.engine.generate(
            [build_prompt(r.question) + "".join(r.steps)] * k,
            n=1,
            max_new_tokens=self.max_step_tokens,
            temperature=temperature,
            stop=STEP_STOPS,
            seed=[base + j for j in range(k)],
        )
        return Proposal(
            [[StepCandidate(c[0].text, len(c[0].token_ids), c[0].logprob) for c in comps]],
            prefill_tokens=stats.prefill_tokens,
            shared_saved=stats.shared_prefill_saved,
            prefix_reused=stats.prefix_reused,
            decode_slots=stats.decode_slots,
        )


def _policy(path: str | None, problems, steps: int):
    """A policy folder, or a ~5M model taught the step format on reference solutions for ``steps``."""
    from rstar_jax.models import load_hf
    from rstar_jax.models.tokenizer import load_tokenizer

    if path:
        config, params = load_hf(path)
        return config, params, load_tokenizer(path)
    import tempfile

    from rstar_jax.domain.synthetic import reference_solution
    from rstar_jax.evolve.base_model import BaseModelSpec, build_base_model
    from rstar_jax.steps import build_prompt
    from rstar_jax.train.api import train_policy_folder
    from rstar_jax.train.config import SFTConfig
    from rstar_jax.train.examples import SFTExample, write_sft

    tmp = tempfile.mkdtemp(prefix="bench_search_")
    spec = BaseModelSpec(hidden_size=256, intermediate_size=688, num_layers=4, num_heads=4, num_kv_heads=2)
    build_base_model(spec, problems, f"{tmp}/base")
    write_sft(
        [SFTExample(p.id, build_prompt(p.question), "".join(reference_solution(p)), 0.0, 0.0, ()) for p in problems],
        f"{tmp}/sft.jsonl",
    )
    train_policy_folder(
        f"{tmp}/sft.jsonl",
        f"{tmp}/base",
        f"{tmp}/policy",
        None,
        SFTConfig(
            lr=2e-3, warmup_steps=10, batch_size=8, seq_len=512, steps=steps, schedule="cosine", weight_decay=0.01
        ),
    )
    config, params = load_hf(f"{tmp}/policy/hf")
    return config, params, load_tokenizer(f"{tmp}/policy/hf")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="rstar-jax bench search", description=__doc__)
    add_args(p)
    return run(p.parse_args(argv))


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", help="policy HF folder (default: a ~5M model trained briefly here)")
    p.add_argument("--problems", type=int, default=64)
    p.add_argument("--naive-problems", type=int, default=8, help="the naive loop runs on this many")
    p.add_argument("--rollouts", type=int, default=8)
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--train-steps", type=int, default=60, help="SFT steps of the default policy")
    p.add_argument("--warmup-rollouts", type=int, default=2, help="rollouts of the untimed compile run")
    p.add_argument("--compaction", action="store_true", help="also run ours with 16-token chunks and compaction")
    p.add_argument("--repeats", type=int, default=1, help="timed searches per method (the median is reported)")
    p.add_argument("--out", default="bench_search.json")


def run(args) -> dict:
    import jax
    from jax import monitoring

    from rstar_jax.domain.synthetic import generate_problems
    from rstar_jax.sandbox import Sandbox
    from rstar_jax.search.config import SearchConfig
    from rstar_jax.search.loading import search_engine
    from rstar_jax.search.mcts import run_mcts
    from rstar_jax.search.proposers import PolicyProposer

    compiles: collections.Counter = collections.Counter()  # XLA compilations ("n", "seconds") since cleared

    def on_event(event, secs, **_):
        if event == COMPILE_EVENT:
            compiles.update(n=1, seconds=secs)

    monitoring.register_event_duration_secs_listener(on_event)
    problems = generate_problems(args.problems, tier=2, seed=123)
    config, params, tok = _policy(args.policy, generate_problems(400, tier=2, seed=7), args.train_steps)
    cfg = SearchConfig(
        rollouts=args.rollouts,
        candidates=args.candidates,
        temperature=1.0,
        error_threshold=1,
        max_step_tokens=96,
        batch_size=args.problems,
    )
    # ours decodes a step in one while_loop (chunk 0), or in chunks of 16 tokens between which
    # finished rows leave the batch (compaction: fewer idle rows, more programs to compile)
    methods = [
        ("ours (batched, shared prefix, paged tree KV)", problems, args.problems, 0, True),
        ("ours before: path-copy KV per candidate", problems, args.problems, 0, False),
        ("naive (one problem, full-path prefill)", problems[: args.naive_problems], 1, 0, False),
    ]
    if args.compaction:
        methods.insert(2, ("ours + compaction (16-token chunks)", problems, args.problems, 16, True))
    rows, trees = {}, {}
    for name, probs, batch, chunk, paged in methods:
        # each method compiles its own programs and runs its programs in a sandbox of its own (its
        # result cache would otherwise answer a later method's identical programs for free)
        jax.clear_caches()
        # the naive loop runs one problem's K candidates per call: no batch padding for it
        engine = search_engine(config, params, tok, min_rows=8 if batch > 1 else 1, compact=chunk > 0)
        prop = (
            PolicyProposer(engine, cfg.max_step_tokens, chunk=chunk, paged=paged)
            if batch > 1
            else NaiveProposer(engine, cfg.max_step_tokens)
        )
        # warm-up: another seed and fewer rollouts compile most shape buckets; the timed
        # run reports the compiles it still needed (a long search amortises them)
        t = time.perf_counter()
        compiles.clear()
        with Sandbox() as sandbox:
            warmup = cfg.replace(rollouts=args.warmup_rollouts, batch_size=batch, seed=1)
            run_mcts(probs, prop, sandbox, warmup, progress=False)
        warm = {"warmup_seconds": time.perf_counter() - t, "warmup_compiles": compiles["n"]}
        runs = []
        for _ in range(args.repeats):
            with Sandbox() as sandbox:
                t = time.perf_counter()
                compiles.clear()
                recs, st = run_mcts(probs, prop, sandbox, cfg.replace(batch_size=batch), progress=False)
                runs.append((time.perf_counter() - t, st, dict(compiles)))
        secs, st, comp = sorted(runs, key=lambda x: x[0])[len(runs) // 2]  # the median run
        stats = st.as_dict()
        trees[name] = [[(n.parent, n.text) for n in r.nodes] for r in recs]
        rows[name] = {
            "problems": len(probs),
            "nodes_expanded": st.nodes_expanded,
            "seconds": secs,
            "seconds_all_repeats": [r[0] for r in runs],
            "nodes_per_s": st.nodes_expanded / secs,
            "tokens": st.tokens,
            "prefill_per_expansion": stats["prefill_per_expansion"],
            "prefill_saved": st.prefill_saved,
            "compiles": comp.get("n", 0),
            "compile_seconds": comp.get("seconds", 0.0),
            # what a long search (its compiles amortised) would approach
            "nodes_per_s_excl_compile": st.nodes_expanded / (secs - comp.get("seconds", 0.0)),
            "tokens_per_s_excl_compile": st.tokens / (secs - comp.get("seconds", 0.0)),
            "decode_utilization": stats["decode_utilization"],
            "sandbox_share": st.sandbox_seconds / secs,
            "propose_share": st.propose_seconds / secs,
            "kv_bytes_held": st.kv_bytes_held,
            "pages_evicted": st.pages_evicted,
            "generated_per_expansion": st.tokens / max(st.nodes_expanded, 1),
            **warm,
        }
    *ours, naive = rows.values()
    best = max(ours, key=lambda r: r["nodes_per_s"])
    paged, copies = list(trees.values())[:2]
    result = {
        "rows": rows,
        "same_trees_paged_vs_copies": paged == copies,
        "speedup_paged_vs_copies": ours[0]["nodes_per_s"] / ours[1]["nodes_per_s"],
        "speedup_nodes_per_s": best["nodes_per_s"] / naive["nodes_per_s"],
        "speedup_excl_compile": max(r["nodes_per_s_excl_compile"] for r in ours) / naive["nodes_per_s_excl_compile"],
        "model_parameters": config.num_params(),
        "config": vars(args),
    }
    print(
        f"{'method':46s} {'nodes/s':>8s} {'excl. compile':>14s} {'prefill/exp':>12s} {'gen/exp':>8s} {'tokens':>8s} "
        f"{'decode use':>11s} {'sandbox':>8s} {'KV MB':>7s} {'evicted':>8s} {'compiles':>9s} {'compile s':>10s}"
    )
    for name, r in rows.items():
        print(
            f"{name:46s} {r['nodes_per_s']:8.2f} {r['nodes_per_s_excl_compile']:14.2f} "
            f"{r['prefill_per_expansion']:12.1f} {r['generated_per_expansion']:8.1f} {r['tokens']:8d} "
            f"{100 * r['decode_utilization']:10.0f}% {100 * r['sandbox_share']:7.0f}% "
            f"{r['kv_bytes_held'] / 2**20:7.1f} {r['pages_evicted']:8d} {r['compiles']:9d} {r['compile_seconds']:10.1f}"
        )
    print(
        f"paged vs path copies: {result['speedup_paged_vs_copies']:.2f}x nodes/s, "
        f"same trees: {result['same_trees_paged_vs_copies']}"
    )
    print(
        f"speedup (ours at its best): {result['speedup_nodes_per_s']:.1f}x nodes/s "
        f"({result['speedup_excl_compile']:.1f}x excluding compile time)"
    )
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return result
