"""Run folders shared by every stage that writes one (evolve, train-policy, train-ppm, convert):
build-then-rename partial folders and the removal of those whose process died, a run record
(``run.json``: the settings and input hashes a folder was started with) and its differences from
a rerun's, and the atomic replacement of a whole folder."""

from __future__ import annotations

import contextlib
import ctypes
import glob
import hashlib
import json
import os
import re
import shutil
import socket
from typing import Any, Iterable

from rstar_jax.io import atomic_write_json

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def partial_path(final: str) -> str:
    """Where this process builds ``final`` before renaming it into place: ``final.partial.HOST.PID``."""
    return f"{final}.partial.{_HOST}.{os.getpid()}"


def partial_owner(path: str) -> tuple[str | None, int] | None:
    """(host, pid) of a ``NAME.partial.HOST.PID`` folder (host None for the older ``NAME.partial.PID``)."""
    m = re.search(r"\.partial\.(?:([A-Za-z0-9_-]+)\.)?(\d+)$", path)
    return (m.group(1), int(m.group(2))) if m else None


def remove_dead_partials(final: str) -> list[str]:
    """Remove ``final``'s partial folders whose owner process (on this host) is gone; return them."""
    removed = []
    for path in glob.glob(glob.escape(final) + ".partial.*"):
        owner = partial_owner(path)
        if owner is None or owner[1] == os.getpid():
            continue
        host, pid = owner
        if (host is None or host == _HOST) and not pid_alive(pid) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# --- run records -----------------------------------------------------------------------------
RUN_RECORD = "run.json"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_sha256(path: str | os.PathLike) -> str:
    """One hash of every file under ``path``: their relative names and contents."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            h.update(os.path.relpath(full, path).encode() + b"\0" + file_sha256(full).encode() + b"\n")
    return h.hexdigest()


def read_run_record(folder: str) -> dict | None:
    """The folder's ``run.json``, or None when it is missing or not a record (empty, cut short)."""
    try:
        with open(os.path.join(folder, RUN_RECORD), encoding="utf-8") as f:
            record = json.load(f)
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and "config" in record else None


def write_run_record(folder: str, record: dict) -> None:
    atomic_write_json(os.path.join(folder, RUN_RECORD), record)


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def differences(old: dict, new: dict, limit: int = 6) -> list[str]:
    """``"key: OLD (then) -> NEW (now)"`` for each dotted key where two records differ (a key under
    ``config.`` is named without that prefix, as an override would name it)."""
    a, b = _flat(old), _flat(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<unset>") == b.get(key, "<unset>"):
            continue
        shown = key.removeprefix("config.")
        out.append(f"{shown}: {_short(a.get(key, '<unset>'))} (then) -> {_short(b.get(key, '<unset>'))} (now)")
    if len(out) > limit:
        out = out[:limit] + [f"and {len(out) - limit} more"]
    return out


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) or value == "<unset>" else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def clear_folder(folder: str, ours: Iterable[str]) -> list[str]:
    """Remove the entries of ``folder`` whose names fully match one of the ``ours`` regexes (what a
    command wrote there), the run record first; anything else is left. Returns the removed names."""
    if not os.path.isdir(folder):
        return []
    patterns = [re.compile(p) for p in ours]
    names = sorted(n for n in os.listdir(folder) if any(p.fullmatch(n) for p in patterns))
    names.sort(key=lambda n: n != RUN_RECORD)  # an interrupted clear leaves a folder never validly started
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    return names


# --- replacing a folder in one step ----------------------------------------------------------
def replace_dir(src: str, dst: str) -> None:
    """Make the complete folder ``src`` be ``dst``, replacing what ``dst`` held: readers see the old
    folder or the new one, never a mix. Both must be on one filesystem. The swap is atomic where
    the kernel can exchange two names (Linux ``renameat2``); elsewhere ``dst`` is renamed aside
    first, so a crash between the two renames leaves the new folder as ``src`` and the old one as
    ``dst.old.PID``, never the two mixed."""
    if not os.path.lexists(dst):
        os.rename(src, dst)
        return
    if not os.path.isdir(dst) or os.path.islink(dst):
        raise NotADirectoryError(20, "not a folder", dst)
    if _exchange(src, dst):
        shutil.rmtree(src)  # now the old folder
        return
    old = f"{dst}.old.{os.getpid()}"
    os.rename(dst, old)
    os.rename(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: str, b: str) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
