"""``rstar-jax bench engine``: generation throughput, ours against transformers PyTorch ``generate``.

Both run the same random Qwen2 weights on the same prompts (``prompts`` prompts
x ``n`` samples x ``new_tokens`` tokens, temperature 1, no stop, so every row
generates every token), side by side in one process, repeats interleaved,
medians reported. The roofline is 2 FLOPs per matmul parameter per generated
token against the fp32 matmul peak measured here with ``jnp.dot``. Wall-clock
and process-CPU-time columns: on a shared machine the CPU-time ones are the
stable comparison (``--cores 1`` compares single cores).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile

import jax
import numpy as np

from rstar_jax.bench.model import matmul_peak, timed
from rstar_jax.engine import Engine

# ours: decode in calls of --chunk tokens, one while_loop, one token per call; and without shared prefill
MODES = {"chunk": {}, "while": {"chunk": 0}, "step": {"chunk": 1}, "copies": {"share_prefill": False}}


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--n", type=int, default=4, help="samples per prompt (shared prefill)")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--prompt-len", type=int, nargs=2, default=(8, 32), metavar=("MIN", "MAX"))
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=688)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--chunk", type=int, default=16, help="tokens per decode call in 'chunk' mode")
    p.add_argument("--modes", default=",".join(MODES), help=f"ours: comma list of {list(MODES)}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peak-size", type=int, default=1024, help="square matmul size for the fp32 peak")
    p.add_argument("--cores", type=int, default=0, help="pin the process to this many cores (0: all)")
    p.add_argument("--no-torch", action="store_true", help="skip transformers generate")
    p.add_argument("--out", default="", help="write the results as JSON here")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "engine",
        help="generation tokens/s vs transformers generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _arguments(p)
    p.set_defaults(func=run)
    return p


def _model(args, folder: str):
    """Random Qwen2 weights saved by transformers and loaded by us: (config, params, torch model | None)."""
    from rstar_jax.models import ModelConfig, init_params, load_hf

    hf = dict(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=max(1024, args.prompt_len[1] + args.new_tokens),
        tie_word_embeddings=False,
    )
    if args.no_torch:
        config = ModelConfig.from_hf_dict({**hf, "model_type": "qwen2"})
        return config, init_params(config, jax.random.key(0)), None
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**hf)).eval()
    model.save_pretrained(folder)
    config, params = load_hf(folder)
    return config, params, model


def _torch_generate(model, prompts, n, new_tokens):
    import torch

    t = max(map(len, prompts))
    ids = torch.zeros((len(prompts), t), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, t - len(p) :], mask[i, t - len(p) :] = torch.tensor(p), 1
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            num_return_sequences=n,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=0,
        )
    assert out.shape == (len(prompts) * n, t + new_tokens), out.shape


def run(args) -> int:
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"unknown modes {sorted(unknown)}; choose from {list(MODES)}")
    if args.cores:  # before any thread pool starts: every thread inherits the affinity
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    cores = len(os.sched_getaffinity(0))
    rng = np.random.RandomState(0)
    prompts = [
        list(map(int, rng.randint(1, args.vocab, rng.randint(args.prompt_len[0], args.prompt_len[1] + 1))))
        for _ in range(args.prompts)
    ]
    new_total = args.prompts * args.n * args.new_tokens
    with tempfile.TemporaryDirectory() as folder:
        config, params, model = _model(args, folder)
    if model is not None:
        import torch

        torch.set_num_threads(cores)
    peaks = [matmul_peak(args.peak_size, repeats=10)]
    engines = {m: Engine(config, params, **{"chunk": args.chunk, **MODES[m]}) for m in modes}
    gen = dict(n=args.n, max_new_tokens=args.new_tokens, temperature=1.0, seed=0)
    runs = {m: functools.partial(eng.generate, prompts, **gen) for m, eng in engines.items()}
    first, counters = {}, {}
    for m, fn in runs.items():  # first call: compile (nothing reused from other modes) + run
        jax.clear_caches()
        first[m] = timed(fn)[0]
    for m, fn in runs.items():  # compile again what clearing dropped
        counters[m] = fn()[1]
        assert counters[m].new_tokens == new_total, (m, counters[m])
    if model is not None:
        runs["torch"] = functools.partial(_torch_generate, model, prompts, args.n, args.new_tokens)
        _torch_generate(model, prompts[:2], args.n, 4)  # warm up
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in runs}
    for _ in range(args.repeats):  # interleaved, so load changes hit every column alike
        for m, fn in runs.items():
            times[m].append(timed(fn))
    peaks.append(matmul_peak(args.peak_size, repeats=10))
    peak_wall = statistics.median(p["wall"] for p in peaks)
    peak_cpu = statistics.median(p["cpu"] for p in peaks)
    flops = 2 * config.matmul_params() * new_total
    rows = []
    for name, ts in times.items():
        wall, cpu = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        rows.append(
            dict(
                impl="torch generate" if name == "torch" else f"rstar_jax ({name})",
                mode=name,
                compile_s=(first[name] - wall) if name in first else None,
                median_s=wall,
                median_cpu_s=cpu,
                times_s=[t[0] for t in ts],
                tokens_per_s=new_total / wall,
                tokens_per_cpu_s=new_total / cpu,
                roofline_pct=100 * flops / wall / (peak_wall * 1e9),
                roofline_cpu_pct=100 * flops / cpu / (peak_cpu * 1e9),
            )
        )
    torch_row = next((r for r in rows if r["mode"] == "torch"), None)
    for r in rows:
        r["vs_torch"] = r["tokens_per_s"] / torch_row["tokens_per_s"] if torch_row else None
        r["vs_torch_cpu"] = r["tokens_per_cpu_s"] / torch_row["tokens_per_cpu_s"] if torch_row else None
    sharing = [m for m, e in engines.items() if e.share_prefill]
    stats = counters[(sharing or list(engines))[0]]
    result = dict(
        shape=dict(
            prompts=args.prompts,
            n=args.n,
            new_tokens=args.new_tokens,
            prompt_len=list(args.prompt_len),
            prompt_tokens=sum(map(len, prompts)),
            chunk=args.chunk,
        ),
        model=dict(
            params=config.num_params(),
            matmul_params=config.matmul_params(),
            hidden=args.hidden,
            layers=args.layers,
            heads=args.heads,
            kv_heads=args.kv_heads,
            intermediate=args.intermediate,
            vocab=args.vocab,
        ),
        machine=dict(cores=cores, jax=jax.__version__, backend=jax.default_backend(), load_avg=os.getloadavg()),
        matmul_peak_gflops=peak_wall,
        matmul_peak_gflops_per_cpu_s=peak_cpu,
        matmul_peak_samples=peaks,
        roofline_tokens_per_s=peak_wall * 1e9 / (2 * config.matmul_params()),
        prefill_tokens=stats.prefill_tokens,
        prefill_tokens_saved_by_sharing=stats.shared_prefill_saved,
        new_tokens=new_total,
        results=rows,
    )
    _print(result)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def _print(r: dict) -> None:
    s, m = r["shape"], r["model"]
    print(
        f"{s['prompts']} prompts x n={s['n']} x {s['new_tokens']} new tokens; model {m['params'] / 1e6:.2f}M params "
        f"({m['matmul_params'] / 1e6:.2f}M in matmuls); {r['machine']['cores']} cores, load avg "
        f"{r['machine']['load_avg'][0]:.1f}; fp32 matmul peak {r['matmul_peak_gflops']:.1f} GFLOP/s "
        f"({r['matmul_peak_gflops_per_cpu_s']:.1f} per CPU-s) -> roofline {r['roofline_tokens_per_s']:.0f} tok/s"
    )
    print(f"prefill tokens {r['prefill_tokens']} (shared prefill saved {r['prefill_tokens_saved_by_sharing']})")
    print(
        f"{'impl':20s} {'compile s':>9s} {'median s':>9s} {'new tok/s':>10s} {'vs torch':>8s} {'roofline':>8s} "
        f"{'tok/CPU-s':>10s} {'vs torch':>8s} {'roofline':>8s}"
    )
    for row in r["results"]:
        comp = "" if row["compile_s"] is None else f"{row['compile_s']:.2f}"
        vs = "" if row["vs_torch"] is None else f"{row['vs_torch']:.2f}x"
        vsc = "" if row["vs_torch_cpu"] is None else f"{row['vs_torch_cpu']:.2f}x"
        print(
            f"{row['impl']:20s} {comp:>9s} {row['median_s']:9.3f} {row['tokens_per_s']:10.0f} {vs:>8s} "
            f"{row['roofline_pct']:7.1f}% {row['tokens_per_cpu_s']:10.0f} {vsc:>8s} {row['roofline_cpu_pct']:7.1f}%"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rstar-jax bench engine", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
