"""`rstar-jax bench train`: SFT and PPM training throughput, our trainer vs the PyTorch loop.

Data: the embedded synthetic domain (reference solutions; PPM groups = a
solution prefix, the next reference step preferred to two corrupted ones) with a
512-token domain tokenizer; the ~5M-class model of ``bench model``.

Ours: the trainer's jitted step (``train.trainer``), packed [batch, seq] rows.
SFT rows hold several examples (block-diagonal attention, loss on solution
tokens); PPM rows hold prefix groups (each prefix once, its candidates
branching off it, Bradley-Terry over pairs). PyTorch: the official recipe's
loop on the same [batch, seq] shape: transformers Qwen2 + torch AdamW, one
right-padded example per row (SFT: labels -100 on prompt/pad; PPM: the two
sides of a pair as two rows, value head on the last token). Both sides run the
same model FLOPs per step (PaLM count on the [batch, seq] array); throughput is
array tokens/s, plus what a step trains: solution tokens/s (SFT), pairs/s (PPM).
The fp32 matmul peak is measured in the same run with ``jnp.dot``.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

from rstar_jax.bench.model import SMALL, bench_parser, compare, interleaved, matmul_peak, model_flops, report


def _data(n_problems: int, seed: int):
    from rstar_jax.domain.synthetic import make_splits, reference_solution
    from rstar_jax.domain.tokenizer import train_domain_tokenizer
    from rstar_jax.steps import build_prompt
    from rstar_jax.train.examples import Continuation, PairGroup, SFTExample

    problems, _ = make_splits(seed, n_problems // 3 + 1, 1)
    sft, groups = [], []
    for p in problems:
        steps, prompt = reference_solution(p), build_prompt(p.question)
        sft.append(SFTExample(p.id, prompt, "".join(steps), 1.0, 1.0, ()))
        for k in range(1, len(steps) - 2):
            good = steps[k]
            bad = (good.replace("x = x", "x = 2 * x", 1), "# skip ahead\nx = x + 1\n<end_of_step>")
            groups.append(
                PairGroup(
                    p.id,
                    "step",
                    prompt,
                    "".join(steps[:k]),
                    k,
                    (Continuation(good, 1.0, 1),),
                    tuple(Continuation(b, -1.0, 2) for b in bad),
                    ((0, 0), (0, 1)),
                )
            )
    tok = train_domain_tokenizer([e.prompt + e.solution for e in sft], vocab_size=SMALL["vocab_size"])
    return sft, groups, tok


def _ours(kind: str, items, config, params, batch: int, seq: int, compute_dtype: str = "float32"):
    """A step function of the trainer on packed rows, and what one batch trains (targets or pairs)."""
    import jax

    from rstar_jax.models.sharding import make_mesh, shard_params
    from rstar_jax.train.batching import group_caps, pack_groups, pack_sft
    from rstar_jax.train.config import RewardConfig, SFTConfig
    from rstar_jax.train.losses import RewardLoss, sft_loss
    from rstar_jax.train.trainer import StepSpec, _init, _put, _train_step

    if kind == "sft":
        rows = pack_sft(items, range(len(items)), seq)
        cfg, loss, work = SFTConfig(lr=1e-4, batch_size=batch, seq_len=seq), sft_loss, rows["weights"]
    else:
        rows = pack_groups(items, range(len(items)), seq, group_caps(items, seq))
        cfg, loss, work = RewardConfig(lr=1e-4, batch_size=batch, seq_len=seq), RewardLoss("ppm"), rows["pair_w"] > 0
        config, params = (
            config.replace(value_head=True),
            {
                **params,
                "value_head": {
                    "kernel": np.zeros((config.hidden_size, 1), np.float32),
                    "bias": np.zeros((1,), np.float32),
                },
            },
        )
    cfg = dataclasses.replace(cfg, compute_dtype=compute_dtype)
    if len(rows["tokens"]) < batch:
        raise ValueError(f"only {len(rows['tokens'])} packed rows; use more problems")
    mesh = make_mesh()
    spec = StepSpec(loss, config, cfg, 1000, mesh)
    state = {"s": _init(spec, shard_params(params, mesh), cfg.seed)}
    data = _put({k: v[:batch] for k, v in rows.items()}, mesh)

    def step():
        state["s"], m = _train_step(spec, state["s"], data)
        jax.block_until_ready(m)

    return step, float(np.sum(work[:batch])), float(np.mean(rows["segments"][:batch] > 0))


def _torch_sft(model, items, batch: int, seq: int):
    import torch

    ids = torch.zeros((batch, seq), dtype=torch.long)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for r, it in enumerate(items[:batch]):
        n = min(len(it.ids), seq)
        ids[r, :n], mask[r, :n] = torch.tensor(it.ids[:n]), 1
        labels[r, it.n_prompt : n] = torch.tensor(it.ids[it.n_prompt : n])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)

    def step():
        model(ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, float((labels[:, 1:] != -100).sum()), float(mask.float().mean())


def _torch_ppm(model, items, batch: int, seq: int):
    """Official style: the two sides of each pair as two right-padded rows; BT loss on last-token values."""
    import torch

    seqs = []
    for g in items:
        for a, b in g.pairs:
            seqs += [np.concatenate([g.prefix, g.cands[a]]), np.concatenate([g.prefix, g.cands[b]])]
    seqs = seqs[:batch]
    ids = torch.zeros((len(seqs), seq), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(seqs):
        n = min(len(s), seq)
        ids[r, :n], mask[r, :n] = torch.tensor(s[:n]), 1
    last = mask.sum(1) - 1
    head = torch.nn.Linear(model.config.hidden_size, 1)
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=1e-4, weight_decay=0.1)

    def step():
        h = model.model(ids, attention_mask=mask).last_hidden_state
        r = head(h[torch.arange(len(seqs)), last])[:, 0]
        (-torch.nn.functional.logsigmoid(r[0::2] - r[1::2]).mean()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, float(len(seqs) // 2), float(mask.float().mean())


def _without_attention_core(items, config, params, batch: int, seq: int, repeats: int) -> float:
    """Median wall seconds of our SFT step with the attention core (scores, softmax, weighted
    values) swapped for a stand-in that still reads q, k and v, so every projection and its
    gradient stays: how much of the step the core takes. The jit caches are cleared around
    it, as the swapped step has the same cache key as the real one."""
    from unittest import mock

    import jax
    import jax.numpy as jnp

    from rstar_jax.bench.model import interleaved
    from rstar_jax.models import transformer

    def stand_in(q, k, v, kv_mask, scale, dt):
        return q + jnp.mean(k) + jnp.mean(v)

    jax.clear_caches()
    try:
        with mock.patch.object(transformer, "_causal_attend", stand_in):
            step, _, _ = _ours("sft", items, config, params, batch, seq)
            step()  # traced under the swap
        return interleaved({"rest": step}, repeats)["rest"]["wall"]
    finally:
        jax.clear_caches()


def run(
    batch: int = 32, seq: int = 256, repeats: int = 3, problems: int = 300, seed: int = 0, attention_core: bool = False
) -> dict:
    import jax
    import torch

    from rstar_jax.bench.model import torch_model
    from rstar_jax.models import ModelConfig, init_params
    from rstar_jax.train.batching import encode_groups, encode_sft

    torch.set_num_threads(os.cpu_count() or 1)
    sft, groups, tok = _data(problems, seed)
    config = ModelConfig(**SMALL)
    params = jax.device_get(jax.jit(init_params, static_argnums=0)(config, jax.random.key(seed)))
    sft_items = [e for e in encode_sft(sft, tok, append_eos=True) if len(e.ids) <= seq]
    grp_items = [g for g in encode_groups(groups, tok) if g.length <= seq]
    load0 = os.getloadavg()[0]
    peaks, rows = [matmul_peak()], []
    for kind, items, make_torch, unit in (
        ("sft", sft_items, _torch_sft, "solution tokens"),
        ("ppm", grp_items, _torch_ppm, "pairs"),
    ):
        ours, ours_work, ours_fill = _ours(kind, items, config, params, batch, seq)
        theirs, torch_work, torch_fill = make_torch(torch_model(config, params), items, batch, seq)
        t = interleaved({"ours": ours, "torch": theirs}, repeats)
        rows.append(
            (
                kind,
                t,
                {
                    "unit": unit,
                    "ours_work_s": ours_work / t["ours"]["wall"],
                    "torch_work_s": torch_work / t["torch"]["wall"],
                    "ours_fill": ours_fill,
                    "torch_fill": torch_fill,
                },
            )
        )
    if attention_core:  # the SFT step again, without its attention core
        rest = _without_attention_core(sft_items, config, params, batch, seq, repeats)
    peaks.append(matmul_peak())
    peak = {k: max(p[k] for p in peaks) for k in ("wall", "cpu")}
    fl = model_flops(config, seq, train=True) * batch * seq
    extra = {}
    if attention_core:
        full = rows[0][1]["ours"]["wall"]
        rest_flops = model_flops(config, 0, train=True) * batch * seq  # seq 0: no attention term
        extra = {
            "attention_core": {
                "step_s": full,
                "without_core_s": rest,
                "core_share": 1 - rest / full,
                "rest_gflop_s": rest_flops / rest / 1e9,
                "rest_peak_frac": rest_flops / rest / 1e9 / peak["wall"],
            }
        }
    return {
        "bench": "train",
        "batch": batch,
        "seq": seq,
        "repeats": repeats,
        "params": config.num_params(),
        "matmul_peak_gflop_s": peak["wall"],
        "matmul_peak_gflop_per_cpu_s": peak["cpu"],
        "load_avg": [load0, os.getloadavg()[0]],
        "cpus": os.cpu_count(),
        "rows": [{**compare(kind, t, fl, batch * seq, peak), **more} for kind, t, more in rows],
        **extra,
    }


def table(result: dict) -> str:
    from rstar_jax.bench.model import table as model_table

    lines = [
        model_table(result),
        "",
        "| | trained per second: ours | torch | ours / torch | non-pad tokens: ours | torch |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['what']} | {r['ours_work_s']:.0f} {r['unit']} | {r['torch_work_s']:.0f} | "
            f"{r['ours_work_s'] / r['torch_work_s']:.2f}x | {100 * r['ours_fill']:.0f}% | "
            f"{100 * r['torch_fill']:.0f}% |"
        )
    if "attention_core" in result:
        a = result["attention_core"]
        lines += [
            "",
            f"SFT step without its attention core: {a['without_core_s']:.3f} s of {a['step_s']:.3f} s "
            f"(the core takes {100 * a['core_share']:.0f}%); the rest runs its own FLOPs at "
            f"{a['rest_gflop_s']:.1f} GFLOP/s ({100 * a['rest_peak_frac']:.0f}% of peak)",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("rstar-jax bench train", __doc__)
    p.add_argument("--problems", type=int, default=300, help="synthetic problems to draw the data from")
    p.add_argument(
        "--attention-core",
        action="store_true",
        help="also time our SFT step with the attention core swapped for a cheap stand-in: its "
        "share of the step, and the rest's GFLOP/s on its own FLOPs",
    )
    args = p.parse_args(argv)
    result = run(args.batch, args.seq, args.repeats, args.problems, attention_core=args.attention_core)
    return report(result, table(result), args.out)


if __name__ == "__main__":
    sys.exit(main())
