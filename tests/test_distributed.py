"""rstar_jax.distributed: hash shards, the cluster from flags or the environment, barriers across
two real local processes."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from rstar_jax.distributed import Cluster, add_cluster_arguments, cluster_from_args, owned, shard_of, split
from rstar_jax.errors import UserError


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_cluster_arguments(p)
    return p.parse_args(list(argv))


def test_shards_are_the_same_in_every_interpreter():
    ids = [f"gsm8k/{i}" for i in range(200)]
    here = [shard_of(i, 7) for i in ids]
    code = f"from rstar_jax.distributed import shard_of; print([shard_of(i, 7) for i in {ids!r}])"
    for seed in ("0", "12345"):  # str hashing differs between these interpreters; shards must not
        out = subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert eval(out.stdout) == here


def test_split_partitions_in_order_and_balances():
    items = [f"p{i}" for i in range(4000)]
    shards = split(items, str, 8)
    assert sorted(x for s in shards for x in s) == sorted(items)
    for s in shards:
        assert s == sorted(s, key=items.index)  # input order kept within a shard
    expected = len(items) / 8
    # binomial(4000, 1/8): sd ~21; a hash that ignored part of the id would fail this
    assert all(abs(len(s) - expected) < 6 * 21 for s in shards), [len(s) for s in shards]
    assert all(shard_of(x, 8) == i for i, s in enumerate(shards) for x in s)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_every_shard_has_exactly_one_owner(n):
    owners = [owned(12, Cluster(n, i, "h:1" if n > 1 else None)) for i in range(n)]
    assert sorted(s for o in owners for s in o) == list(range(12))


def test_cluster_from_flags_and_environment():
    assert cluster_from_args(_args(), environ={}) == Cluster()
    c = cluster_from_args(_args("--coordinator", "h:5", "--num-processes", "4", "--process-id", "3"), environ={})
    assert (c.num_processes, c.process_id, c.coordinator, c.is_main) == (4, 3, "h:5", False)
    slurm = {"SLURM_JOB_ID": "9", "SLURM_NTASKS": "16", "SLURM_PROCID": "5"}
    assert cluster_from_args(_args(), environ=slurm) == Cluster(16, 5)
    with pytest.raises(UserError, match="--coordinator"):
        cluster_from_args(_args("--num-processes", "2"), environ={})
    with pytest.raises(UserError, match="--process-id"):
        cluster_from_args(_args("--coordinator", "h:5", "--num-processes", "2", "--process-id", "2"), environ={})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_barrier_orders_two_processes(tmp_path):
    """Each process writes its file, waits at the barrier, then must see the other's file; process 1
    sleeps first, so without a working barrier process 0 looks too early."""
    port = _free_port()
    code = textwrap.dedent(
        f"""
        import os, sys, time
        from rstar_jax.distributed import Cluster, barrier, initialize
        i = int(sys.argv[1])
        c = initialize(Cluster(2, i, "localhost:{port}"))
        assert (c.num_processes, c.process_id) == (2, i), c
        if i == 1:
            time.sleep(2)
        open(os.path.join({str(tmp_path)!r}, f"p{{i}}"), "w").close()
        barrier("written", c)
        assert os.path.exists(os.path.join({str(tmp_path)!r}, f"p{{1 - i}}")), "barrier let me through early"
        barrier("checked", c)
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(i)], env=env, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(errs)
