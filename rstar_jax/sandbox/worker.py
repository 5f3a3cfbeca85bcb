"""Sandbox worker: a zygote process that forks one confined child per program.

Started by the pool as ``python -s -S worker.py CONFIG_JSON`` (by file path,
so importing it never runs ``rstar_jax/__init__`` and never imports JAX). It
pre-imports what programs use, freezes its heap (so children do not copy it
page by page through the garbage collector), then serves length-prefixed JSON
requests on stdin: ``{"jobs": [{"id", "code"}, ...]}``; it answers each job
with ``{"id", "ok", "stdout", "error", "timed_out", "duration_s"}`` as soon
as that job is done, so a worker that dies mid-batch loses only one job.

Per program: compile in the zygote (a syntax error needs no fork), fork, and
in the child confine (limits.confine), install the audit hook (guard.install),
run it (runner.execute) and write the result to a private pipe. Programs that
batching.py proves stateless share one child, one after another. The zygote
waits on the pipe and a pidfd with each program's wall-clock deadline and
kills the child's whole process group afterwards.

Only the standard library and sibling files are imported, so the parent can
import the routing helpers (``needs_heavy``) from here too.
"""

from __future__ import annotations

import ast
import builtins
import gc
import importlib
import json
import os
import re
import select
import shutil
import signal
import sys
import time

if __package__:  # imported by the parent (routing helpers) as rstar_jax.sandbox.worker
    from rstar_jax.sandbox import batching, guard, limits, protocol
    from rstar_jax.sandbox.runner import execute, exit_builtin, format_error, truncate
else:  # run by file path: siblings come from this directory, no package, so no JAX
    import batching
    import guard
    import limits
    import protocol
    from runner import execute, exit_builtin, format_error, truncate

# Imported by every worker before it forks anything.
LEAN_PRELOAD = (
    "math",
    "cmath",
    "fractions",
    "decimal",
    "itertools",
    "functools",
    "collections",
    "operator",
    "heapq",
    "bisect",
    "string",
    "random",
    "statistics",
    "numbers",
    "datetime",
    "copy",
)
# Heavy workers also pre-import these (a fresh interpreter pays ~0.7 s for sympy alone).
HEAVY_PRELOAD = LEAN_PRELOAD + ("numpy", "sympy", "mpmath")
# Packages a heavy worker imports on demand (as itself, before forking) when a
# program imports them; anything else a program imports is loaded by the child.
PRELOADABLE = frozenset(HEAVY_PRELOAD) | {"scipy", "networkx", "dataclasses", "typing", "enum", "calendar", "array"}
HEAVY_ROOTS = frozenset(PRELOADABLE) - frozenset(LEAN_PRELOAD)
# Run once in a heavy zygote: sympy imports many submodules lazily on first use,
# which would otherwise cost every forked child ~0.3 s.
HEAVY_WARMUP = """
import sympy as sp, numpy as np
x, y = sp.symbols("x y")
sp.solve([x + y - 3, x - y - 1], [x, y]); sp.solveset(x**2 - 4, x, sp.S.Reals); sp.nsolve(x**2 - 2, x, 1)
sp.simplify(sp.sin(x)**2 + sp.cos(x)**2); sp.integrate(x**2, (x, 0, 1)); sp.integrate(sp.exp(x) * x, x)
sp.factor(x**2 - 1); sp.expand((x + 1)**3); sp.limit(sp.sin(x) / x, x, 0); sp.diff(x**3, x)
sp.series(sp.exp(x), x, 0, 3); sp.summation(1 / x**2, (x, 1, sp.oo)); sp.Matrix([[1, 2], [3, 4]]).inv()
sp.nsimplify(0.5); sp.N(sp.pi, 30); sp.factorint(360); sp.isprime(97); sp.binomial(5, 2); sp.latex(x**2 / 3)
sp.Poly(x**3 - 1, x).all_roots(); sp.gcd(12, 18); sp.Rational(1, 3) + sp.Rational(1, 6); str(sp.sqrt(8))
np.linalg.solve(np.eye(2), np.ones(2)); np.roots([1, 0, -1]); np.polyfit([0, 1, 2], [0, 1, 4], 2)
"""

_IMPORT_RE = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import|import[ \t]+([\w., \t]+))", re.MULTILINE)
MAX_RESULT_BYTES = 8 << 20
CHILD_BROKEN = 70  # exit status of a child that could not write its result


def imported_modules(code: str) -> set[str]:
    """Dotted names of the modules a program imports at statement level (a cheap scan, not a parse)."""
    names = set()
    for from_name, import_list in _IMPORT_RE.findall(code):
        if from_name:
            names.add(from_name)
        for part in import_list.split(","):
            words = part.split()
            if words:
                names.add(words[0])
    return names


def needs_heavy(code: str) -> bool:
    """Whether a program should go to a worker with numpy/sympy loaded."""
    return any(name.partition(".")[0] in HEAVY_ROOTS for name in imported_modules(code))


