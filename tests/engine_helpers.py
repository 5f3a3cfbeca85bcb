"""Shared pieces of the engine tests: a tiny byte-level BPE tokenizer (step markers as special
tokens; the ``tiny`` fixture in conftest.py pairs it with a tiny Qwen2), prompt makers,
full-forward references and a compile counter."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rstar_jax import models
from rstar_jax.engine import decode, scoring
from rstar_jax.steps import SPECIAL_TOKENS

jit_logits = jax.jit(models.logits, static_argnums=0)

CORPUS = [
    "the cat sat on the mat and the dog sat on the log",
    "x = 3 + 4\nprint(x * 2)\n# add the numbers then print",
    "1234567890 apples, pears; bananas!",
] * 3


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tmodels
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(tmodels.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<eos>", *SPECIAL_TOKENS]
    # ASCII-only alphabet: any id sequence decodes to valid text (no split UTF-8 sequences)
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=160, special_tokens=specials, show_progress=False))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        additional_special_tokens=list(SPECIAL_TOKENS),
        clean_up_tokenization_spaces=False,
    )


def prompts_of(lengths, vocab, seed=0):
    rng = np.random.RandomState(seed)
    return [list(map(int, rng.randint(2, vocab, n))) for n in lengths]


def full_logits(config, params, seq, width=64):
    """Logits [len(seq), V] of one full forward (right-padded to one shape: one compile)."""
    ids = np.zeros((1, width), np.int32)
    ids[0, : len(seq)] = seq
    return np.asarray(jit_logits(config, params, jnp.asarray(ids)))[0, : len(seq)].astype(np.float64)


def full_logprob(config, params, prompt, completion):
    """Sum of log p(completion | prompt) from one full forward."""
    lg = full_logits(config, params, list(prompt) + list(completion))
    lp = lg - np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1, keepdims=True)) - lg.max(-1, keepdims=True)
    return float(sum(lp[len(prompt) - 1 + i, t] for i, t in enumerate(completion)))


def compiled() -> dict[str, int]:
    """Programs each jitted engine function has compiled so far: a new one means a retrace."""
    fns = {
        name: getattr(decode, name)
        for name in ("draw_uniforms", "prefill", "grow", "decode", "compact", "extract_prefixes")
    }
    return {name: fn._cache_size() for name, fn in {**fns, "score": scoring._score_batch}.items()}
