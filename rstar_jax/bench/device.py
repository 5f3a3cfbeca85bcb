"""`rstar-jax bench device`: the engine, search and training on one accelerator, in one run.

Sections, in order, each skipped (and reported so) once the time budget (``--budget-s``,
default 480 s: 8 minutes) would be overrun:

- ceilings: device copy bandwidth (bytes read + written by a jitted ``x + 1`` over a large bf16
  array) and the bf16 matmul rate (one n x n x n ``jnp.dot``), both measured in this run.
- decode: a Qwen2.5-Math-1.5B-shaped model with random bf16 weights, sampling ``--new-tokens``
  tokens per row at 64 trees x K=4 and 8 trees x K=32 rows (one while_loop per call, no stop):
  tokens/s, compile seconds (first call less the second), the HBM roofline (weights plus the KV a
  step must read, over the copy bandwidth) and transformers ``generate`` on the same device.
- train: SFT and PPM train steps in bf16 (float32 master weights) of the 1.5B widths with
  ``--train-layers`` layers, as ``bench train`` builds them, against the PyTorch loop under bf16
  autocast; model FLOPs utilisation against the measured matmul rate.
- search: ``bench search`` (batched MCTS vs the naive loop, nodes/s; its device idle share
  where the search reports one, and the sandbox's share of the time).

``--tiny`` shrinks every size so the whole run takes well under a minute on a CPU.
JSON (``--out``) plus a printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

import numpy as np

from rstar_jax.errors import one_line

QWEN_1_5B = dict(
    vocab_size=151936,
    hidden_size=1536,
    intermediate_size=8960,
    num_layers=28,
    num_heads=12,
    num_kv_heads=2,
    tie_word_embeddings=True,
    rope_theta=10000.0,
    max_position_embeddings=4096,
)
TINY = dict(QWEN_1_5B, vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4)
DECODE_SHAPES = ((64, 4), (8, 32))  # (trees, K candidates): rows = trees x K
# seconds a section needs at least (at full size; --tiny: a tenth), checked before it starts
NEEDS = {"decode": 90, "torch_decode": 60, "train": 90, "search": 120}


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tiny", action="store_true", help="tiny sizes: a CPU smoke run of every section")
    p.add_argument("--budget-s", type=float, default=480.0, help="skip sections once this would be overrun")
    p.add_argument("--prompt-len", type=int, help="tokens per prompt (default 256; tiny 16)")
    p.add_argument("--new-tokens", type=int, help="tokens sampled per row (default 128; tiny 8)")
    p.add_argument("--train-layers", type=int, help="layers of the trained model (default 4; tiny 2)")
    p.add_argument("--train-batch", type=int, help="rows per training step (default 8; tiny 2)")
    p.add_argument("--train-seq", type=int, help="tokens per training row (default 1024; tiny 256)")
    p.add_argument("--sections", default="decode,train,search", help="comma list of decode, train, search")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
    p.add_argument("--out", default="bench_device.json")


class Budget:
    """Wall seconds left of ``total``; a section starts only if its estimate still fits."""

    def __init__(self, total: float, scale: float):
        self.start, self.total, self.scale = time.perf_counter(), total, scale
        self.skipped: dict[str, str] = {}

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.start)

    def allows(self, section: str) -> bool:
        need = NEEDS[section] * self.scale
        if self.left() < need:
            self.skipped[section] = f"{self.left():.0f} s left of {self.total:.0f}, needs ~{need:.0f}"
            return False
        return True


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ceilings(tiny: bool) -> dict:
    """Copy bandwidth (bytes/s) and bf16 matmul rate (FLOP/s) of the default device."""
    import jax
    import jax.numpy as jnp

    n = (8 << 20) if tiny else (1 << 30)  # elements: 16 MiB / 2 GiB of bf16, well past any cache
    x = jnp.ones((n,), jnp.bfloat16)
    inc = jax.jit(lambda a: a + 1)
    copy_s = _median_seconds(lambda: inc(x).block_until_ready(), 10)
    m = 256 if tiny else 8192
    a = jax.random.normal(jax.random.key(0), (m, m), jnp.bfloat16)
    dot = jax.jit(jnp.dot)
    dot_s = _median_seconds(lambda: dot(a, a).block_until_ready(), 10)
    return {"copy_bytes_per_s": 2 * 2 * n / copy_s, "matmul_bf16_flop_per_s": 2 * m**3 / dot_s}


def _torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def decode_bytes_per_step(config, trees: int, rows: int, prompt_len: int, new_tokens: int) -> float:
    """The fewest bytes one decode step reads: every weight once (an untied embedding table only
    for its rows' tokens: not counted), each tree's prompt KV once (its rows share it) and each
    row's own KV (on average half the new tokens)."""
    import jax.numpy as jnp

    item = jnp.dtype(config.dtype).itemsize
    weights = config.num_params() - (0 if config.tie_word_embeddings else config.vocab_size * config.hidden_size)
    kv_token = 2 * config.num_layers * config.num_kv_heads * config.head_dim * item
    return weights * item + kv_token * (trees * prompt_len + rows * new_tokens / 2)


def decode(config, params, prompt_len: int, new_tokens: int, bandwidth: float, budget: Budget, torch_ok: bool) -> list:
    """Tokens/s of our engine (and of transformers generate) at each of DECODE_SHAPES."""
    from rstar_jax.engine import Engine

    rng = np.random.RandomState(0)
    out = []
    for trees, k in DECODE_SHAPES:
        rows = trees * k
        prompts = [list(map(int, rng.randint(1, config.vocab_size, prompt_len))) for _ in range(trees)]
        engine = Engine(config, params, chunk=0, max_rows=rows, max_len=prompt_len + new_tokens)
        gen = dict(n=k, max_new_tokens=new_tokens, temperature=1.0, seed=0)
        t = time.perf_counter()
        engine.generate(prompts, **gen)
        first = time.perf_counter() - t
        t = time.perf_counter()
        _, stats = engine.generate(prompts, **gen)
        secs = time.perf_counter() - t
        assert stats.new_tokens == rows * new_tokens, stats
        roof = rows / (decode_bytes_per_step(config, trees, rows, prompt_len, new_tokens) / bandwidth)
        row = {
            "trees": trees,
            "k": k,
            "rows": rows,
            "tokens_per_s": rows * new_tokens / secs,
            "seconds": secs,
            "compile_s": max(first - secs, 0.0),
            "roofline_tokens_per_s": roof,
            "roofline_frac": rows * new_tokens / secs / roof,
        }
        if torch_ok and budget.allows("torch_decode"):
            row["torch_tokens_per_s"] = rows * new_tokens / _torch_generate(config, prompts, k, new_tokens)
            row["vs_torch"] = row["tokens_per_s"] / row["torch_tokens_per_s"]
        out.append(row)
    return out


def _torch_qwen(config, dtype):
    """transformers Qwen2 of ``config``'s shape with random weights, made on the torch device."""
    import torch
    import transformers

    hf = config.to_hf_dict()
    with torch.device(_torch_device()):
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**hf)).to(dtype)


