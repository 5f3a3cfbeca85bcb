"""Bounded capture of a program's output, and the pipe and temp-dir chores of the worker.

Standard library only — the worker loads this file without the package.
"""

from __future__ import annotations

import os
import select
import time

if __package__:
    from rstar_jax.sandbox.runner import truncate
else:
    from runner import truncate


class Output:
    """A bounded byte stream: the first and last ``cap`` bytes and the total length."""

    def __init__(self, cap: int):
        self.cap, self.head, self.tail, self.total = cap, b"", b"", 0

    def feed(self, data: bytes) -> None:
        if len(self.head) < self.cap:
            self.head += data[: self.cap - len(self.head)]
        self.tail = (self.tail + data)[-self.cap :]
        self.total += len(data)

    def extended(self, more: "Output") -> "Output":
        """This stream followed by ``more``: exactly what one stream of both would have kept."""
        out = Output(self.cap)
        out.head = (self.head + more.head)[: self.cap]
        out.tail = (self.tail + more.tail)[-self.cap :]
        out.total = self.total + more.total
        return out

    def text(self, limit: int) -> str:
        """Valid UTF-8 text (bad bytes replaced) of at most about ``limit`` characters."""
        if self.total <= self.cap:
            return truncate(self.head.decode("utf-8", "replace"), limit)
        head = self.head.decode("utf-8", "replace")[: limit // 2]
        tail = self.tail.decode("utf-8", "replace")[-(limit - limit // 2) :]
        return f"{head}\n...[{self.total - 2 * self.cap}+ bytes truncated]...\n{tail}"


def drain(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes, deadline: float) -> bool:
    view = memoryview(data)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
            return False
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
    return True


def empty_dir(path: str) -> None:
    """Remove everything in ``path`` (iteratively: deep trees must not hit the recursion limit)."""
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    stack = [path]
    dirs = []
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                try:
                    os.chmod(entry.path, 0o700)
                except OSError:
                    pass
                stack.append(entry.path)
                dirs.append(entry.path)
            else:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass
    for d in reversed(dirs):
        try:
            os.rmdir(d)
        except OSError:
            pass
