"""Folder-level training: HF checkpoint + data files in, HF checkpoint (``OUT/hf``) out.

Data files may be tree records (``search`` output; extracted on the fly), the
``sft.jsonl`` / ``pairs.jsonl`` written by ``rstar_jax.train.examples``, or the released
rStar-Math SFT / PPM data (``rstar_jax.train.formats``); each file's kind is read from the
fields of its first record, or set for every file by ``fmt``.

With ``run_record=True`` (the ``train-policy`` / ``train-ppm`` commands) the output
folder records what the run was started with (``OUT/run.json``: the settings, and the
data files and the init model by content hash), written once the inputs have loaded; a
rerun with the same ones resumes from the checkpoint, one with others is refused,
naming the differences, unless ``restart``. ``OUT/hf`` is replaced in one step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rstar_jax.errors import UserError
from rstar_jax.runs import (
    RUN_RECORD,
    clear_folder,
    differences,
    file_sha256,
    folder_sha256,
    partial_path,
    read_run_record,
    remove_dead_partials,
    replace_dir,
    write_run_record,
)
from rstar_jax.search.records import read_records
from rstar_jax.train.config import MEMORY_SETTINGS, RewardConfig, SFTConfig
from rstar_jax.train.examples import ExtractConfig, extract, read_pairs, read_sft, tree_files
from rstar_jax.train.formats import first_record, kind_of, read_rstar_ppm, read_rstar_sft
from rstar_jax.train.reward import train_reward_model
from rstar_jax.train.sft import train_policy
from rstar_jax.train.state import cast_floats
from rstar_jax.train.trainer import gather_params

_MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")


FORMATS = ("auto", "rstar", "rstar-jax")
_OFFICIAL = {"sft": "rstar-sft", "pairs": "rstar-ppm"}
_READERS = {"sft": read_sft, "pairs": read_pairs, "rstar-sft": read_rstar_sft, "rstar-ppm": read_rstar_ppm}


def file_kind(path: str | os.PathLike) -> str:
    """ "trees", "sft", "pairs", "rstar-sft", "rstar-ppm" or "other", from the fields of the file's first record."""
    first = first_record(path)  # a record that is not UTF-8 JSON: UserError naming the file and line
    if first is None:
        raise UserError(f"{path}: empty data file (no records)")
    keys = set(first) if isinstance(first, dict) else set()
    for kind, key in (("sft", "solution"), ("pairs", "pairs"), ("trees", "gold")):
        if key in keys:
            return kind
    return kind_of(first) or "other"


def load_data(
    paths: Sequence[str | os.PathLike], want: str, extract_cfg: ExtractConfig = ExtractConfig(), fmt: str = "auto"
) -> list:
    """SFT examples (``want="sft"``) or pair groups (``"pairs"``) from tree records, extracted files or the
    official rStar-Math data.

    ``fmt``: "auto" (each file's kind from its first record), "rstar" (every file is official
    rStar-Math data of this kind) or "rstar-jax" (ours: tree records or extracted files). A file given
    by name must hold data this trainer reads; in a folder (searched recursively for ``*.jsonl`` and
    JSON-array ``*.json``) other files, e.g. the other half of an ``extract`` output, are skipped."""
    if fmt not in FORMATS:
        raise UserError(f"unknown data format {fmt!r}; choose one of {FORMATS}")
    accept = {"auto": ("trees", want, _OFFICIAL[want]), "rstar": (_OFFICIAL[want],), "rstar-jax": ("trees", want)}[fmt]
    needs = " or ".join(a for a in accept if a != "trees") + (" (or tree records)" if "trees" in accept else "")
    files = []
    for p in map(Path, paths):
        for f in tree_files([p], json_arrays=True):
            kind = file_kind(f)
            if fmt == "rstar" and not (p.is_dir() and kind not in accept):
                kind = _OFFICIAL[want]  # a file named is read as official data: the reader names missing fields
            if kind in accept:
                files.append((f, kind))
            elif not p.is_dir():
                raise UserError(f"{f}: holds {kind} data, this trainer needs {needs}")
    if not files:
        raise UserError(f"no {needs} files in {[str(p) for p in paths]}")
    out = []
    for f, kind in files:
        if kind == "trees":
            sft, pairs, _ = extract(read_records(f), extract_cfg)
            out.extend(sft if want == "sft" else pairs)
        else:
            out.extend(_READERS[kind](f))
    return out


