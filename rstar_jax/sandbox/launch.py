"""How sandbox workers are started: the wall around them, probed once per process.

The wall (docs/SANDBOX.md):

- **bubblewrap** (``bwrap``): each worker gets its own user, PID, network,
  IPC, UTS and cgroup namespaces, runs as uid 65534 with no capabilities and
  ``no_new_privs``, and sees a file system of read-only binds (``/usr``, the
  interpreter's prefix, the site-packages it imports, this directory), a
  fresh ``/proc``, a read-only minimal ``/dev`` and a size-limited tmpfs
  ``/tmp`` as its only writable place. The zygote is PID 1 of its namespace:
  programs cannot signal it, and when it dies everything in it dies.
- **seccomp** (``pyseccomp``, libseccomp's binding): filters built here, loaded
  by the worker (seccomp.py).
- **cgroups** (where this process may create them): per worker a ``pids``
  limit (fork bombs) and a ``memory`` limit that counts what ``RLIMIT_AS``
  does not (tmpfs pages, page cache, kernel memory).

``plan`` reports what is active and why not the rest (``Isolation``); a
missing mechanism is a ``RuntimeWarning`` and ``strict=True`` refuses.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

from rstar_jax.runs import pid_alive

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER_PATH = os.path.join(HERE, "worker.py")
WALL_TMP = "/tmp"  # the temp dir's path inside the wall
MECHANISMS = ("bubblewrap", "seccomp", "cgroup")
WALL_UID = 65534
TMP_PREFIX = "rstar-sandbox-"


@dataclasses.dataclass(frozen=True)
class Isolation:
    """What confines the programs of a Sandbox."""

    python: str  # interpreter the workers run
    sys_path: tuple[str, ...]  # site directories added to its path
    bwrap: str | None  # path of bubblewrap when the namespace wall is used
    seccomp: dict | None  # {"zygote": hex BPF, "program": hex BPF}
    cgroup_dirs: tuple[str, ...]  # per-kind cgroup parents (pids, memory) we may create groups in
    notes: tuple[str, ...] = ()  # what is missing, and why

    @property
    def active(self) -> tuple[str, ...]:
        have = {"bubblewrap": self.bwrap is not None, "seccomp": self.seccomp is not None}
        have["cgroup"] = bool(self.cgroup_dirs)
        return tuple(m for m in MECHANISMS if have[m])

    @property
    def walled(self) -> bool:
        """Namespaces and seccomp both active: the wall does not depend on Python."""
        return self.bwrap is not None and self.seccomp is not None

    @property
    def network_namespace(self) -> bool:
        return self.bwrap is not None

    @property
    def pid_namespace(self) -> bool:
        return self.bwrap is not None

    @property
    def drops_privileges(self) -> bool:
        return self.bwrap is not None


def worker_env(tmp_dir: str) -> dict[str, str]:
    """A minimal environment: no secrets of the caller reach programs."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": tmp_dir,
        "TMPDIR": tmp_dir,
        "PYTHONHASHSEED": "0",  # same set/dict order in every worker: cacheable results
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def make_tmp_root() -> str:
    """A fresh ``$TMPDIR/rstar-sandbox-PID-XXXXXXXX`` for one Sandbox (unwalled temp dirs, cgroup
    names). The folders of Sandboxes whose process is gone are removed first."""
    remove_dead_tmp_roots()
    return tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")


