"""A small tokenizer trained on the embedded domain, saved as an HF tokenizer folder.

Byte-level BPE (exact round trip of any text, spaces and newlines included) whose
pre-tokenizer splits digits one per token, so a tiny model copies numbers digit
by digit. A space before a number joins its first digit (`` 57`` -> ``Ġ5 7``), so
one token of context finds the number to copy (why: docs/DEMO_LOG.md). The step
markers, ``<pad>`` and ``<eos>`` are single special tokens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rstar_jax.steps import SPECIAL_TOKENS

PAD, EOS = "<pad>", "<eos>"
ALL_SPECIAL: tuple[str, ...] = (PAD, EOS) + SPECIAL_TOKENS  # ids 0, 1, 2, ... in this order


def train_domain_tokenizer(
    texts: Iterable[str], vocab_size: int = 512, out_dir: str | os.PathLike | None = None
) -> PreTrainedTokenizerFast:
    """Train the byte-level, digit-splitting BPE on ``texts``; save to ``out_dir`` if given."""
    min_size = len(ALL_SPECIAL) + 256  # the specials and the byte alphabet
    if vocab_size < min_size:
        raise ValueError(f"vocab_size must be at least {min_size}, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r" ?\d"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(ALL_SPECIAL),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        additional_special_tokens=list(SPECIAL_TOKENS),
        clean_up_tokenization_spaces=False,  # would eat spaces before punctuation on decode
    )
    if out_dir is not None:
        save_tokenizer(hf, out_dir)
    return hf


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: str | os.PathLike) -> None:
    """``save_pretrained`` plus what older readers (transformers 4, vLLM) look for: a
    ``special_tokens_map.json`` and the class name ``PreTrainedTokenizerFast``."""
    out = Path(out_dir)
    tokenizer.save_pretrained(str(out))
    config_file = out / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    special = {"pad_token": PAD, "eos_token": EOS, "additional_special_tokens": list(SPECIAL_TOKENS)}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