def _check_reward_data(groups: Sequence, kind: str, paths) -> None:
    """The official PPM records hold no Q values and do not mark whole-trajectory pairs: refuse
    the kinds that need them before anything is written."""
    if kind == "pqm" and any(math.isnan(c.q) for g in groups for c in g.pos + g.neg):
        raise UserError(
            f"{[str(p) for p in paths]}: rStar-Math PPM records hold no Q values; --kind pqm needs tree "
            "records or pairs.jsonl"
        )
    if kind == "orm" and not any(g.kind == "final" for g in groups):
        raise UserError(
            f"{[str(p) for p in paths]}: no final-answer pairs (rStar-Math PPM records do not mark them); "
            "--kind orm needs tree records or pairs.jsonl"
        )


def export_hf(config, params, init_dir: str, out_dir: str) -> str:
    """``out_dir/hf``: config + safetensors in the model's dtype (a PPM as a transformers token-classification
    model with its head: ``models.hf_ppm``), plus the tokenizer files of ``init_dir``."""
    from rstar_jax.models import save_hf
    from rstar_jax.models.hf_ppm import VALUE_HEAD_BIN, save_ppm_hf

    host = gather_params(params)
    final = os.path.join(out_dir, "hf")
    if jax.process_index() != 0:
        return final
    remove_dead_partials(os.path.join(out_dir, ".hf"))
    tmp = partial_path(os.path.join(out_dir, ".hf"))  # built whole, then swapped in: never a mix of two
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (save_ppm_hf if config.value_head else save_hf)(config, cast_floats(host, jnp.dtype(config.dtype)), tmp)
        for f in Path(init_dir).iterdir():  # the tokenizer is unchanged by training
            if f.is_file() and f.name not in (*_MODEL_FILES, VALUE_HEAD_BIN) and not f.name.endswith(".safetensors"):
                shutil.copy2(f, os.path.join(tmp, f.name))
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _load(init_dir: str):
    from rstar_jax.models.hf_ppm import load_model
    from rstar_jax.models.tokenizer import load_tokenizer

    # host arrays: the trainer's shard_params sends each device only its shard (never the whole
    # model on device 0 first)
    return load_model(init_dir, place=lambda _, a: np.asarray(a)), load_tokenizer(init_dir)


def train_policy_folder(
    data: str | Sequence[str],
    init_dir: str,
    out_dir: str,
    ckpt_dir: str | None = None,
    cfg: SFTConfig = SFTConfig(),
    seed: int | None = None,
    extract_cfg: ExtractConfig = ExtractConfig(),
    *,
    run_record: bool = False,
    restart: bool = False,
    fmt: str = "auto",
) -> dict:
    """SFT the HF model in ``init_dir`` on ``data`` (extracted with ``extract_cfg`` where it is tree
    records); write ``out_dir/hf``; return the run summary. ``run_record``/``restart``: see the
    module docstring."""
    cfg = cfg if seed is None else dataclasses.replace(cfg, seed=seed)
    paths = _paths(data)
    init, tokenizer = _load(init_dir)
    examples = load_data(paths, "sft", extract_cfg, fmt)
    if not examples:
        raise UserError(f"no SFT examples in {[str(p) for p in paths]} (no problem has a correct trajectory)")
    if run_record:
        record = _record("train-policy", cfg, extract_cfg, paths, init_dir, ckpt_dir)
        open_training_run(out_dir, ckpt_dir, record, restart)
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
    *,
    run_record: bool = False,
    restart: bool = False,
    fmt: str = "auto",
) -> dict:
    """Train a reward model from the policy (or reward model) in ``init_dir`` (tree records are
    extracted with ``extract_cfg``); write ``out_dir/hf``. ``run_record``/``restart``: see the
    module docstring."""
    cfg = cfg if seed is None else dataclasses.replace(cfg, seed=seed)
    paths = _paths(data)
    init, tokenizer = _load(init_dir)
    groups = load_data(paths, "pairs", extract_cfg, fmt)
    if not groups:
        raise UserError(f"no preference pairs in {[str(p) for p in paths]}")
    _check_reward_data(groups, kind, paths)
    if run_record:
        record = _record(f"train-{kind}", cfg, extract_cfg, paths, init_dir, ckpt_dir)
        open_training_run(out_dir, ckpt_dir, record, restart)
    config, params = train_reward_model(groups, init, tokenizer, out_dir, cfg, kind, ckpt_dir)
    return {**_summary(out_dir), "hf": export_hf(config, params, init_dir, out_dir)}


def _paths(data: str | os.PathLike | Sequence[str | os.PathLike]) -> list:
    return [data] if isinstance(data, (str, os.PathLike)) else list(data)