class Zygote:
    """The serving loop of one worker process."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.heavy = cfg["kind"] == "heavy"
        self.tmp_dir = cfg["tmp_dir"]
        self.max_chars = cfg["limits"]["max_output_chars"]
        self.timeout_s = cfg["limits"]["timeout_s"]
        self.read_roots = tuple(p for p in sys.path if os.path.isdir(p))
        self.max_fd = os.sysconf("SC_OPEN_MAX")
        self.tried_imports: set[str] = set()
        builtins.exit = builtins.quit = exit_builtin  # -S skips site.py, which defines them
        for name in HEAVY_PRELOAD if self.heavy else LEAN_PRELOAD:
            try:
                importlib.import_module(name)
            except ImportError:
                pass  # not installed: programs importing it get the ImportError themselves
        if self.heavy:
            try:
                exec(HEAVY_WARMUP, {"__name__": "__warmup__"})
            except Exception:
                pass
        self._freeze()

    def _freeze(self) -> None:
        gc.collect()
        gc.freeze()  # children then never touch (and so never copy) the zygote's objects in a collection
        self.base_bytes = limits.mapped_bytes()
        self.denied_attrs = batching.denied_attributes()

    def _preload_for(self, code: str) -> None:
        if not self.heavy:
            return
        fresh = [
            n
            for n in imported_modules(code)
            if n.partition(".")[0] in PRELOADABLE and n not in sys.modules and n not in self.tried_imports
        ]
        for name in fresh:
            self.tried_imports.add(name)
            try:
                importlib.import_module(name)
            except Exception:
                pass  # the child will report the ImportError itself
        if fresh:
            self._freeze()

    def serve(self, fd_in: int, fd_out: int) -> None:
        for message in protocol.iter_frames(fd_in):
            for result in self.run_jobs(message["jobs"]):
                protocol.write_frame(fd_out, result)

    def run_jobs(self, jobs: list[dict]):
        """Yield one result per job (with its id) as soon as it is known, in any order."""
        shared, alone = [], []
        for job in jobs:
            prepared = self._prepare(job["code"])
            if isinstance(prepared, dict):
                yield {**prepared, "id": job["id"]}
            else:
                code, share = prepared
                (shared if share and self.cfg["share_children"] else alone).append((job["id"], code))
        if shared:
            yield from self._run(shared)
        for item in alone:
            yield from self._run([item])

    def _prepare(self, text: str):
        """(code object, may share a child) or an error result that needs no child."""
        max_len = self.cfg["limits"]["max_program_chars"]
        if len(text) > max_len:
            return _result(False, "", f"ValueError: program longer than {max_len} characters")
        self._preload_for(text)
        try:
            tree = ast.parse(text, "<string>")
            return compile(tree, "<string>", "exec", dont_inherit=True), batching.batchable(tree, self.denied_attrs)
        except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError) as e:
            return _result(False, "", truncate(format_error(e), self.max_chars))

    def _run(self, items: list[tuple[int, object]]):
        """Run programs one after another in forked children.

        A child that dies or overruns its deadline costs only the program it was
        running: that one gets the failure, the rest go to a fresh child.
        """
        while items:
            done = 0
            for event in self._spawn([code for _, code in items]):
                if event[0] == "result":
                    if done < len(items):  # a program that forges extra frames gains nothing
                        yield {**event[1], "id": items[done][0]}
                        done += 1
                else:
                    _, status, rusage, timed_out, elapsed = event
            if done < len(items):
                yield {**self._failure(status, rusage, timed_out, elapsed), "id": items[done][0]}
                done += 1
            items = items[done:]

    def _spawn(self, codes: list):
        """Fork a child for ``codes``; yield ("result", dict) per finished program, then ("exit", ...)."""
        r, w = os.pipe()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self._child(codes, r, w)  # never returns
        os.close(w)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the child already did it, or has already exited
        reader = protocol.FrameReader(MAX_RESULT_BYTES)
        last = start
        exited = False
        pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
        watch = [r] if pidfd is None else [r, pidfd]
        timed_out = False
        try:
            while not exited:
                remaining = last + self.timeout_s - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                ready, _, _ = select.select(watch, [], [], remaining if pidfd is not None else min(remaining, 0.002))
                if r in ready:
                    chunk = os.read(r, 1 << 16)
                    if not chunk:
                        watch.remove(r)
                    for msg in self._decode(reader, chunk):
                        now = time.monotonic()
                        yield "result", {**msg, "timed_out": False, "duration_s": now - last}
                        last = now
                exited = (pidfd in ready) if pidfd is not None else _has_exited(pid)
            _kill_group(pid)
            _, status, rusage = os.wait4(pid, 0)
            os.set_blocking(r, False)
            while True:  # results written just before the exit
                try:
                    chunk = os.read(r, 1 << 16)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                for msg in self._decode(reader, chunk):
                    now = time.monotonic()
                    yield "result", {**msg, "timed_out": False, "duration_s": now - last}
                    last = now
        finally:
            os.close(r)
            if pidfd is not None:
                os.close(pidfd)
        _empty_dir(self.tmp_dir)  # the next program must not see this one's files
        yield "exit", status, rusage, timed_out, time.monotonic() - last

    def _decode(self, reader, chunk: bytes) -> list[dict]:
        """Results from the child's pipe; anything malformed ends the stream (treated as a crash)."""
        if not chunk:
            return []
        try:
            out = []
            for msg in reader.feed(chunk):
                ok, stdout, error = msg["ok"], msg["stdout"], msg["error"]
                if type(ok) is not bool or type(stdout) is not str or not (error is None or type(error) is str):
                    raise ValueError("malformed result")
                out.append(_result(ok, truncate(stdout, 2 * self.max_chars), error))
            return out
        except Exception:
            reader.feed = lambda data: []  # ignore the rest of this child's output
            return []

    def _child(self, codes: list, r: int, w: int) -> None:
        _exit, write, dumps = os._exit, os.write, json.dumps  # bound before untrusted code runs
        status = CHILD_BROKEN
        try:
            os.close(r)
            os.closerange(3, w)
            os.closerange(w + 1, self.max_fd)
            if len(codes) == 1:
                gc.disable()  # the frozen heap is never collected anyway; one short program needs no cycle GC
            try:
                limits.confine(
                    self.cfg["limits"], self.tmp_dir, self.base_bytes, self.cfg["uid"], self.cfg["gid"], len(codes)
                )
                guard.disarm()
                guard.install(self.tmp_dir, self.read_roots)
                failure = None
            except BaseException as e:
                failure = {"ok": False, "stdout": "", "error": f"SandboxError: confinement failed: {format_error(e)}"}
            for code in codes:
                result = failure or execute(code, self.max_chars)
                payload = dumps(result).encode()
                view = memoryview(len(payload).to_bytes(4, "big") + payload)
                while view:
                    view = view[write(w, view) :]
                if len(codes) > 1:
                    gc.collect()  # a program's cyclic garbage must not eat the next one's memory
            status = 0
        finally:
            _exit(status)

    def _failure(self, status: int, rusage, timed_out: bool, elapsed: float) -> dict:
        """The result of a program whose child ended without reporting it."""
        if timed_out:
            return _result(False, "", f"TimeoutError: execution exceeded {self.timeout_s:g} s", True, elapsed)
        cfg_limits = self.cfg["limits"]
        cpu_limit = limits.cpu_seconds(cfg_limits["cpu_s"], cfg_limits["timeout_s"])
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and rusage.ru_utime + rusage.ru_stime >= cpu_limit):
                return _result(False, "", f"TimeoutError: CPU time limit of {cpu_limit} s exceeded", True, elapsed)
            return _result(False, "", f"RuntimeError: program killed by {signal.Signals(sig).name}", False, elapsed)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        if code == CHILD_BROKEN:
            return _result(False, "", "RuntimeError: the program broke its result report", False, elapsed)
        return _result(False, "", f"SystemExit: {code}", False, elapsed)  # os._exit(code)


