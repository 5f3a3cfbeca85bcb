"""The generation engine against transformers PyTorch and against itself.

One tiny random Qwen2 checkpoint and a tiny byte-level BPE tokenizer (with the
step markers as special tokens) serve every test; shapes are shared between
tests where possible because each new bucket costs a compile.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from rstar_jax import models
from rstar_jax.engine import Engine
from rstar_jax.engine.sampling import truncate_logits
from rstar_jax.engine.stops import cut_at_stop, first_stop
from tests.engine_helpers import compiled, full_logits, full_logprob, prompts_of

LENGTHS = [3, 11, 7, 9]  # one (batch, length) bucket for the greedy tests
NEW = 12


def test_greedy_matches_transformers_and_never_recompiles(tiny):
    config, params, model, _ = tiny
    prompts = prompts_of(LENGTHS, config.vocab_size)
    t = max(LENGTHS)
    ids = np.zeros((len(prompts), t), np.int64)
    mask = np.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, t - len(p) :], mask[i, t - len(p) :] = p, 1
    with torch.no_grad():
        ref = model.generate(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            do_sample=False,
            max_new_tokens=NEW,
            pad_token_id=0,
        ).numpy()[:, t:]
    engine = Engine(config, params)
    for chunk in (0, 5, 1):  # one while_loop, a host loop over 5-token calls, over 1-token calls
        out, stats = engine.generate(prompts, n=1, max_new_tokens=NEW, temperature=0.0, chunk=chunk)
        for i, p in enumerate(prompts):
            c = out[i][0]
            assert list(c.token_ids) == ref[i].tolist(), (chunk, i)
            assert c.finish_reason == "length"
            assert c.logprob == pytest.approx(full_logprob(config, params, p, c.token_ids), abs=1e-3)
    assert stats.decode_calls == NEW - 1  # chunk=1: every token after the first is one call
    # no row stops early: every padded row decodes all NEW steps, and all of them are tokens
    assert stats.decode_slots == engine.buckets.rows(len(prompts)) * NEW
    assert stats.new_tokens == len(prompts) * NEW
    counts = compiled()
    # same buckets: other prompts of lengths <= 12, fewer new tokens, other chunking -> no compile
    engine.generate(prompts_of([12, 9, 10, 5], config.vocab_size, seed=1), max_new_tokens=9, temperature=0.0)
    assert compiled() == counts


def test_stop_strings_and_finish_reasons(tiny):
    config, params, _, tokenizer = tiny
    engine = Engine(config, params, tokenizer)
    texts = [
        "the cat sat on the mat and",
        "x = 3 + 4\nprint(x * 2)",
        "1234 apples, pears; bananas",
        "the dog sat on the log",
    ]  # the greedy test's buckets: no compile here
    free, _ = engine.generate(texts, max_new_tokens=NEW, temperature=0.0)
    full = [o[0] for o in free]
    assert all(c.finish_reason == "length" and len(c.token_ids) == NEW for c in full)
    # a stop string that spans tokens (from the text prompt 0 would produce) and one that is
    # the text of a single token (of prompt 1)
    text0 = full[0].text
    multi = text0[len(text0) // 3 : len(text0) // 3 + 4]
    single = tokenizer.decode(full[1].token_ids[4:5])
    assert engine.codec.single_token_id(multi) is None and engine.codec.single_token_id(single) is not None
    for chunk in (0, 3):
        out, _ = engine.generate(texts, max_new_tokens=NEW, temperature=0.0, stop=(multi, single), chunk=chunk)
        for i, (c, ref) in enumerate(zip((o[0] for o in out), full)):
            hit = first_stop(ref.text, (multi, single))
            if hit is None:
                assert (c.text, c.finish_reason) == (ref.text, "length")
                continue
            end, stop = hit
            assert c.finish_reason == stop and c.text == ref.text[:end] and c.text.endswith(stop)
            k = len(c.token_ids)  # the fewest tokens whose text contains the stop
            assert stop in tokenizer.decode(ref.token_ids[:k]) and c.token_ids == ref.token_ids[:k]
            assert first_stop(tokenizer.decode(ref.token_ids[: k - 1]), (multi, single)) is None
            assert c.logprob == pytest.approx(
                full_logprob(config, params, engine.encode(texts[i]), c.token_ids), abs=1e-3
            )
        assert {o[0].finish_reason for o in out} & {multi, single}
    # eos: the 6th greedy token of prompt 2 becomes the model's eos
    eos = full[2].token_ids[5]
    out, _ = Engine(config.replace(eos_token_id=eos), params, tokenizer).generate(
        texts, max_new_tokens=NEW, temperature=0.0
    )
    c = out[2][0]
    first = full[2].token_ids.index(eos)
    assert c.finish_reason == "eos" and c.token_ids == full[2].token_ids[: first + 1]
    assert c.text == tokenizer.decode(full[2].token_ids[:first])  # eos is not in the text


def test_cut_at_stop_unit():
    pieces = ["ab", "c<", "e", "nd>", "x"]
    decode = lambda ids: "".join(pieces[i] for i in ids)  # noqa: E731
    assert cut_at_stop([0, 1, 2, 3, 4], ["<end>"], decode) == (4, "abc<end>", "<end>")
    assert cut_at_stop([0, 1, 2, 3, 4], ["<end>", "bc"], decode) == (2, "abc", "bc")
    assert cut_at_stop([0, 1], ["zz"], decode) is None


def test_sampling_reproducible_and_batch_independent(tiny):
    config, params, _, _ = tiny
    engine = Engine(config, params)
    prompts = prompts_of(LENGTHS, config.vocab_size, seed=2)
    a, _ = engine.generate(prompts, n=2, max_new_tokens=NEW, temperature=1.0, seed=3)
    b, _ = engine.generate(prompts, n=2, max_new_tokens=NEW, temperature=1.0, seed=3)
    tok = lambda out: [[c.token_ids for c in o] for o in out]  # noqa: E731
    assert tok(a) == tok(b)
    assert len({c.token_ids for o in a for c in o}) > 4  # samples differ from each other
    # an int seed keys rows by prompt index: other prompts elsewhere in the batch change nothing
    others = prompts_of([5, 11, 4, 12], config.vocab_size, seed=9)
    c, _ = engine.generate(
        [others[0], prompts[1], others[2], others[3]], n=2, max_new_tokens=NEW, temperature=1.0, seed=3
    )
    assert tok(c)[1] == tok(a)[1]
    # per-prompt seeds: a prompt's samples do not depend on the batch or its position in it
    seeds = [10, 11, 12, 13]
    full, _ = engine.generate(prompts, n=2, max_new_tokens=NEW, temperature=1.0, seed=seeds)
    part, _ = engine.generate([prompts[2], prompts[0]], n=2, max_new_tokens=NEW, temperature=1.0, seed=[12, 10])
    assert tok(part) == [tok(full)[2], tok(full)[0]]
    for o, p in zip(part, [prompts[2], prompts[0]]):
        assert o[1].logprob == pytest.approx(full_logprob(config, params, p, o[1].token_ids), abs=1e-3)


def test_samples_follow_documented_uniforms(tiny):
    """Token t of the row (seed, prompt i, sample j) is the inverse CDF, at
    uniform(fold_in(key(seed, i, j), t)), of softmax(logits / temperature): float64 numpy
    from full forwards against the engine's table of uniforms drawn before decoding."""
    config, params, _, _ = tiny
    engine = Engine(config, params, chunk=4)  # several decode calls: the table is indexed by step
    prompts = prompts_of(LENGTHS, config.vocab_size, seed=4)
    temperature, seed = 0.8, 21
    out, _ = engine.generate(prompts, n=2, max_new_tokens=NEW, temperature=temperature, seed=seed)
    for i, p in enumerate(prompts):
        for j, c in enumerate(out[i]):
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(np.uint32(seed)), i), j)
            lg = full_logits(config, params, list(p) + list(c.token_ids))
            for t, tok in enumerate(c.token_ids):
                u = float(jax.random.uniform(jax.random.fold_in(key, t), minval=np.finfo(np.float32).tiny))
                x = lg[len(p) - 1 + t] / temperature
                cdf = np.cumsum(np.exp(x - x.max()))
                assert tok == int(np.searchsorted(cdf, u * cdf[-1])), (i, j, t)


