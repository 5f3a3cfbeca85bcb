"""`rstar-jax info` / `convert`: HF -> orbax -> HF keeps every tensor bit for bit."""

from __future__ import annotations

import json

import numpy as np

from rstar_jax import cli
from rstar_jax.models.hf_io import iter_safetensors


def test_convert_round_trip_and_info(tmp_path, qwen_ckpt, capsys):
    path, _ = qwen_ckpt
    assert cli.main(["convert", str(path), str(tmp_path / "orbax")]) == 0
    assert (tmp_path / "orbax" / "params").is_dir()
    assert cli.main(["convert", str(tmp_path / "orbax"), str(tmp_path / "hf")]) == 0
    a = dict(iter_safetensors(str(path / "model.safetensors")))
    b = dict(iter_safetensors(str(tmp_path / "hf" / "model.safetensors")))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    capsys.readouterr()
    assert cli.main(["info", str(tmp_path / "orbax"), "--load"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "orbax" and info["parameters"] == info["loaded_parameters"]


def test_help_on_every_subcommand(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.description, f"`rstar-jax {name}` has no description"
