"""Tokenizer folders: loading any HF tokenizer, and the step-format special tokens on it
(with the embeddings resized to match).

Real checkpoints (Qwen2.5-Math) do not know ``<end_of_step>`` and friends; the
official code adds them as special tokens so each marker is one id and a stop
check is a single comparison. New rows start at the mean of the existing
embeddings (a common choice that keeps initial logits for them unremarkable).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax.numpy as jnp
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from rstar_jax.errors import UserError
from rstar_jax.models.config import ModelConfig
from rstar_jax.steps import SPECIAL_TOKENS


def add_step_tokens(tokenizer, config: ModelConfig, params: dict) -> tuple[object, ModelConfig, dict]:
    """Add the step markers to ``tokenizer`` (in place) and grow embed/lm_head rows if needed.

    Returns (tokenizer, config, params); the config's vocab_size covers every id.
    """
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return (tokenizer,) + resize_vocab(config, params, max(config.vocab_size, len(tokenizer)))


def resize_vocab(config: ModelConfig, params: dict, vocab_size: int) -> tuple[ModelConfig, dict]:
    """Grow the embedding (and an untied LM head) to ``vocab_size`` rows."""
    extra = vocab_size - config.vocab_size
    if extra < 0:
        raise ValueError(f"cannot shrink vocab from {config.vocab_size} to {vocab_size}")
    if extra == 0:
        return config, params
    params = dict(params)
    emb = params["embed"]["embedding"]
    params["embed"] = {
        "embedding": jnp.concatenate([emb, jnp.broadcast_to(emb.mean(0, keepdims=True), (extra, emb.shape[1]))], axis=0)
    }
    if not config.tie_word_embeddings:
        head = params["lm_head"]["kernel"]
        params["lm_head"] = {
            "kernel": jnp.concatenate(
                [head, jnp.broadcast_to(head.mean(1, keepdims=True), (head.shape[0], extra))], axis=1
            )
        }
    return config.replace(vocab_size=vocab_size), params


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """Load an HF tokenizer folder: ours (and any plain fast tokenizer) as
    ``PreTrainedTokenizerFast``, so a ``config.json`` naming a model family cannot swap in
    that family's tokenizer class; anything else via ``AutoTokenizer``."""
    path = Path(path)
    config_file = path / "tokenizer_config.json"
    if not (path / "tokenizer.json").exists() and not config_file.exists():
        raise UserError(f"{path}: not a tokenizer folder (no tokenizer.json or tokenizer_config.json)")
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    if (
        config.get("tokenizer_class") in (None, "PreTrainedTokenizerFast", "TokenizersBackend")
        and (path / "tokenizer.json").exists()
    ):
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))
