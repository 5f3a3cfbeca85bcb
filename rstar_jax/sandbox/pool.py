"""The parent side of the sandbox: a pool of zygote workers, job dispatch, the result cache.

Two kinds of worker: *lean* ones pre-import only the standard library's math
modules, *heavy* ones also numpy/sympy/mpmath. Forking a heavy zygote costs
several times more (its page tables and copy-on-write faults), so programs go
to a heavy worker only when they import one of those packages; heavy workers
start on first need. Each worker runs one program at a time in a forked,
confined child (worker.py); the parent keeps every worker busy with a small
batch, collects results as they stream back, and replaces a worker that dies
or stops answering (the job it was running gets an error or one retry; its
other jobs are re-queued).

The interface is one program per node (``run_many(programs)``); the worker
protocol carries jobs by id, so a later job kind (continue from a parent
node's saved state plus new code) fits without changing callers.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
import weakref
from typing import Sequence

from rstar_jax.sandbox import launch, protocol
from rstar_jax.sandbox.cache import LRUCache, program_key
from rstar_jax.sandbox.limits import Limits
from rstar_jax.sandbox.worker import needs_heavy

KINDS = ("lean", "heavy")


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """Outcome of one program. ``error`` is ``"<Type>: message"`` or None on success."""

    ok: bool
    stdout: str
    error: str | None
    timed_out: bool
    duration_s: float


@dataclasses.dataclass
class _Job:
    key: bytes
    program: str
    kind: str
    attempts: int = 0


class _Worker:
    """One zygote process and the jobs it has been sent but not answered."""

    def __init__(
        self, kind: str, index: int, iso: launch.Isolation, limits: Limits, tmp_root: str, share_children: bool
    ):
        self.kind = kind
        self.tmp_dir = os.path.join(tmp_root, f"{kind}{index}")
        os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        if iso.uid is not None:
            os.chown(self.tmp_dir, iso.uid, iso.gid)
        cfg = {
            "kind": kind,
            "sys_path": list(iso.sys_path),
            "tmp_dir": self.tmp_dir,
            "uid": iso.uid,
            "gid": iso.gid,
            "limits": limits.to_json(),
            "share_children": share_children,
        }
        self.log_path = os.path.join(tmp_root, f"{kind}{index}.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                launch.worker_command(iso, cfg),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=launch.worker_env(self.tmp_dir),
                cwd=self.tmp_dir,
                start_new_session=True,
                bufsize=0,
            )
        self.fd_in, self.fd_out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.reader = protocol.FrameReader()
        self.ready = False
        self.inflight: set[int] = set()  # job ids sent, not yet answered (answers come in any order)
        self.since = time.monotonic()  # last sign of progress while jobs are in flight
        self.served = 0

    def send(self, jobs: list[tuple[int, str]]) -> None:
        protocol.write_frame(self.fd_in, {"jobs": [{"id": i, "code": code} for i, code in jobs]})
        if not self.inflight:
            self.since = time.monotonic()
        self.inflight.update(i for i, _ in jobs)

    def receive(self) -> list[dict] | None:
        """Messages that arrived; None when the worker has gone away."""
        try:
            data = os.read(self.fd_out, 1 << 16)
        except OSError:
            return None
        if not data:
            return None
        try:
            return self.reader.feed(data)
        except protocol.ProtocolError:
            return None

    def log_tail(self, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        _kill_tree(self.proc.pid)
        for f in (self.proc.stdin, self.proc.stdout):
            f.close()
        self.proc.wait()

    def close(self, grace_s: float = 2.0) -> None:
        try:
            self.proc.stdin.close()  # end of input: the zygote finishes and exits
            self.proc.wait(timeout=grace_s)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


def _descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (from /proc; empty where there is no /proc)."""
    children = collections.defaultdict(list)
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
                children[ppid].append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            out.append(child)
            stack.append(child)
    return out


def _kill_tree(pid: int) -> None:
    """SIGKILL a worker, its program child(ren) and their process groups."""
    victims = _descendants(pid)
    for target in [pid, *victims]:
        for kill in (os.killpg, os.kill):
            try:
                kill(target, signal.SIGKILL)
            except OSError:
                pass


def _shutdown(workers: list[_Worker], tmp_root: str) -> None:
    for w in workers:
        w.close()
    workers.clear()
    shutil.rmtree(tmp_root, ignore_errors=True)


