"""The generation engine: batched sampling with shared prefill, stop strings and reusable prefix KV.

``Engine.generate`` prefills each prompt once; its ``n`` sample rows read that
KV as a shared prefix and are decoded together (``decode.py``) in calls of
``chunk`` tokens, with an early exit and a host-side stop-string check between
calls (``chunk=0``: one ``lax.while_loop`` to the end). A completion can return
its KV as a ``Prefix``; passing it back with a longer prompt prefills only the
new tokens (the search keeps one per tree node).
"""

from __future__ import annotations

import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from rstar_jax.engine import decode
from rstar_jax.engine.buckets import Buckets, row_bytes, rows_that_fit
from rstar_jax.engine.codec import Codec
from rstar_jax.engine.pages import PagePool, write_prompts, write_rows
from rstar_jax.engine.sampling import SamplingMode
from rstar_jax.engine.scoring import left_pad, score_sequences
from rstar_jax.engine.stops import cut_at_stop, first_stop, rows_with_stop
from rstar_jax.engine.types import Completion, GenerateStats, Prefix
from rstar_jax.errors import UserError
from rstar_jax.memory import GB, memory_budget
from rstar_jax.models import ModelConfig
from rstar_jax.models.sharding import shard_rows
from rstar_jax.sequences import common_prefix

Prompt = str | Sequence[int]


