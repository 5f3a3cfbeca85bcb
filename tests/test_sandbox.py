"""Functional tests of the sandbox: results, error format, no state shared between programs,
incremental execution identical to re-running paths, recovery."""

from __future__ import annotations

import collections
import math
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from rstar_jax.bench.sandbox import chains, search_workload
from rstar_jax.sandbox import ExecResult, Limits, LRUCache, Sandbox, program_key
from rstar_jax.sandbox.capture import Output
from rstar_jax.sandbox.pool import _Job
from rstar_jax.sandbox.runner import truncate
from rstar_jax.sandbox.worker import imported_modules, needs_heavy
from rstar_jax.sandbox.workers import descendants

TIMEOUT = 1.5


def need_wall(box: Sandbox) -> None:
    """Skip where this machine truly lacks the OS-level wall (no bubblewrap, seccomp or user namespaces)."""
    if not box.isolation.walled:
        pytest.skip("no OS-level wall here: " + "; ".join(box.isolation.notes))


@pytest.fixture(scope="module")
def sb():
    with Sandbox(num_workers=2, timeout_s=TIMEOUT, memory_mb=512, max_output_chars=256) as box:
        yield box


def test_outputs_and_error_format(sb):
    progs = [
        "# step 1\nx = 12 * 3\n# step 2\ny = x + 6\nprint(y)\n",
        "print(x)",
        "def f(:\n  pass",
        "print(1/0)",
        "assert 1 == 2",
        "class Oops(Exception):\n    pass\nraise Oops('bad')",
        "d = {}\nd['k']",
        "import math\nprint(math.comb(10, 3), math.isqrt(99))",
        "from fractions import Fraction\nprint(Fraction(1, 3) + Fraction(1, 6))",
        "import sys\nsys.exit(0)",
        "print('before')\nexit(2)",
        "print(input())",
        "  x = 1",
        "import sys\nprint('out')\nsys.stderr.write('noise\\n')\nraise KeyError('z')",
    ]
    r = sb.run_many(progs)
    assert all(isinstance(x, ExecResult) for x in r)
    assert r[0] == ExecResult(True, "42\n", None, False, r[0].duration_s)
    assert r[1].error == "NameError: name 'x' is not defined" and not r[1].ok
    assert r[2].error == "SyntaxError: invalid syntax"
    assert r[3].error == "ZeroDivisionError: division by zero"
    assert r[4].error == "AssertionError"
    assert r[5].error == "Oops: bad"
    assert r[6].error == "KeyError: 'k'"
    assert r[7].stdout == "120 9\n" and r[7].ok
    assert r[8].stdout == "1/2\n"
    assert r[9].ok and r[9].error is None
    assert not r[10].ok and r[10].error == "SystemExit: 2" and r[10].stdout == "before\n"
    assert r[11].error == "EOFError: EOF when reading a line"
    assert r[12].error.startswith("IndentationError: unexpected indent")
    assert r[13].stdout == "out\n" and r[13].error == "KeyError: 'z'"  # stdout before the error is kept
    assert not any(x.timed_out for x in r)


def test_streams_behave_like_pipes(sb):
    """A program's sys.stdout/sys.stderr are made once in the zygote (cheaper children): they must
    behave as streams opened on the program's own pipes do (reference: a ``python -c`` on pipes)."""
    probe = (
        "import sys\nfor s in (sys.stdout, sys.stderr):\n    print(s.fileno(), s.seekable(), s.encoding,"
        " s.line_buffering, s.isatty())\ntry:\n    sys.stdout.tell()\nexcept OSError as e:\n    print(type(e).__name__)"
    )
    reference = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    sb.clear_cache()
    assert sb.run(probe).stdout == reference


