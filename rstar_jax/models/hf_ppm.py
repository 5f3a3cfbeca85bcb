"""The PPM as a transformers model with its head, and the official code's PPM folders.

Our PPM scores a text as ``r = w . h + b``: a float32 linear head on the final-normed hidden state
``h`` of the last non-pad token, raw (no activation; the search squashes it, ``tanh(r / 5)`` by
default, as the official code does). Three folder layouts hold one:

- **transformers** (``save_ppm_hf``; what ``train-ppm`` writes to ``OUT/hf``):
  ``Qwen2ForTokenClassification`` / ``LlamaForTokenClassification`` with ``num_labels=1``. Its
  ``score`` Linear (with bias) is our head and there is no LM head, so
  ``AutoModelForTokenClassification.from_pretrained(folder)(ids, attention_mask=mask).logits[i, t, 0]``
  at ``t`` = row i's last non-pad token (``mask[i].sum() - 1`` with right padding, ``-1`` with
  left padding) is our score. A ``...ForSequenceClassification`` folder (``score`` without bias,
  read by transformers at the last token that is not ``pad_token_id``) is read too, bias 0.
- **official** (rStar-Math ``train/save_rm.py``): a causal-LM folder plus ``value_head.bin``, a
  torch state dict ``{"v_head.summary.weight": [1, D], "v_head.summary.bias": [1]}``.
- **ours before**: ``value_head.weight`` / ``value_head.bias`` next to a causal LM in
  ``model.safetensors`` (``hf_io.save_hf``), read by ``hf_io.load_hf``.

A PPM read without an LM head gets a config with ``tie_word_embeddings=True``: it has no LM head of
its own, and scoring never uses one.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from rstar_jax.errors import UserError, one_line
from rstar_jax.io import atomic_write_text
from rstar_jax.models.config import ModelConfig
from rstar_jax.models.hf_io import (
    CheckpointError,
    _expected_shapes,
    _read_header,
    _set,
    _weight_files,
    hf_to_path,
    iter_safetensors,
    load_hf,
    path_to_hf,
    write_safetensors,
)

VALUE_HEAD_BIN = "value_head.bin"  # the official code's separate head file
_HEAD = {"score.weight": ("value_head/kernel", True), "score.bias": ("value_head/bias", False)}
_ARCH = {"qwen2": "Qwen2", "llama": "Llama"}


def save_ppm_hf(config: ModelConfig, params: dict, path: str, tokenizer=None) -> None:
    """Write a PPM as ``<Family>ForTokenClassification`` with one label (see the module docstring):
    config.json + model.safetensors (backbone in its dtype, ``score`` float32), and the tokenizer."""
    if "value_head" not in params:
        raise ValueError("params have no value_head: save_ppm_hf writes a PPM")
    os.makedirs(path, exist_ok=True)
    tensors = {}
    for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        ours = "/".join(str(k.key) for k in p)
        if ours.startswith("lm_head"):
            continue  # a token-classification model has no LM head; scoring never uses it
        name, transpose = path_to_hf(ours)
        if ours.startswith("value_head"):
            name = "score." + name.rsplit(".", 1)[1]
        arr = np.asarray(jax.device_get(leaf))
        tensors[name] = arr.T if transpose else arr
    write_safetensors(os.path.join(path, "model.safetensors"), tensors)
    cfg = config.to_hf_dict()
    cfg.update(
        architectures=[f"{_ARCH[config.model_type]}ForTokenClassification"],
        id2label={"0": "LABEL_0"},
        label2id={"LABEL_0": 0},
        rstar_value_head=True,
        rstar_score="logits[:, last non-pad token, 0]: the raw PPM score (the search squashes it)",
    )
    atomic_write_text(os.path.join(path, "config.json"), json.dumps(cfg, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def _tensor_names(path: str) -> set[str]:
    return {n for f in _weight_files(path) for n in _read_header(f)[0] if n != "__metadata__"}


def _config_dict(path: str) -> dict:
    file = os.path.join(path, "config.json")
    ModelConfig.from_json_file(file)  # a missing, unreadable or unsupported config.json: UserError naming it
    with open(file, encoding="utf-8") as f:
        return json.load(f)


def ppm_layout(path: str) -> str | None:
    """ "transformers", "official", "ours" or None (a folder with no PPM head) of an HF folder."""
    if not os.path.isdir(path):
        raise UserError(f"{path}: model folder does not exist")
    if os.path.isfile(os.path.join(path, VALUE_HEAD_BIN)):
        return "official"
    names = _tensor_names(path)
    if "score.weight" in names:
        return "transformers"
    return "ours" if "value_head.weight" in names else None


def load_ppm(
    path: str, dtype: str = "float32", place: Callable[[str, np.ndarray], jax.Array] | None = None
) -> tuple[ModelConfig, dict]:
    """Read a PPM folder of any layout in the module docstring into ``(config, params)``; a folder
    without a head raises UserError naming it (``place``: as in ``hf_io.load_hf``)."""
    layout = ppm_layout(path)
    if layout is None:
        raise UserError(
            f"{path}: not a PPM: no value head (no score.weight or value_head.weight tensor in its safetensors "
            f"and no {VALUE_HEAD_BIN}); pass a PPM folder written by train-ppm, or train one from this policy"
        )
    if layout == "ours":
        return load_hf(path, dtype, place)
    if layout == "official":
        config, params = load_hf(path, dtype, place)
        if config.value_head:
            raise UserError(f"{path}: holds a value head in model.safetensors and in {VALUE_HEAD_BIN}; keep one")
        head = read_value_head_bin(os.path.join(path, VALUE_HEAD_BIN), config.hidden_size)
        place = place or (lambda _, a: jnp.asarray(a))
        return config.replace(value_head=True), {
            **params,
            "value_head": {k: place(f"value_head/{k}", v) for k, v in head.items()},
        }
    return _load_classifier(path, dtype, place)


def _load_classifier(path: str, dtype: str, place) -> tuple[ModelConfig, dict]:
    """A ``...ForTokenClassification`` / ``...ForSequenceClassification`` folder with one label."""
    raw = _config_dict(path)
    names = _tensor_names(path)
    config = ModelConfig.from_hf_dict(raw, dtype=dtype, source=os.path.join(path, "config.json")).replace(
        value_head=True, tie_word_embeddings=bool(raw.get("tie_word_embeddings")) or "lm_head.weight" not in names
    )
    expected = _expected_shapes(config)
    np_dtype = np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float32)
    place = place or (lambda _, a: jnp.asarray(a))
    params: dict = {}
    for file in _weight_files(path):
        for name, arr in iter_safetensors(file):
            ours, transpose = _HEAD.get(name) or hf_to_path(name) or (None, False)
            if ours == "lm_head/kernel" and config.tie_word_embeddings:
                continue  # some tied checkpoints store the head anyway
            if ours is None or ours not in expected:
                raise CheckpointError(f"{file}: unexpected tensor {name!r} in a PPM of this config")
            arr = arr.T if transpose else arr
            if name == "score.weight" and arr.ndim == 2 and arr.shape[1] != 1:
                raise CheckpointError(f"{file}: score.weight has {arr.shape[1]} labels; a PPM has one (a scalar score)")
            if tuple(arr.shape) != expected[ours]:
                raise CheckpointError(
                    f"{file}: tensor {name!r} has shape {tuple(arr.shape)}, expected {expected[ours]}"
                )
            keep = np.float32 if ours.startswith("value_head") else np_dtype
            _set(params, ours, place(ours, np.asarray(arr, dtype=keep)))
    if "score.bias" not in names:  # sequence classification: a head without bias
        _set(params, "value_head/bias", place("value_head/bias", np.zeros((1,), np.float32)))
    flat = {"/".join(str(k.key) for k in p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    missing = sorted(set(expected) - flat)
    if missing:
        raise CheckpointError(f"{path}: missing tensors {[path_to_hf(m)[0] for m in missing]}")
    return config, params


def read_value_head_bin(file: str, hidden_size: int) -> dict[str, np.ndarray]:
    """The official ``value_head.bin`` (``v_head.summary.weight`` [1, D], ``v_head.summary.bias`` [1];
    the ``v_head.`` prefix optional) as our head: ``{"kernel": [D, 1], "bias": [1]}`` float32."""
    import torch

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged or foreign file
        raise UserError(f"{file}: not a torch state dict ({one_line(e)})") from None
    if not isinstance(state, dict):
        raise UserError(f"{file}: expected a state dict of the value head, got {type(state).__name__}")
    state = {k.removeprefix("v_head."): v for k, v in state.items()}
    if set(state) != {"summary.weight", "summary.bias"}:
        raise UserError(
            f"{file}: expected the tensors v_head.summary.weight and v_head.summary.bias, found {sorted(state)}"
        )
    w, b = (state[k].detach().to(torch.float32).numpy() for k in ("summary.weight", "summary.bias"))
    if w.shape != (1, hidden_size) or b.shape != (1,):
        raise UserError(
            f"{file}: v_head.summary.weight {tuple(w.shape)} / bias {tuple(b.shape)}; "
            f"expected (1, {hidden_size}) / (1,) for this backbone"
        )
    return {"kernel": w.T.copy(), "bias": b.copy()}


def load_model(
    path: str, dtype: str = "float32", place: Callable[[str, np.ndarray], jax.Array] | None = None
) -> tuple[ModelConfig, dict]:
    """A policy or a PPM of any layout: ``load_ppm`` where the folder has a head, else ``load_hf``."""
    return load_ppm(path, dtype, place) if ppm_layout(path) else load_hf(path, dtype, place)


def check_same_tokenizer(policy_tokenizer, ppm_tokenizer, policy: str, ppm: str) -> None:
    """UserError unless the PPM reads text with the policy's vocabulary: a PPM is trained from its
    policy, so a different one means a PPM made for another policy (or a mixed-up folder)."""
    a, b = policy_tokenizer.get_vocab(), ppm_tokenizer.get_vocab()
    if a != b:
        only = sorted(set(b) - set(a))[:3] or sorted(set(a) - set(b))[:3]
        raise UserError(
            f"{ppm}: the PPM's tokenizer differs from the policy's ({policy}): {len(b)} vs {len(a)} tokens"
            + (f", e.g. {only} in one only" if only else ", same tokens with other ids")
            + "; use the PPM trained from this policy (train-ppm --init <policy>)"
        )
