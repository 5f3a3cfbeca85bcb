"""One sandbox worker as the parent sees it: its process, its pipe, what it has in flight.

A worker is a zygote (worker.py) started inside the wall (launch.py); writes
to it never block (unsent bytes wait in ``pending``), and killing it takes its
whole process tree and cgroups with it.
"""

from __future__ import annotations

import collections
import os
import selectors
import shutil
import signal
import subprocess
import time
from typing import TYPE_CHECKING

from rstar_jax.sandbox import launch, protocol

if TYPE_CHECKING:
    from rstar_jax.sandbox.pool import Sandbox


class Worker:
    """One zygote process and the jobs it has been sent but not answered."""

    def __init__(self, kind: str, index: int, box: "Sandbox"):
        iso, limits, tmp_root = box.isolation, box.limits, box._tmp_root
        self.kind = kind
        self.iso = iso
        self.name = f"{os.path.basename(tmp_root)}-{kind}{index}"
        if iso.bwrap:
            host_tmp, self.tmp_dir = tmp_root, launch.WALL_TMP  # a tmpfs inside the wall
        else:
            host_tmp = self.tmp_dir = os.path.join(tmp_root, f"{kind}{index}")
            os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        cfg = {
            "kind": kind,
            "sys_path": list(iso.sys_path),
            "tmp_dir": self.tmp_dir,
            "limits": limits.to_json(),
            "seccomp": iso.seccomp,
            "pid_namespace": iso.pid_namespace,
            "max_states": box.max_states,
            "audit_hook": box.audit_hook,
            "continue_after_s": box.continue_after_s,
        }
        memory = (2 * limits.memory_mb + limits.disk_mb + 1024) << 20  # backstop: RLIMIT_AS is per process
        procs = launch.make_cgroups(iso, self.name, limits.max_processes, memory)
        self.log_path = os.path.join(tmp_root, f"{kind}{index}.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                launch.worker_command(iso, cfg, procs),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=launch.worker_env(self.tmp_dir),
                cwd=host_tmp,
                start_new_session=True,
                bufsize=0,
            )
        self.fd_in, self.fd_out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self.fd_in, False)  # writes never block: unsent bytes wait in self.pending
        self.pending = b""
        self.reader = protocol.FrameReader()
        self.ready = False
        self.inflight: set[int] = set()  # job ids sent, not yet answered (answers come in any order)
        self.since = time.monotonic()  # last sign of progress while jobs are in flight
        self.served = 0
        self.states: dict[int, bytes] = {}  # kept state id -> program key

    def send(self, jobs: list[tuple[int, str, int | None]]) -> None:
        frame = {"jobs": [{"id": i, "code": code, "base": base, "keep": True} for i, code, base in jobs]}
        self.pending += protocol.encode(frame)
        if not self.inflight:
            self.since = time.monotonic()
        self.inflight.update(i for i, _, _ in jobs)
        self.flush()

    def flush(self) -> None:
        """Write what the worker will take now; raises OSError when it has gone away."""
        while self.pending:
            try:
                n = os.write(self.fd_in, self.pending)
            except BlockingIOError:
                return
            self.pending = self.pending[n:]

    def receive(self) -> list[dict] | None:
        """Messages that arrived (one per job result, or the hello); None when the worker has gone away."""
        try:
            data = os.read(self.fd_out, 1 << 16)
        except OSError:
            return None
        if not data:
            return None
        try:
            frames = self.reader.feed(data)
        except protocol.ProtocolError:
            return None
        return [msg for frame in frames for msg in (frame["results"] if "results" in frame else [frame])]

    def log_tail(self, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        kill_tree(self.proc.pid)
        for f in (self.proc.stdin, self.proc.stdout):
            f.close()
        self.proc.wait()
        launch.remove_cgroups(self.iso, self.name)

    def close(self, grace_s: float = 2.0) -> None:
        try:
            os.set_blocking(self.fd_in, True)
            self.proc.stdin.close()  # end of input: the zygote finishes and exits
            self.proc.wait(timeout=grace_s)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


def descendants(pid: int) -> list[int]:
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


def kill_tree(pid: int) -> None:
    """SIGKILL a worker, its program child(ren) and their process groups."""
    victims = descendants(pid)
    for target in [pid, *victims]:
        for kill in (os.killpg, os.kill):
            try:
                kill(target, signal.SIGKILL)
            except OSError:
                pass


def shutdown(workers: list[Worker], tmp_root: str) -> None:
    for w in workers:
        w.close()
    workers.clear()
    shutil.rmtree(tmp_root, ignore_errors=True)


def readable(fd: int, timeout: float) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout))
