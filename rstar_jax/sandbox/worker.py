"""Sandbox worker: a pristine zygote inside the wall that forks one process per program.

Started by the pool (inside bubblewrap where available) as ``python -s -S
worker.py CONFIG_JSON`` (by file path: no package, no JAX). It imports a fixed
list of modules chosen at start, never what a program names, loads the
zygote seccomp filter, then serves length-prefixed JSON requests on stdin:
``{"jobs": [{"id", "code", "base", "keep"}]}``, answering with
``{"results": [...]}`` frames (a batch's results together, or every ``REPORT_S``),
one ``{"id", "ok", "stdout", "error", "timed_out", "duration_s", "state",
"evicted", "incremental"}`` per job.

Per program: parse in the zygote (a syntax error needs no fork), fork, and in
the child confine (limits.confine, the program seccomp filter, the audit hook)
and run (runner.main). The zygote owns the child's stdout/stderr pipes (read
bounded: head and tail), and decides the result from the exit status, the
signal, a stop, and the deadline it enforces with SIGKILL. A program that
ends well may stop itself instead of exiting: it is then a *state*, kept
(LRU, ``max_states``) so that a later program extending it by a suffix runs
only the suffix, in a process forked from it (runner.py). Without a PID
namespace (no bubblewrap) states are disabled: stragglers could not be found.

Only the standard library and sibling files are imported, so the parent can
import the routing helpers (``needs_heavy``) from here too.
"""

from __future__ import annotations

import ast
import builtins
import collections
import dataclasses
import fcntl
import gc
import importlib
import json
import os
import select
import signal
import sys
import time

if __package__:  # imported by the parent (routing helpers) as rstar_jax.sandbox.worker
    from rstar_jax.sandbox import capture, guard, limits, protocol, runner, seccomp
else:  # run by file path: siblings come from this directory, no package, so no JAX
    import capture
    import guard
    import limits
    import protocol
    import runner
    import seccomp

# Imported by every worker before it forks anything (and nothing else, ever).
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
    "json",
)
# Heavy workers also pre-import these (a fresh interpreter pays ~0.7 s for sympy alone).
HEAVY_PRELOAD = LEAN_PRELOAD + ("numpy", "sympy", "mpmath")
HEAVY_ROOTS = frozenset(HEAVY_PRELOAD) - frozenset(LEAN_PRELOAD) | {"scipy", "networkx"}
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
ERR_TAIL = 4096  # bytes of stderr kept: only its last line is read
ANNOUNCE_S = 2.0  # how long a paused state may take to announce its continuation's process
REPORT_S = 0.05  # results of a batch are sent together, or after this long


def imported_modules(code: str) -> set[str]:
    """Dotted names of the modules a program imports (from its AST; empty if it does not parse)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def needs_heavy(code: str) -> bool:
    """Whether a program should go to a worker with numpy/sympy loaded (speed only)."""
    if not any(root in code for root in HEAVY_ROOTS):  # most programs: no AST needed (parent CPU)
        return False
    return any(name.partition(".")[0] in HEAVY_ROOTS for name in imported_modules(code))


@dataclasses.dataclass
class Tree:
    """The pipes shared by a program's process and every state descended from it (one runs at a time)."""

    out_r: int
    err_r: int
    cmd_w: int
    ack_r: int
    refs: int = 0

    def close(self) -> None:
        for fd in (self.out_r, self.err_r, self.cmd_w, self.ack_r):
            os.close(fd)


@dataclasses.dataclass
class State:
    """A paused process holding the interpreter state at the end of ``text``."""

    sid: int
    pid: int
    tree: Tree
    text: str
    n_stmts: int
    n_lines: int
    out: capture.Output
    elapsed: float  # wall seconds of the whole path so far


