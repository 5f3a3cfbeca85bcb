"""Hostile programs: each must be contained, and afterwards the pool must still work,
leave no process behind, and the host's files must be untouched.

Two layers: the corpus runs with everything on (the audit hook answers first, with friendly
errors); the per-mechanism tests below run with the audit hook off, so that only the OS-level
wall (namespaces, seccomp, rlimits, cgroups) stands between a program and the host."""

from __future__ import annotations

import os
import sys
import time
import uuid

import pytest

from rstar_jax.sandbox import Sandbox
from rstar_jax.sandbox.workers import descendants

TIMEOUT = 1.5
SECRET = "rstar-secret-" + uuid.uuid4().hex
TAG = uuid.uuid4().hex[:12]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STDLIB = os.path.dirname(os.__file__)
HOME = os.path.expanduser("~")
# Paths no program may create (checked after the corpus).
MARKERS = [
    f"/tmp/rstar_pwned_{TAG}",
    f"/dev/shm/rstar_pwned_{TAG}",
    f"/var/tmp/rstar_pwned_{TAG}",
    os.path.join(HOME, f"rstar_pwned_{TAG}"),
    os.path.join(REPO, f"rstar_pwned_{TAG}"),
    os.path.join(STDLIB, f"rstar_pwned_{TAG}"),
    f"/tmp/rstar_fifo_{TAG}",
]
M = MARKERS[0]
PAYLOAD = f"import os; os.system('touch {M}')"


def anything(r):
    return True


def not_ok(r):
    return not r.ok


def timed_out(r):
    return r.timed_out and not r.ok and r.error.startswith("TimeoutError")


def denied(r):
    return not r.ok and (
        "PermissionError" in r.error
        or "ImportError" in r.error
        or "ModuleNotFoundError" in r.error
        or "RuntimeError" in r.error
    )


def error_has(*words):
    return lambda r: not r.ok and any(w in r.error for w in words)


def no_secret(r):
    return SECRET not in r.stdout and SECRET not in (r.error or "")


