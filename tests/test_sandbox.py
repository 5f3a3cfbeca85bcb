"""Functional tests of the sandbox: results, error format, isolation between programs, recovery."""

from __future__ import annotations

import ast
import collections
import math
import os
import signal
import time

import pytest

from rstar_jax.sandbox import ExecResult, Limits, LRUCache, Sandbox, program_key
from rstar_jax.sandbox.batching import batchable, denied_attributes
from rstar_jax.sandbox.pool import _Job
from rstar_jax.sandbox.runner import Capture, truncate
from rstar_jax.sandbox.worker import imported_modules, needs_heavy

TIMEOUT = 1.5


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
    assert not r[10].ok and r[10].error == "SystemExit: 2"
    assert r[11].error == "EOFError: EOF when reading a line"
    assert r[12].error.startswith("IndentationError: unexpected indent")
    assert not any(x.timed_out for x in r)


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


def test_fresh_state_per_program(sb):
    # Batchable programs share a child; others get one each: neither sees another's state.
    r = sb.run_many(
        [
            "secret = 41",
            "print(secret)",
            "import math\nmath.pi = 3",
            "import math\nprint(math.pi)",
            "open('note.txt', 'w').write('hi')",
            "print(open('note.txt').read())",
        ]
    )
    assert r[1].error == "NameError: name 'secret' is not defined"
    assert r[2].ok and r[3].stdout == f"{math.pi}\n"
    assert r[4].ok and r[5].error.startswith("FileNotFoundError")


def test_timeout_inside_a_batch_spares_the_others(sb):
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


def test_output_truncated_keeping_head_and_tail(sb):
    r = sb.run("print('A' * 500 + 'B' * 500 + 'C' * 500)")
    assert r.ok and r.stdout.startswith("A" * 128) and r.stdout.endswith("C" * 127 + "\n")
    assert "characters truncated" in r.stdout and len(r.stdout) < 256 + 60
    err = sb.run("raise ValueError('x' * 100000)")
    assert err.error.startswith("ValueError: xxx") and len(err.error) < 256 + 60


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
    # Hash seeds are fixed: set order is identical in every worker and every child.
    outs = {x.stdout for x in sb.run_many([f"print(set('abcdefgh'))  # {i}" for i in range(8)])}
    assert len(outs) == 1


def test_worker_death_and_hang_recovery(sb):
    victim = next(w for w in sb._workers if w.kind == "lean")
    os.kill(victim.proc.pid, signal.SIGKILL)
    restarts = sb.stats()["worker_restarts"]
    r = sb.run_many([f"print({i} + 1)" for i in range(6)])
    assert [x.stdout for x in r] == [f"{i + 1}\n" for i in range(6)]
    assert sb.stats()["worker_restarts"] >= restarts + 1

    frozen = next(w for w in sb._workers if w.kind == "lean")
    os.kill(frozen.proc.pid, signal.SIGSTOP)  # alive but unresponsive: the watchdog must replace it
    old_watchdog, sb.watchdog_s = sb.watchdog_s, 1.0
    try:
        r = sb.run_many([f"print({i} * 3)  # hang" for i in range(6)])
    finally:
        sb.watchdog_s = old_watchdog
        try:
            os.kill(frozen.proc.pid, signal.SIGKILL)
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


def test_isolation_report(sb):
    iso = sb.isolation
    if os.geteuid() == 0:
        assert iso.drops_privileges or iso.notes, "root without a privilege drop must say why"
    r = sb.run("import os\nprint(os.getuid(), os.getcwd())")
    uid, cwd = r.stdout.split()
    assert int(uid) == (iso.uid if iso.drops_privileges else os.geteuid())
    assert cwd.startswith(sb._tmp_root)


def test_batchable_policy():
    denied = denied_attributes()
    yes = [
        "x = 3\ny = x ** 2\nprint(y)",
        "import math\nprint(math.sqrt(2))",
        "from fractions import Fraction as F\nprint(F(1, 3))",
        "def f(n):\n    return 1 if n < 2 else n * f(n - 1)\nprint(f(5))",
        "a = [1, 2]\na.append(3)\na[0] = 5\nprint(sorted(a))",
        "while True:\n    pass",
    ]
    no = [
        "import random\nprint(random.random())",
        "import os",
        "import math\nmath.pi = 3",
        "print(open('x').read())",
        "print(().__class__)",
        "import fractions\nfractions.sys.setrecursionlimit(9)",
        "class A:\n    pass",
        "getattr(print, 'x')",
        "import numbers\nnumbers.Number.register(str)",
        "import copy\ncopy.dispatch_table[int] = 1",
        "with x:\n    pass",
        "__builtins__",
    ]
    assert all(batchable(ast.parse(p), denied) for p in yes)
    assert not any(batchable(ast.parse(p), denied) for p in no)


def test_helpers():
    assert imported_modules("import numpy as np, math\nfrom sympy.abc import x\n  import os.path") == {
        "numpy",
        "math",
        "sympy.abc",
        "os.path",
    }
    assert needs_heavy("import sympy") and needs_heavy("from numpy import array") and not needs_heavy("import math")
    assert truncate("abc", 5) == "abc"
    t = truncate("a" * 10 + "b" * 10, 8)
    assert t.startswith("aaaa\n") and t.endswith("\nbbbb") and "12 characters truncated" in t
    cap = Capture(8)
    for ch in "0123456789":
        cap.write(ch)
    assert cap.getvalue() == truncate("0123456789", 8)
    assert program_key("a") == program_key("a") != program_key("b") and len(program_key("a")) == 16
    cache = LRUCache(2)
    cache.put(b"a", 1)
    cache.put(b"b", 2)
    assert cache.get(b"a") == 1
    cache.put(b"c", 3)  # evicts b, the least recently used
    assert b"b" not in cache and cache.get(b"a") == 1 and cache.get(b"c") == 3
    assert (cache.hits, cache.misses) == (3, 0)