class Zygote:
    """The serving loop of one worker process."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        lim = cfg["limits"]
        self.max_chars, self.timeout_s = lim["max_output_chars"], lim["timeout_s"]
        self.cap = 4 * self.max_chars + 64
        self.tmp_dir = cfg["tmp_dir"]
        self.walled = cfg["pid_namespace"]
        self.max_states = cfg["max_states"] if self.walled else 0
        self.read_roots = tuple(p for p in sys.path if os.path.isdir(p))
        self.states: collections.OrderedDict[int, State] = collections.OrderedDict()
        self.evicted: list[int] = []
        self.next_sid = 0
        builtins.exit = builtins.quit = runner.exit_builtin  # -S skips site.py, which defines them
        for name in HEAVY_PRELOAD if cfg["kind"] == "heavy" else LEAN_PRELOAD:
            try:
                importlib.import_module(name)
            except ImportError:
                pass  # not installed: programs importing it get the ImportError themselves
        if cfg["kind"] == "heavy":
            try:
                exec(HEAVY_WARMUP, {"__name__": "__warmup__"})
            except Exception:
                pass
        # Seeded, not from the OS: every process starts from the same state (cacheable results,
        # identical whichever worker runs a program). ``random`` reseeds itself after a fork: runner.py.
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed(0)
        self.program_filter = seccomp.Loader(cfg["seccomp"]["program"]) if cfg["seccomp"] else None
        if self.walled:  # counted per user namespace (our own) where the uid outside is not root
            limits.limit_processes(lim["max_processes"])
        seccomp.prctl(seccomp.PR_SET_CHILD_SUBREAPER, 1)  # orphaned continuations report to us
        seccomp.prctl(seccomp.PR_SET_DUMPABLE, 0)  # no /proc/<pid>/mem of paused states for other programs
        if cfg["seccomp"]:
            seccomp.Loader(cfg["seccomp"]["zygote"]).load()
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.prepared = runner.prepare()
        # Prepared here once rather than in every program's process (which would touch, and so
        # copy, more of the zygote's pages): rlimits, the audit hook's settings, disarmed functions.
        self.rlimits = limits.rlimits(lim, limits.mapped_bytes())
        self.guard = guard.policy(self.tmp_dir, self.read_roots, self.max_states > 0) if cfg["audit_hook"] else None
        if self.guard is not None:
            guard.disarm()  # the zygote needs none of them; every program's process inherits this
        gc.collect()
        gc.freeze()  # children then never touch (and so never copy) the zygote's objects in a collection

    def serve(self, fd_in: int, fd_out: int) -> None:
        """Answer each batch of jobs in as few frames as possible (each write wakes the parent), but
        at least every ``REPORT_S``: the parent's watchdog sees progress, and results stream."""
        for message in protocol.iter_frames(fd_in):
            results, since = [], time.monotonic()
            for job in message["jobs"]:
                result = self.run_job(job)
                result["evicted"], self.evicted = self.evicted, []
                results.append({**result, "id": job["id"]})
                if time.monotonic() - since > REPORT_S:
                    protocol.write_frame(fd_out, {"results": results})
                    results, since = [], time.monotonic()
            if results:
                protocol.write_frame(fd_out, {"results": results})

    # ------------------------------------------------------------------ one job

    def run_job(self, job: dict) -> dict:
        text, keep = job["code"], bool(job.get("keep")) and self.max_states > 0
        max_len = self.cfg["limits"]["max_program_chars"]
        if len(text) > max_len:
            return _result(False, "", f"ValueError: program longer than {max_len} characters")
        try:  # straight from source: a Python AST round trip would cost (and dirty) more
            code = compile(text, "<string>", "exec", dont_inherit=True)
        except Exception as e:  # SyntaxError, ValueError (NUL bytes), MemoryError, RecursionError, ...
            return _result(False, "", runner.truncate(runner.format_error(e), self.max_chars))
        base = self.states.get(job.get("base"))
        tree = None  # parsed only when statements must be counted (continuing or keeping a state)
        if base is not None:
            tree = _parse(text)
            suffix = _suffix(base, text, tree) if tree is not None else None
            if suffix is not None:
                result = self._continue(base, suffix, text, tree, keep)
                if result is not None:
                    return result
        return self._fresh(code, text, tree, keep)

    def _fresh(self, code, text: str, tree, keep: bool) -> dict:
        pipes = [os.pipe() for _ in range(4)]  # out, err, cmd, ack
        (out_r, out_w), (err_r, err_w), (cmd_r, cmd_w), (ack_r, ack_w) = pipes
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            keep_after = self.cfg["continue_after_s"] if keep else None
            self._child(code, keep_after, (out_w, err_w, cmd_r, ack_w))  # never returns
        for fd in (out_w, err_w, cmd_r, ack_w):
            os.close(fd)
        for fd in (out_r, err_r, ack_r):
            os.set_blocking(fd, False)
        os.set_blocking(cmd_w, False)
        t = Tree(out_r, err_r, cmd_w, ack_r, refs=1)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the child already did it, or has already exited
        outcome = self._watch(pid, t, start, start + self.timeout_s)
        return self._settle(t, outcome, None, text, tree, keep)

    def _continue(self, base: State, suffix: str, text: str, tree, keep: bool) -> dict | None:
        """Run ``suffix`` from ``base``'s paused process; None when the state failed (re-run instead)."""
        self.states.move_to_end(base.sid)
        t = base.tree
        src = ("\n" * base.n_lines + suffix).encode("utf-8", "surrogatepass")
        frame = (len(src) + 1).to_bytes(4, "big") + (b"1" if keep else b"0") + src
        start = time.monotonic()
        pid = None
        try:
            capture.drain(t.ack_r)
            if capture.write_all(t.cmd_w, frame, start + ANNOUNCE_S):
                os.kill(base.pid, signal.SIGCONT)
                pid = self._announced(t, base, start + ANNOUNCE_S)
        except OSError:
            pid = None
        if pid is None:
            self._drop(base)
            return None
        t.refs += 1
        remaining = max(self.timeout_s - base.elapsed, 0.05)
        outcome = self._watch(pid, t, start, start + remaining)
        if not self._stopped(base.pid, time.monotonic() + ANNOUNCE_S):
            self._drop(base)  # it did not pause again: it must never be continued
        return {**self._settle(t, outcome, base, text, tree, keep), "incremental": True}

    def _announced(self, t: Tree, base: State, deadline: float) -> int | None:
        """The pid of the continuation process: announced (once it is our child, orphaned to us)
        before it runs any new code, and verified to be our child in the state's process group."""
        buf = b""
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([t.ack_r], [], [], remaining)[0]:
                return None
            data = capture.drain(t.ack_r)
            if not data:
                return None  # end of file: nothing in that state's tree is alive
            buf += data
        try:
            pid = int(buf.split(b"\n", 1)[0])
            if pid <= 1 or pid in {s.pid for s in self.states.values()}:
                return None
            os.waitid(os.P_PID, pid, os.WEXITED | os.WSTOPPED | os.WNOHANG | os.WNOWAIT)
            return pid if os.getpgid(pid) == os.getpgid(base.pid) else None
        except (ValueError, OSError):  # not a number, not our child
            return None

    def _stopped(self, pid: int, deadline: float) -> bool:
        """Wait (on SIGCHLD wake-ups) until our child ``pid`` has stopped; False if it exits or overruns."""
        while True:
            try:
                info = os.waitid(os.P_PID, pid, os.WSTOPPED | os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return False
            if info is not None:
                return info.si_code == os.CLD_STOPPED
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if select.select([self.wake_r], [], [], min(remaining, 0.05))[0]:
                capture.drain(self.wake_r)

    def _watch(self, pid: int, t: Tree, start: float, deadline: float) -> dict:
        """Read the pipes until the process exits or stops, or the deadline passes (then SIGKILL)."""
        out, err = capture.Output(self.cap), capture.Output(ERR_TAIL)
        watch = [t.out_r, t.err_r, self.wake_r]
        status, stopped, timed_out = None, False, False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                self._kill_run(pid)
                break
            ready, _, _ = select.select(watch, [], [], min(remaining, 0.05))
            for fd, sink in ((t.out_r, out), (t.err_r, err)):
                if fd in ready:
                    data = capture.drain(fd)
                    sink.feed(data)
                    if not data:  # end of file: every writer has exited; the exit itself is signalled
                        watch.remove(fd)
            if self.wake_r in ready:
                capture.drain(self.wake_r)
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WSTOPPED | os.WNOHANG)
            if info is not None:
                stopped = info.si_code == os.CLD_STOPPED
                status = info
                break
        if status is None:  # timed out, killed above
            wstatus = os.waitpid(pid, 0)[1]
        else:
            wstatus = None if stopped else _wstatus(status)
        out.feed(capture.drain(t.out_r))
        err.feed(capture.drain(t.err_r))
        duration = time.monotonic() - start
        return {
            "wstatus": wstatus,
            "stopped": stopped,
            "timed_out": timed_out,
            "out": out,
            "err": err,
            "pid": pid,
            "duration": duration,
        }

    def _kill_run(self, pid: int) -> None:
        if not self.walled:  # no PID namespace to sweep afterwards: its process group goes now
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        _kill(pid)

    def _settle(self, t: Tree, o: dict, base: State | None, text, tree, keep) -> dict:
        """The result of a watched process; registers it as a state when it paused and may be kept."""
        t.refs -= 1
        pid, duration = o["pid"], o["duration"]
        out = base.out.extended(o["out"]) if base else o["out"]
        state = None
        if o["stopped"]:
            tree = (tree or _parse(text)) if keep else None
            if tree is not None and self._dir_empty():
                sid = self.next_sid
                self.next_sid += 1
                elapsed = (base.elapsed if base else 0.0) + duration
                self._register(State(sid, pid, t, text, len(tree.body), text.count("\n"), out, elapsed))
                state = sid
            else:
                self._kill_run(pid)
                os.waitpid(pid, 0)
            res = _result(True, out.text(self.max_chars), None)
        else:
            res = self._failure(o, out)
        if t.refs == 0:
            t.close()
        self._clean(None if base else pid)
        res["state"] = state
        res["duration_s"] = duration
        return res

    def _failure(self, o: dict, out: capture.Output) -> dict:
        status = o["wstatus"]
        if o["timed_out"]:
            return _result(False, "", f"TimeoutError: execution exceeded {self.timeout_s:g} s", True)
        if os.WIFSIGNALED(status):  # killed: stderr is whatever the program wrote, not a report
            sig = os.WTERMSIG(status)
            if sig in (signal.SIGXCPU, signal.SIGKILL):
                cpu = limits.cpu_seconds(self.cfg["limits"]["cpu_s"], self.timeout_s)
                return _result(False, "", f"TimeoutError: CPU time limit of {cpu} s exceeded", True)
            return _result(
                False, out.text(self.max_chars), f"RuntimeError: program killed by {signal.Signals(sig).name}"
            )
        code = os.WEXITSTATUS(status)
        if code == 0:
            return _result(True, out.text(self.max_chars), None)
        tail = o["err"].tail
        if runner.ERROR_MARK in tail:
            error = tail.rsplit(runner.ERROR_MARK, 1)[1].decode("utf-8", "replace").rstrip("\n")
        else:  # no report from the runner: os._exit(code), or a crash that left a line behind
            lines = tail.decode("utf-8", "replace").strip().splitlines()
            error = lines[-1] if lines else f"SystemExit: {code}"
        return _result(False, out.text(self.max_chars), runner.truncate(error, self.max_chars))

    # ------------------------------------------------------------------ states

    def _register(self, state: State) -> None:
        state.tree.refs += 1
        self.states[state.sid] = state
        while len(self.states) > self.max_states:
            self._drop(next(iter(self.states.values())))

    def _drop(self, state: State) -> None:
        del self.states[state.sid]
        self.evicted.append(state.sid)
        _kill(state.pid)
        try:
            os.waitpid(state.pid, 0)
        except ChildProcessError:
            pass
        state.tree.refs -= 1
        if state.tree.refs == 0:
            state.tree.close()

    def _clean(self, group: int | None = None) -> None:
        """After every program: kill what it left behind, reap, empty the temp dir.

        ``group``: the process group of a fresh program. Its processes cannot leave it (the program
        filter refuses setpgid/setsid), so when it is empty nothing was left behind: no sweep of /proc."""
        keep = {s.pid for s in self.states.values()}
        fast = group is not None and self.program_filter is not None and _group_empty(group)
        if self.walled and not fast:
            # our PID namespace holds only us, the states and leftovers
            keep.update((1, os.getpid()))
            for name in os.listdir("/proc"):
                if name.isdigit() and int(name) not in keep:
                    _kill(int(name))
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            for state in [s for s in self.states.values() if s.pid == pid]:
                self._drop(state)
        capture.empty_dir(self.tmp_dir)

    def _dir_empty(self) -> bool:
        try:
            return not os.listdir(self.tmp_dir)
        except OSError:
            return False

    # ------------------------------------------------------------------ the child

    def _child(self, code, keep_after: float | None, fds: tuple[int, int, int, int]) -> None:
        status = 70
        try:
            if min(fds) < runner.FIRST_FREE_FD:  # copies above every fd in use first: a source
                fds = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1 + max(fds)) for fd in fds]  # may sit on a target
            for target, fd in zip((1, 2, runner.CMD_FD, runner.ACK_FD), fds):
                os.dup2(fd, target)
            os.closerange(runner.FIRST_FREE_FD, os.sysconf("SC_OPEN_MAX"))
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            gc.disable()  # the frozen heap is never collected anyway; one short program needs no cycle GC
            limits.confine(self.rlimits, self.tmp_dir)
            if self.program_filter is not None:
                self.program_filter.load_inherited()  # the zygote's filter set no_new_privs
            if self.guard is not None:
                guard.install(self.guard)
            runner.main(code, keep_after, self.prepared)
        except BaseException as e:
            os.write(2, f"\nSandboxError: confinement failed: {runner.format_error(e)}\n".encode())
        finally:
            os._exit(status)


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text, "<string>")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