def corpus(canary: str, canary_dir: str) -> list[tuple[str, str, object]]:
    return [
        # runaway computation and blocking
        ("busy loop", "while True:\n    pass", timed_out),
        ("sleep", "import time\ntime.sleep(100)", timed_out),
        ("huge power", "x = 10 ** (10 ** 10)", timed_out),
        (
            "ignore cpu signals",
            "import signal\nfor s in (signal.SIGXCPU, signal.SIGALRM, signal.SIGTERM):\n"
            "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass",
            timed_out,
        ),
        ("output flood forever", "while True:\n    print('x' * 1000)", timed_out),
        ("output flood once", "print('y' * 10**7)", lambda r: r.ok and len(r.stdout) < 2000),
        ("stdin read", "print(input())", error_has("EOFError")),
        ("stdin read raw", "import sys\nprint(repr(sys.stdin.read()))", lambda r: r.stdout == "''\n"),
        # processes
        # Inside the wall a fork is allowed (paused programs fork their continuations); what it
        # forks cannot exec and is killed after the program (test_pool_still_works_and_nothing_lingers).
        ("fork", "import os\nos.fork()", anything),
        ("fork bomb", "import os\nwhile True:\n    os.fork()", anything),
        ("subprocess", f"import subprocess\nsubprocess.run(['touch', '{M}'])", denied),
        ("os.system", f"import os\nos.system('touch {M}')", denied),
        ("os.popen", f"import os\nos.popen('touch {M}').read()", denied),
        ("execv", f"import os\nos.execv('/usr/bin/touch', ['touch', '{M}'])", denied),
        ("posix_spawn", f"import os\nos.posix_spawn('/usr/bin/touch', ['touch', '{M}'], {{}})", denied),
        (
            "fork_exec via sys.modules",
            "import sys\nimport numpy\nfe = sys.modules['_posixsubprocess'].fork_exec\n"
            f"fe(['/usr/bin/touch', '{M}'], [b'/usr/bin/touch'], True, (), None, None, -1, -1, -1, -1, -1, -1,"
            " -1, -1, False, False, None, None, None, -1, None, False)",
            not_ok,
        ),
        ("multiprocessing", "import multiprocessing\nmultiprocessing.Process(target=print).start()", denied),
        ("pty", "import pty\npty.spawn('/bin/sh')", denied),
        (
            "lingering thread",
            f"import threading, time\ndef later():\n    time.sleep(0.5)\n"
            f"    open('{M}', 'w').write('x')\nthreading.Thread(target=later).start()\nprint('main done')",
            lambda r: "main done" not in r.stdout or r.ok,
        ),
        ("kill parent", "import os\nos.kill(os.getppid(), 9)", denied),
        ("kill everything", "import os\nos.kill(-1, 9)", denied),
        (
            "setuid root",
            "import os\nos.setuid(0)\nprint('root!')",
            lambda r: "root!" not in r.stdout or os.geteuid() != 0,
        ),
        # network
        ("socket connect", "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)", denied),
        ("raw _socket", "import _socket\n_socket.socket()", denied),
        ("urllib", "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=1)", denied),
        # files: writes, deletes, reads
        ("write home", f"open('{MARKERS[3]}', 'w').write('x')", denied),
        # denied, or (a checkout under /tmp, whose packages the wall binds elsewhere) not there at all
        ("write repo", f"open('{MARKERS[4]}', 'w').write('x')", lambda r: denied(r) or "FileNotFoundError" in r.error),
        ("write tmp", f"open('{M}', 'w').write('x')", anything),  # the wall's /tmp is the private tmpfs
        ("write shm", f"open('{MARKERS[1]}', 'w').write('x')", denied),
        (
            "write stdlib via dir_fd",
            f"import os\nfd = os.open(os.path.dirname(os.__file__), os.O_RDONLY)\n"
            f"os.open('rstar_pwned_{TAG}', os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
            denied,
        ),
        ("mkfifo", f"import os\nos.mkfifo('{MARKERS[6]}')", denied),
        # The canary lives in the host's /tmp, which the wall does not show (its /tmp is a tmpfs).
        ("delete canary", f"import os\nos.remove('{canary}')", not_ok),
        ("rmtree canary dir", f"import shutil\nshutil.rmtree('{canary_dir}')", not_ok),
        ("rename canary", f"import os\nos.rename('{canary}', '{canary}.moved')", not_ok),
        ("truncate canary", f"open('{canary}', 'w').close()", not_ok),
        ("chmod canary", f"import os\nos.chmod('{canary}', 0o777)", not_ok),
        ("symlink escape", "import os\nos.symlink('/etc/passwd', 'p')\nprint(open('p').read())", denied),
        ("hardlink escape", "import os\nos.link('/etc/passwd', 'p')\nprint(open('p').read())", denied),
        ("read passwd", "print(open('/etc/passwd').read())", denied),
        ("read shadow", "print(open('/etc/shadow').read())", denied),
        ("path traversal", "print(open('../../../../../../etc/passwd').read())", denied),
        ("read canary", f"print(open('{canary}').read())", not_ok),
        ("list root", "import os\nprint(os.listdir('/'))", denied),
        ("env secret", "import os\nprint(os.environ)", no_secret),
        ("parent environ", "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())", denied),
        ("chdir out", "import os\nos.chdir('/')\nprint(open('etc/passwd').read())", denied),
        (
            "fill disk",
            "with open('big', 'wb') as f:\n    while True:\n        f.write(b'0' * 2**20)",
            error_has("File too large", "OSError"),
        ),
        ("many files", "i = 0\nwhile True:\n    open(f'f{i}', 'w').close()\n    i += 1", not_ok),
        # memory and the interpreter
        ("memory bomb", "x = bytearray(10**11)", error_has("MemoryError")),
        ("memory growth", "l = []\nwhile True:\n    l.append(' ' * 10**7)", lambda r: not r.ok),
        ("deep recursion", "def f(n):\n    return f(n + 1)\nf(0)", error_has("RecursionError")),
        ("stack smash", "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)", not_ok),
        ("sys.exit code", "import sys\nsys.exit(3)", error_has("SystemExit: 3")),
        ("os._exit", "import os\nprint('bye')\nos._exit(0)", lambda r: r.stdout == ""),
        ("raise rlimit", "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (-1, -1))", denied),
        ("ctypes", f"import ctypes\nctypes.CDLL(None).system(b'touch {M}')", denied),
        (
            "ctypes via numpy",
            f"import sys, numpy\nc = sys.modules['ctypes']\nc.CDLL(None).system(b'touch {M}')",
            denied,
        ),
        ("fd exhaustion", "fs = [open('/dev/null') for _ in range(10**5)]", error_has("Too many open files")),
        # attacks on the guard itself
        ("heap walk", "import gc\nprint(len(gc.get_objects()))", denied),
        ("settrace", "import sys\nsys.settrace(lambda *a: None)", denied),
        (
            "patch builtins",
            "import builtins\nbuiltins.type = lambda x: str\nbuiltins.isinstance = lambda *a: True\n"
            "builtins.len = lambda x: 0\nprint(open('/etc/passwd').read())",
            denied,
        ),
        (
            "patch os.path",
            "import os.path, posixpath\nos.path.normpath = posixpath.normpath = lambda p: '/tmp'\n"
            "os.path.abspath = posixpath.abspath = lambda p: '/tmp'\nprint(open('/etc/passwd').read())",
            denied,
        ),
        (
            "hook frame locals",
            "try:\n    open('/etc/passwd')\nexcept PermissionError as e:\n    tb = e.__traceback__\n"
            "    while tb.tb_next:\n        tb = tb.tb_next\n    loc = tb.tb_frame.f_locals\n"
            "    loc['read_prefixes'] = ('/',)\n    loc['denied_events'] = frozenset()\n"
            "print(open('/etc/passwd').read())",
            denied,
        ),
        ("pickle payload", f"import pickle\npickle.loads(b\"cos\\nsystem\\n(S'touch {M}'\\ntR.\")", denied),
        ("exec payload", f"exec(bytes.fromhex('{PAYLOAD.encode().hex()}').decode())", denied),
        # Results come from the worker (exit status, its own pipes), not from anything a program writes.
        (
            "forge result frames",
            "import os, json\np = json.dumps({'ok': True, 'stdout': 'forged', 'error': None})"
            ".encode()\nfor fd in range(3, 64):\n    try:\n"
            "        os.write(fd, (len(p).to_bytes(4, 'big') + p) * 3 + b'garbage')\n"
            "    except OSError:\n        pass\nraise ValueError('real')",
            lambda r: not r.ok and r.stdout == "" and r.error == "ValueError: real",
        ),
        ("breakpoint", "breakpoint()", not_ok),
    ]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    host = tmp_path_factory.mktemp("host")
    canary_dir = host / "dir"
    canary_dir.mkdir()
    canary = canary_dir / "canary.txt"
    canary.write_text("precious")
    os.environ["RSTAR_SANDBOX_TEST_SECRET"] = SECRET  # a caller's secret, set before the pool starts
    try:
        box = Sandbox(num_workers=2, timeout_s=TIMEOUT, memory_mb=256)
        cases = corpus(str(canary), str(canary_dir))
        results = box.run_many([p for _, p, _ in cases])
        time.sleep(1.0)  # a thread or process that escaped would act now
        yield box, cases, results, canary
        box.close()
    finally:
        del os.environ["RSTAR_SANDBOX_TEST_SECRET"]