def _result(ok: bool, stdout: str, error: str | None, timed_out: bool = False, duration: float = 0.0) -> dict:
    return {"ok": ok, "stdout": stdout, "error": error, "timed_out": timed_out, "duration_s": duration}


def _empty_dir(path: str) -> None:
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _kill_group(pid: int) -> None:
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        try:
            kill(target, signal.SIGKILL)
        except OSError:
            pass


def _has_exited(pid: int) -> bool:
    """Without pidfds: poll for an exit without reaping."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def probe(cfg: dict) -> dict:
    """Can a child still read the installation after dropping to cfg's uid? (run by the launcher)."""
    import importlib.util

    origins = []
    for name in ("statistics", "decimal", "numpy", "sympy"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            origins.append(spec.origin)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            if cfg["uid"] is not None:
                os.setgroups([])
                os.setgid(cfg["gid"])
                os.setuid(cfg["uid"])
            for path in origins:
                with open(path, "rb") as f:
                    f.read(1)
            for d in sys.path:
                if os.path.isdir(d):
                    os.listdir(d)
            importlib.import_module("statistics")
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return {
        "drop_ok": os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
        "version": list(sys.version_info[:2]),
        "executable": sys.executable,
    }


def main(argv: list[str]) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    cfg = json.loads(argv[-1])
    # Programs import from the interpreter's stdlib and the given site dirs, not from here.
    sys.path[:] = [p for p in sys.path if p not in ("", here)] + [p for p in cfg["sys_path"] if p not in sys.path]
    if argv[1] == "--probe":
        print(json.dumps(probe(cfg)))
        return
    # The protocol moves off fds 0/1 so nothing a library prints can corrupt it.
    fd_in, fd_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    os.close(devnull)
    zygote = Zygote(cfg)
    protocol.write_frame(fd_out, {"hello": True, "pid": os.getpid()})
    zygote.serve(fd_in, fd_out)


if __name__ == "__main__":
    main(sys.argv)
