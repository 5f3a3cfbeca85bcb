"""Data parallel / FSDP / tensor parallel on 8 fake devices, and two processes with
jax.distributed, each against the same training on one device."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import run_with_devices

# Run in a subprocess (or here, with one device): train 2 steps of the tiny policy and save the params.
TRAIN = """
import os, sys, jax, numpy as np
os.environ["RSTAR_NO_PROGRESS"] = "1"
from tests.test_train_loop import SFT, sft_cfg, tiny, tokenizer, _flat
from rstar_jax.train.sft import train_policy

def run(out, **mesh):
    _, params = train_policy(SFT, tiny(), tokenizer(), out, sft_cfg(steps=2, batch_size=8, **mesh))
    flat = _flat(jax.device_get(params) if jax.process_count() == 1 else
                 __import__("jax.experimental.multihost_utils", fromlist=["x"]).process_allgather(params, tiled=True))
    if jax.process_index() == 0:
        np.savez(os.path.join(out, "params.npz"), **flat)
"""


def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """The reference: the same two steps in this (one-device) process."""
    out = tmp_path_factory.mktemp("one")
    scope: dict = {}
    exec(TRAIN, scope)
    scope["run"](str(out))
    return _load(out / "params.npz")


def test_8_devices_equal_1_device(tmp_path, one_device):
    """Data parallel x FSDP x tensor parallel (2 x 2 x 2): batch split 4 ways, params sharded; each
    device runs its 2 rows as 2 micro-batches of 1 (gradients accumulated over the mesh)."""
    code = (
        TRAIN
        + f"""
assert jax.device_count() == 8
run({str(tmp_path / "mesh")!r}, mesh_data=2, mesh_fsdp=2, mesh_tensor=2, micro_batch=1)
"""
    )
    run_with_devices(code, n=8, timeout=900)
    _assert_same(_load(tmp_path / "mesh" / "params.npz"), one_device)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path, one_device):
    port = _free_port()
    procs = []
    for i in range(2):
        code = (
            f"""
import jax
jax.distributed.initialize(coordinator_address="localhost:{port}", num_processes=2, process_id={i})
"""
            + TRAIN
            + f"""
assert jax.process_count() == 2 and jax.device_count() == 2
run({str(tmp_path / "mp")!r})
"""
        )
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outs)
    _assert_same(_load(tmp_path / "mp" / "params.npz"), one_device)