def test_corpus_is_big_enough():
    assert len(corpus("/c", "/d")) >= 40


@pytest.mark.parametrize("index", range(len(corpus("/c", "/d"))))
def test_each_program_is_contained(hostile_run, index):
    _, cases, results, _ = hostile_run
    name, _, check = cases[index]
    assert check(results[index]), f"{name}: {results[index]}"


def test_host_untouched(hostile_run):
    box, *_, canary = hostile_run
    assert canary.read_text() == "precious" and oct(canary.stat().st_mode)[-3:] != "777"
    worker_stdlib = box.run("import os\nprint(os.path.dirname(os.__file__))").stdout.strip()
    assert os.path.isdir(worker_stdlib)
    leftovers = [m for m in MARKERS + [os.path.join(worker_stdlib, f"rstar_pwned_{TAG}")] if os.path.lexists(m)]
    assert not leftovers, leftovers


def test_pool_still_works_and_nothing_lingers(hostile_run):
    box, *_ = hostile_run
    r = box.run_many(["print(6 * 7)", "import sympy\nprint(sympy.factorint(12))", "import os\nprint(os.listdir('.'))"])
    assert [x.stdout for x in r] == ["42\n", "{2: 2, 3: 1}\n", "[]\n"]  # temp dir emptied after each program
    assert _strays(box) == []


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _zygotes(box) -> dict[int, object]:
    """Host pid of each worker's zygote (the child of its bubblewrap process) -> worker."""
    out = {}
    for w in box._workers:
        for pid in descendants(w.proc.pid):
            if int(_stat(pid)[1]) == w.proc.pid:
                out[pid] = w
    return out


