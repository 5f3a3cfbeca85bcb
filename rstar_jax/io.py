"""Atomic file writes and JSON / JSONL files, for every writer in the package.

Every writer goes through ``atomic_open``: the bytes go to a temporary file made with
``mkstemp`` in the target's folder, are flushed and fsync'ed, and the file is then
renamed over the target with ``os.replace``. A reader (or a crash at any point) sees
the old file or the whole new one, never half of one; a failure while writing removes
the temporary file and leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from rstar_jax.errors import UserError

# The process umask, read once: mkstemp creates files 0600, and a replaced file should get
# the mode a plain open() would have given it (0666 less the umask).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing (``mode`` "w" or "wb"); when the
    block ends without an exception it becomes ``path`` atomically, else it is removed.
    Parent folders are created."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path) as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (``indent=2``, no trailing newline; values JSON cannot
    hold are written as ``str(value)``) atomically."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, default=str)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict | str]) -> int:
    """Write one JSON value a line, atomically; return the number of lines.

    A row is a dict (serialised with ``json.dumps(row, ensure_ascii=False)``) or a string
    already serialised (written as is). If producing or serialising a row fails, the
    old file stays as it was."""
    n = 0
    with atomic_open(path) as f:
        for row in rows:
            line = row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)
            if "\n" in line:
                raise ValueError(f"{path}: row {n} holds a newline; a JSONL row must be one line")
            f.write(line + "\n")
            n += 1
    return n


def read_jsonl_numbered(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) for each non-blank line of ``path``; a line that is
    not UTF-8 JSON raises UserError ``"<path>:<line>: invalid JSON: ..."``."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: not UTF-8 text (byte {e.start})") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: invalid JSON: {e}") from None
            yield lineno, value


def read_jsonl(path: str | os.PathLike, build: Callable[[Any], Any] | None = None) -> Iterator[Any]:
    """Yield each non-blank line's JSON value (a dict in every file we write), or
    ``build(value)``. A line that is not JSON, or that ``build`` rejects with KeyError,
    TypeError or ValueError, raises UserError naming the file and its 1-based line:
    ``"<path>:<line>: <reason>"``."""
    for lineno, value in read_jsonl_numbered(path):
        if build is None:
            yield value
            continue
        try:
            built = build(value)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path}:{lineno}: {e}") from None
        yield built