# --- run records of the training commands --------------------------------------------------------
# What training writes in its output folder (all that --restart removes from it).
_TRAIN_ENTRIES = (
    r"(hf|tb|ckpt|metrics\.jsonl|summary\.json|run\.json)",
    r"\.?(hf|metrics\.jsonl|summary\.json|run\.json)\..+",  # partial, old and temporary copies
)


def _record(command: str, cfg, extract_cfg: ExtractConfig, paths, init_dir: str, ckpt_dir: str | None) -> dict:
    """What a training run is started with: its settings, and its data and init model by content hash."""
    plain = lambda x: json.loads(json.dumps(dataclasses.asdict(x)))  # noqa: E731
    return {
        "command": command,
        "config": plain(cfg),
        "extract": plain(extract_cfg),
        "ckpt": os.path.abspath(ckpt_dir) if ckpt_dir else None,
        "inputs": {
            "--trees": [{"path": str(f), "sha256": file_sha256(f)} for f in tree_files(paths, json_arrays=True)],
            "--init": {"path": str(init_dir), "sha256": folder_sha256(init_dir)},
        },
    }


def _comparable(record: dict) -> dict:
    """What must match for a rerun to resume: the record without its inputs (checked by hash) and
    without the settings that only change memory use (a rerun with a smaller budget resumes)."""
    out = {k: v for k, v in record.items() if k != "inputs"}
    if isinstance(out.get("config"), dict):
        out["config"] = {k: v for k, v in out["config"].items() if k not in MEMORY_SETTINGS}
    return out


def open_training_run(out_dir: str, ckpt_dir: str | None, record: dict, restart: bool = False) -> None:
    """Check ``out_dir`` against ``record`` (see the module docstring), then write the record.

    Refused (UserError): a folder recording another run, or one holding a run's outputs without a
    record (it cannot be checked), and a ``ckpt_dir`` with checkpoints that ``out_dir`` does not
    record; ``restart`` removes those first."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"--out {out_dir} is a file, not a folder; use a new --out folder")
    again = "rerun with --restart to discard {} and train again, or use a new --out folder"
    old = read_run_record(out_dir)
    if restart:
        if jax.process_index() == 0:
            clear_folder(out_dir, _TRAIN_ENTRIES)
            if ckpt_dir:
                _clear_checkpoints(ckpt_dir)
    elif old is not None:
        if old.get("command") != record["command"]:
            raise UserError(
                f"{os.path.join(out_dir, RUN_RECORD)} records a {old.get('command')} run, not {record['command']}; "
                + again.format("that run")
            )
        diff = differences(_comparable(old), _comparable(record))
        then, now = old.get("inputs", {}), record["inputs"]
        if [x.get("sha256") for x in then.get("--trees", [])] != [x["sha256"] for x in now["--trees"]]:
            diff.append(
                f"--trees: the data ({', '.join(x['path'] for x in now['--trees'])}) is not what the run trained on"
            )
        if then.get("--init", {}).get("sha256") != now["--init"]["sha256"]:
            diff.append(f"--init {now['--init']['path']}: not the model the run started from")
        if diff:
            raise UserError(
                f"{out_dir} holds a {record['command']} run started with other settings or inputs "
                f"({'; '.join(diff)}); " + again.format("that run")
            )
    else:
        held = [
            n for n in ("hf", "ckpt", "summary.json", "metrics.jsonl", "tb") if os.path.exists(os.path.join(out_dir, n))
        ]
        if ckpt_dir and _has_checkpoints(ckpt_dir):
            held.append(f"checkpoints in --ckpt {ckpt_dir}")
        if held:
            raise UserError(
                f"{out_dir} has no {RUN_RECORD}, yet a training run's outputs are there ({', '.join(held)}): they "
                "cannot be checked against this run; " + again.format("them")
            )
    if jax.process_index() == 0 and read_run_record(out_dir) != record:
        os.makedirs(out_dir, exist_ok=True)
        write_run_record(out_dir, record)


def _has_checkpoints(ckpt_dir: str) -> bool:
    return os.path.isdir(ckpt_dir) and any(n.split(".")[0].isdigit() for n in os.listdir(ckpt_dir))


def _clear_checkpoints(ckpt_dir: str) -> None:
    """Remove the checkpoint steps (``N/`` and orbax's temporary ``N.orbax-checkpoint-tmp-*``) in ``ckpt_dir``."""
    if os.path.isdir(ckpt_dir):
        clear_folder(ckpt_dir, (r"\d+", r"\d+\.orbax-checkpoint-tmp.*"))


def _summary(out_dir: str) -> dict:
    path = os.path.join(out_dir, "summary.json")
    return json.loads(Path(path).read_text()) if os.path.exists(path) else {}