def test_order_duplicates_and_cache():
    with Sandbox(num_workers=1, timeout_s=TIMEOUT, cache_size=2) as box:
        progs = [f"print({i} * {i})" for i in range(5)]
        first = box.run_many(progs + progs[:2])
        assert [x.stdout for x in first] == [f"{i * i}\n" for i in range(5)] + ["0\n", "1\n"]
        assert box.stats()["executed"] == 5  # duplicates in one call run once
        hits = box.stats()["cache_hits"]
        again = box.run_many(progs[3:])  # the 2 most recent entries survive eviction
        assert again == first[3:5] and box.stats()["cache_hits"] == hits + 2
        box.run_many(progs[:1])  # evicted: runs again
        assert box.stats()["executed"] == 6


# (program that changes process state, probe, what the probe prints in a fresh process)
CONTAMINATION = [
    ("secret = 41", "print(secret)", None),
    ("import math\nmath.pi = 3", "import math\nprint(math.pi)", f"{math.pi}\n"),
    ("open('note.txt', 'w').write('hi')", "import os\nprint(os.listdir('.'))", "[]\n"),
    ("import sys\nsys.setrecursionlimit(50)", "import sys\nprint(sys.getrecursionlimit())", "1000\n"),
    ("import sys\nsys.set_int_max_str_digits(700)", "print(len(str(10 ** 800)))", "801\n"),
    ("import sys, cmath\nsys.modules['math'] = cmath", "import math\nprint(math.sqrt(4))", "2.0\n"),
    ("import decimal\ndecimal.getcontext().prec = 3", "from decimal import Decimal\nprint(Decimal(1) / 7)", None),
    ("import random\nrandom.seed(5)", "import random\nprint(random.random())", None),
    ("import warnings\nwarnings.simplefilter('error')", "import warnings\nwarnings.warn('w')\nprint('ok')", "ok\n"),
    (
        "import numbers\nnumbers.Number.register(str)",
        "import numbers\nprint(isinstance('', numbers.Number))",
        "False\n",
    ),
    ("import copy\ncopy.dispatch_table[int] = 1", "import copy\nprint(int in copy.dispatch_table)", "False\n"),
    ("import os, time\nos.environ['TZ'] = 'Asia/Tokyo'\ntime.tzset()", "import time\nprint(time.tzname)", None),
    ("import signal\nsignal.setitimer(signal.ITIMER_REAL, 0.2)", "import time\ntime.sleep(0.4)\nprint('ok')", "ok\n"),
    ("import os\nos.chmod('.', 0o500)", "open('f', 'w').write('x')\nprint('ok')", "ok\n"),
    ("import os\np = 'd'\nfor i in range(1100):\n    os.mkdir(p)\n    p += '/d'", "print('ok')", "ok\n"),
]


def test_no_state_survives_a_program(sb):
    """Every program runs in a fresh process forked from a pristine zygote: nothing a program does
    changes what the next one sees (the issue's list of contaminations)."""
    probes = [probe for _, probe, _ in CONTAMINATION]
    fresh = sb.run_many(probes)
    for i, (change, probe, expected) in enumerate(CONTAMINATION):
        sb.clear_cache()
        changed, after = sb.run_many([change, probe + f"\n# {i}"])
        assert after.stdout == fresh[i].stdout and after.error == fresh[i].error, (change, after, fresh[i])
        if expected is not None:
            assert fresh[i].stdout == expected, (probe, fresh[i])
    assert fresh[0].error == "NameError: name 'secret' is not defined"


def test_timeout_spares_the_others(sb):
    t0 = time.monotonic()
    r = sb.run_many(
        [
            "a = 2\nprint(a * 21)",
            "while True:\n    pass",
            "print(sum(range(10)))",
            "import time\ntime.sleep(60)",
            "print('last')",
        ]
    )
    assert r[0].stdout == "42\n" and r[2].stdout == "45\n" and r[4].stdout == "last\n"
    for x in (r[1], r[3]):
        assert x.timed_out and not x.ok and x.error.startswith("TimeoutError")
        assert TIMEOUT * 0.9 <= x.duration_s <= TIMEOUT + 1.0
    assert time.monotonic() - t0 < 4 * TIMEOUT + 5


