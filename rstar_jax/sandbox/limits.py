"""Resource limits for one program, and the OS-level confinement of a program child.

``Limits`` is the parent-side description (validated, JSON-serialisable).
``confine`` runs inside a freshly forked program child, before any untrusted
code: its own process group, the private temp dir, rlimits. Standard library only — the worker loads this
file without the rstar_jax package (and so without JAX).
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource

MB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-program limits.

    timeout_s: wall-clock deadline, enforced by the worker with SIGKILL.
    cpu_s: RLIMIT_CPU (whole seconds, rounded up); default ceil(timeout_s).
    memory_mb: address space a program may map on top of what its worker
        already has mapped (the worker's own size varies: numpy reserves a lot).
    max_output_chars: captured stdout beyond this keeps its head and tail.
    file_size_mb: RLIMIT_FSIZE: the largest file a program may write.
    max_open_files: RLIMIT_NOFILE.
    max_program_chars: longer programs are rejected without running.
    disk_mb: size of the worker's temp-dir tmpfs (all files of a program together), inside the wall.
    max_processes: pids cgroup limit of one worker (its zygote, paused states and programs), where available.
    """

    timeout_s: float = 5.0
    cpu_s: float | None = None
    memory_mb: int = 1024
    max_output_chars: int = 1024
    file_size_mb: int = 16
    max_open_files: int = 64
    max_program_chars: int = 200_000
    disk_mb: int = 64
    max_processes: int = 256

    def __post_init__(self):
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(f"timeout_s must be a positive number, got {self.timeout_s!r}")
        if self.cpu_s is not None and not (self.cpu_s > 0 and math.isfinite(self.cpu_s)):
            raise ValueError(f"cpu_s must be a positive number or None, got {self.cpu_s!r}")
        for name in (
            "memory_mb",
            "max_output_chars",
            "file_size_mb",
            "max_open_files",
            "max_program_chars",
            "disk_mb",
            "max_processes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_open_files < 16:
            raise ValueError("max_open_files below 16 breaks the interpreter's own file use")

    @property
    def cpu_seconds(self) -> int:
        return cpu_seconds(self.cpu_s, self.timeout_s)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def cpu_seconds(cpu_s: float | None, timeout_s: float) -> int:
    """RLIMIT_CPU has whole-second granularity."""
    return max(1, math.ceil(cpu_s if cpu_s is not None else timeout_s))


def mapped_bytes() -> int:
    """Virtual memory this process has mapped now (the base the AS limit adds to)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def rlimits(limits: dict, base_bytes: int) -> tuple[tuple[int, tuple[int, int]], ...]:
    """The ``(resource, (soft, hard))`` settings of one program: lower than now, never raisable again.

    Computed once in the zygote: its program processes inherit its limits, so the result is the
    same there, and a forked child only makes the calls (less of the zygote's heap touched, and so
    copied)."""
    cpu = cpu_seconds(limits["cpu_s"], limits["timeout_s"])
    settings = (
        # SIGXCPU at the soft limit, SIGKILL one second later if SIGXCPU is ignored.
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, base_bytes + limits["memory_mb"] * MB, None),
        (resource.RLIMIT_FSIZE, limits["file_size_mb"] * MB, None),
        (resource.RLIMIT_NOFILE, limits["max_open_files"], None),
        (resource.RLIMIT_CORE, 0, None),
    )
    out = []
    for which, soft, hard in settings:
        _, old_hard = resource.getrlimit(which)
        hard = soft if hard is None else hard
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        out.append((which, (soft, hard)))
    return tuple(out)


def confine(settings: tuple[tuple[int, tuple[int, int]], ...], tmp_dir: str) -> None:
    """Confine the calling (just forked) program process; raises on failure.

    Own process group first (so a worker without a PID namespace can kill all
    it starts), then the temp dir, then the limits of ``rlimits``.
    """
    os.setpgid(0, 0)
    os.chdir(tmp_dir)
    for which, limit in settings:
        resource.setrlimit(which, limit)


def limit_processes(n: int) -> None:
    """RLIMIT_NPROC for a worker inside its own user namespace: a fork-bomb bound where no pids
    cgroup can be made (an unprivileged caller). The kernel exempts a root uid outside, which has
    the cgroup instead."""
    _, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    n = n if hard == resource.RLIM_INFINITY else min(n, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