class Engine:
    """Jitted generation and PPM scoring for one model.

    chunk:    tokens per decode call (host checks between calls); 0 = one while_loop.
    max_rows: decode rows per device batch (prompts x n); larger requests run in groups. Lowered
              (to a power of two) to what fits ``memory_gb`` (default: the device's memory, see
              ``rstar_jax.memory``) by ``rows_that_fit``; a model that fits no row is refused.
    max_len:  longest prompt + completion (default: the model's max_position_embeddings).
    share_prefill: prefill each prompt once for its n rows (False: once per row, for comparison).
    compact:  between decode calls (chunk > 0), move the unfinished rows to a batch of at most half
              the rows when they fit (default off: every row waits for the batch's longest). Pays
              where a decode step costs in proportion to its rows (large batches); below that,
              on these CPUs ~64 rows, the extra programs and harvests cost more than they save.
    mesh:     a ``models.placement.inference_mesh`` the params are placed on: each device batch's rows
              are split over its ``data`` axis (and the weights over ``tensor``); None: one device.
    """

    def __init__(
        self,
        config: ModelConfig,
        params,
        tokenizer=None,
        *,
        buckets: Buckets = Buckets(),
        chunk: int = 16,
        max_rows: int = 512,
        max_len: int | None = None,
        share_prefill: bool = True,
        compact: bool = False,
        memory_gb: float | None = None,
        mesh: Mesh | None = None,
    ):
        self.config, self.params, self.mesh = config, params, mesh
        # the jitted functions take the config as a static argument: token ids play no part there
        self._jit_config = config.replace(bos_token_id=None, eos_token_id=None, pad_token_id=None)
        self.codec = Codec(tokenizer) if tokenizer is not None else None
        self.chunk, self.max_rows, self.share_prefill, self.compact = chunk, max_rows, share_prefill, compact
        self.max_len = max_len or config.max_position_embeddings
        budget, source = memory_budget(memory_gb, agree=False)  # no collective: batches are per process
        # a device holds 1/tensor of the weights and of each row's KV heads, and 1/data of the rows
        data, tensor = (mesh.shape["data"] * mesh.shape["fsdp"], mesh.shape["tensor"]) if mesh else (1, 1)
        fit = rows_that_fit(config, self.max_len, budget * tensor) * data
        if fit < 1:
            raise UserError(
                f"the model ({config.num_params() * jnp.dtype(config.dtype).itemsize / GB:.2f} GB) and one decode "
                f"row of {self.max_len} tokens ({row_bytes(config, self.max_len) / GB:.2f} GB) do not fit the "
                f"{budget / GB:.2f} GB budget ({source}); use a shorter max_len, bfloat16, or more memory (memory_gb)"
            )
        self.max_rows = min(max_rows, 1 << (fit.bit_length() - 1))  # a power of two: row buckets round up
        self.buckets = buckets.up_to(self.max_len)
        self.eos_ids = ({config.eos_token_id} if config.eos_token_id is not None else set()) | (
            self.codec.eos_ids() if self.codec else set()
        )

    # --- text -------------------------------------------------------------------------
    def encode(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str):
            if self.codec is None:
                raise ValueError("text prompts need a tokenizer; pass token ids or Engine(..., tokenizer)")
            return self.codec.encode(prompt)
        return [int(t) for t in prompt]

    def _decode(self, ids: Sequence[int]) -> str:
        return self.codec.decode(ids) if self.codec else ""

    # --- generation -------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int = 1,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        stop: Sequence[str] = (),
        seed: int | Sequence[int] = 0,
        prefixes: Sequence[Prefix | None] | None = None,
        return_prefix: bool = False,
        chunk: int | None = None,
        pages: PagePool | None = None,
    ) -> tuple[list[list[Completion]], GenerateStats]:
        """``n`` completions per prompt (strings or token-id lists), and the call's counters.

        seed: an int (row keys from (seed, prompt index, sample index)) or one seed per
              prompt (keys from (seeds[i], sample index): independent of the batch).
        prefixes: per prompt, a Prefix whose tokens start the prompt (or None); the longest
              common token prefix is reused and only the rest is prefilled.
        return_prefix: attach to each completion the KV of prompt + completion[:-1].
        pages: a PagePool holding the prefixes (``PagedPrefix``; the caller keeps their references)
              and receiving the returned ones: a completion's prefix then shares its prompt's pages
              (written once per prompt) and adds pages for its own tokens only, instead of a copy
              of the whole path per completion. The pool needs ``pages.pages_needed`` free pages.
        """
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1 or top_k < 0:
            raise ValueError(f"need 0 < top_p <= 1 and top_k >= 0, got top_p={top_p}, top_k={top_k}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        stop = tuple(stop)
        if stop and self.codec is None:
            raise ValueError("stop strings need a tokenizer")
        if "" in stop:
            raise ValueError("stop strings must be non-empty")
        t0 = time.perf_counter()
        stats = GenerateStats(prompts=len(prompts))
        if not prompts:
            return [], stats
        ids = [self.encode(p) for p in prompts]
        for i, p in enumerate(ids):
            if not p:
                raise ValueError(f"prompt {i} is empty")
            if len(p) >= self.max_len:
                raise ValueError(
                    f"prompt {i} has {len(p)} tokens; the maximum is {self.max_len - 1} (max_len {self.max_len})"
                )
        if isinstance(seed, (int, np.integer)):
            seeds = [(int(seed), i) for i in range(len(ids))]
        else:
            if len(seed) != len(ids):
                raise ValueError(f"got {len(seed)} seeds for {len(ids)} prompts")
            seeds = [(int(s), 0) for s in seed]
        prefixes = list(prefixes) if prefixes is not None else [None] * len(ids)
        if len(prefixes) != len(ids):
            raise ValueError(f"got {len(prefixes)} prefixes for {len(ids)} prompts")
        # reuse at most len - 1 tokens: the last prompt token is fed to get the first logits
        keeps = [0 if p is None else min(common_prefix([p.tokens, q]), len(q) - 1) for p, q in zip(prefixes, ids)]
        mode = SamplingMode.of(temperature, top_p, top_k)
        stop_ids = sorted(self.eos_ids | {i for s in stop if (i := self.codec.single_token_id(s)) is not None})
        settings = dict(
            max_new=max_new_tokens,
            stop=stop,
            stop_ids=stop_ids,
            mode=mode,
            sampling=(temperature, top_p, top_k),
            return_prefix=return_prefix,
            chunk=self.chunk if chunk is None else chunk,
            pages=pages,
        )
        done: dict[tuple[int, int], Completion] = {}
        for entries, m in self._groups(len(ids), n):
            done.update(self._generate_group(ids, prefixes, keeps, seeds, entries, m, stats, **settings))
        stats.seconds = time.perf_counter() - t0
        return [[done[i, j] for j in range(n)] for i in range(len(ids))], stats

    def _groups(self, num_prompts: int, n: int) -> list[tuple[list[tuple[int, list[int]]], int]]:
        """Device batches: ([(prompt, its sample indices)], m), each prompt prefilled once and
        decoded as m rows (m x prompts <= max_rows)."""
        if not self.share_prefill:  # every row prefills its own copy of the prompt
            rows = [(i, [j]) for i in range(num_prompts) for j in range(n)]
            return [(rows[g : g + self.max_rows], 1) for g in range(0, len(rows), self.max_rows)]
        if n <= self.max_rows:
            per = self.max_rows // n
            return [
                ([(i, list(range(n))) for i in range(g, min(g + per, num_prompts))], n)
                for g in range(0, num_prompts, per)
            ]
        return [
            ([(i, list(range(s, min(s + self.max_rows, n))))], self.max_rows)
            for i in range(num_prompts)
            for s in range(0, n, self.max_rows)
        ]

    def _generate_group(
        self,
        all_ids,
        all_prefixes,
        all_keeps,
        seeds,
        entries,
        m,
        stats: GenerateStats,
        *,
        max_new,
        stop,
        stop_ids,
        mode,
        sampling,
        return_prefix,
        chunk,
        pages,
    ) -> dict[tuple[int, int], Completion]:
        """Completions {(prompt, sample): ...} of one device batch (its counters added to ``stats``):
        row e * m + j is sample ``entries[e][1][j]`` of prompt ``entries[e][0]``. One function because
        the decode loop's compaction re-maps the row owners that the harvest reads."""
        ids = [all_ids[i] for i, _ in entries]
        keeps = [all_keeps[i] for i, _ in entries]
        b = len(entries)
        bp = self.buckets.rows(b)
        r = bp * m
        rows = [(e, e * m + j) for e, (_, samples) in enumerate(entries) for j in range(len(samples))]
        suffixes = [p[k:] for p, k in zip(ids, keeps)]
        t = self.buckets.tokens(max(map(len, suffixes)), "prompt length")
        budget = [min(max_new, self.max_len - len(p)) for p in ids]
        new_cap = self.buckets.tokens(max(budget), "max_new_tokens")
        tokens, mask = left_pad(suffixes, bp, t)
        prefix_k, prefix_v = self._stack_prefixes([all_prefixes[i] for i, _ in entries], keeps, bp, pages)

        def per_row(values, dtype):  # [R], zero for batch-padding rows
            out = np.zeros(r, dtype)
            out[[row for _, row in rows]] = values
            return out

        seed_of = [seeds[i] for i, _ in entries]
        sample_of = [entries[e][1][row - e * m] for e, row in rows]
        stop_arr = np.full(max(8, -(-len(stop_ids) // 8) * 8), -1, np.int32)  # padded: no recompiles
        stop_arr[: len(stop_ids)] = stop_ids
        uniforms = (
            np.zeros((r, 0), np.float32)
            if mode.greedy
            else decode.draw_uniforms(
                per_row([seed_of[e][0] & 0xFFFFFFFF for e, _ in rows], np.uint32),
                per_row([seed_of[e][1] for e, _ in rows], np.int32),
                per_row(sample_of, np.int32),
                n=new_cap,
            )
        )
        if self.mesh is not None:  # rows over the data axis; the jitted programs follow their inputs
            tokens, mask, uniforms = shard_rows(self.mesh, tokens, mask, uniforms)
        state = decode.prefill(
            self._jit_config,
            self.params,
            prefix_k,
            prefix_v,
            np.asarray(keeps + [0] * (bp - b), np.int32),
            tokens,
            mask,
            per_row([budget[e] for e, _ in rows], np.int32),
            uniforms,
            stop_arr,
            *sampling,
            mode=mode,
            new_cap=new_cap,
            own_cap=self._own_slots(chunk, new_cap),
        )
        paths = None  # (pool, {prompt: its KV in pages}), shared by its rows' prefixes, released at the end
        if pages is not None and return_prefix:
            used = [all_prefixes[i] for i, _ in entries]
            written = write_prompts(pages, state.cache.shared, ids, used, keeps, self.buckets)
            paths = (pages, {i: path for (i, _), path in zip(entries, written)})
        owner = np.full(r, -1)  # per decode row, the index into ``rows`` of the sample it draws (-1: padding)
        owner[[row for _, row in rows]] = np.arange(len(rows))

        def picks(sel):  # [(decode row, prompt ids, (prompt, sample))] of the owned rows among ``sel``
            return [(i, ids[rows[o][0]], (entries[rows[o][0]][0], sample_of[o])) for i in sel if (o := owner[i]) >= 0]

        out: dict[tuple[int, int], Completion] = {}
        calls, done = 0, np.asarray(state.done)
        stats.decode_slots += len(done)  # the first token, drawn by prefill
        while not done.all() and int(state.step) < new_cap:
            limit = new_cap if chunk <= 0 else min(int(state.step) + chunk, new_cap)
            need = self._own_slots(limit - 1, new_cap)
            if need > state.cache.capacity:
                state = decode.grow(state, need)
            before = int(state.step)
            state = decode.decode(self._jit_config, self.params, state, np.int32(limit), mode=mode)
            calls += 1
            stats.decode_slots += len(done) * (int(state.step) - before)
            done = np.asarray(state.done)
            if stop and not done.all():  # multi-token stop strings are found on the host
                done = self._mark_stopped(state, done, stop)
                state = state.replace(done=jnp.asarray(done))
            cut = self._compaction(done, state.cache.shared.mask.shape[0]) if self.compact and not done.all() else None
            if cut is not None:  # finished rows are harvested and leave; the rest decode on, fewer
                out.update(self._harvest(state, picks(np.flatnonzero(done)), stop, return_prefix, stats, paths))
                state = decode.compact(state, *cut)
                owner = np.where(done[cut[1]], -1, owner[cut[1]])
                done = np.asarray(state.done)
                stats.compactions += 1
        out.update(self._harvest(state, picks(range(len(owner))), stop, return_prefix, stats, paths))
        for path in paths[1].values() if paths else ():
            pages.release(path)
        st = stats
        st.rows += len(rows)
        st.prefill_tokens += sum(map(len, suffixes))
        st.shared_prefill_saved += sum(len(suffixes[e]) for e, _ in rows) - sum(map(len, suffixes))
        st.prefix_reused += sum(keeps)
        st.decode_calls += calls
        return out

    def _compaction(self, done: np.ndarray, prompts_now: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(prompt slots [Bp'], decode rows [Bp' x n']) holding every unfinished row of the batch
        in at most half its rows, or None. n' (a power of two) fits the most unfinished rows
        of any prompt; spare places take finished rows, which decode nothing."""
        d = done.reshape(prompts_now, -1)  # [Bp, n]: row r continues prompt r // n
        live = (~d).sum(axis=1)
        keep = np.flatnonzero(live)
        n = 1 << int(live.max() - 1).bit_length()
        bp = self.buckets.rows(len(keep))
        if bp * n > done.size // 2:
            return None
        prompts = np.concatenate([keep, np.flatnonzero(live == 0)[: bp - len(keep)]])
        # each prompt's unfinished rows first (a stable sort of its done flags), then finished ones
        rows = prompts[:, None] * d.shape[1] + np.argsort(d[prompts], axis=1, kind="stable")[:, :n]
        return prompts.astype(np.int32), rows.reshape(-1).astype(np.int32)

    def _harvest(
        self, state, picks, stop, return_prefix, stats: GenerateStats, paths=None
    ) -> dict[tuple[int, int], Completion]:
        """Completions {(prompt, sample): ...} of ``picks`` [(row in state, prompt ids, (prompt, sample))];
        paths: (pool, {prompt: its PagedPrefix}) when the prefixes go to a page pool."""
        if not picks:
            return {}
        rows = [row for row, _, _ in picks]
        toks, lps, num = jax.device_get((state.tokens, state.logprobs, state.num))
        finished = [self._finish(toks[row, : num[row]], lps[row, : num[row]], stop) for row in rows]
        stats.new_tokens += sum(len(f[0]) for f in finished)
        if not return_prefix:
            prefs = [None] * len(rows)
        elif paths is None:
            prefs = self._kv_prefixes(state.cache, rows, [p for _, p, _ in picks], finished)
        else:
            pool, by_prompt = paths
            seqs = [tuple(p) + tuple(f[0][:-1]) for (_, p, _), f in zip(picks, finished)]
            prefs = write_rows(pool, state.cache, rows, [by_prompt[i] for _, _, (i, _) in picks], seqs, self.buckets)
        return {
            key: Completion(text, tuple(tk), reason, lp, pf)
            for (_, _, key), (tk, text, reason, lp), pf in zip(picks, finished, prefs)
        }

    @staticmethod
    def _own_slots(tokens: int, new_cap: int) -> int:
        """Own KV slots for ``tokens`` fed tokens: powers of two from 16 (few programs), at most
        new_cap; everything at once for a single while_loop (tokens <= 0)."""
        if tokens <= 0:
            return new_cap
        return min(new_cap, max(16, 1 << (tokens - 1).bit_length()))

    def _stack_prefixes(self, prefixes, keeps, bp, pages=None):
        """[Bp, L, Hkv, Dh, P] / [Bp, L, Hkv, P, Dh] from the used prefixes (None if none is used),
        gathered from their pages when they live in ``pages``."""
        if not any(keeps):
            return None, None
        p = self.buckets.tokens(max(keeps), "prefix length")
        if pages is not None:
            return pages.gather(prefixes, keeps, bp, p)
        c = self.config
        zk = jnp.zeros((c.num_layers, c.num_kv_heads, c.head_dim, p), jnp.dtype(c.dtype))
        zv = jnp.zeros((c.num_layers, c.num_kv_heads, p, c.head_dim), jnp.dtype(c.dtype))
        ks, vs = [], []
        for pf, keep in zip(prefixes, keeps):
            if not keep:
                ks.append(zk), vs.append(zv)
                continue
            have = pf.k.shape[-1]
            ks.append(pf.k[..., :p] if have >= p else jnp.pad(pf.k, [(0, 0)] * 3 + [(0, p - have)]))
            vs.append(pf.v[..., :p, :] if have >= p else jnp.pad(pf.v, [(0, 0)] * 2 + [(0, p - have), (0, 0)]))
        ks += [zk] * (bp - len(ks))
        vs += [zv] * (bp - len(vs))
        return jnp.stack(ks), jnp.stack(vs)

    def _mark_stopped(self, state, done, stop) -> np.ndarray:
        """Also mark done the active rows whose text so far contains a stop string."""
        active = np.flatnonzero(~done)
        toks, num = jax.device_get((state.tokens, state.num))
        texts = self.codec.decode_batch([toks[i, : num[i]] for i in active])
        done = done.copy()
        done[active[np.asarray(rows_with_stop(texts, stop), bool)]] = True
        return done

    def _finish(self, toks: np.ndarray, lps: np.ndarray, stop) -> tuple[list[int], str, str, float]:
        """(token ids, text, finish reason, logprob) of one row's raw draw."""
        toks = [int(x) for x in toks]
        reason = "length"
        body = toks
        if toks and toks[-1] in self.eos_ids:
            reason, body = "eos", toks[:-1]  # eos stays in the ids, not in the text
        text = self._decode(body)
        if stop and first_stop(text, stop) is not None:
            m, text, reason = cut_at_stop(body, stop, self._decode)
            toks = body[:m]
        return toks, text, reason, float(np.sum(lps[: len(toks)], dtype=np.float64))

    def _kv_prefixes(self, cache, rows, prompts, finished) -> list[Prefix]:
        """The KV of prompt + completion[:-1] of each row (what its cache holds, less any overshoot)."""
        seqs = [tuple(p) + tuple(tk[:-1]) for p, (tk, *_) in zip(prompts, finished)]
        length = self.buckets.tokens(max(map(len, seqs)), "prefix length")
        padded = np.zeros(self.buckets.rows(len(rows)), np.int32)  # a bucketed row count: no recompiles
        padded[: len(rows)] = rows
        k, v = decode.extract_prefixes(cache, padded, length=length)
        return [Prefix(s, decode.take_row(k, i), decode.take_row(v, i)) for i, s in enumerate(seqs)]

    # --- scoring ----------------------------------------------------------------------
    def score(self, texts: Sequence[Prompt], max_tokens: int = 16384, groups: Sequence | None = None) -> np.ndarray:
        """Raw PPM scores [N] float32 (the value head on each text's last token).

        groups: a key per text; texts with equal keys (the children of one node) compute
                their common token prefix once.
        """
        if not len(texts):
            return np.zeros(0, np.float32)
        seqs = [self.encode(t) for t in texts]
        for i, s in enumerate(seqs):
            if len(s) > self.max_len:
                raise ValueError(f"text {i} has {len(s)} tokens; the maximum is {self.max_len}")
        return score_sequences(self._jit_config, self.params, seqs, self.buckets, max_tokens, groups)
