"""The audit hook that a program child installs on itself before running untrusted code.

Audit hooks are not a security boundary on their own (native code can skip
them); they back up the OS-level confinement in limits.py (separate user,
rlimits, network namespace), and are the only file-system fence when those
are unavailable. See docs/SANDBOX.md.

The hook is written so that the program cannot switch it off from Python:
- it is one function whose free variables are immutable (str, tuples,
  frozensets, C functions) bound when it is installed; it looks nothing up in
  module globals or builtins, which a program could monkeypatch;
- no Python object refers to it except the interpreter's hook list, and
  heap walking (gc.get_objects & co.) and frame tracing are blocked.

Policy: process creation, signals to other processes, sockets, ctypes,
rlimit changes, chdir, links and ownership changes are refused; writes (and
deletes, renames, mkdir) only inside the private temp dir; reads only inside
the temp dir, the Python installation's import roots and a few devices.
Standard library only — the worker loads this file without the package.
"""

from __future__ import annotations

import os
import sys

# Whole events refused.
DENIED_EVENTS = frozenset(
    {
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "subprocess.Popen",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "os.chdir",
        "os.chroot",
        "os.symlink",
        "os.link",
        "os.chown",
        "os.lchown",
        "os.chflags",
        "os.setxattr",
        "os.removexattr",
        "os.add_dll_directory",
        "os.startfile",
        "resource.setrlimit",
        "resource.prlimit",
        "sys.settrace",
        "sys.setprofile",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "webbrowser.open",
        "builtins.breakpoint",
        "sys.remote_exec",
        "sys.addaudithook",
    }
)
DENIED_PREFIXES = ("socket.", "ctypes.", "_winapi.", "winreg.", "msvcrt.")
# Importing these is refused (some may already be imported by numpy/sympy; their
# dangerous entry points are then refused by the events above or disarmed below).
DENIED_IMPORTS = frozenset(
    {
        "ctypes",
        "_ctypes",
        "cffi",
        "_posixsubprocess",
        "subprocess",
        "multiprocessing",
        "_multiprocessing",
        "socket",
        "_socket",
        "ssl",
        "_ssl",
        "pty",
        "_xxsubinterpreters",
    }
)
# Events that modify the file system: (event, number of leading path arguments,
# positions of dir_fd arguments, -1 when absent). Paths must lie in the temp dir.
WRITE_PATH_EVENTS = (
    ("os.remove", 1, (1,)),
    ("os.rmdir", 1, (1,)),
    ("os.mkdir", 1, (2,)),
    ("os.rename", 2, (2, 3)),
    ("os.truncate", 1, ()),
    ("os.utime", 1, (3,)),
    ("os.chmod", 1, (2,)),
)
WRITE_PATH_NAMES = frozenset(name for name, _, _ in WRITE_PATH_EVENTS)
READ_PATH_EVENTS = frozenset({"os.listdir", "os.scandir"})
DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"})


def disarm() -> None:
    """Replace entry points that act on the system without raising an audit event.

    ``_posixsubprocess.fork_exec`` (reachable through modules numpy/sympy
    imported) starts processes; ``os.mkfifo``/``os.mknod`` create files. For an
    unprivileged user RLIMIT_NPROC already stops the first and file
    permissions confine the others to world-writable directories; this covers
    the rest on a best-effort basis (see docs/SANDBOX.md).
    """

    def refuse(*args, **kwargs):
        raise PermissionError("sandbox: this operation is not allowed")

    for mod_name, attrs in (
        ("_posixsubprocess", ("fork_exec",)),
        ("os", ("mkfifo", "mknod")),
        ("posix", ("mkfifo", "mknod")),
    ):
        mod = sys.modules.get(mod_name)
        for attr in attrs:
            if mod is not None and hasattr(mod, attr):
                setattr(mod, attr, refuse)


def policy(tmp_dir: str, read_roots: tuple[str, ...], allow_fork: bool = False) -> tuple:
    """The hook's settings (immutable), computed once in the zygote for every program's process.

    ``allow_fork``: inside the wall a paused program forks its continuation (runner.py); seccomp
    stops any exec, and the worker kills whatever a program leaves behind."""
    tmp = os.path.normpath(os.path.abspath(tmp_dir))
    read_prefixes = tuple(os.path.normpath(os.path.abspath(r)).rstrip("/") + "/" for r in read_roots)
    denied_events = DENIED_EVENTS - {"os.fork"} if allow_fork else DENIED_EVENTS
    return tmp, read_prefixes, denied_events


def install(settings: tuple) -> None:
    """Install the policy hook (settings from ``policy``) for the rest of this process's life.

    The hook itself is made here, in the program's process: no object outside the interpreter's
    hook list refers to it."""
    sys.addaudithook(_make_hook(*settings))


def _make_hook(tmp: str, read_prefixes: tuple[str, ...], denied_events: frozenset[str]):
    # Everything the hook uses is bound here, as C callables or immutable values.
    tmp_slash = tmp.rstrip("/") + "/"
    read_prefixes = read_prefixes + (tmp_slash,)
    devices, denied_prefixes, denied_imports = DEVICES, DENIED_PREFIXES, DENIED_IMPORTS
    write_events = WRITE_PATH_EVENTS
    write_names = WRITE_PATH_NAMES
    read_events = READ_PATH_EVENTS
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    str_type, bytes_type, int_type, none_type = str, bytes, int, type(None)
    type_of, len_of = type, len
    decode, split, join, startswith, partition = bytes.decode, str.split, str.join, str.startswith, str.partition
    denied = PermissionError

    def hook(event, args):
        if event in denied_events or startswith(event, denied_prefixes):
            raise denied(f"sandbox: {event} is not allowed")
        if event == "import":
            if partition(args[0], ".")[0] in denied_imports:
                raise denied(f"sandbox: importing {args[0]} is not allowed")
            return
        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            writing = (type_of(flags) is int_type and flags & write_flags != 0) or (
                type_of(mode) is str_type and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)
            )
            # os.open (mode None) may be relative to a dir_fd we cannot see: writes need absolute paths.
            checks = ((path, writing, type_of(mode) is none_type),)
        elif event in read_events:
            checks = ((args[0], False, False),)
        elif event in write_names:
            checks = ()
            for name, n_paths, dir_fds in write_events:
                if name == event:
                    for i in dir_fds:
                        if len_of(args) > i and args[i] != -1:
                            raise denied(f"sandbox: {event} relative to a directory fd is not allowed")
                    checks = [(a, True, False) for a in args[:n_paths]]
        else:
            return
        for path, writing, must_be_absolute in checks:
            kind = type_of(path)
            if kind is int_type or kind is none_type:  # an already open fd, or the cwd (the temp dir)
                continue
            if kind is bytes_type:
                path = decode(path, "utf-8", "surrogateescape")
            elif kind is not str_type:
                raise denied(f"sandbox: {event} needs a str or bytes path")
            if not startswith(path, "/"):
                if must_be_absolute and writing:
                    raise denied(f"sandbox: {event} of a relative path for writing is not allowed")
                path = tmp_slash + path
            parts = []
            for seg in split(path, "/"):
                if seg == "" or seg == ".":
                    continue
                if seg == "..":
                    if len_of(parts):
                        parts.pop()
                else:
                    parts.append(seg)
            norm = "/" + join("/", parts)
            if norm == tmp or startswith(norm, tmp_slash):
                continue
            if not writing and (norm in devices or startswith(norm + "/", read_prefixes)):
                continue
            raise denied(f"sandbox: {event} of {norm!r} is not allowed")

    return hook
