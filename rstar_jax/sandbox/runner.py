"""What runs inside a program's process: execute, report through the exit status, pause, continue.

The process never reports its own result. Its stdout and stderr are pipes the
worker reads; the worker decides ``ok`` from the exit status (0), or from the
process stopping itself with SIGSTOP after a successful program (a paused
node, kept for incremental execution). On an exception the runner ends stderr
with ``ERROR_MARK`` and ``"<Type>: message"``, which the worker takes as the error.

A paused process waits for a continuation on fd 3: a 4-byte length, then
``b"1"`` or ``b"0"`` (keep the continuation when it ends well) and the UTF-8
source (no JSON here: the json module's Python code is a program's to patch). It forks twice (the grandchild is
orphaned, so the worker, a subreaper, becomes its parent and alone sees its
exit status), announces the grandchild's pid on fd 4, and stops again. The
grandchild runs the suffix in the same namespace, so each step of a path runs
once. Standard library only — the worker loads this file without the package.
"""

from __future__ import annotations

import _thread
import builtins
import io
import os
import signal
import sys
import time

CMD_FD, ACK_FD = 3, 4
FIRST_FREE_FD = 5
ERROR_MARK = b"\n\x00error: "  # what follows the last one on stderr is the error
MAX_ERROR_CHARS = 1000


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


def exit_builtin(code=None):
    """``exit()``/``quit()`` for programs (``-S`` skips site.py, which defines them)."""
    raise SystemExit(code)


def _stream(fd: int):
    # surrogatepass: a lone surrogate becomes invalid UTF-8 here, replaced by U+FFFD when the worker decodes
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="surrogatepass")


def _pausable():
    """``pausable() -> bool``: can this process stand in for its program's end state? Not with files
    in the temp dir, extra open fds, threads, interval timers or signal handlers of its own: a fork
    would not carry them over faithfully, or they could run code when the worker continues it."""
    handlers = {s: signal.getsignal(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)}
    handlers[signal.SIGCHLD] = signal.SIG_DFL  # the worker's own handler, reset in every program's process
    getsignal, listdir, count, getitimer, fstat = (
        signal.getsignal,
        os.listdir,
        _thread._count,
        signal.getitimer,
        os.fstat,
    )
    timers = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)

    def pausable() -> bool:
        try:
            if listdir(".") or count():
                return False
            for sig, handler in handlers.items():
                if getsignal(sig) is not handler:
                    return False
            for timer in timers:
                if getitimer(timer) != (0.0, 0.0):
                    return False
            for fd in range(FIRST_FREE_FD, 64):
                try:
                    fstat(fd)
                    return False
                except OSError:
                    pass
            return True
        except BaseException:
            return False

    return pausable


def prepare() -> tuple:
    """What ``main`` needs, built once in the zygote before it forks (cheaper children: a fresh
    text stream alone would touch, and so copy, dozens of the zygote's pages in each child).

    The streams on fds 1 and 2 are made while those fds are pipes, like the ones a program's
    process will have there: they are not seekable. A program's process gets them unused."""
    r, w = os.pipe()
    saved = [os.dup(fd) for fd in (1, 2)]
    try:
        for fd in (1, 2):
            os.dup2(w, fd)
        streams = (_stream(1), _stream(2))
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(r)
        os.close(w)
    return _runner(), _pausable(), streams


def main(code, keep_after: float | None, prepared: tuple) -> None:
    """Run ``code`` (a code object) as ``__main__``; never returns (the process ends or pauses).

    ``keep_after``: pause at the end (to be continued) if the program ended well and this process
    has used at least that much CPU (cheaper paths are re-run rather than continued); None: never.

    Everything used after untrusted code has run is bound here first: a program that patches
    builtins or modules cannot change how its continuation is run or reported."""
    _exit, write, fork, waitpid, read, stop = os._exit, os.write, os.fork, os.waitpid, os.read, signal.raise_signal
    compile_, getpid, from_bytes, str_, decode = compile, os.getpid, int.from_bytes, str, bytes.decode
    getppid, sched_yield, process_time, pipe, close = os.getppid, os.sched_yield, time.process_time, os.pipe, os.close
    (run, pausable, streams), sigstop = prepared, signal.SIGSTOP
    # ``random`` reseeds itself from the OS in every forked child: fix it for fresh runs, carry it
    # over to continuations (a re-run path would have continued the same sequence).
    rng = getattr(sys.modules.get("random"), "_inst", None)
    getstate, setstate = (rng.getstate, rng.setstate) if rng is not None else (lambda: None, lambda s: None)
    if rng is not None:
        rng.seed(0)
    sys.stdout, sys.stderr = streams
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    while True:
        error = run(code, namespace)
        for stream in streams:
            try:
                stream.flush()
            except BaseException:
                pass
        if error is not None:  # after the flushes: the error ends stderr, after a marker
            write(2, ERROR_MARK + truncate(error, MAX_ERROR_CHARS).encode("utf-8", "replace") + b"\n")
            _exit(1)
        if keep_after is None or process_time() < keep_after or not pausable():
            _exit(0)
        stop(sigstop)  # the worker records this program as ok, and may continue it later
        while True:  # paused node: serve continuations
            try:
                n = from_bytes(read(CMD_FD, 4), "big")
                payload = b""
                while payload.__len__() < n:
                    chunk = read(CMD_FD, n - payload.__len__())
                    if not chunk:
                        _exit(0)
                    payload += chunk
                state = getstate()
                pid = fork()
            except BaseException:
                _exit(0)
            if pid == 0:
                gone_r, gone_w = pipe()
                if fork():
                    _exit(0)  # orphan the grandchild: the worker (PID 1 here) becomes its parent
                close(gone_w)
                read(gone_r, 1)  # end of file once that child is exiting (sleeping, not spinning,
                close(gone_r)  # which on a busy CPU would hold up its exit)
                while getppid() != 1:  # reparenting follows a moment later
                    sched_yield()
                write(ACK_FD, str_(getpid()).encode() + b"\n")
                setstate(state)
                keep_after = 0.0 if payload[:1] == b"1" else None
                try:
                    code = compile_(decode(payload[1:], "utf-8"), "<string>", "exec", dont_inherit=True)
                except BaseException as e:
                    write(2, ERROR_MARK + format_error(e).encode("utf-8", "replace") + b"\n")
                    _exit(1)
                break
            try:
                waitpid(pid, 0)
            except BaseException:
                pass
            stop(sigstop)


def _runner():
    """``run(code, namespace) -> error line or None`` with every name it needs bound now."""
    exec_, isinstance_, type_, int_, system_exit = exec, isinstance, type, int, SystemExit
    builtins_dict = vars(builtins)
    saved, update, fmt = dict(builtins_dict), builtins_dict.update, format_error

    def run(code, namespace: dict) -> str | None:
        # None on success (``sys.exit()``/``sys.exit(0)`` included), else the error line
        try:
            exec_(code, namespace)
            return None
        except BaseException as e:
            update(saved)  # reporting must not run a program's patched builtins
            if isinstance_(e, system_exit) and (e.code is None or (type_(e.code) is int_ and e.code == 0)):
                return None
            return fmt(e)

    return run