class Sandbox:
    """Runs untrusted programs in a pool of isolated worker processes.

    >>> with Sandbox(timeout_s=2.0) as sb:
    ...     sb.run_many(["x = 6 * 7\\nprint(x)"])[0].stdout
    '42\\n'

    Args:
      num_workers: worker processes per kind; default: the CPUs this process may use.
      timeout_s, memory_mb, max_output_chars, cpu_s: see :class:`Limits`.
      cache_size: results kept in the LRU cache (0 disables it).
      drop_privileges: when root, run programs as ``nobody`` if that works here.
      isolate_network: start workers in an empty network namespace if possible.
      share_children: let provably stateless programs share a forked child (batching.py);
        False forks one child per program (about 3-5x slower).
      max_batch: jobs sent to a worker at once.
      recycle_after: restart a worker after this many programs.
    """

    def __init__(
        self,
        num_workers: int | None = None,
        timeout_s: float = 5.0,
        memory_mb: int = 1024,
        max_output_chars: int = 1024,
        *,
        cpu_s: float | None = None,
        cache_size: int = 100_000,
        drop_privileges: bool = True,
        isolate_network: bool = True,
        share_children: bool = True,
        max_batch: int = 16,
        recycle_after: int = 100_000,
        start_timeout_s: float = 120.0,
    ):
        if num_workers is None:
            num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if num_workers < 1 or max_batch < 1 or recycle_after < 1:
            raise ValueError("num_workers, max_batch and recycle_after must be >= 1")
        self.limits = Limits(timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb, max_output_chars=max_output_chars)
        self.num_workers = num_workers
        self.max_batch = max_batch
        self.recycle_after = recycle_after
        self.start_timeout_s = start_timeout_s
        # A stuck worker (not a slow program: the worker enforces that deadline itself).
        self.watchdog_s = 2 * timeout_s + 30.0
        self.isolation = launch.plan(drop_privileges, isolate_network)
        self.share_children = share_children
        self._cache: LRUCache[ExecResult] = LRUCache(cache_size)
        self._lock = threading.Lock()
        # removed at close (and at exit); a killed process's is removed by the next Sandbox started
        self._tmp_root = launch.make_tmp_root()
        self._workers: list[_Worker] = []
        self._next_index = 0
        self._closed = False
        self.restarts = 0
        self.executed = 0
        self._job_ids = itertools.count()
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._tmp_root)
        self._start("lean", num_workers)

    # ------------------------------------------------------------------ public API

    def run(self, program: str) -> ExecResult:
        return self.run_many([program])[0]

    def run_many(self, programs: Sequence[str]) -> list[ExecResult]:
        """Execute each program in isolation; results in input order (cached ones are reused)."""
        if isinstance(programs, str):
            raise TypeError("run_many takes a sequence of programs, not one str")
        with self._lock:
            if self._closed:
                raise RuntimeError("Sandbox is closed")
            results: list[ExecResult | None] = [None] * len(programs)
            wanted: dict[bytes, list[int]] = {}
            queues = {kind: collections.deque() for kind in KINDS}
            for i, program in enumerate(programs):
                if not isinstance(program, str):
                    raise TypeError(f"programs[{i}] is a {type(program).__name__}, not a str")
                key = program_key(program)
                if key in wanted:
                    wanted[key].append(i)
                    continue
                hit = self._cache.get(key)
                if hit is not None:
                    results[i] = hit
                    continue
                wanted[key] = [i]
                kind = "heavy" if needs_heavy(program) else "lean"
                queues[kind].append(_Job(key, program, kind))
            for key, result in self._execute(queues):
                if not (result.error or "").startswith("SandboxError"):
                    self._cache.put(key, result)
                for i in wanted[key]:
                    results[i] = result
            return results  # type: ignore[return-value]

    def stats(self) -> dict:
        return {
            "executed": self.executed,
            "cache_hits": self._cache.hits,
            "cache_misses": self._cache.misses,
            "cache_entries": len(self._cache),
            "worker_restarts": self.restarts,
            "workers": {k: sum(w.kind == k for w in self._workers) for k in KINDS},
        }

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the live workers and their finished program children (Linux)."""
        total, tick = 0.0, os.sysconf("SC_CLK_TCK")
        for w in self._workers:
            try:
                with open(f"/proc/{w.proc.pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                return None
            total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
        return total

    def clear_cache(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ workers

    def _start(self, kind: str, n: int) -> list[_Worker]:
        fresh = []
        for _ in range(n):
            fresh.append(
                _Worker(kind, self._next_index, self.isolation, self.limits, self._tmp_root, self.share_children)
            )
            self._next_index += 1
        self._workers.extend(fresh)
        deadline = time.monotonic() + self.start_timeout_s
        for w in fresh:
            while not w.ready:
                remaining = deadline - time.monotonic()
                msgs = w.receive() if remaining > 0 and _readable(w.fd_out, remaining) else None
                if msgs is None:
                    tail = w.log_tail()
                    self._drop(w)
                    raise RuntimeError(f"sandbox worker ({kind}) failed to start:\n{tail}")
                w.ready = any(m.get("hello") for m in msgs)
        return fresh

    def _drop(self, w: _Worker) -> None:
        w.kill()
        self._workers.remove(w)

    def _replace(self, w: _Worker) -> _Worker:
        self._drop(w)
        self.restarts += 1
        return self._start(w.kind, 1)[0]

    # ------------------------------------------------------------------ dispatch

    def _execute(self, queues: dict[str, collections.deque]):
        """Run queued jobs on the workers; yield (key, ExecResult) as they finish."""
        jobs: dict[int, _Job] = {}
        for kind in KINDS:
            if queues[kind] and not any(w.kind == kind for w in self._workers):
                self._start(kind, self.num_workers)
        with selectors.DefaultSelector() as sel:
            while any(queues.values()) or any(w.inflight for w in self._workers):
                for w in list(self._workers):
                    if w.inflight:
                        continue
                    if w.served >= self.recycle_after:
                        w = self._replace(w)
                    queue = queues[w.kind]
                    if not queue:
                        continue
                    n_kind = sum(x.kind == w.kind for x in self._workers)
                    size = max(1, min(self.max_batch, math.ceil(len(queue) / n_kind)))
                    batch = [queue.popleft() for _ in range(min(size, len(queue)))]
                    ids = [next(self._job_ids) for _ in batch]  # unique across calls: see below
                    jobs.update(zip(ids, batch))
                    try:
                        w.send([(i, job.program) for i, job in zip(ids, batch)])
                    except OSError:
                        w.inflight.update(ids)  # lost worker: the failure path below re-queues them
                busy = [w for w in self._workers if w.inflight]
                for w in busy:
                    sel.register(w.fd_out, selectors.EVENT_READ, w)
                now = time.monotonic()
                timeout = max(0.0, min(w.since + self.watchdog_s for w in busy) - now) if busy else 0.0
                events = sel.select(timeout)
                for w in busy:
                    sel.unregister(w.fd_out)
                for key, _ in events:
                    w = key.data
                    msgs = w.receive()
                    if msgs is None:
                        yield from self._fail(w, jobs, queues, "SandboxError: worker process died")
                        continue
                    for msg in msgs:
                        w.inflight.discard(msg["id"])
                        w.since = time.monotonic()
                        job = jobs.pop(msg["id"], None)
                        if job is None:  # a late answer for a call that was interrupted (e.g. Ctrl-C)
                            continue
                        w.served += 1
                        self.executed += 1
                        yield (
                            job.key,
                            ExecResult(msg["ok"], msg["stdout"], msg["error"], msg["timed_out"], msg["duration_s"]),
                        )
                now = time.monotonic()
                for w in [w for w in self._workers if w.inflight and now - w.since > self.watchdog_s]:
                    yield from self._fail(w, jobs, queues, "SandboxError: worker stopped responding")

    def _fail(self, w: _Worker, jobs: dict[int, _Job], queues: dict[str, collections.deque], error: str):
        """A worker died or hung: replace it and re-queue its unanswered jobs; a job that
        was in flight on two lost workers gets ``error`` instead of a third try."""
        lost = sorted(w.inflight)
        w.inflight.clear()
        self._replace(w)
        for i in reversed(lost):
            job = jobs.pop(i, None)
            if job is None:
                continue
            job.attempts += 1
            if job.attempts < 2:
                queues[job.kind].appendleft(job)
            else:
                yield job.key, ExecResult(False, "", error, False, 0.0)


def _readable(fd: int, timeout: float) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout))