def test_output_bounded_and_valid_utf8(sb):
    r = sb.run("print('A' * 500 + 'B' * 500 + 'C' * 500)")
    assert r.ok and r.stdout.startswith("A" * 128) and r.stdout.endswith("C" * 127 + "\n")
    assert "truncated" in r.stdout and len(r.stdout) < 256 + 60
    big = sb.run("import sys\nfor _ in range(3000):\n    sys.stdout.write('x' * 1000)\nprint('END')")
    assert big.ok and big.stdout.startswith("x" * 128) and big.stdout.endswith("END\n") and len(big.stdout) < 400
    err = sb.run("raise ValueError('x' * 100000)")
    assert err.error.startswith("ValueError: xxx") and len(err.error) < 256 + 60
    s = sb.run("print('a\\ud800b', '\\udcff')")  # lone surrogates: replaced, never an encoding error
    assert s.ok and s.stdout.encode("utf-8").decode("utf-8") == s.stdout and s.stdout.startswith("a")


def test_output_streams_compose():
    """Head/tail capture of a stream equals that of its parts concatenated (incremental outputs)."""
    rng = random.Random(0)
    for _ in range(200):
        parts = [bytes(rng.choice(b"ab\xc3\xa9\n") for _ in range(rng.randint(0, 40))) for _ in range(3)]
        whole, pieces = Output(16), [Output(16) for _ in parts]
        for piece, data in zip(pieces, parts):
            whole.feed(data)
            piece.feed(data)
        joined = pieces[0].extended(pieces[1]).extended(pieces[2])
        assert (joined.head, joined.tail, joined.total) == (whole.head, whole.tail, whole.total)
        assert joined.text(8) == whole.text(8)
        complete = Output(10**6)
        complete.feed(b"".join(parts))
        assert complete.text(10**6) == b"".join(parts).decode("utf-8", "replace")


def test_heavy_modules_and_determinism(sb):
    progs = [
        "import sympy as sp\nx = sp.symbols('x')\nprint(sp.solve(x**2 - 4, x))",
        "import numpy as np\nprint(np.linalg.det(np.array([[2.0, 0], [0, 3.0]])))",
        "from sympy import Rational\nprint(Rational(3, 4) + Rational(1, 4))",
        "import sys\nprint('jax' in sys.modules, 'rstar_jax' in sys.modules)",
    ]
    r = sb.run_many(progs)
    assert r[0].stdout == "[-2, 2]\n" and r[1].stdout == "6.0\n" and r[2].stdout == "1\n"
    assert r[3].stdout == "False False\n"  # workers never import JAX nor the package
    # Hash seeds are fixed: set order is identical in every worker and every process.
    outs = {x.stdout for x in sb.run_many([f"print(set('abcdefgh'))  # {i}" for i in range(8)])}
    assert len(outs) == 1


def _flat(results):
    return [(r.ok, r.stdout, r.error, r.timed_out) for layer in results for r in layer]


def test_incremental_matches_rerunning_paths():
    """Search trees (paths of 2-10 steps, executed layer by layer as MCTS does): continuing each node
    from its parent's paused process gives exactly the results of re-running every path."""
    with (
        Sandbox(num_workers=2, timeout_s=5.0, cache_size=0, continue_after_ms=0) as inc,
        Sandbox(num_workers=2, timeout_s=5.0, cache_size=0, incremental=False) as rerun,
    ):
        need_wall(inc)
        layers_a, res_a = search_workload(inc.run_many, random.Random(3), n_trees=3, width=2, branching=2)
        layers_b, res_b = search_workload(rerun.run_many, random.Random(3), n_trees=3, width=2, branching=2)
        assert layers_a == layers_b and _flat(res_a) == _flat(res_b)
        assert max(p.count("# Step") for layer in layers_a for p in layer) == 10
        n = sum(len(layer) for layer in layers_a)
        assert inc.stats()["continued"] >= n // 2 and rerun.stats()["continued"] == 0
        # A chain whose steps do real work, and state the steps share (functions, lists, imports).
        shared = "import fractions\nacc = []\ndef f(n):\n    acc.append(n)\n    return fractions.Fraction(n, 3)\n"
        paths = [shared + "".join(f"print(f({i}), len(acc), sum(acc))\n" for i in range(k)) for k in range(1, 7)]
        for layer in chains(random.Random(1), 2, 6, 2000) + [[p] for p in paths]:
            assert _flat([inc.run_many(layer)]) == _flat([rerun.run_many(layer)])


