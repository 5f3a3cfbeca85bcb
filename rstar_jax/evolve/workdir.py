"""A run folder whose units of work are atomic and resumable, and what every run folder shares.

Every unit (a search shard, an extraction, a training run, an evaluation)
writes into a temporary folder (``NAME.partial.HOST.PID``) that is renamed into
place when complete, then is recorded in ``manifest.json``. Rerunning after a
crash skips recorded units, so nothing finished is lost or repeated, and removes
the partial folders of processes that are gone. In a multi-process run only the
main process writes units (``evolve.driver``); the manifest is still updated under
a lock file.

Run records (``run.json``): a command that writes a run folder (``evolve``,
``train-policy``, ``train-ppm``) records what it was started with (its config,
and its input files and models by content hash) once its inputs are validated;
a rerun compares its own record with it, resumes when they agree and is refused,
with the differences named, when they do not (``differences``). ``replace_dir``
swaps a finished folder into place in one step, for exports.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import time
from typing import Any, Iterator

from rstar_jax.io import atomic_write_json
from rstar_jax.runs import partial_path, remove_dead_partials


class WorkDir:
    """``root/manifest.json`` maps unit name -> {time, info}; units live in ``root/<name>``."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.manifest_path = os.path.join(self.root, "manifest.json")

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def manifest(self) -> dict[str, Any]:
        if not os.path.exists(self.manifest_path):
            return {}
        with open(self.manifest_path) as f:
            return json.load(f)

    def done(self, unit: str) -> bool:
        return unit in self.manifest() and os.path.exists(self.path(unit))

    def info(self, unit: str) -> dict[str, Any]:
        return self.manifest()[unit]["info"]

    def _record(self, unit: str, info: dict[str, Any]) -> None:
        # Read-modify-write under a lock: other processes may finish units concurrently.
        with self._lock("manifest"):
            m = self.manifest()
            m[unit] = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "info": info}
            atomic_write_json(self.manifest_path, m)

    @contextlib.contextmanager
    def unit(self, name: str) -> Iterator[str]:
        """Yield a fresh temporary folder; on success it becomes ``root/name`` atomically.

        The caller may set ``info`` by writing ``info.json`` inside the folder.
        """
        final = self.path(name)
        remove_dead_partials(final)
        tmp = partial_path(final)
        shutil.rmtree(tmp, ignore_errors=True)  # this process's own, from an attempt that raised
        os.makedirs(tmp)
        yield tmp
        self.commit(name, tmp)

    def commit(self, name: str, tmp: str) -> None:
        """Make the finished folder ``tmp`` unit ``name`` (renamed into place, then recorded)."""
        final = self.path(name)
        info_file = os.path.join(tmp, "info.json")
        info = json.load(open(info_file)) if os.path.exists(info_file) else {}
        if os.path.exists(final):  # a stale copy from a run that died before recording it
            shutil.rmtree(final)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(tmp, final)
        self._record(name, info)

    @contextlib.contextmanager
    def _lock(self, name: str, timeout_s: float = 60.0) -> Iterator[None]:
        path = self.path(f".{name}.lock")
        deadline = time.time() + timeout_s
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                if _stale(path) or time.time() > deadline:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
                    continue
                time.sleep(0.05)
        try:
            os.write(fd, f"{socket.gethostname()} {os.getpid()}".encode())
            os.close(fd)
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def sweep_partials(self, depth: int = 3) -> list[str]:
        """Remove the partial unit folders (down to ``depth`` levels) of processes that are gone."""
        removed = []
        for level in range(1, depth + 1):
            pattern = os.path.join(self.root, *["*"] * (level - 1), "*.partial.*")
            for path in glob.glob(pattern):
                removed += remove_dead_partials(path[: path.rindex(".partial.")])
        return removed


# --- leftovers of processes that are gone --------------------------------------------------
def _stale(lock_path: str) -> bool:
    """A lock is stale when its owner (on this host) is no longer running."""
    try:
        host, pid = open(lock_path).read().split()
    except (FileNotFoundError, ValueError):
        return True
    if host != socket.gethostname():
        return False  # cannot tell for another host: trust it
    try:
        os.kill(int(pid), 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
