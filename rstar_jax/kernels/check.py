"""Check the tree-attention kernels on the machine at hand, and time them against the reference.

    PYTHONPATH=. python -m rstar_jax.kernels.check [--impl auto|reference|pallas_gpu|pallas_tpu]
        [--interpret] [--size small|model] [--dtype float32|bfloat16] [--reps N] [--json out.json]

On a GPU or TPU it runs that backend's kernel compiled (not interpreted); on CPU it runs both
Pallas kernels in interpret mode on small shapes (about a minute). For each implementation and
dtype it compares, against float64 dense attention over each row's materialised path: the paged
cascade (a tree-like page table: groups share pages, unused entries are -1), the same with the
suffixes in the shuffled page pool too (``paged_tree_attention``), the contiguous
cascade (a prefix length that is not a multiple of the page), paged rows with their own tables,
and that padding rows are exactly zero. Then it times, jitted, at ``--size model`` (the default
on accelerators: 7B-shaped heads, 1k-token prefixes, 256 rows) the kernel's paged cascade (with
its KV bytes, each read once, over its time), the jnp reference, the kernel with the suffixes
paged too, and the kernel over per-row page tables (every row re-reads the shared prefix, no
suffix). Exits 1 if a comparison fails or a step raises (it is recorded; the others still run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from rstar_jax.kernels.dispatch import (
    IMPLS,
    cascade_attention,
    paged_attention,
    paged_cascade_attention,
    paged_tree_attention,
    tree_attention_impl,
)

# Max |kernel - float64| allowed, on inputs already rounded to the dtype. float32: online
# softmax over a few hundred keys errs ~sqrt(n) * 2^-24 * max|v| ~ 1e-6, kept with margin for
# approximate exp/log on devices. bf16: the kernel rounds probabilities (relative 2^-9) before
# the second product, moving o by <= 2^-9 * max|v| ~ 0.009 for unit normal values, and rounds
# the output (2^-9 * |o|).
TOLERANCE = {"float32": 5e-5, "bfloat16": 2e-2}


@dataclasses.dataclass(frozen=True)
class Shape:
    groups: int = 3
    rows: int = 4
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    page: int = 16
    pmax: int = 3  # prefix pages per group
    suffix: int = 5


SMALL = Shape()
MODEL = (  # Qwen2.5-Math-7B attention (28 heads, 4 KV heads, dim 128), 1k-token shared paths, 256 rows
    Shape(groups=64, rows=4, heads=28, kv_heads=4, head_dim=128, page=16, pmax=64, suffix=256),
    Shape(groups=8, rows=32, heads=28, kv_heads=4, head_dim=128, page=16, pmax=64, suffix=256),
    Shape(groups=8, rows=32, heads=28, kv_heads=4, head_dim=128, page=64, pmax=16, suffix=256),
)


def rounded(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Standard normal values already representable in ``dtype``, as float32."""
    return np.asarray(jnp.asarray(rng.normal(size=shape), dtype).astype(jnp.float32))