def test_states_are_bounded_and_eviction_falls_back():
    with Sandbox(num_workers=1, timeout_s=5.0, cache_size=0, max_states=3, continue_after_ms=0) as inc:
        need_wall(inc)
        base = "x = 1\nprint(x)\n"
        inc.run_many([base + f"y{i} = x + {i}\n" for i in range(6)])  # six states, three kept
        assert inc.stats()["states"] <= 3
        r = inc.run_many([base + f"y{i} = x + {i}\nprint(y{i})\n" for i in range(6)])
        assert [x.stdout for x in r] == [f"1\n{1 + i}\n" for i in range(6)]
        # A state that was killed from outside: the program re-runs from scratch, same result.
        w = inc._workers[0]
        victims = [p for p in descendants(w.proc.pid) if _state_of(p)]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        again = inc.run_many([base + f"y{i} = x + {i}\nprint(y{i})\nprint(-y{i})\n" for i in range(6)])
        assert [x.stdout for x in again] == [f"1\n{1 + i}\n{-1 - i}\n" for i in range(6)]


def test_only_costly_paths_are_continued():
    """By default a program's process is kept only once its path has cost a few ms of CPU:
    continuing costs one fork more than re-running a cheap path."""
    with Sandbox(num_workers=1, timeout_s=5.0, cache_size=0) as box:
        cheap, costly = "a = 1\nprint(a)\n", "a = sum(i * i for i in range(400_000)) % 7\nprint(a)\n"
        box.run_many([cheap, costly])
        r = box.run_many([cheap + "print(a + 1)\n", costly + "print(a + 1)\n"])
        a = sum(i * i for i in range(400_000)) % 7
        assert [x.stdout for x in r] == ["1\n2\n", f"{a}\n{a + 1}\n"]
        assert box.stats()["continued"] == 1