def _torch_generate(config, prompts, n: int, new_tokens: int) -> float:
    """Seconds of one transformers ``generate`` call (after a short warm-up), bf16, sampling."""
    import torch

    model = _torch_qwen(config, torch.bfloat16).eval()
    ids = torch.tensor(prompts, device=_torch_device())

    def run(tokens: int):
        with torch.no_grad():
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                top_k=0,
                num_return_sequences=n,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                pad_token_id=0,
            )
        _sync()

    run(2)
    t = time.perf_counter()
    run(new_tokens)
    return time.perf_counter() - t


def train(config, batch: int, seq: int, matmul_rate: float, torch_ok: bool) -> list:
    """SFT and PPM bf16 train steps, ours (``bench train``'s trainer step) vs PyTorch under autocast."""
    import jax
    import torch

    from rstar_jax.bench import train as bench_train
    from rstar_jax.bench.model import interleaved, model_flops
    from rstar_jax.models import init_params
    from rstar_jax.train.batching import encode_groups, encode_sft

    sft, groups, tok = bench_train._data(max(60, 3 * batch * seq // 100), 0)
    params = jax.jit(init_params, static_argnums=0)(config, jax.random.key(0))
    flops = model_flops(config, seq, train=True) * batch * seq
    rows = []
    for kind, items, make_torch in (
        ("sft", [e for e in encode_sft(sft, tok, append_eos=True) if len(e.ids) <= seq], bench_train._torch_sft),
        ("ppm", [g for g in encode_groups(groups, tok) if g.length <= seq], bench_train._torch_ppm),
    ):
        t = time.perf_counter()
        ours, _, _ = bench_train._ours(kind, items, config, params, batch, seq, compute_dtype="bfloat16")
        ours()
        fns = {"ours": ours}
        compile_s = time.perf_counter() - t
        if torch_ok:
            with torch.device(_torch_device()):
                step, _, _ = make_torch(_torch_qwen(config, torch.float32), items, batch, seq)

            def theirs(step=step):
                with torch.autocast(_torch_device(), dtype=torch.bfloat16):
                    step()
                _sync()

            fns["torch"] = theirs
        times = interleaved(fns, repeats=3, rounds=1)
        row = {"what": kind, "compile_s": compile_s}
        for name, tm in times.items():
            row[f"{name}_step_s"] = tm["wall"]
            row[f"{name}_mfu"] = flops / tm["wall"] / matmul_rate
        rows.append(row)
    return rows


def search(tiny: bool, out_dir: str) -> dict:
    """``bench search`` at a size that fits the budget; its result with the headline numbers."""
    from rstar_jax.bench import search as bench_search

    size = (
        ["--problems", "2", "--naive-problems", "1", "--rollouts", "1", "--candidates", "2"]
        + ["--train-steps", "1", "--warmup-rollouts", "1"]
        if tiny
        else ["--problems", "32", "--naive-problems", "4", "--rollouts", "4", "--train-steps", "30"]
    )
    result = bench_search.main([*size, "--out", os.path.join(out_dir, "bench_search.json")])
    *ours, naive = result["rows"].values()
    best = max(ours, key=lambda r: r["nodes_per_s"])
    return {
        "ours_nodes_per_s": best["nodes_per_s"],
        "naive_nodes_per_s": naive["nodes_per_s"],
        "speedup": result["speedup_nodes_per_s"],
        "compile_s": best["compile_seconds"],
        "device_idle_share": best.get("device_idle_share"),
        "sandbox_share": best.get("sandbox_share"),
        "rows": result["rows"],
    }


def run(args) -> dict:
    import jax

    from rstar_jax.models import ModelConfig
    from rstar_jax.models.placement import inference_mesh, init_sharded

    tiny = args.tiny
    budget = Budget(args.budget_s, 0.1 if tiny else 1.0)
    prompt_len = args.prompt_len or (16 if tiny else 256)
    new_tokens = args.new_tokens or (8 if tiny else 128)
    torch_ok = not args.no_torch
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - {"decode", "train", "search"}
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from decode, train, search")
    shape = TINY if tiny else QWEN_1_5B
    result: dict = {
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "tiny": tiny,
        "budget_s": args.budget_s,
        **ceilings(tiny),
    }
    result["skipped"], result["errors"], result["section_seconds"] = budget.skipped, {}, {}

    def save() -> None:  # after every section: a run stopped from outside keeps what it measured
        result["seconds"] = time.perf_counter() - budget.start
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)

    def decode_section() -> None:
        config = ModelConfig(**shape, dtype="bfloat16")
        params = init_sharded(config, jax.random.key(0), inference_mesh(config, tensor=1, devices=jax.devices()[:1]))
        result["model"] = {"params": config.num_params(), **shape}
        result["decode"] = decode(config, params, prompt_len, new_tokens, result["copy_bytes_per_s"], budget, torch_ok)

    def train_section() -> None:
        layers = args.train_layers or (2 if tiny else 4)
        config = ModelConfig(**{**shape, "num_layers": layers})
        result["train_model"] = {"params": config.num_params(), "layers": layers}
        batch, seq = args.train_batch or (2 if tiny else 8), args.train_seq or (256 if tiny else 1024)
        result["train"] = train(config, batch, seq, result["matmul_bf16_flop_per_s"], torch_ok)

    def search_section() -> None:
        with tempfile.TemporaryDirectory() as d:
            result["search"] = search(tiny, d)

    for name, section in (("decode", decode_section), ("train", train_section), ("search", search_section)):
        if name in sections and budget.allows(name):
            t = time.perf_counter()
            try:
                section()
            except Exception as e:  # noqa: BLE001 - one failing section must not lose the others' numbers
                result["errors"][name] = one_line(f"{type(e).__name__}: {e}")
            result["section_seconds"][name] = time.perf_counter() - t
            save()
    save()
    print(table(result))
    return result


def table(r: dict) -> str:
    lines = [
        f"{r['device']} ({r['backend']}, jax {r['jax']}): copy {r['copy_bytes_per_s'] / 1e9:.0f} GB/s, "
        f"bf16 matmul {r['matmul_bf16_flop_per_s'] / 1e12:.1f} TFLOP/s; {r['seconds']:.0f} s",
        "| section | shape | ours | baseline | ours / baseline | of ceiling | compile s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for d in r.get("decode", []):
        base, vs = d.get("torch_tokens_per_s"), d.get("vs_torch")
        lines.append(
            f"| decode tok/s | {d['trees']} trees x K={d['k']} | {d['tokens_per_s']:.0f} | "
            f"{'' if base is None else f'{base:.0f}'} | {'' if vs is None else f'{vs:.2f}x'} | "
            f"{100 * d['roofline_frac']:.1f}% HBM roofline | {d['compile_s']:.1f} |"
        )
    for t in r.get("train", []):
        base, ours = t.get("torch_mfu"), t["ours_mfu"]
        lines.append(
            f"| {t['what']} train step MFU | bf16 | {100 * ours:.1f}% | "
            f"{'' if base is None else f'{100 * base:.1f}%'} | "
            f"{'' if base is None else f'{ours / base:.2f}x'} | | {t['compile_s']:.1f} |"
        )
    if "search" in r:
        s = r["search"]
        idle = s["device_idle_share"]
        lines.append(
            f"| MCTS nodes/s | batched vs naive | {s['ours_nodes_per_s']:.1f} | {s['naive_nodes_per_s']:.1f} | "
            f"{s['speedup']:.2f}x | device idle {'n/a' if idle is None else f'{100 * idle:.0f}%'}, "
            f"sandbox {100 * s['sandbox_share']:.0f}% | {s['compile_s']:.1f} |"
        )
    for name, why in r["skipped"].items():
        lines.append(f"| {name} | skipped: {why} | | | | | |")
    for name, why in r["errors"].items():
        lines.append(f"| {name} | failed: {why} | | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="rstar-jax bench device", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
