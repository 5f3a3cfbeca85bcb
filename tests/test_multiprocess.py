"""`rstar-jax search` as two local processes joined by jax.distributed: the same trees as one
process, and a run killed mid-shard then rerun gives the same trees again."""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

from rstar_jax.data import save_problems
from rstar_jax.domain import generate_problems

ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "RSTAR_NO_PROGRESS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _argv(data, out, *extra: str) -> list[str]:
    search = [sys.executable, "-m", "rstar_jax.cli", "search", "--policy", "bootstrap", "--data", str(data)]
    return [*search, "--out", str(out), "--rollouts", "3", "--candidates", "3", "--seed", "2", "batch_size=2", *extra]


def _start(data, out, n: int, *extra: str) -> list[subprocess.Popen]:
    if n == 1:
        cmds = [_argv(data, out, *extra)]
    else:
        coord = f"localhost:{_free_port()}"
        cmds = [
            _argv(data, out, *extra, "--coordinator", coord, "--num-processes", str(n), "--process-id", str(i))
            for i in range(n)
        ]
    return [subprocess.Popen(c, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in cmds]


def _finish(procs) -> None:
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), "\n".join(outs)


def _trees(out) -> list[str]:
    with open(os.path.join(out, "trees.jsonl")) as f:
        return f.read().splitlines()


def test_two_processes_write_the_trees_of_one(tmp_path):
    data = tmp_path / "p.jsonl"
    save_problems(generate_problems(12, 2, seed=5), data)
    _finish(_start(data, tmp_path / "one", 1, "--shards", "2"))
    _finish(_start(data, tmp_path / "two", 2))  # default: one shard per process
    one, two = _trees(tmp_path / "one"), _trees(tmp_path / "two")
    assert len(one) == 12 and two == one
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert (summary["processes"], summary["shards"], summary["searched"]) == (2, 2, 12)
    assert not os.path.exists(tmp_path / "two" / ".progress")

    # killed once both shards have finished a batch (a host lost mid-round), then rerun as is
    out = tmp_path / "killed"
    procs = _start(data, out, 2)
    deadline = time.time() + 300
    while time.time() < deadline:
        shards = glob.glob(str(out / ".progress" / "s*of*.jsonl"))
        if len(shards) == 2 and all(os.path.getsize(s) for s in shards):
            break
        assert all(p.poll() is None for p in procs), "finished before it could be killed"
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    _finish(_start(data, out, 2))
    assert _trees(out) == one
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["searched"] < 12  # resumed: what the killed run finished was not searched again


def test_two_process_evolve_writes_the_round_of_one(tmp_path):
    """A one-round evolve at CI size: both processes search their shards and train as data-parallel
    replicas; the main one merges, extracts, evaluates and reports. Same trees, data and report as
    one process."""
    from tests.test_evolve import TINY

    def evolve(out, n: int) -> None:
        base = [sys.executable, "-m", "rstar_jax.cli", "evolve", "--config", "configs/demo_quick.yaml"]
        args = [*base, "--out", str(out), *TINY, "rounds=1", "search_shards=2", "eval.methods=[greedy]"]
        if n == 1:
            cmds = [args]
        else:
            coord = f"localhost:{_free_port()}"
            cmds = [[*args, "--coordinator", coord, "--num-processes", "2", "--process-id", str(i)] for i in range(2)]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
        procs = [
            subprocess.Popen(c, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for c in cmds
        ]
        _finish(procs)

    evolve(tmp_path / "one", 1)
    evolve(tmp_path / "two", 2)
    for rel in ("round1/search/trees.jsonl", "round1/data/sft.jsonl", "round1/data/pairs.jsonl"):
        assert (tmp_path / "two" / rel).read_text() == (tmp_path / "one" / rel).read_text(), rel
    rows = [json.loads((tmp_path / d / "report.json").read_text())["rounds"] for d in ("one", "two")]
    for row in (*rows[0], *rows[1]):
        row.pop("seconds")
    assert rows[0] == rows[1]