def _strays(box) -> list[int]:
    """Running processes below the workers other than the zygotes (paused states are stopped, 'T')."""
    zygotes = _zygotes(box)
    found = []
    for w in box._workers:
        for pid in descendants(w.proc.pid):
            try:
                state = _stat(pid)[0]
            except OSError:
                continue
            if pid not in zygotes and state not in ("T", "Z"):
                found.append(pid)
    return found


def test_network_namespace_is_empty(hostile_run):
    box, *_ = hostile_run
    if not box.isolation.network_namespace:
        pytest.skip("no network namespace here: " + "; ".join(box.isolation.notes))
    # /proc/net/dev lists the interfaces of the reader's namespace; read it from a zygote's view.
    zygote = next(iter(_zygotes(box)))
    with open(f"/proc/{zygote}/net/dev") as f:
        interfaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    assert interfaces == ["lo"], interfaces
    assert sys.platform.startswith("linux")


# --------------------------------------------------------------------------- the OS wall on its own

LIBC = "import ctypes, ctypes.util\nlibc = ctypes.CDLL(None, use_errno=True)\n"


@pytest.fixture(scope="module")
def wall(tmp_path_factory):
    """A Sandbox without the audit hook: only the OS-level wall confines programs."""
    host = tmp_path_factory.mktemp("wallhost")
    (host / "canary.txt").write_text("precious")
    with Sandbox(num_workers=1, timeout_s=TIMEOUT, memory_mb=256, audit_hook=False) as box:
        if not box.isolation.walled:
            pytest.skip("no OS-level wall here: " + "; ".join(box.isolation.notes))
        yield box, host


def run_all(box, programs):
    box.clear_cache()
    return box.run_many(programs)


def test_seccomp_no_exec(wall):
    box, _ = wall
    r = run_all(
        box,
        [
            f"import os\nos.execv('/usr/bin/touch', ['touch', '{M}'])",
            f"import subprocess\nsubprocess.run(['/usr/bin/touch', '{M}'])",
            f"import os\nprint(os.system('touch {M}'))",
        ],
    )
    assert all(error_has("PermissionError")(x) for x in r[:2]), r
    assert r[2].stdout.strip() != "0"  # /bin/sh itself cannot be executed
    assert not os.path.exists(M)


def test_seccomp_no_sockets_and_no_network(wall):
    box, _ = wall
    r = run_all(
        box,
        [
            "import socket\nsocket.socket()",
            "import socket\nsocket.socketpair()",
            "print(open('/proc/net/dev').read().count(':'))",
        ],
    )
    assert error_has("PermissionError")(r[0]) and error_has("PermissionError")(r[1])
    assert r[2].stdout == "1\n"  # only lo


