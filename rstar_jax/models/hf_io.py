"""Hugging Face interop: config.json + (sharded) safetensors <-> our params pytree.

One regex key map serves both directions. PyTorch ``Linear`` weights are
``[out, in]`` and are transposed to ``[in, out]`` kernels. Tensors are read
as raw bytes with ml_dtypes so bfloat16 checkpoints load without torch.
A PPM's value head is stored in the same file as ``value_head.weight/bias``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from rstar_jax.errors import UserError, one_line
from rstar_jax.io import atomic_open, atomic_write_text
from rstar_jax.models.config import ModelConfig

_ST_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}

# (HF name template, our param path template, transpose?); {i} is a layer, {p} a projection.
_KEY_MAP: list[tuple[str, str, bool]] = [
    ("model.embed_tokens.weight", "embed/embedding", False),
    ("model.layers.{i}.self_attn.{p}_proj.weight", "layers_{i}/attn/{p}_proj/kernel", True),
    ("model.layers.{i}.self_attn.{p}_proj.bias", "layers_{i}/attn/{p}_proj/bias", False),
    ("model.layers.{i}.mlp.{p}_proj.weight", "layers_{i}/mlp/{p}_proj/kernel", True),
    ("model.layers.{i}.input_layernorm.weight", "layers_{i}/input_norm/scale", False),
    ("model.layers.{i}.post_attention_layernorm.weight", "layers_{i}/post_norm/scale", False),
    ("model.norm.weight", "final_norm/scale", False),
    ("lm_head.weight", "lm_head/kernel", True),
    ("value_head.weight", "value_head/kernel", True),
    ("value_head.bias", "value_head/bias", False),
]
_FIELDS = {"i": r"\d+", "p": r"[a-z]+"}


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w)\}", template)
    out = "".join(re.escape(x) if j % 2 == 0 else f"(?P<{x}>{_FIELDS[x]})" for j, x in enumerate(parts))
    return re.compile(out)


def _translate(name: str, src: int) -> tuple[str, bool] | None:
    for entry in _KEY_MAP:
        m = _template_regex(entry[src]).fullmatch(name)
        if m:
            return entry[1 - src].format(**m.groupdict()), entry[2]
    return None


def hf_to_path(name: str) -> tuple[str, bool] | None:
    """HF tensor name -> (our param path, transpose?) or None if unknown."""
    return _translate(name, 0)


def path_to_hf(path: str) -> tuple[str, bool]:
    """Our param path -> (HF tensor name, transpose?)."""
    out = _translate(path, 1)
    if out is None:
        raise KeyError(f"no Hugging Face name for parameter {path!r}")
    return out


class CheckpointError(UserError):
    """A checkpoint folder or tensor does not match the model it claims to be."""


# --- safetensors (raw) --------------------------------------------------------------
def _read_header(path: str) -> tuple[dict, int, int]:
    """(header, data start, file size); a file too short or with a header that is not a JSON
    object raises CheckpointError naming the file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < n <= size - 8:
            raise CheckpointError(f"{path}: not a safetensors file (truncated or corrupt header; {size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({one_line(e)})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    return header, 8 + n, size


def iter_safetensors(path: str) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, array) from one .safetensors file, memory-mapped, any float dtype. A tensor
    whose entry is malformed or whose bytes lie past the end of the file raises CheckpointError."""
    header, start, size = _read_header(path)
    raw = np.memmap(path, dtype=np.uint8, mode="r") if size > start else np.zeros(0, np.uint8)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (a, b) = info["dtype"], [int(d) for d in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed header entry") from None
        if dtype not in _ST_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        want = int(np.prod(shape)) * np.dtype(_ST_DTYPES[dtype]).itemsize
        if not (0 <= a <= b and b - a == want and start + b <= size):
            raise CheckpointError(
                f"{path}: tensor {name!r} is truncated or corrupt (bytes {a}-{b} of a {size - start}-byte body, "
                f"shape {shape} needs {want})"
            )
        yield name, raw[start + a : start + b].view(_ST_DTYPES[dtype]).reshape(shape)


def write_safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
    offset, blobs = 0, []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        header[name] = {
            "dtype": _ST_NAMES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
        blobs.append(arr)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with atomic_open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for arr in blobs:
            f.write(arr.tobytes())


def _weight_files(folder: str) -> list[str]:
    index = os.path.join(folder, "model.safetensors.index.json")
    single = os.path.join(folder, "model.safetensors")
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        missing = [p for p in files if not os.path.isfile(os.path.join(folder, p))]
        if missing:
            raise CheckpointError(f"{index}: shard files missing: {missing}")
        return [os.path.join(folder, p) for p in files]
    if os.path.isfile(single):
        return [single]
    raise CheckpointError(f"{folder}: neither model.safetensors nor model.safetensors.index.json")


def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    from rstar_jax.models.transformer import init_params

    shapes = jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
    return {"/".join(str(k.key) for k in p): tuple(s.shape) for p, s in jax.tree_util.tree_flatten_with_path(shapes)[0]}


def _set(tree: dict, path: str, value) -> None:
    *parents, leaf = path.split("/")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def load_hf(
    path: str, dtype: str = "float32", place: Callable[[str, np.ndarray], jax.Array] | None = None
) -> tuple[ModelConfig, dict]:
    """Read a local HF folder into ``(config, params)``.

    ``place(param_path, array)`` puts each tensor on its device/sharding as it is
    read (default: ``jnp.asarray``), so a large model never sits whole on one device.
    Raises CheckpointError naming the file and tensor on any missing, extra or
    mis-shaped tensor.
    """
    if not os.path.isdir(path):
        raise UserError(f"{path}: model folder does not exist")
    config = ModelConfig.from_json_file(os.path.join(path, "config.json"), dtype=dtype)
    expected = _expected_shapes(config)
    np_dtype = np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float32)
    place = place or (lambda _, a: jnp.asarray(a))
    params: dict = {}
    for file in _weight_files(path):
        for name, arr in iter_safetensors(file):
            mapped = hf_to_path(name)
            if mapped is None:
                raise CheckpointError(f"{file}: unexpected tensor {name!r}")
            ours, transpose = mapped
            if ours == "lm_head/kernel" and config.tie_word_embeddings:
                continue  # some tied checkpoints store the head anyway
            if ours not in expected:
                raise CheckpointError(f"{file}: tensor {name!r} does not belong to this config")
            arr = arr.T if transpose else arr
            if tuple(arr.shape) != expected[ours]:
                raise CheckpointError(
                    f"{file}: tensor {name!r} has shape {tuple(arr.shape)}, expected {expected[ours]}"
                )
            keep = np.float32 if ours.startswith("value_head") else np_dtype
            _set(params, ours, place(ours, np.asarray(arr, dtype=keep)))
    flat = {"/".join(str(k.key) for k in p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    missing = sorted(set(expected) - flat)
    if missing:
        raise CheckpointError(f"{path}: missing tensors {[path_to_hf(m)[0] for m in missing]}")
    return config, params


def save_hf(config: ModelConfig, params: dict, path: str, tokenizer=None) -> None:
    """Write ``config.json`` + ``model.safetensors`` that transformers loads (and the tokenizer if given)."""
    os.makedirs(path, exist_ok=True)
    tensors = {}
    for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        ours = "/".join(str(k.key) for k in p)
        name, transpose = path_to_hf(ours)
        arr = np.asarray(jax.device_get(leaf))
        tensors[name] = arr.T if transpose else arr
    write_safetensors(os.path.join(path, "model.safetensors"), tensors)
    cfg = config.to_hf_dict()
    atomic_write_text(os.path.join(path, "config.json"), json.dumps(cfg, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
