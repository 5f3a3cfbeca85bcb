"""`rstar-jax bench search`: batched MCTS vs a naive loop in the official code's style.

Ours: all problems' trees in lockstep, K candidates per leaf sharing one prefill,
children continuing from their parent's cached KV. Naive: one problem at a time,
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
    p.add_argument("--out", default="bench_search.json")


def run(args) -> dict:
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
    rows = {}
    with Sandbox() as sandbox:
        # ours decodes a step in one while_loop (chunk 0), or in chunks of 16 tokens between which
        # finished rows leave the batch (compaction: fewer idle rows, more programs to compile)
        for name, probs, batch, chunk in (
            ("ours (batched, shared prefix, KV reuse)", problems, args.problems, 0),
            ("ours + compaction (16-token chunks)", problems, args.problems, 16),
            ("naive (one problem, full-path prefill)", problems[: args.naive_problems], 1, 0),
        ):
            # the naive loop runs one problem's K candidates per call: no batch padding for it
            engine = search_engine(config, params, tok, min_rows=8 if batch > 1 else 1, compact=chunk > 0)
            prop = (
                PolicyProposer(engine, cfg.max_step_tokens, chunk=chunk)
                if batch > 1
                else NaiveProposer(engine, cfg.max_step_tokens)
            )
            # warm-up: another seed and fewer rollouts compile most shape buckets; the timed
            # run reports the compiles it still needed (a long search amortises them)
            t = time.perf_counter()
            compiles.clear()
            run_mcts(
                probs,
                prop,
                sandbox,
                cfg.replace(rollouts=args.warmup_rollouts, batch_size=batch, seed=1),
                progress=False,
            )
            warm = {"warmup_seconds": time.perf_counter() - t, "warmup_compiles": compiles["n"]}
            t = time.perf_counter()
            compiles.clear()
            _, st = run_mcts(probs, prop, sandbox, cfg.replace(batch_size=batch), progress=False)
            secs, stats = time.perf_counter() - t, st.as_dict()
            rows[name] = {
                "problems": len(probs),
                "nodes_expanded": st.nodes_expanded,
                "seconds": secs,
                "nodes_per_s": st.nodes_expanded / secs,
                "tokens": st.tokens,
                "prefill_per_expansion": stats["prefill_per_expansion"],
                "prefill_saved": st.prefill_saved,
                "compiles": compiles["n"],
                "compile_seconds": compiles["seconds"],
                # what a long search (its compiles amortised) would approach
                "nodes_per_s_excl_compile": st.nodes_expanded / (secs - compiles["seconds"]),
                "tokens_per_s_excl_compile": st.tokens / (secs - compiles["seconds"]),
                "decode_utilization": stats["decode_utilization"],
                "sandbox_share": st.sandbox_seconds / secs,
                **warm,
            }
    *ours, naive = rows.values()
    best = max(ours, key=lambda r: r["nodes_per_s"])
    result = {
        "rows": rows,
        "speedup_nodes_per_s": best["nodes_per_s"] / naive["nodes_per_s"],
        "speedup_excl_compile": max(r["nodes_per_s_excl_compile"] for r in ours) / naive["nodes_per_s_excl_compile"],
        "model_parameters": config.num_params(),
        "config": vars(args),
    }
    print(
        f"{'method':42s} {'nodes/s':>9s} {'excl. compile':>14s} {'prefill/exp':>12s} {'tokens':>9s} "
        f"{'decode use':>11s} {'sandbox':>8s} {'compiles':>9s} {'compile s':>10s}"
    )
    for name, r in rows.items():
        print(
            f"{name:42s} {r['nodes_per_s']:9.1f} {r['nodes_per_s_excl_compile']:14.1f} "
            f"{r['prefill_per_expansion']:12.1f} {r['tokens']:9d} {100 * r['decode_utilization']:10.0f}% "
            f"{100 * r['sandbox_share']:7.0f}% "
            f"{r['compiles']:9d} {r['compile_seconds']:10.1f}"
        )
    print(
        f"speedup (ours at its best): {result['speedup_nodes_per_s']:.1f}x nodes/s "
        f"({result['speedup_excl_compile']:.1f}x excluding compile time)"
    )
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return result