def remove_dead_tmp_roots(tmp_dir: str | None = None) -> list[str]:
    """Remove the sandbox temp folders in ``tmp_dir`` (default: the temp dir) whose owner process
    no longer exists; return them. Folders of live processes (or of other users' processes) stay."""
    tmp_dir = tmp_dir or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(tmp_dir)
    except OSError:
        return removed
    for name in names:
        m = re.fullmatch(re.escape(TMP_PREFIX) + r"(\d+)-\w+", name)
        if not m or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
            continue
        path = os.path.join(tmp_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _roots(iso_python: str, sys_path: tuple[str, ...]) -> list[str]:
    """Directories the wall binds read-only: the interpreter's prefix, site dirs, this package dir."""
    prefix = os.path.realpath(sys.base_prefix)
    out = [prefix] if not prefix.startswith("/usr/") and prefix != "/usr" else []
    for p in (*sys_path, HERE):
        if not any(p == r or p.startswith(r + "/") for r in out):
            out.append(p)
    return out


def bwrap_command(iso: Isolation, disk_mb: int) -> list[str]:
    """The bubblewrap prefix of one worker (a fresh set of namespaces and a tmpfs of ``disk_mb``)."""
    cmd = [iso.bwrap, "--unshare-all", "--unshare-user", "--uid", str(WALL_UID), "--gid", str(WALL_UID)]
    cmd += ["--die-with-parent", "--new-session", "--as-pid-1", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]
    for d in ("/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    for root in _roots(iso.python, iso.sys_path):
        cmd += ["--ro-bind", root, _inside(root, iso)]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev"]
    cmd += ["--size", str(disk_mb << 20), "--perms", "1777", "--tmpfs", WALL_TMP, "--chdir", WALL_TMP]
    return cmd


def _inside(path: str, iso: Isolation) -> str:
    """Where host ``path`` appears inside the wall: itself, except below the wall's temp dir (a
    checkout or venv under /tmp), which its tmpfs would hide: those roots move to /opt/rstar-wall/I."""
    if not (path == WALL_TMP or path.startswith(WALL_TMP + "/")):
        return path
    roots = _roots(iso.python, iso.sys_path)
    i = next(i for i, r in enumerate(roots) if path == r or path.startswith(r + "/"))
    return f"/opt/rstar-wall/{i}" + path[len(roots[i]) :]


def worker_command(iso: Isolation, cfg: dict, cgroup_procs: tuple[str, ...] = ()) -> list[str]:
    """Command line of one worker: join its cgroups, enter the wall, run the zygote."""
    if iso.bwrap:
        cfg = {**cfg, "sys_path": [_inside(p, iso) for p in cfg["sys_path"]]}
        python = [_inside(iso.python, iso), "-s", "-S", _inside(WORKER_PATH, iso), _json(cfg)]
    else:
        python = [iso.python, "-s", "-S", WORKER_PATH, _json(cfg)]
    wall = bwrap_command(iso, cfg["limits"]["disk_mb"]) + ["--"] if iso.bwrap else []
    if not cgroup_procs:
        return wall + python
    join = " && ".join(f"echo $$ > {p}" for p in cgroup_procs)
    return ["/bin/sh", "-c", f'{join} && exec "$@"', "sh", *wall, *python]


def _json(cfg: dict) -> str:
    import json

    return json.dumps(cfg)


def _site_dirs() -> tuple[str, ...]:
    return tuple(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p))


def _cgroup_dirs() -> tuple[tuple[str, ...], str | None]:
    """Writable (pids, memory) cgroup parents: v2 one dir for both, v1 one per controller."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return (), "no /proc/self/cgroup: no cgroup limits (fork bombs bounded by the pids of the wall only)"
    base = "/sys/fs/cgroup"
    if os.path.exists(f"{base}/cgroup.controllers"):  # v2
        path = next((p for h, c, p in lines if h == "0"), "/")
        dirs, wanted = [base + path.rstrip("/")], ["v2"]
    else:
        dirs, wanted = [], ["pids", "memory"]
        for ctrl in wanted:
            path = next((p for _, c, p in lines if ctrl in c.split(",")), None)
            if path is not None:
                dirs.append(f"{base}/{ctrl}{path.rstrip('/')}")
    if len(dirs) < len(wanted):
        return (), "pids or memory cgroup controller not mounted: no cgroup limits per worker"
    probe = [os.path.join(d, f"{TMP_PREFIX}probe-{os.getpid()}") for d in dirs]
    try:
        for p in probe:
            os.mkdir(p)
    except OSError as e:
        return (), f"cannot create cgroups ({e.strerror}): no pids/memory cgroup limits per worker"
    finally:
        for p in probe:
            if os.path.isdir(p):
                os.rmdir(p)
    return tuple(dirs), None


def make_cgroups(iso: Isolation, name: str, max_processes: int, memory_bytes: int) -> tuple[str, ...]:
    """Create one worker's cgroups; return the ``cgroup.procs`` files it must join (empty if none)."""
    procs = []
    for parent in iso.cgroup_dirs:
        d = os.path.join(parent, name)
        try:
            os.makedirs(d, exist_ok=True)
            v2 = os.path.exists(os.path.join(d, "pids.max")) and os.path.exists(os.path.join(d, "memory.max"))
            settings = (
                {"pids.max": max_processes, "memory.max": memory_bytes}
                if v2
                else {"pids.max": max_processes}
                if "/pids" in parent
                else {"memory.limit_in_bytes": memory_bytes}
            )
            for key, value in settings.items():
                with open(os.path.join(d, key), "w") as f:
                    f.write(str(value))
            procs.append(os.path.join(d, "cgroup.procs"))
        except OSError:
            continue
    return tuple(procs)


def remove_dead_cgroups(iso: Isolation) -> None:
    """Remove the (empty) worker cgroups of Sandboxes whose process is gone (killed: no cleanup ran)."""
    for parent in iso.cgroup_dirs:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            m = re.match(re.escape(TMP_PREFIX) + r"(\d+)-", name)
            if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
                try:
                    os.rmdir(os.path.join(parent, name))
                except OSError:
                    pass


def remove_cgroups(iso: Isolation, name: str, wait_s: float = 2.0) -> None:
    """Remove one worker's cgroups (its processes may take a moment to be gone)."""
    deadline = time.monotonic() + wait_s
    for parent in iso.cgroup_dirs:
        path = os.path.join(parent, name)
        while os.path.isdir(path):
            try:
                os.rmdir(path)
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)


