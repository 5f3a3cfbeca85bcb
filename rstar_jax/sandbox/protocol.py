"""Length-prefixed JSON frames: parent <-> worker and worker <-> program child.

JSON rather than pickle because a frame may carry bytes written by hostile code
(a program can write into its own result pipe): decoding must never execute
anything. Standard library only — the worker loads this file without the package.
"""

from __future__ import annotations

import json
import os
import struct

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 << 20  # a frame larger than this is a protocol violation


class ProtocolError(RuntimeError):
    """A peer sent something that is not a well-formed frame."""


def encode(message: object) -> bytes:
    payload = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(payload)) + payload


def write_frame(fd: int, message: object) -> None:
    """Write one whole frame to a blocking fd."""
    view = memoryview(encode(message))
    while view:
        view = view[os.write(fd, view) :]


class FrameReader:
    """Incremental decoder: feed it bytes as they arrive, take whole messages out."""

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES):
        self._buf = bytearray()
        self._max = max_bytes

    def feed(self, data: bytes) -> list:
        self._buf += data
        out = []
        while len(self._buf) >= _HEADER.size:
            (n,) = _HEADER.unpack_from(self._buf)
            if n > self._max:
                raise ProtocolError(f"frame of {n} bytes exceeds {self._max}")
            if len(self._buf) < _HEADER.size + n:
                break
            payload = bytes(self._buf[_HEADER.size : _HEADER.size + n])
            del self._buf[: _HEADER.size + n]
            try:
                out.append(json.loads(payload))
            except ValueError as e:
                raise ProtocolError(f"undecodable frame: {e}") from None
        return out

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buf)


def iter_frames(fd: int):
    """Yield messages from a blocking fd until end of file."""
    reader = FrameReader()
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            if reader.pending:
                raise ProtocolError("end of file inside a frame")
            return
        yield from reader.feed(data)
