"""Folder-level training: HF checkpoint + data files in, HF checkpoint (``OUT/hf``) out.

Data files may be tree records (``search`` output; extracted on the fly) or the
``sft.jsonl`` / ``pairs.jsonl`` written by ``rstar_jax.train.examples``; each
file's kind is read from its first record.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp

from rstar_jax.search.records import read_records
from rstar_jax.train.config import RewardConfig, SFTConfig
from rstar_jax.train.examples import ExtractConfig, extract, read_pairs, read_sft, tree_files
from rstar_jax.train.reward import train_reward_model
from rstar_jax.train.sft import train_policy
from rstar_jax.train.state import cast_floats
from rstar_jax.train.trainer import gather_params

_MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")


def file_kind(path: str | os.PathLike) -> str:
    """ "trees", "sft", "pairs" or "other", from the fields of the file's first record."""
    with open(path, encoding="utf-8") as f:
        line = next((ln for ln in f if ln.strip()), None)
    if line is None:
        raise ValueError(f"{path}: empty data file")
    keys = set(json.loads(line))
    for kind, key in (("sft", "solution"), ("pairs", "pairs"), ("trees", "gold")):
        if key in keys:
            return kind
    return "other"


def load_data(paths: Sequence[str | os.PathLike], want: str, extract_cfg: ExtractConfig = ExtractConfig()) -> list:
    """SFT examples (``want="sft"``) or pair groups (``"pairs"``) from tree records or extracted files.

    A file given by name must hold trees or ``want``; in a folder (searched recursively for
    ``*.jsonl``) other files, e.g. the other half of an ``extract`` output, are skipped."""
    files = []
    for p in map(Path, paths):
        for f in tree_files([p]):
            kind = file_kind(f)
            if kind in ("trees", want):
                files.append((f, kind))
            elif not p.is_dir():
                raise ValueError(f"{f}: holds {kind} data, this trainer needs {want} (or tree records)")
    if not files:
        raise ValueError(f"no tree records or {want} files in {[str(p) for p in paths]}")
    out = []
    for f, kind in files:
        if kind == "trees":
            sft, pairs, _ = extract(read_records(f), extract_cfg)
            out.extend(sft if want == "sft" else pairs)
        else:
            out.extend(read_sft(f) if want == "sft" else read_pairs(f))
    return out


def export_hf(config, params, init_dir: str, out_dir: str) -> str:
    """``out_dir/hf``: config + safetensors in the model's dtype, plus the tokenizer files of ``init_dir``."""
    from rstar_jax.models import save_hf

    host = gather_params(params)
    if jax.process_index() != 0:
        return os.path.join(out_dir, "hf")
    path = Path(out_dir) / "hf"
    save_hf(config, cast_floats(host, jnp.dtype(config.dtype)), str(path))
    for f in Path(init_dir).iterdir():  # the tokenizer is unchanged by training
        if f.is_file() and f.name not in _MODEL_FILES and not f.name.endswith(".safetensors"):
            shutil.copy2(f, path / f.name)
    return str(path)


def _load(init_dir: str):
    from rstar_jax.models import load_hf
    from rstar_jax.models.tokenizer import load_tokenizer

    return load_hf(init_dir), load_tokenizer(init_dir)


def train_policy_folder(
    data: str | Sequence[str],
    init_dir: str,
    out_dir: str,
    ckpt_dir: str | None = None,
    cfg: SFTConfig = SFTConfig(),
    seed: int | None = None,
    extract_cfg: ExtractConfig = ExtractConfig(),
) -> dict:
    """SFT the HF model in ``init_dir`` on ``data`` (extracted with ``extract_cfg`` where it is tree
    records); write ``out_dir/hf``; return the run summary."""
    cfg = cfg if seed is None else dataclasses.replace(cfg, seed=seed)
    init, tokenizer = _load(init_dir)
    examples = load_data([data] if isinstance(data, (str, os.PathLike)) else data, "sft", extract_cfg)
    config, params = train_policy(examples, init, tokenizer, out_dir, cfg, ckpt_dir)
    return {**_summary(out_dir), "hf": export_hf(config, params, init_dir, out_dir)}


def train_reward_folder(
    data: str | Sequence[str],
    init_dir: str,
    out_dir: str,
    ckpt_dir: str | None = None,
    cfg: RewardConfig = RewardConfig(),
    seed: int | None = None,
    kind: str = "ppm",
    extract_cfg: ExtractConfig = ExtractConfig(),
) -> dict:
    """Train a reward model from the policy (or reward model) in ``init_dir`` (tree records are
    extracted with ``extract_cfg``); write ``out_dir/hf``."""
    cfg = cfg if seed is None else dataclasses.replace(cfg, seed=seed)
    init, tokenizer = _load(init_dir)
    groups = load_data([data] if isinstance(data, (str, os.PathLike)) else data, "pairs", extract_cfg)
    config, params = train_reward_model(groups, init, tokenizer, out_dir, cfg, kind, ckpt_dir)
    return {**_summary(out_dir), "hf": export_hf(config, params, init_dir, out_dir)}


def _summary(out_dir: str) -> dict:
    path = os.path.join(out_dir, "summary.json")
    return json.loads(Path(path).read_text()) if os.path.exists(path) else {}