def test_shared_prefill_equals_separate_copies(tiny):
    config, params, _, _ = tiny
    prompts = prompts_of(LENGTHS, config.vocab_size, seed=2)
    shared = Engine(config, params)
    out, shared_stats = shared.generate(prompts, n=2, max_new_tokens=NEW, temperature=1.0, seed=3)
    assert shared_stats.shared_prefill_saved == sum(LENGTHS)  # (n - 1) x prompt tokens
    copies = Engine(config, params, share_prefill=False)
    ref, copies_stats = copies.generate(prompts, n=2, max_new_tokens=NEW, temperature=1.0, seed=3)
    assert copies_stats.shared_prefill_saved == 0 and copies_stats.prefill_tokens == 2 * sum(LENGTHS)
    for o, r in zip(out, ref):
        for c, d in zip(o, r):
            assert c.token_ids == d.token_ids
            assert c.logprob == pytest.approx(d.logprob, abs=1e-4)


def tv_distance(samples, probs):
    emp = np.bincount(samples, minlength=probs.size) / len(samples)
    return 0.5 * np.abs(emp - probs).sum()


def test_first_token_distribution_and_truncation(tiny):
    config, params, _, _ = tiny
    engine = Engine(config, params)
    prompt = prompts_of([6], config.vocab_size, seed=4)[0]
    logits = full_logits(config, params, prompt)[-1]
    softmax = lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum()  # noqa: E731
    n, temp = 2048, 0.05  # the random model's logits are flat: a low temperature makes p peaked

    def first(**kw):
        return np.array(
            [
                c.token_ids[0]
                for c in engine.generate(  # noqa: E731
                    [prompt], n=n, max_new_tokens=1, seed=1, **kw
                )[0][0]
            ]
        )

    draws = first(temperature=temp)
    p = softmax(logits / temp)
    noise = 0.5 * np.sum(np.sqrt(p * (1 - p) / n))  # ~ expected TV of n exact draws
    assert tv_distance(draws, p) < 2 * noise
    assert tv_distance(draws, softmax(logits / (1.5 * temp))) > 4 * noise  # the bound rejects a wrong T
    order = np.argsort(-logits)
    assert set(first(temperature=1.0, top_k=3)) <= set(order[:3].tolist())
    q = softmax(logits)[order]
    nucleus = order[: int(np.searchsorted(np.cumsum(q), 0.3) + 1)]
    kept = first(temperature=1.0, top_p=0.3)
    assert set(kept) <= set(nucleus.tolist()) and len(set(kept)) == len(nucleus)