def _suffix(base: State, text: str, tree) -> str | None:
    """``text`` minus ``base.text`` when that split is at a top-level statement boundary."""
    if not (text.startswith(base.text) and base.text.endswith("\n")) or len(tree.body) < base.n_stmts:
        return None
    suffix = text[len(base.text) :]
    parsed = _parse(suffix)
    return suffix if parsed is not None and len(parsed.body) == len(tree.body) - base.n_stmts else None


def _result(ok: bool, stdout: str, error: str | None, timed_out: bool = False) -> dict:
    return {"ok": ok, "stdout": stdout, "error": error, "timed_out": timed_out, "duration_s": 0.0, "state": None}


def _wstatus(info) -> int:
    if info.si_code == os.CLD_EXITED:
        return (info.si_status & 0xFF) << 8
    return info.si_status & 0x7F  # killed or dumped: the signal number


def _group_empty(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass
    return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def main(argv: list[str]) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    cfg = json.loads(argv[-1])
    # Programs import from the interpreter's stdlib and the given site dirs, not from here.
    sys.path[:] = [p for p in sys.path if p not in ("", here)] + [p for p in cfg["sys_path"] if p not in sys.path]
    # The protocol moves off fds 0/1 so nothing a library prints can corrupt it.
    fd_in, fd_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # fd 2 stays the worker's log (each program's process gets its own pipe there)
        os.dup2(devnull, fd)
    os.close(devnull)
    zygote = Zygote(cfg)
    protocol.write_frame(fd_out, {"hello": True, "pid": os.getpid()})
    zygote.serve(fd_in, fd_out)


if __name__ == "__main__":
    main(sys.argv)
