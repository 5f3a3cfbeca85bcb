"""The paper's self-evolution workload in chip-hours (docs/SCALE.md).

Decode is memory-bound: one decode step of R rows reads the weights once plus every row's
attended KV, so a chip decodes at most R / ((weight bytes + KV bytes per step) / HBM bandwidth)
tokens/s. Prefill (PPM scoring of new nodes, a new node's own tokens) and training are
compute-bound: FLOPs / (peak x MFU). Every number below is an argument with a default that states
its source; ``--decode-tokens-per-s`` replaces the roofline by a measured per-chip rate (from
``rstar-jax bench device``).

    python experiments/scale_plan.py            # markdown table on stdout
    python experiments/scale_plan.py --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json

# Qwen2.5-Math-7B shape (config.json of the released model): 28 layers, 4 KV heads of 128
PARAMS_7B = 7.6e9
KV_BYTES_PER_TOKEN_7B = 28 * 2 * 4 * 128 * 2  # layers x (k, v) x heads x dim x bf16 = 57 KiB


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    hbm_bytes_per_s: float  # vendor peak; a copy kernel reaches ~90% of it
    bf16_flops: float  # dense peak
    hbm_bytes: float


CHIPS = {
    "h200": Chip("NVIDIA H200 SXM", 4.8e12, 989e12, 141e9),
    "v5e": Chip("TPU v5e", 0.82e12, 197e12, 16e9),
    "v6e": Chip("TPU v6e (Trillium)", 1.64e12, 918e12, 32e9),
}


@dataclasses.dataclass(frozen=True)
class Round:
    """One round of the paper's schedule (../shared/DESIGN.md §11)."""

    name: str
    problems: float
    rollouts: float  # mean rollouts per problem, extra rollouts for unsolved ones included
    candidates: int


def paper_rounds(problems: float = 747e3, hard_fraction: float = 0.2) -> list[Round]:
    """Rounds 1-3 search every problem (8 and 16 rollouts; +16 for the ~hard_fraction left unsolved);
    round 4 runs 64 rollouts, then 128 more on the unsolved ones, with 16 candidates."""
    return [
        Round("1 (bootstrap)", problems, 8, 5),
        Round("2", problems, 16 + 16 * hard_fraction, 8),
        Round("3", problems, 16 + 16 * hard_fraction, 8),
        Round("4", problems, 64 + 128 * hard_fraction, 16),
    ]


def decode_roofline(
    chip: Chip, rows: int, path_tokens: int, siblings: int, mfu: float, params: float = PARAMS_7B
) -> float:
    """Generated tokens/s of one chip at ``rows`` decode rows whose ``siblings`` candidates share a
    ``path_tokens`` path (read once per group with tree attention) plus their own ~step tokens: the
    lower of the memory bound (90% of peak bandwidth) and the compute bound (``mfu`` of peak)."""
    weights = 2 * params
    groups = rows / siblings
    kv = (groups * path_tokens + rows * 64) * KV_BYTES_PER_TOKEN_7B
    memory_bound = rows * 0.9 * chip.hbm_bytes_per_s / (weights + kv)
    return min(memory_bound, chip.bf16_flops * mfu / (2 * params))


def plan(args) -> dict:
    chip = CHIPS[args.chip]
    decode = args.decode_tokens_per_s or decode_roofline(chip, args.rows, args.path_tokens, args.siblings, args.mfu)
    source = "measured (--decode-tokens-per-s)" if args.decode_tokens_per_s else "roofline"
    flops_s = chip.bf16_flops * args.mfu
    rows = []
    for r in paper_rounds(args.problems, args.hard_fraction):
        expansions = r.problems * r.rollouts
        gen = expansions * r.candidates * args.step_tokens
        decode_h = gen / decode / 3600
        # PPM scores every new child (its step, with the path's KV kept) and the policy prefills
        # each expanded node's step once: ~2 x generated tokens of forward passes
        prefill_h = 2 * gen * 2 * PARAMS_7B / flops_s / 3600
        # SFT on args.sft_per_problem trajectories per problem, 2 epochs; PPM 1 epoch on pairs
        train_tokens = r.problems * args.sft_per_problem * args.trajectory_tokens * 2
        train_tokens += r.problems * args.pairs_per_problem * 2 * args.trajectory_tokens
        train_h = train_tokens * 6 * PARAMS_7B / flops_s / 3600
        rows.append(
            {
                "round": r.name,
                "expansions": expansions,
                "generated_tokens": gen,
                "decode_chip_h": decode_h,
                "prefill_chip_h": prefill_h,
                "train_chip_h": train_h,
                "total_chip_h": decode_h + prefill_h + train_h,
            }
        )
    return {"chip": chip.name, "decode_tokens_per_s_per_chip": decode, "decode_source": source, "rounds": rows}


def markdown(p: dict) -> str:
    rate = p["decode_tokens_per_s_per_chip"]
    out = [
        f"{p['chip']}: decode {rate:,.0f} generated tokens/s per chip ({p['decode_source']})",
        "",
        "| round | expansions | generated tokens | decode chip-h | prefill chip-h | train chip-h | total chip-h |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in p["rounds"]:
        out.append(
            f"| {r['round']} | {r['expansions']:.2e} | {r['generated_tokens']:.2e} | {r['decode_chip_h']:,.0f} | "
            f"{r['prefill_chip_h']:,.0f} | {r['train_chip_h']:,.0f} | {r['total_chip_h']:,.0f} |"
        )
    total = sum(r["total_chip_h"] for r in p["rounds"])
    out.append(f"| all | | | | | | {total:,.0f} |")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chip", choices=sorted(CHIPS), default="h200")
    ap.add_argument("--decode-tokens-per-s", type=float, help="measured per-chip decode rate (default: roofline)")
    ap.add_argument("--rows", type=int, default=256, help="decode rows per chip (default 256)")
    ap.add_argument("--siblings", type=int, default=8, help="candidates sharing a path (default 8)")
    ap.add_argument("--path-tokens", type=int, default=1024, help="mean path length in tokens (default 1024)")
    ap.add_argument("--step-tokens", type=int, default=128, help="mean tokens per step (default 128)")
    ap.add_argument("--problems", type=float, default=747e3, help="problems per round (the paper: 747k)")
    ap.add_argument("--hard-fraction", type=float, default=0.2, help="problems unsolved after the first rollouts")
    ap.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation of prefill and training")
    ap.add_argument("--trajectory-tokens", type=int, default=1024)
    ap.add_argument("--sft-per-problem", type=float, default=2.0, help="SFT trajectories kept per problem")
    ap.add_argument("--pairs-per-problem", type=float, default=8.0, help="PPM pairs per problem")
    ap.add_argument("--json", help="also write the plan here")
    return ap


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    p = plan(args)
    print(markdown(p))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(p, f, indent=1)


if __name__ == "__main__":
    main()
