"""How sandbox workers are started: interpreter, network namespace, user to drop to.

Decided once per process by probing what this machine allows, and reported
as an ``Isolation`` record (with the reasons for anything that degraded), so
a caller can see exactly which mechanisms are active.

- Network: workers start under ``unshare -n`` (an empty network namespace)
  when that works; an unprivileged caller tries ``unshare -rn``. Otherwise
  only the audit hook blocks sockets.
- User: when running as root, program children drop to ``nobody``. That user
  must be able to read the interpreter's standard library and site-packages
  (a pyenv or venv under /root is unreadable to it), so the launcher probes
  the current interpreter and then other installations of the same
  major.minor version (e.g. /usr/bin/python3.11, with our site-packages on
  its path). If none works, children stay root and the fallbacks are the
  audit hook and rlimits (RLIMIT_NPROC does not bind root).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings

from rstar_jax.runs import pid_alive

WORKER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
UNPRIVILEGED_USER = "nobody"


@dataclasses.dataclass(frozen=True)
class Isolation:
    """What confines the programs of a Sandbox."""

    python: str  # interpreter the workers run
    sys_path: tuple[str, ...]  # site directories added to its path
    net_prefix: tuple[str, ...]  # command prefix giving an empty network namespace, or ()
    uid: int | None  # user the program children run as (None: unchanged)
    gid: int | None
    notes: tuple[str, ...] = ()  # what degraded, and why

    @property
    def network_namespace(self) -> bool:
        return bool(self.net_prefix)

    @property
    def drops_privileges(self) -> bool:
        return self.uid is not None


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


TMP_PREFIX = "rstar-sandbox-"


def make_tmp_root() -> str:
    """A fresh ``$TMPDIR/rstar-sandbox-PID-XXXXXXXX`` for one Sandbox's workers. The folders of
    Sandboxes whose process is gone (killed: no chance to clean up) are removed first."""
    remove_dead_tmp_roots()
    path = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
    os.chmod(path, 0o711)  # the unprivileged user must traverse it to reach its own dir
    return path


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


def worker_command(iso: Isolation, cfg: dict, probe: bool = False) -> list[str]:
    return [*iso.net_prefix, iso.python, "-s", "-S", WORKER_PATH, *(["--probe"] if probe else []), json.dumps(cfg)]


def _site_dirs() -> tuple[str, ...]:
    return tuple(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p))


def _net_prefix() -> tuple[tuple[str, ...], str | None]:
    unshare = shutil.which("unshare")
    if unshare is None:
        return (), "unshare not found: no network namespace, sockets are refused by the audit hook only"
    options = [(unshare, "-n")] if os.geteuid() == 0 else [(unshare, "-n"), (unshare, "-rn")]
    for prefix in options:
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                return prefix, None
        except (OSError, subprocess.SubprocessError):
            pass
    return (), "unshare -n is not permitted here: sockets are refused by the audit hook only"


def _candidates() -> list[str]:
    """The current interpreter, then other installs of the same major.minor version."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    seen, out = set(), []
    for path in [
        sys.executable,
        *(os.path.join(d, version) for d in ("/usr/bin", "/usr/local/bin", "/bin")),
        shutil.which(version),
    ]:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                out.append(path)
    return out


def _probe(python: str, net_prefix: tuple[str, ...], cfg: dict) -> dict | None:
    iso = Isolation(python, cfg["sys_path"], net_prefix, cfg["uid"], cfg["gid"])
    try:
        out = subprocess.run(
            worker_command(iso, cfg, probe=True),
            capture_output=True,
            text=True,
            timeout=60,
            env=worker_env("/tmp"),
            cwd="/",
        )
        return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


@functools.lru_cache(maxsize=None)
def plan(drop_privileges: bool = True, isolate_network: bool = True) -> Isolation:
    """Probe once per process which isolation this machine allows."""
    notes = []
    net_prefix: tuple[str, ...] = ()
    if isolate_network:
        net_prefix, note = _net_prefix()
        if note:
            notes.append(note)
    site = _site_dirs()
    if not (drop_privileges and os.geteuid() == 0):
        if os.geteuid() == 0:
            notes.append("running as root with drop_privileges=False: programs run as root")
        return Isolation(sys.executable, site, net_prefix, None, None, tuple(notes))
    import pwd

    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        uid = gid = 65534
    cfg = {"sys_path": list(site), "uid": uid, "gid": gid}
    want = list(sys.version_info[:2])
    for python in _candidates():
        res = _probe(python, net_prefix, cfg)
        if res and res["drop_ok"] and res["version"] == want:
            if python != sys.executable:
                notes.append(
                    f"{sys.executable} is unreadable to {UNPRIVILEGED_USER}: workers run {python} "
                    f"with this environment's site-packages"
                )
            return Isolation(python, site, net_prefix, uid, gid, tuple(notes))
    notes.append(
        f"no Python {want[0]}.{want[1]} readable by {UNPRIVILEGED_USER} was found: programs run as root, "
        "confined by rlimits and the audit hook only"
    )
    warnings.warn("rstar_jax.sandbox: " + notes[-1], RuntimeWarning, stacklevel=2)
    return Isolation(sys.executable, site, net_prefix, None, None, tuple(notes))
