"""Model configuration: one dataclass for the Qwen2/Qwen2.5 and Llama families."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from rstar_jax.errors import UserError, one_line

SUPPORTED_MODEL_TYPES = ("qwen2", "llama")
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Decoder-only transformer hyperparameters (hashable: used as a jit static arg)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = True  # Qwen2 has q/k/v bias, Llama does not
    model_type: str = "qwen2"
    dtype: str = "float32"  # compute dtype; params are stored in this dtype too
    value_head: bool = False  # PPM: a linear value head on the last non-pad token
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {self.model_type!r}; supported: {SUPPORTED_MODEL_TYPES}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} not a multiple of num_kv_heads={self.num_kv_heads}")
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    def num_params(self) -> int:
        d, f, v, layers = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_layers
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        attn = d * q + 2 * d * kv + q * d + (q + 2 * kv if self.attention_bias else 0)
        layer = attn + 3 * d * f + 2 * d
        head = 0 if self.tie_word_embeddings else d * v
        return v * d + layers * layer + d + head + ((d + 1) if self.value_head else 0)

    def matmul_params(self) -> int:
        """Weights used in matmuls per token (embedding lookup excluded): 2x this = forward FLOPs/token."""
        d, f, v, layers = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_layers
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        return layers * (2 * d * q + 2 * d * kv + 3 * d * f) + d * v

    # --- Hugging Face config.json -------------------------------------------------
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], dtype: str = "float32", source: str = "config.json") -> "ModelConfig":
        mt = d.get("model_type")
        if mt not in SUPPORTED_MODEL_TYPES:
            raise UserError(f"{source}: unsupported model_type {mt!r}; supported: {SUPPORTED_MODEL_TYPES}")
        try:
            heads = d["num_attention_heads"]
            return cls(
                vocab_size=d["vocab_size"],
                hidden_size=d["hidden_size"],
                intermediate_size=d["intermediate_size"],
                num_layers=d["num_hidden_layers"],
                num_heads=heads,
                num_kv_heads=d.get("num_key_value_heads") or heads,
                head_dim=d.get("head_dim") or d["hidden_size"] // heads,
                rope_theta=float(d.get("rope_theta", (d.get("rope_parameters") or {}).get("rope_theta", 10000.0))),
                rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
                max_position_embeddings=d.get("max_position_embeddings", 2048),
                tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
                attention_bias=True if mt == "qwen2" else bool(d.get("attention_bias", False)),
                model_type=mt,
                dtype=dtype,
                value_head=bool(d.get("rstar_value_head", False)),
                bos_token_id=_first(d.get("bos_token_id")),
                eos_token_id=_first(d.get("eos_token_id")),
                pad_token_id=_first(d.get("pad_token_id")),
            )
        except KeyError as e:
            raise UserError(f"{source}: missing field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise UserError(f"{source}: {one_line(e)}") from None

    def to_hf_dict(self) -> dict[str, Any]:
        d = {
            "model_type": self.model_type,
            "architectures": ["Qwen2ForCausalLM" if self.model_type == "qwen2" else "LlamaForCausalLM"],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "torch_dtype": self.dtype,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "rstar_value_head": self.value_head,
        }
        if self.model_type == "llama":
            d["attention_bias"] = self.attention_bias
            d["mlp_bias"] = False
        return d

    @classmethod
    def from_json_file(cls, path: str, dtype: str = "float32") -> "ModelConfig":
        if not os.path.isfile(path):
            raise UserError(f"{path}: no config.json (not a model folder)")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            raise UserError(f"{path}: not valid JSON ({one_line(e)})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return cls.from_hf_dict(data, dtype=dtype, source=path)


def _first(x):
    return x[0] if isinstance(x, list) and x else x
