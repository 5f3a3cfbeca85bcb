"""What runs inside a confined program child: execute code, capture output, report errors.

Standard library only — the worker loads this file without the package.
"""

from __future__ import annotations

import builtins
import sys


def truncate(text: str, limit: int) -> str:
    """Keep the head and the tail of an over-long text."""
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    return f"{text[:head]}\n...[{len(text) - limit} characters truncated]...\n{text[-tail:]}"


def format_error(exc: BaseException) -> str:
    """``"<Type>: message"`` like the last line of a traceback (the official rStar executor's report)."""
    try:
        cls = type(exc)
        name = (
            cls.__qualname__ if cls.__module__ in ("builtins", "__main__") else f"{cls.__module__}.{cls.__qualname__}"
        )
        msg = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
        return f"{name}: {msg}" if msg else name
    except BaseException:  # a hostile __str__: still report something
        return "Exception: <unprintable exception>"


class Capture:
    """A write-only text stream that keeps the first and last ``limit`` characters."""

    def __init__(self, limit: int):
        self._limit = limit
        self._head: list[str] = []
        self._head_len = 0
        self._tail = ""
        self._total = 0

    def write(self, s):
        if type(s) is not str:
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self._total += len(s)
        if self._head_len < self._limit:
            self._head.append(s)
            self._head_len += len(s)
        self._tail = (self._tail + s)[-self._limit :] if len(s) < self._limit else s[-self._limit :]
        return len(s)

    def flush(self):
        pass

    def getvalue(self) -> str:
        if self._total <= self._limit:
            return "".join(self._head)
        head = "".join(self._head)[: self._limit // 2]
        tail = self._tail[-(self._limit - self._limit // 2) :]
        return f"{head}\n...[{self._total - self._limit} characters truncated]...\n{tail}"


class _Discard:
    def write(self, s):
        return len(s) if isinstance(s, str) else 0

    def flush(self):
        pass


def exit_builtin(code=None):
    """``exit()``/``quit()`` for programs (``-S`` skips site.py, which defines them)."""
    raise SystemExit(code)


def execute(code, max_chars: int) -> dict:
    """Run a code object in a fresh namespace with stdout captured (inside the confined child)."""
    out = Capture(max_chars)
    sys.stdout, sys.stderr = out, _Discard()
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    builtins_dict = vars(builtins)
    saved_builtins = dict(builtins_dict)  # reporting below must not run a program's patched builtins
    ok, error = True, None
    try:
        exec(code, namespace)
    except BaseException as e:
        builtins_dict.clear()
        builtins_dict.update(saved_builtins)
        # sys.exit() / sys.exit(0) end a program normally
        if not (isinstance(e, SystemExit) and (e.code is None or (type(e.code) is int and e.code == 0))):
            ok, error = False, format_error(e)
    finally:
        # Within this program's deadline: drops what it created (generator finalizers may still print).
        namespace.clear()
        builtins_dict.clear()
        builtins_dict.update(saved_builtins)
    return {"ok": ok, "stdout": out.getvalue(), "error": None if error is None else truncate(error, max_chars)}