def test_seccomp_no_tracing_namespaces_or_mounts(wall):
    box, _ = wall
    checks = [
        "libc.ptrace(16, 1, 0, 0)",  # PTRACE_ATTACH to the zygote
        "libc.syscall(310, 1, 0, 0, 0, 0, 0)",  # process_vm_readv
        "libc.unshare(0x10000000)",  # CLONE_NEWUSER
        "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)",
        "libc.syscall(319, b'x', 0)",  # memfd_create (memory RLIMIT_AS would not count)
        "libc.syscall(29, 0, 1 << 20, 0o1600)",  # shmget
    ]
    r = run_all(box, [LIBC + f"print({c}, ctypes.get_errno())" for c in checks])
    assert [x.stdout for x in r] == ["-1 1\n"] * len(checks), r  # EPERM from the filter


def test_signals_stay_inside_the_program(wall):
    box, _ = wall
    r = run_all(
        box,
        [
            "import os, signal\nos.kill(1, signal.SIGKILL)",  # the zygote
            "import os, signal\nos.kill(-1, signal.SIGKILL)",
            "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(1), signal.SIGKILL)",
            "import signal, threading\nsignal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)",
            "print('alive')",
        ],
    )
    assert all(error_has("PermissionError")(x) for x in r[:4]), r
    assert r[4].stdout == "alive\n"


def test_no_new_privs_seccomp_and_no_capabilities(wall):
    box, _ = wall
    keys = ("NoNewPrivs", "Seccomp", "Seccomp_filters", "CapPrm", "CapEff", "CapBnd", "Uid")
    status = run_all(
        box, [f"for line in open('/proc/self/status'):\n    if line.startswith({keys}):\n        print(line)"]
    )
    status = status[0].stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
    assert int(fields["Seccomp_filters"]) >= 2  # the zygote's and the program's
    assert all(int(fields[c], 16) == 0 for c in ("CapPrm", "CapEff", "CapBnd"))
    assert fields["Uid"].split()[0] == "65534"


def test_filesystem_view(wall):
    box, host = wall
    stdlib = os.path.dirname(os.__file__)
    r = run_all(
        box,
        [
            "print(open('/etc/passwd').read())",
            f"print(open('{host / 'canary.txt'}').read())",
            f"print(sorted(os.listdir('{REPO}')))".replace("print", "import os\nprint"),
            f"open('{stdlib}/rstar_pwned_{TAG}', 'w')",
            "open('/usr/rstar_pwned', 'w')",
            "open('/dev/shm/x', 'w')",
            "import os\nprint(sorted(os.listdir('/')))",
        ],
    )
    assert error_has("FileNotFoundError")(r[0]) and error_has("FileNotFoundError")(r[1])
    assert "tests" not in r[2].stdout  # the repository is not in the wall (only the sandbox package dir)
    assert all(error_has("Read-only file system", "Permission")(x) for x in r[3:6]), r[3:6]
    from rstar_jax.sandbox import launch

    top = launch._inside(launch.HERE, box.isolation).split("/")[1]  # where the package shows in the wall
    assert "etc" not in r[6].stdout and "home" not in r[6].stdout and top in r[6].stdout, r[6]
    assert (host / "canary.txt").read_text() == "precious"


def test_pid_namespace_and_paused_states_are_out_of_reach(wall):
    box, _ = wall
    box.run_many(["x = 5\nprint(x)\n"])  # leaves a paused state
    r = run_all(
        box,
        [
            "import os\npids = [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
            "print(os.getpid() < 100, os.getppid(), max(pids))",
            "import os\nfor p in os.listdir('/proc'):\n    if p.isdigit() and int(p) != os.getpid():\n"
            "        try:\n            open(f'/proc/{p}/mem', 'r+b')\n            print('opened', p)\n"
            "        except OSError:\n            pass\nprint('done')",
        ],
    )
    small, parent, biggest = r[0].stdout.split()
    assert small == "True" and parent == "1" and int(biggest) < 1000
    assert r[1].stdout == "done\n"  # no other process's memory (paused states are not dumpable)
    assert box.run("x = 5\nprint(x)\nprint(x + 1)\n").stdout == "5\n6\n"


