"""Seccomp-bpf filters for the sandbox: built in the parent with libseccomp, loaded raw in the wall.

Two filters, stacked (the kernel applies every loaded filter; the strictest
answer wins):

- ``zygote``: loaded by the worker before it serves programs, inherited by
  every process in the wall. No ``execve``/``execveat``, no sockets, no
  ``ptrace``/``process_vm_*``/``pidfd_getfd``, no ``mount``/``unshare``/
  ``setns``/``chroot``/``pivot_root``, no namespace flags on ``clone``
  (``clone3`` answers ENOSYS so glibc falls back to ``clone``), no
  ``memfd_create`` or SysV shared memory (memory that ``RLIMIT_AS`` would not
  count), no ``bpf``/``perf_event_open``/``userfaultfd``/``io_uring``/keyrings/
  modules/``mknod``.
- ``program``: loaded by each program's process after it is forked, before
  any untrusted code. No signals to other processes (``kill``, ``tkill``,
  ``rt_*sigqueueinfo``, ``pidfd_*``); ``tgkill`` only with SIGSTOP (how a
  finished program pauses itself for incremental execution); no
  ``setpgid``/``setsid`` (it cannot leave the group its worker kills).

Refusals are ``EPERM`` (Python raises ``PermissionError``), so a program gets
an error rather than a crash. The filters are exported as raw BPF by
``pyseccomp`` (libseccomp's Python binding) in the parent and loaded in the
worker with ``prctl(PR_SET_SECCOMP)``: the wall has no ``ldconfig`` for
libseccomp to be found by, and loading needs only libc. This file is
standard library only at import time — the worker loads it without the
package.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import tempfile

ZYGOTE_DENIED = (
    "execve",
    "execveat",
    "socket",
    "socketpair",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "memfd_create",
    "memfd_secret",
    "shmget",
    "shmat",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "open_by_handle_at",
    "name_to_handle_at",
    "mknod",
    "mknodat",
    "fanotify_init",
    "move_pages",
    "migrate_pages",
)
PROGRAM_DENIED = (
    "kill",
    "tkill",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "pidfd_open",
    "pidfd_send_signal",
    "setpgid",
    "setsid",
)
# clone flags that create namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME)
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


def build() -> dict[str, str]:
    """{"zygote": hex BPF, "program": hex BPF} for this machine's architecture (needs pyseccomp)."""
    import pyseccomp as sc  # parent side only

    def export(f) -> str:
        with tempfile.TemporaryFile() as tmp:
            f.export_bpf(tmp)
            tmp.seek(0)
            return tmp.read().hex()

    eperm = sc.ERRNO(errno.EPERM)
    zygote = sc.SyscallFilter(sc.ALLOW)
    for name in ZYGOTE_DENIED:
        _add(zygote, eperm, name)
    for bit in range(32):  # one rule per namespace flag: any of them set is refused
        flag = 1 << bit
        if CLONE_NAMESPACE_FLAGS & flag:
            zygote.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    zygote.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    program = sc.SyscallFilter(sc.ALLOW)
    for name in PROGRAM_DENIED:
        _add(program, eperm, name)
    program.add_rule(eperm, "tgkill", sc.Arg(2, sc.NE, int(signal.SIGSTOP)))
    return {"zygote": export(zygote), "program": export(program)}


def _add(f, action, name: str) -> None:
    try:
        f.add_rule(action, name)
    except (ValueError, OSError):  # a syscall this kernel/libseccomp does not know: nothing to deny
        pass


def _libc(use_errno: bool = True):
    libc = ctypes.CDLL(None, use_errno=use_errno)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Loader:
    """Loads a prepared filter with one ``prctl`` (cheap enough for every forked program).

    Prepared in the worker before any fork, so a child only makes the foreign call."""

    def __init__(self, bpf_hex: str):
        code = bytes.fromhex(bpf_hex)
        if not code or len(code) % 8:
            raise ValueError("malformed BPF program")
        self._buf = ctypes.create_string_buffer(code, len(code))
        self._prog = _SockFprog(len(code) // 8, ctypes.cast(self._buf, ctypes.c_void_p))
        self._prctl = _libc(use_errno=False).prctl  # errno bookkeeping would cost every child
        # Converted once: a forked child only makes the call (each conversion would touch, and so
        # copy, pages of the zygote's heap).
        self._args = tuple(ctypes.c_ulong(v) for v in (SECCOMP_MODE_FILTER, ctypes.addressof(self._prog), 0, 0))
        self._option = ctypes.c_int(PR_SET_SECCOMP)

    def load(self) -> None:
        """Load the filter (``no_new_privs`` first, which a child inherits from its zygote anyway)."""
        if self._prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError("prctl(PR_SET_NO_NEW_PRIVS) failed")
        self.load_inherited()

    def load_inherited(self) -> None:
        """Load the filter in a process whose ``no_new_privs`` is already set."""
        if self._prctl(self._option, *self._args) != 0:
            raise OSError("prctl(PR_SET_SECCOMP) failed")


def prctl(option: int, value: int) -> None:
    """``prctl(option, value)`` (PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER); raises OSError."""
    if _libc().prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