def test_truncate_logits_unit():
    logits = jnp.log(jnp.asarray([[0.1, 0.4, 0.2, 0.3]]))
    keep = lambda p, k: np.isfinite(np.asarray(truncate_logits(logits, jnp.float32(p), jnp.int32(k))))[0]  # noqa
    assert keep(1.0, 2).tolist() == [False, True, False, True]
    assert keep(0.5, 0).tolist() == [False, True, False, True]  # 0.4 < 0.5, 0.4 + 0.3 >= 0.5
    assert keep(0.4, 0).tolist() == [False, True, False, False]
    assert keep(0.95, 3).tolist() == [False, True, True, True]
    assert keep(1e-6, 0).tolist() == [False, True, False, False]  # the top token always stays


def test_bad_input(tiny):
    config, params, _, tokenizer = tiny
    engine = Engine(config, params, tokenizer)
    assert engine.generate([], n=3)[0] == []
    with pytest.raises(ValueError, match="prompt 1"):
        engine.generate([[1, 2], [3] * config.max_position_embeddings])
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        engine.generate([""])
    for kw in (dict(n=0), dict(temperature=-0.5), dict(top_p=0.0), dict(top_k=-1)):
        with pytest.raises(ValueError):
            engine.generate(["the cat"], **kw)
    with pytest.raises(ValueError, match="tokenizer"):
        Engine(config, params).generate(["text needs a tokenizer"])
    with pytest.raises(ValueError, match="non-empty"):
        engine.generate(["the cat"], stop=("",))
    with pytest.raises(ValueError, match="text 1"):
        engine.score([[1, 2], [3] * (config.max_position_embeddings + 1)])


@pytest.mark.slow
def test_bench_engine_smoke(tmp_path):
    """The benchmark script end to end on a toy shape (numbers not checked: a shared CPU is noisy)."""
    from rstar_jax.bench import engine as bench

    out = tmp_path / "bench.json"
    assert (
        bench.main(
            [
                "--prompts",
                "4",
                "--n",
                "2",
                "--new-tokens",
                "8",
                "--hidden",
                "64",
                "--layers",
                "1",
                "--intermediate",
                "96",
                "--vocab",
                "128",
                "--repeats",
                "1",
                "--modes",
                "chunk,copies",
                "--peak-size",
                "256",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert [row["mode"] for row in r["results"]] == ["chunk", "copies", "torch"]
    assert r["new_tokens"] == 4 * 2 * 8 and r["prefill_tokens_saved_by_sharing"] == r["shape"]["prompt_tokens"]
    assert all(row["tokens_per_s"] > 0 and row["roofline_pct"] > 0 for row in r["results"])


def test_length_buckets_stop_at_max_len(tiny):
    """With max_len 40 (between buckets 32 and 64) no padded length passes 40, and greedy
    completions, their KV prefixes and PPM scores still match one full forward."""
    config, params, _, _ = tiny
    engine = Engine(config, params, max_len=40)
    prompts = prompts_of([33, 20], config.vocab_size, seed=9)
    out, _ = engine.generate(prompts, n=1, max_new_tokens=4, temperature=0.0, return_prefix=True)
    for p, (c,) in zip(prompts, out):
        assert len(p) + len(c.token_ids) <= 40 and c.prefix.k.shape[-1] <= 40
        assert c.logprob == pytest.approx(full_logprob(config, params, p, c.token_ids), abs=1e-3)
    longer = [p + list(c.token_ids) for p, (c,) in zip(prompts, out)]
    cont, stats = engine.generate(longer, max_new_tokens=NEW, temperature=0.0, prefixes=[c.prefix for (c,) in out])
    assert stats.prefix_reused == sum(len(q) - 1 for q in longer)
    for q, (c,) in zip(longer, cont):
        assert c.logprob == pytest.approx(full_logprob(config, params, q, c.token_ids), abs=1e-3)
    pconfig, pparams = models.init_value_head(config, params, jax.random.key(2))
    texts = longer + prompts
    ids, mask = np.zeros((len(texts), 64), np.int32), np.zeros((len(texts), 64), np.int32)
    for i, t in enumerate(texts):
        ids[i, : len(t)], mask[i, : len(t)] = t, 1
    np.testing.assert_allclose(
        Engine(pconfig, pparams, max_len=40).score(texts, groups=[0, 1, 0, 1]),
        jax.jit(models.ppm_scores, static_argnums=0)(pconfig, pparams, ids, mask),
        atol=1e-5,
    )