def test_memory_and_disk_limits(wall):
    box, _ = wall
    r = run_all(
        box,
        [
            "x = bytearray(10**11)",
            "import mmap\nm = mmap.mmap(-1, 2 * 10**9, flags=mmap.MAP_SHARED)",
            "import os\nos.memfd_create('x')",
            "import _posixshmem, os\n_posixshmem.shm_open('/x', os.O_CREAT | os.O_RDWR)",
            "for i in range(100):\n    with open(f'f{i}', 'wb') as f:\n        f.write(b'0' * (15 << 20))",
        ],
    )
    assert error_has("MemoryError")(r[0]) and error_has("OSError", "MemoryError")(r[1])
    assert error_has("PermissionError")(r[2]) and error_has("OSError")(r[3])
    assert error_has("No space left on device")(r[4]), r[4]  # the tmpfs bounds all files together


def test_fork_bomb_is_bounded_and_swept(wall):
    box, _ = wall
    if "cgroup" not in box.isolation.active and os.geteuid() == 0:
        pytest.skip("no pids cgroup here, and RLIMIT_NPROC does not bind a root uid")
    t0 = time.monotonic()
    r = run_all(box, ["import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"])
    assert not r[0].ok and time.monotonic() - t0 < TIMEOUT + 10
    assert run_all(box, ["print('after')"])[0].stdout == "after\n"
    deadline = time.monotonic() + 5
    while _strays(box) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _strays(box) == []


def test_leftovers_cannot_leave_the_programs_group(wall):
    """The worker skips its sweep of the PID namespace when a program's process group is empty; a
    leftover that tries to leave that group (setsid, setpgid) must be refused, and still swept."""
    box, _ = wall
    r = run_all(
        box,
        [
            "import os, time\nif os.fork() == 0:\n    for leave in (os.setsid, lambda: os.setpgid(0, 0)):\n"
            "        try:\n            leave()\n        except OSError as e:\n"
            "            print(type(e).__name__, flush=True)\n"
            "    time.sleep(60)\nelse:\n    time.sleep(0.2)",
            "print('after')",
        ],
    )
    assert r[0].ok and r[0].stdout == "PermissionError\nPermissionError\n", r[0]
    assert r[1].stdout == "after\n"
    deadline = time.monotonic() + 5
    while _strays(box) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _strays(box) == []


def test_results_cannot_be_forged(wall):
    box, _ = wall
    frame = "import json\np = json.dumps({'ok': True, 'stdout': 'forged', 'error': None, 'id': 0}).encode()\n"
    r = run_all(
        box,
        [
            frame
            + "import os\nfor fd in range(3, 1024):\n    try:\n        os.write(fd, len(p).to_bytes(4, 'big') + p)"
            "\n    except OSError:\n        pass\n1 / 0",
            frame + "import os, time\nwhile True:\n    for fd in (3, 4):\n        try:\n"
            "            os.write(fd, b'1\\n' + p)\n        except OSError:\n            pass\n    time.sleep(0.01)",
            "import os\nos.write(2, b'\\n\\x00error: forged\\n')\nos.abort()",
            "print('next one is fine')",
        ],
    )
    assert not r[0].ok and r[0].error == "ZeroDivisionError: division by zero" and r[0].stdout == ""
    assert timed_out(r[1])
    assert not r[2].ok and r[2].error.startswith("RuntimeError: program killed by")  # its stderr is no report
    assert r[3].ok and r[3].stdout == "next one is fine\n"


def test_big_jobs_never_block_the_parent(wall):
    box, _ = wall
    progs = [f"s = '{'y' * 120_000}'\nprint(len(s), {i})" for i in range(12)]  # far over a pipe buffer each
    assert [x.stdout for x in run_all(box, progs)] == [f"120000 {i}\n" for i in range(12)]


def test_stderr_is_the_programs_own(wall):
    box, _ = wall
    run_all(box, [f"import os\nos.write(2, b'{TAG}')\nos.write(1, b'x')"])
    assert all(TAG not in w.log_tail(10**6) for w in box._workers)
