"""The parent side of the sandbox: a pool of walled zygote workers, job dispatch, the result cache.

Two kinds of worker: *lean* ones pre-import only the standard library's math
modules, *heavy* ones also numpy/sympy/mpmath (forking them costs more, so
programs go there only when they import those). Each worker runs one program
at a time in a fresh process forked from its pristine zygote (worker.py) and
keeps the paused processes of recent successful programs (*states*). A
program that extends a kept program by whole statements (a search node's
program is its parent's plus one step) goes to the worker holding that state
and runs only the new statements, in a process forked from it. The parent
keeps every worker busy with a small batch, collects results as they stream
back, and replaces a worker that dies or stops answering (the job it was
running gets an error or one retry; its other jobs are re-queued).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import os
import selectors
import threading
import time
import weakref
from typing import Sequence

from rstar_jax.sandbox import launch
from rstar_jax.sandbox.cache import LRUCache, program_key
from rstar_jax.sandbox.limits import Limits
from rstar_jax.sandbox.worker import needs_heavy
from rstar_jax.sandbox.workers import Worker, descendants, readable, shutdown

KINDS = ("lean", "heavy")
# Default lean workers per CPU: a worker's CPU idles while it waits for a program's process to be
# scheduled, to start, to exit; twice as many as CPUs hide that (~16 MB each, measured in
# docs/SANDBOX.md). Heavy workers (~80 MB each, costly programs) stay at one per CPU.
LEAN_WORKERS_PER_CPU = 2


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
    base: tuple["Worker", int] | None = None  # a kept state this program extends: (worker, state id)


class Sandbox:
    """Runs untrusted programs in a pool of walled worker processes.

    >>> with Sandbox(timeout_s=2.0) as sb:
    ...     sb.run_many(["x = 6 * 7\\nprint(x)"])[0].stdout
    '42\\n'

    Args:
      num_workers: worker processes per kind; default: ``LEAN_WORKERS_PER_CPU`` lean workers per CPU this
        process may use and one heavy worker per CPU (``workers_per_kind``).
      timeout_s, memory_mb, max_output_chars, cpu_s: see :class:`Limits`.
      cache_size: results kept in the LRU cache (0 disables it).
      strict: refuse to start without the OS-level wall (bubblewrap and seccomp).
      wall: use bubblewrap, seccomp and cgroups where available (False: audit hook and rlimits only).
      incremental: keep the paused processes of successful programs so that a program extending one
        runs only its new statements; ``max_states`` of them per worker (LRU). A program's process
        is kept only once it has used ``continue_after_ms`` of CPU: a continuation costs one fork
        and more hand-offs than a fresh run (~0.5 ms more CPU, a few ms more latency), so cheaper paths
        are re-run (a cheap program's process has used ~0.5 ms; the margin absorbs CPU time inflated
        on a busy machine).
      audit_hook: install the audit hook in each program's process (early, friendlier errors; False
        leaves only the OS-level wall, which the hostile tests use to show that it holds on its own).
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
        strict: bool = False,
        wall: bool = True,
        incremental: bool = True,
        max_states: int = 64,
        continue_after_ms: float = 5.0,
        audit_hook: bool = True,
        max_batch: int = 16,
        recycle_after: int = 100_000,
        start_timeout_s: float = 120.0,
    ):
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.workers_per_kind = {"lean": num_workers or LEAN_WORKERS_PER_CPU * cpus, "heavy": num_workers or cpus}
        if (num_workers is not None and num_workers < 1) or max_batch < 1 or recycle_after < 1 or max_states < 0:
            raise ValueError("num_workers, max_batch and recycle_after must be >= 1, max_states >= 0")
        self.limits = Limits(timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb, max_output_chars=max_output_chars)
        self.num_workers = self.workers_per_kind["lean"]
        self.max_batch = max_batch
        self.recycle_after = recycle_after
        self.start_timeout_s = start_timeout_s
        # A stuck worker (not a slow program: the worker enforces that deadline itself).
        self.watchdog_s = 2 * timeout_s + 30.0
        self.isolation = launch.plan(strict, wall, wall, wall)
        launch.remove_dead_cgroups(self.isolation)
        self.max_states = max_states if incremental and self.isolation.pid_namespace else 0
        self.audit_hook = audit_hook
        self.continue_after_s = continue_after_ms / 1e3
        self._cache: LRUCache[ExecResult] = LRUCache(cache_size)
        self._states: dict[bytes, tuple[Worker, int]] = {}  # program key -> where its paused process is
        self._lock = threading.Lock()
        # removed at close (and at exit); a killed process's is removed by the next Sandbox started
        self._tmp_root = launch.make_tmp_root()
        self._workers: list[Worker] = []
        self._next_index = 0
        self._closed = False
        self.restarts = 0
        self.executed = 0
        self.continued = 0
        self._job_ids = itertools.count()
        self._finalizer = weakref.finalize(self, shutdown, self._workers, self._tmp_root)
        self._start("lean", self.workers_per_kind["lean"])

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
                queues[kind].append(_Job(key, program, kind, base=self._base_of(program, kind)))
            for key, result in self._execute(queues):
                if not (result.error or "").startswith("SandboxError"):
                    self._cache.put(key, result)
                for i in wanted[key]:
                    results[i] = result
            return results  # type: ignore[return-value]

    def stats(self) -> dict:
        return {
            "executed": self.executed,
            "continued": self.continued,
            "states": len(self._states),
            "cache_hits": self._cache.hits,
            "cache_misses": self._cache.misses,
            "cache_entries": len(self._cache),
            "worker_restarts": self.restarts,
            "workers": {k: sum(w.kind == k for w in self._workers) for k in KINDS},
        }

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the workers, their live processes and the processes they reaped (Linux)."""
        total, tick = 0.0, os.sysconf("SC_CLK_TCK")
        for w in self._workers:
            for pid in [w.proc.pid, *descendants(w.proc.pid)]:
                try:
                    with open(f"/proc/{pid}/stat", "rb") as f:
                        fields = f.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
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

    def _start(self, kind: str, n: int) -> list[Worker]:
        fresh = []
        for _ in range(n):
            fresh.append(Worker(kind, self._next_index, self))
            self._next_index += 1
        self._workers.extend(fresh)
        deadline = time.monotonic() + self.start_timeout_s
        for w in fresh:
            while not w.ready:
                remaining = deadline - time.monotonic()
                msgs = w.receive() if remaining > 0 and readable(w.fd_out, remaining) else None
                if msgs is None:
                    tail = w.log_tail()
                    self._drop(w)
                    raise RuntimeError(f"sandbox worker ({kind}) failed to start:\n{tail}")
                w.ready = any(m.get("hello") for m in msgs)
        return fresh

    def _drop(self, w: Worker) -> None:
        w.kill()
        self._workers.remove(w)
        for key in w.states.values():
            self._states.pop(key, None)
        w.states.clear()

    def _replace(self, w: Worker) -> Worker:
        self._drop(w)
        self.restarts += 1
        return self._start(w.kind, 1)[0]

    def _base_of(self, program: str, kind: str) -> tuple[Worker, int] | None:
        """The longest kept program (ending at a line break) that this one extends, on a worker of its kind."""
        if not self._states:
            return None
        end = len(program) - 1
        for _ in range(256):
            end = program.rfind("\n", 0, end)
            if end < 0:
                return None
            hit = self._states.get(program_key(program[: end + 1]))
            if hit is not None and hit[0].kind == kind:
                return hit
        return None

    def _record(self, w: Worker, job: _Job, msg: dict) -> None:
        """Track which states the worker holds now."""
        for sid in msg.get("evicted") or ():
            key = w.states.pop(sid, None)
            if key is not None and self._states.get(key) == (w, sid):
                del self._states[key]
        sid = msg.get("state")
        if type(sid) is int:
            w.states[sid] = job.key
            self._states[job.key] = (w, sid)

    # ------------------------------------------------------------------ dispatch

    def _execute(self, queues: dict[str, collections.deque]):
        """Run queued jobs on the workers; yield (key, ExecResult) as they finish."""
        jobs: dict[int, _Job] = {}
        for kind in KINDS:
            if queues[kind] and not any(w.kind == kind for w in self._workers):
                self._start(kind, self.workers_per_kind[kind])
        with selectors.DefaultSelector() as sel:
            while any(queues.values()) or any(w.inflight for w in self._workers):
                for w in list(self._workers):
                    if w.inflight:
                        continue
                    if w.served >= self.recycle_after:
                        w = self._replace(w)
                    batch = self._batch_for(w, queues[w.kind])
                    if not batch:
                        continue
                    ids = [next(self._job_ids) for _ in batch]  # unique across calls: see below
                    jobs.update(zip(ids, batch))
                    sent = [
                        (i, job.program, job.base[1] if job.base and job.base[0] is w else None)
                        for i, job in zip(ids, batch)
                    ]
                    try:
                        w.send(sent)
                    except OSError:
                        w.inflight.update(ids)  # lost worker: the failure path below re-queues them
                busy = [w for w in self._workers if w.inflight]
                for w in busy:
                    sel.register(w.fd_out, selectors.EVENT_READ, w)
                writers = [w for w in busy if w.pending]
                now = time.monotonic()
                timeout = max(0.0, min(w.since + self.watchdog_s for w in busy) - now) if busy else 0.0
                if writers:
                    timeout = min(timeout, 0.005)  # a worker still taking its batch: retry the write soon
                events = sel.select(timeout)
                for w in busy:
                    sel.unregister(w.fd_out)
                for w in writers:
                    try:
                        w.flush()
                    except OSError:
                        pass  # the read side reports the death
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
                        self._record(w, job, msg)
                        w.served += 1
                        self.executed += 1
                        self.continued += bool(msg.get("incremental"))
                        yield (
                            job.key,
                            ExecResult(msg["ok"], msg["stdout"], msg["error"], msg["timed_out"], msg["duration_s"]),
                        )
                now = time.monotonic()
                for w in [w for w in self._workers if w.inflight and now - w.since > self.watchdog_s]:
                    yield from self._fail(w, jobs, queues, "SandboxError: worker stopped responding")

    def _batch_for(self, w: Worker, queue: collections.deque) -> list[_Job]:
        """Jobs continuing this worker's states first, then any of its kind (up to a fair share)."""
        mine = [job for job in queue if job.base is not None and job.base[0] is w][: self.max_batch]
        n_kind = sum(x.kind == w.kind for x in self._workers)
        size = max(1, min(self.max_batch, math.ceil(len(queue) / n_kind)))
        batch = mine[:size]
        taken = {id(j) for j in batch}
        for job in queue:
            if len(batch) >= size:
                break
            if id(job) not in taken and (job.base is None or job.base[0] not in self._workers):
                batch.append(job)
                taken.add(id(job))
        if taken:
            remaining = [j for j in queue if id(j) not in taken]
            queue.clear()
            queue.extend(remaining)
        return batch

    def _fail(self, w: Worker, jobs: dict[int, _Job], queues: dict[str, collections.deque], error: str):
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
            job.base = None
            if job.attempts < 2:
                queues[job.kind].appendleft(job)
            else:
                yield job.key, ExecResult(False, "", error, False, 0.0)
