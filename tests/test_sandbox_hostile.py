"""Hostile programs: each must be contained, and afterwards the pool must still work,
leave no process behind, and the host's files must be untouched."""

from __future__ import annotations

import os
import sys
import time
import uuid

import pytest

from rstar_jax.sandbox import Sandbox
from rstar_jax.sandbox.pool import _descendants

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
        ("fork", "import os\nos.fork()", denied),
        ("fork bomb", "import os\nwhile True:\n    os.fork()", denied),
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
        ("write repo", f"open('{MARKERS[4]}', 'w').write('x')", denied),
        ("write tmp", f"open('{M}', 'w').write('x')", denied),
        ("write shm", f"open('{MARKERS[1]}', 'w').write('x')", denied),
        (
            "write stdlib via dir_fd",
            f"import os\nfd = os.open(os.path.dirname(os.__file__), os.O_RDONLY)\n"
            f"os.open('rstar_pwned_{TAG}', os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
            denied,
        ),
        ("mkfifo", f"import os\nos.mkfifo('{MARKERS[6]}')", denied),
        ("delete canary", f"import os\nos.remove('{canary}')", denied),
        ("rmtree canary dir", f"import shutil\nshutil.rmtree('{canary_dir}')", denied),
        ("rename canary", f"import os\nos.rename('{canary}', '{canary}.moved')", denied),
        ("truncate canary", f"open('{canary}', 'w').close()", denied),
        ("chmod canary", f"import os\nos.chmod('{canary}', 0o777)", denied),
        ("symlink escape", "import os\nos.symlink('/etc/passwd', 'p')\nprint(open('p').read())", denied),
        ("hardlink escape", "import os\nos.link('/etc/passwd', 'p')\nprint(open('p').read())", denied),
        ("read passwd", "print(open('/etc/passwd').read())", denied),
        ("read shadow", "print(open('/etc/shadow').read())", denied),
        ("path traversal", "print(open('../../../../../../etc/passwd').read())", denied),
        ("read canary", f"print(open('{canary}').read())", denied),
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
        # May report its own forged output (no worse than printing it); must not disturb anything else.
        (
            "forge result frames",
            "import os, json\np = json.dumps({'ok': True, 'stdout': 'forged', 'error': None})"
            ".encode()\nfor fd in range(3, 64):\n    try:\n"
            "        os.write(fd, (len(p).to_bytes(4, 'big') + p) * 3 + b'garbage')\n"
            "    except OSError:\n        pass",
            lambda r: r.stdout in ("", "forged"),
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
    r = box.run_many(["print(6 * 7)", "import sympy\nprint(sympy.factorint(12))", "import math\nprint(math.e > 2)"])
    assert [x.stdout for x in r] == ["42\n", "{2: 2, 3: 1}\n", "True\n"]
    worker_pids = {w.proc.pid for w in box._workers}
    # The last result of a shared child can arrive just before that child exits: allow a moment.
    deadline = time.monotonic() + 3.0
    while True:
        stray = _strays(box, worker_pids)
        leftovers = [f for w in box._workers for f in os.listdir(w.tmp_dir)]  # emptied after each child
        if not (stray or leftovers) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not stray and not leftovers, (stray, leftovers)


def _strays(box, worker_pids: set[int]) -> list[int]:
    """Processes below the workers, in their sessions, or running as the sandbox user."""
    found = [p for pid in worker_pids for p in _descendants(pid)]
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            sid, uid = int(fields[3]), os.stat(f"/proc/{name}").st_uid
        except (OSError, IndexError, ValueError):
            continue
        if int(name) not in worker_pids and (sid in worker_pids or uid == box.isolation.uid):
            found.append(int(name))
    return found


def test_network_namespace_is_empty(hostile_run):
    box, *_ = hostile_run
    if not box.isolation.network_namespace:
        pytest.skip("no network namespace on this machine")
    # /proc/net/dev lists the interfaces of the reader's namespace; read it from a worker's view.
    worker = box._workers[0].proc.pid
    with open(f"/proc/{worker}/net/dev") as f:
        interfaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    assert interfaces == ["lo"], interfaces
    assert sys.platform.startswith("linux")
