"""A thin text <-> token-id wrapper over Hugging Face and ``tokenizers`` tokenizers.

The engine never adds special tokens (prompts are used verbatim, as in the
official code) and never skips them when decoding: the step markers are special
tokens and must appear in the text.
"""

from __future__ import annotations

from typing import Sequence


class Codec:
    """Encode/decode with a ``transformers`` tokenizer or a raw ``tokenizers.Tokenizer``."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._hf = hasattr(tokenizer, "convert_tokens_to_ids")  # transformers' PreTrainedTokenizerBase

    def encode(self, text: str) -> list[int]:
        if self._hf:
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.decode_batch([ids])[0]

    def decode_batch(self, seqs: Sequence[Sequence[int]]) -> list[str]:
        seqs = [list(map(int, s)) for s in seqs]
        if self._hf:
            return self.tokenizer.batch_decode(seqs, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return self.tokenizer.decode_batch(seqs, skip_special_tokens=False)

    def eos_ids(self) -> set[int]:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        return set() if eos is None else {int(eos)}

    def single_token_id(self, text: str) -> int | None:
        """The id of a string that is exactly one token (a step marker), else None."""
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 and self.decode(ids) == text else None