def make_case(shape: Shape, dtype, seed: int = 0, ragged: bool = True) -> dict[str, np.ndarray]:
    """A paged cascade input as numpy arrays (float ones rounded to ``dtype``). Groups draw prefix
    pages from one pool and group 1 shares group 0's first page (siblings share ancestors);
    table entries past a group's length are -1. With ``ragged``: group 0's prefix is full, group
    1's empty, the rest random; suffix lengths random in [0, S], row (1, 0) a padding row (no
    prefix, no suffix) and row (0, 1) prefix only."""
    g, r, hkv, d, page, pmax, s = (
        shape.groups,
        shape.rows,
        shape.kv_heads,
        shape.head_dim,
        shape.page,
        shape.pmax,
        shape.suffix,
    )
    rng = np.random.default_rng(seed)
    n_pages = g * pmax + 1
    table = rng.permutation(n_pages)[: g * pmax].reshape(g, pmax).astype(np.int32)
    plen = rng.integers(1, pmax * page + 1, size=g) if ragged else np.full(g, pmax * page)
    slen = rng.integers(0, s + 1, size=(g, r)) if ragged else rng.integers(s // 2, s + 1, size=(g, r))
    if g > 1:
        table[1, 0] = table[0, 0]
    if ragged:
        plen[0] = pmax * page
        if g > 1:
            plen[1], slen[1, 0] = 0, 0
        slen[0, 1] = 0
    table[np.arange(pmax)[None, :] >= -(-plen[:, None] // page)] = -1
    return {
        "q": rounded(rng, (g, r, shape.heads, d), dtype),
        "k_pages": rounded(rng, (n_pages, page, hkv, d), dtype),
        "v_pages": rounded(rng, (n_pages, page, hkv, d), dtype),
        "prefix_pages": table,
        "prefix_len": plen.astype(np.int32),
        "suffix_k": rounded(rng, (g, r, s, hkv, d), dtype),
        "suffix_v": rounded(rng, (g, r, s, hkv, d), dtype),
        "suffix_len": slen.astype(np.int32),
    }


def suffix_in_pool(case: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """The same case with every row's suffix moved into the page pool (pages of the case's page
    size, -1 past each row's length) and the pool's pages shuffled: the inputs of
    ``paged_tree_attention`` (q, k_pages, v_pages, prefix_pages, prefix_len, suffix_pages, suffix_len)."""
    g, r, s = case["suffix_k"].shape[:3]
    n, page = case["k_pages"].shape[:2]
    ps = -(-s // page)
    pad = ((0, 0), (0, 0), (0, ps * page - s), (0, 0), (0, 0))
    pools = [
        np.concatenate([case[p], np.pad(case[x], pad).reshape(g * r * ps, *case[p].shape[1:])])
        for p, x in (("k_pages", "suffix_k"), ("v_pages", "suffix_v"))
    ]
    perm = np.random.default_rng(seed).permutation(len(pools[0]))  # page i moves to perm[i]
    moved = [np.empty_like(pool) for pool in pools]
    for pool, out in zip(pools, moved):
        out[perm] = pool
    spages = (n + np.arange(g * r * ps)).reshape(g, r, ps)
    spages = np.where(np.arange(ps) < -(-case["suffix_len"][..., None] // page), perm[spages], -1)
    prefix = np.where(case["prefix_pages"] >= 0, perm[np.clip(case["prefix_pages"], 0, None)], -1)
    return {
        "q": case["q"], "k_pages": moved[0], "v_pages": moved[1], "prefix_pages": prefix.astype(np.int32),
        "prefix_len": case["prefix_len"], "suffix_pages": spages.astype(np.int32), "suffix_len": case["suffix_len"],
    }  # fmt: skip


def gathered_prefix(case: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each group's prefix pages as one contiguous [G, Pmax * page, Hkv, D] array (numpy)."""
    table = np.clip(case["prefix_pages"], 0, None)
    g = table.shape[0]
    k, v = case["k_pages"][table], case["v_pages"][table]
    return k.reshape(g, -1, *k.shape[3:]), v.reshape(g, -1, *v.shape[3:])


def dense_attention_f64(q, pk, pv, plen, sk, sv, slen) -> np.ndarray:
    """Each row's softmax attention over its own concatenated path [prefix[:plen], suffix[:slen]]
    in float64 numpy; q [G, R, H, D], prefix [G, P, Hkv, D], suffix [G, R, S, Hkv, D] -> [G, R, H, D]
    (zeros for a row with an empty path)."""
    g, r, h, d = q.shape
    hkv = pk.shape[2]
    out = np.zeros((g, r, h, d))
    for i in range(g):
        for j in range(r):
            k = np.concatenate([pk[i, : plen[i]], sk[i, j, : slen[i, j]]]).astype(np.float64)
            v = np.concatenate([pv[i, : plen[i]], sv[i, j, : slen[i, j]]]).astype(np.float64)
            if not len(k):
                continue
            qh = q[i, j].astype(np.float64).reshape(hkv, h // hkv, d)
            s = np.einsum("kgd,skd->kgs", qh, k) / np.sqrt(d)
            p = np.exp(s - s.max(-1, keepdims=True))
            out[i, j] = np.einsum("kgs,skd->kgd", p / p.sum(-1, keepdims=True), v).reshape(h, d)
    return out


ENTRIES = ("paged_cascade", "paged_tree", "cascade", "paged_rows")


def compare(impl: str, dtype, interpret: bool, shape: Shape = SMALL, seed: int = 0, entries=ENTRIES) -> dict:
    """Max |error| of each entry point in ``entries`` against ``dense_attention_f64`` on one
    ragged case (inf where the output dtype is not ``dtype``), and the largest |output| of any
    padding row (a row with an empty path; must be 0)."""
    case = make_case(shape, dtype, seed)
    pk, pv = gathered_prefix(case)
    a = {name: jnp.asarray(x, dtype if x.dtype == np.float32 else x.dtype) for name, x in case.items()}
    q, plen, slen = case["q"], case["prefix_len"], case["suffix_len"]
    g, r, h, d = q.shape
    tree = {
        name: jnp.asarray(x, dtype if x.dtype == np.float32 else x.dtype) for name, x in suffix_in_pool(case).items()
    }
    kw = dict(impl=impl, interpret=interpret)
    trim = pk.shape[1] - 5  # a contiguous prefix whose length is no multiple of the page
    tplen = np.minimum(plen, trim)
    runs = {
        "paged_cascade": (lambda: paged_cascade_attention(*a.values(), **kw), plen, slen),
        "paged_tree": (lambda: paged_tree_attention(*tree.values(), **kw), plen, slen),
        "cascade": (
            lambda: cascade_attention(
                a["q"],
                jnp.asarray(pk[:, :trim], dtype),
                jnp.asarray(pv[:, :trim], dtype),
                jnp.asarray(tplen),
                a["suffix_k"],
                a["suffix_v"],
                a["suffix_len"],
                **kw,
            ),  # fmt: skip
            tplen,
            slen,
        ),
        "paged_rows": (  # every row of a group reads the group's pages through its own table
            lambda: paged_attention(
                a["q"].reshape(g * r, h, d),
                a["k_pages"],
                a["v_pages"],
                jnp.repeat(a["prefix_pages"], r, axis=0),
                jnp.repeat(a["prefix_len"], r),
                **kw,
            ).reshape(g, r, h, d),  # fmt: skip
            plen,
            0 * slen,
        ),
    }
    out = {"padding_rows_max_abs": 0.0}
    for name in entries:
        run, plen_, slen_ = runs[name]
        got = run()
        want = dense_attention_f64(q, pk, pv, plen_, case["suffix_k"], case["suffix_v"], slen_)
        got64 = np.asarray(got, np.float64)
        out[name] = float(np.max(np.abs(got64 - want))) if got.dtype == dtype else float("inf")
        padding = (plen_[:, None] == 0) & (slen_ == 0)
        out["padding_rows_max_abs"] = max(out["padding_rows_max_abs"], float(np.max(np.abs(got64[padding]), initial=0)))
    return out


def timed(fn, *args, reps: int) -> float:
    """Median seconds of ``fn(*args)`` (already jitted), after a compile-and-run warm-up."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def benchmark(impl: str, shape: Shape, interpret: bool, reps: int) -> dict:
    """Times (ms) and KV bytes read once per call (GB/s) at ``shape`` in bf16."""
    case = make_case(shape, jnp.bfloat16, seed=1, ragged=False)
    a = {name: jnp.asarray(x, jnp.bfloat16 if x.dtype == np.float32 else x.dtype) for name, x in case.items()}
    g, r, h, d = case["q"].shape
    kv_token = 2 * shape.kv_heads * d * 2  # K and V bytes of one token, bf16
    prefix_bytes = int(np.sum(-(-case["prefix_len"] // shape.page)) * shape.page * kv_token)
    suffix_bytes = int(np.sum(case["suffix_len"]) * kv_token)
    cascade = jax.jit(lambda *x: paged_cascade_attention(*x, impl=impl, interpret=interpret))
    reference = jax.jit(lambda *x: paged_cascade_attention(*x, impl="reference"))
    tree = jax.jit(lambda *x: paged_tree_attention(*x, impl=impl, interpret=interpret))
    tree_args = [
        jnp.asarray(x, jnp.bfloat16 if x.dtype == np.float32 else x.dtype) for x in suffix_in_pool(case).values()
    ]
    rows = jax.jit(lambda q, kp, vp, t, n: paged_attention(q, kp, vp, t, n, impl=impl, interpret=interpret))
    row_args = (
        a["q"].reshape(g * r, h, d), a["k_pages"], a["v_pages"], jnp.repeat(a["prefix_pages"], r, axis=0),
        jnp.repeat(a["prefix_len"], r),
    )  # fmt: skip
    out = {"shape": dataclasses.asdict(shape), "prefix_MB": prefix_bytes / 1e6, "suffix_MB": suffix_bytes / 1e6}
    t_kernel = timed(cascade, *a.values(), reps=reps)
    t_ref = timed(reference, *a.values(), reps=reps)
    t_rows = timed(rows, *row_args, reps=reps)
    t_tree = timed(tree, *tree_args, reps=reps)
    err = jnp.max(jnp.abs(cascade(*a.values()).astype(jnp.float32) - reference(*a.values()).astype(jnp.float32)))
    out |= {
        "kernel_ms": 1e3 * t_kernel,
        "reference_ms": 1e3 * t_ref,
        "kernel_per_row_tables_prefix_only_ms": 1e3 * t_rows,
        "kernel_tree_ms": 1e3 * t_tree,  # paged_tree_attention: the suffixes in the pool too
        "kernel_GBps": (prefix_bytes + suffix_bytes) / t_kernel / 1e9,
        "speedup_vs_reference": t_ref / t_kernel,
        "max_abs_diff_vs_reference": float(err),
    }
    return out


def _report(kind: str, impl: str, t: dict) -> str:
    if kind == "comparison":
        shown = " ".join(f"{k}={v:.2e}" for k, v in t.items() if k in (*ENTRIES, "padding_rows_max_abs"))
        verdict = "PASS" if t["pass"] else "FAIL"
        return f"{verdict} {impl:10s} {t['dtype']:8s} vs float64 (tol {t['tolerance']:.0e}): {shown}"
    s = Shape(**t["shape"])
    return (
        f"{impl} G={s.groups} R={s.rows} H={s.heads}/{s.kv_heads} D={s.head_dim} page={s.page} "
        f"prefix={s.pmax * s.page} S={s.suffix}: kernel {t['kernel_ms']:.3f} ms ({t['kernel_GBps']:.0f} GB/s), "
        f"reference {t['reference_ms']:.3f} ms (x{t['speedup_vs_reference']:.2f}), "
        f"per-row tables {t['kernel_per_row_tables_prefix_only_ms']:.3f} ms, "
        f"paged suffix {t['kernel_tree_ms']:.3f} ms, "
        f"max |diff| {t['max_abs_diff_vs_reference']:.1e}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rstar_jax.kernels.check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", default="auto", choices=("auto", *IMPLS), help="auto: this backend's kernel; on CPU both")
    ap.add_argument("--interpret", action="store_true", help="interpret the kernels (the default off their backend)")
    ap.add_argument("--size", choices=("small", "model"), help="timing shapes (default: model on accelerators)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), help="compare in this dtype only (default: both)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", help="also write the results here (rewritten after each step)")
    args = ap.parse_args(argv)
    backend = jax.default_backend()
    native = tree_attention_impl(backend)
    impls = [args.impl] if args.impl != "auto" else ["pallas_gpu", "pallas_tpu"] if native == "reference" else [native]
    size = args.size or ("small" if native == "reference" else "model")
    result = {"backend": backend, "jax": jax.__version__, "device": jax.devices()[0].device_kind}
    result |= {"comparisons": [], "timings": [], "errors": []}
    print(f"backend {backend}, jax {jax.__version__}, {result['device']}")
    dtypes = [args.dtype] if args.dtype else ["float32", "bfloat16"]
    steps = [("comparison", impl, name) for impl in impls for name in dtypes]
    shapes = (SMALL,) if size == "small" else MODEL
    steps += [("timing", impl, shape) for impl in impls if impl != "reference" for shape in shapes]
    for kind, impl, what in steps:
        interpret = impl != "reference" and (args.interpret or impl != native)
        try:  # one failing step (a kernel that does not compile here) must not lose the others
            if kind == "comparison":
                t = {"impl": impl, "dtype": what, "interpret": interpret, "tolerance": TOLERANCE[what]}
                t |= compare(impl, jnp.dtype(what), interpret)
                t["pass"] = max(t[k] for k in ENTRIES) <= t["tolerance"] and t["padding_rows_max_abs"] == 0.0
                result["comparisons"].append(t)
            else:
                t = {"impl": impl, "interpret": interpret}
                t |= benchmark(impl, what, interpret, 2 if size == "small" else args.reps)
                result["timings"].append(t)
            print(_report(kind, impl, t))
        except Exception as e:  # noqa: BLE001 - recorded, printed, and fails the run
            result["errors"].append(f"{kind} {impl} {what}: {type(e).__name__}: {e}"[:2000])
            print("ERROR", result["errors"][-1])
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    ok = not result["errors"] and all(c["pass"] for c in result["comparisons"])
    print("all comparisons passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
