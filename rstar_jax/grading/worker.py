"""Grading processes with a deadline per request (``verify.py`` runs in them).

Sympy can take unbounded time on an answer (``9^{9^{9^{9}}}`` evaluates a
number of 370 million digits), and a thread cannot be stopped. So parsing and
comparison run in separate, persistent processes, and a request that misses
its deadline kills its process; a fresh one is started at once, in the
background. No signals are used, so grading works from any thread; callers in
several threads get a process each (up to ``MAX_PROCESSES``; more wait).

Start-up (imports, warming the LaTeX parser: about half a second) happens on
the first request; it is not counted against a request's time limit. One
spare process is kept started, so a request after a kill does not wait for
one; only when kills come faster than start-ups (two timeouts in a row within
~0.5 s, ~1.5 s on a loaded machine) does a request wait for a process to start.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time

_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "verify.py")
STARTUP_TIMEOUT_S = 120.0
MAX_PROCESSES = 4


class GradingUnavailable(RuntimeError):
    """The grading process could not start (math-verify not installed?)."""


class _Process:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C at the terminal is the parent's to handle
            close_fds=True,
        )
        self.buffer = b""
        self.ready = False
        self.failed: str | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def readline(self, deadline: float) -> bytes | None:
        """The next reply line, or None at the deadline or if the process died."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            poller = select.poll()  # not select.select: it fails on descriptors above 1023
            poller.register(fd, select.POLLIN)
            if not poller.poll(max(deadline - time.monotonic(), 0.0) * 1000):
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def poll_ready(self, wait_s: float = 0.0) -> bool:
        """Whether it has started (waiting up to ``wait_s`` for it)."""
        if not self.ready and self.failed is None:
            line = self.readline(time.monotonic() + wait_s)
            if line == b"ready":
                self.ready = True
            elif line is not None or not self.alive():
                self.failed = (line or b"it exited").decode(errors="replace")
        return self.ready

    def wait_ready(self) -> None:
        if not self.poll_ready(STARTUP_TIMEOUT_S):
            self.kill()
            why = self.failed or "no reply"
            raise GradingUnavailable(f"the grading process did not start ({why}); is math-verify installed?")

    def send(self, message: dict) -> bool:
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class Pool:
    """Grading processes, started on demand; one request at a time each. With ``standby``, one more
    than are busy is kept started, so that a request after a kill does not wait for a start-up."""

    def __init__(self, max_processes: int = MAX_PROCESSES, standby: bool = True):
        self.max_processes, self.standby = max_processes, standby
        self._cond = threading.Condition()
        self._idle: list[_Process] = []
        self._count = 0
        self._pid = os.getpid()

    def _acquire(self) -> _Process:
        with self._cond:
            if os.getpid() != self._pid:  # a forked child: the parent's processes and pipes are not ours
                self._idle, self._count, self._pid = [], 0, os.getpid()
            while not self._idle and self._count >= self.max_processes:
                self._cond.wait()
            if self._idle:  # a started one if there is one
                process = next((p for p in reversed(self._idle) if p.poll_ready()), self._idle[-1])
                self._idle.remove(process)
            else:
                self._count += 1
                process = None
            if self.standby and not self._idle and self._count < self.max_processes:
                try:
                    self._idle.append(_Process())  # the next one starts now: a kill will not wait for it
                    self._count += 1
                except OSError:
                    pass
        try:
            if process is None or not process.alive():
                if process is not None:
                    process.kill()
                process = _Process()
            process.wait_ready()
            return process
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, process: _Process, healthy: bool) -> None:
        if not healthy:
            process.kill()
            try:
                process = _Process()  # its start-up overlaps whatever the caller does next
            except OSError:
                process = None
        with self._cond:
            if process is None:
                self._count -= 1
            else:
                self._idle.append(process)
            self._cond.notify()

    def compare(self, a: tuple[str, str], b: tuple[str, str], timeout_s: float) -> bool | str:
        """True/False, or where time ran out: ``"a"`` (parsing a), ``"b"`` (parsing b) or ``"pair"``."""
        process = self._acquire()
        healthy = False
        try:
            deadline = time.monotonic() + timeout_s
            if not process.send({"a": list(a), "b": list(b)}):
                return "pair"
            for stage in (b"a", b"b"):
                if process.readline(deadline) != stage:
                    return stage.decode()
            reply = process.readline(deadline)
            if reply not in (b"0", b"1"):
                return "pair"
            healthy = True
            return reply == b"1"
        finally:
            self._release(process, healthy)

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for process in idle:
            process.kill()


_pool: Pool | None = None
_pool_lock = threading.Lock()


def pool() -> Pool:
    """The process-wide pool (its processes end with this process)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = Pool()
            atexit.register(_pool.close)
        return _pool