def _bwrap_works(bwrap: str, iso: Isolation) -> str | None:
    """None when a walled interpreter starts here, else why not."""
    probe = dataclasses.replace(iso, bwrap=bwrap)
    cmd = bwrap_command(probe, 1) + ["--", iso.python, "-s", "-S", "-c", "import os; print(os.getuid())"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=worker_env(WALL_TMP), cwd="/")
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    if out.returncode != 0 or out.stdout.strip() != str(WALL_UID):
        return (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
    return None


@functools.lru_cache(maxsize=None)
def plan(strict: bool = False, use_bwrap: bool = True, use_seccomp: bool = True, use_cgroups: bool = True) -> Isolation:
    """Probe once per process which wall this machine allows; ``strict`` raises instead of degrading."""
    notes = []
    iso = Isolation(os.path.realpath(sys.executable), _site_dirs(), None, None, ())
    if use_seccomp:
        try:
            from rstar_jax.sandbox import seccomp

            iso = dataclasses.replace(iso, seccomp=seccomp.build())
        except Exception as e:  # ImportError (no pyseccomp / libseccomp), OSError
            notes.append(f"seccomp unavailable ({type(e).__name__}: {e}): no syscall filter")
    else:
        notes.append("seccomp disabled by the caller")
    bwrap = shutil.which("bwrap") if use_bwrap else None
    if bwrap is None:
        notes.append(
            "bubblewrap "
            + ("disabled by the caller" if use_bwrap is False else "not found (apt install bubblewrap)")
            + ": no namespaces; programs run as this user with the host's file system behind the audit hook only"
        )
    else:
        why = _bwrap_works(bwrap, iso)
        if why is None:
            iso = dataclasses.replace(iso, bwrap=bwrap)
        else:
            notes.append(f"bubblewrap cannot start a wall here ({why}; user namespaces disabled?): no namespaces")
    if use_cgroups:
        dirs, why = _cgroup_dirs()
        iso = dataclasses.replace(iso, cgroup_dirs=dirs)
        if why:
            notes.append(why)
    iso = dataclasses.replace(iso, notes=tuple(notes))
    if not iso.walled:
        message = "rstar_jax.sandbox: no OS-level wall (" + "; ".join(notes) + ")"
        if strict:
            raise RuntimeError(message + "; strict=True refuses to run programs without it")
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return iso