def _state_of(pid: int) -> bool:
    """A paused (stopped) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def test_worker_death_and_hang_recovery(sb):
    victim = next(w for w in sb._workers if w.kind == "lean")
    os.kill(victim.proc.pid, signal.SIGKILL)
    restarts = sb.stats()["worker_restarts"]
    r = sb.run_many([f"print({i} + 1)" for i in range(6)])
    assert [x.stdout for x in r] == [f"{i + 1}\n" for i in range(6)]
    assert sb.stats()["worker_restarts"] >= restarts + 1

    frozen = next(w for w in sb._workers if w.kind == "lean")
    procs = [frozen.proc.pid, *descendants(frozen.proc.pid)]
    for pid in procs:  # alive but unresponsive: the watchdog must replace it
        os.kill(pid, signal.SIGSTOP)
    old_watchdog, sb.watchdog_s = sb.watchdog_s, 1.0
    try:
        # Jobs far over a pipe buffer: writing them to the frozen worker must not block the parent.
        r = sb.run_many([f"print({i} * 3)  # hang {'z' * 70_000}" for i in range(6)])
    finally:
        sb.watchdog_s = old_watchdog
        for pid in procs:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert [x.stdout for x in r] == [f"{i * 3}\n" for i in range(6)]
    assert frozen not in sb._workers


def test_interrupted_call_does_not_leak_into_the_next(sb):
    # A caller interrupted mid-run (e.g. Ctrl-C) leaves answers in flight; they must not
    # be mistaken for the next call's.
    old = [f"import time\ntime.sleep(0.2)\nprint('old {i}')" for i in range(4)]
    queues = {"lean": collections.deque(_Job(program_key(p), p, "lean") for p in old), "heavy": collections.deque()}
    gen = sb._execute(queues)
    next(gen)
    gen.close()
    new = [f"print('new {i}')" for i in range(6)]
    assert [r.stdout for r in sb.run_many(new)] == [f"new {i}\n" for i in range(6)]


def test_bad_arguments():
    with pytest.raises(ValueError):
        Limits(timeout_s=0)
    with pytest.raises(ValueError):
        Limits(memory_mb=-1)
    with Sandbox(num_workers=1, timeout_s=1.0) as box:
        with pytest.raises(TypeError):
            box.run_many("print(1)")
        with pytest.raises(TypeError):
            box.run_many([b"print(1)"])
        assert box.run_many([]) == []
        long = box.run("x = 1\n" * 50_000)
        assert long.error.startswith("ValueError: program longer than")
    with pytest.raises(RuntimeError):
        box.run("print(1)")


def test_isolation_report_and_strict(sb):
    need_wall(sb)
    iso = sb.isolation
    assert set(iso.active) >= {"bubblewrap", "seccomp"}
    r = sb.run("import os\nprint(os.getuid(), os.getcwd(), os.getpid() < 1000)")
    assert r.stdout == "65534 /tmp True\n"
    with Sandbox(num_workers=1, strict=True) as strict:
        assert strict.run("print(2)").stdout == "2\n"
    with pytest.warns(RuntimeWarning, match="no OS-level wall"):
        with Sandbox(num_workers=1, wall=False) as bare:
            assert bare.isolation.active == () and not bare.isolation.walled and bare.isolation.notes
            assert bare.run("print(3)").stdout == "3\n"  # degraded, loudly, but working
    with pytest.raises(RuntimeError, match="strict=True"):
        Sandbox(num_workers=1, wall=False, strict=True)


def test_helpers():
    assert imported_modules("import numpy as np, math\nfrom sympy.abc import x\nif 1:\n  import os.path") == {
        "numpy",
        "math",
        "sympy.abc",
        "os.path",
    }
    assert needs_heavy("import sympy") and needs_heavy("from numpy import array") and not needs_heavy("import math")
    assert truncate("abc", 5) == "abc"
    t = truncate("a" * 10 + "b" * 10, 8)
    assert t.startswith("aaaa\n") and t.endswith("\nbbbb") and "12 characters truncated" in t
    assert program_key("a") == program_key("a") != program_key("b") and len(program_key("a")) == 16
    cache = LRUCache(2)
    cache.put(b"a", 1)
    cache.put(b"b", 2)
    assert cache.get(b"a") == 1
    cache.put(b"c", 3)  # evicts b, the least recently used
    assert b"b" not in cache and cache.get(b"a") == 1 and cache.get(b"c") == 3
    assert (cache.hits, cache.misses) == (3, 0)


def test_runs_from_a_checkout_under_tmp(tmp_path):
    """The wall's /tmp is a fresh tmpfs: a package (or venv) below the host's /tmp still runs inside
    the wall (bound elsewhere), as in a fresh clone under /tmp, and the host's /tmp stays out of reach."""
    import shutil
    import subprocess
    import sys

    assert str(tmp_path).startswith("/tmp/")
    shutil.copytree(
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rstar_jax"),
        tmp_path / "rstar_jax",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    programs = ["print(6 * 7)", f"open({str(tmp_path / 'x')!r}, 'w').write('x')"]
    code = (
        "from rstar_jax.sandbox import Sandbox\n"
        "with Sandbox() as sb:\n"
        f"    r = sb.run_many({programs!r})\n"
        "    print([(x.ok, x.stdout) for x in r], sb.isolation.walled)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "[(True, '42\\n'), (False, '')]" in out.stdout  # the host folder does not exist in the wall
    assert not (tmp_path / "x").exists()
