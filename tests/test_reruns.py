"""State that outlives a mistake: inputs are validated before --out is written, a run folder records
what it was started with (a rerun with other settings is refused, --restart starts over), exports
replace their destination whole, and nothing is left behind by killed processes (partial unit
folders, sandbox temp folders, duplicate TensorBoard points)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from rstar_jax import cli
from rstar_jax.data import save_problems
from rstar_jax.domain import generate_problems
from rstar_jax.evolve import driver
from rstar_jax.evolve.workdir import WorkDir
from rstar_jax.runs import partial_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVOLVE = ["evolve", "--config", os.path.join(ROOT, "configs", "demo_quick.yaml")]

os.environ["RSTAR_NO_PROGRESS"] = "1"


class Stop(Exception):
    """Ends an evolve run once its folder is open and its problems are saved (before the base model)."""


@pytest.fixture
def stop_before_base(monkeypatch):
    def stop(*args, **kw):
        raise Stop

    monkeypatch.setattr(driver, "prepare_base", stop)


def snapshot(folder) -> dict:
    """Every file (with its bytes) and folder under ``folder``; {} when it does not exist."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        out[rel + "/"] = None
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                out[os.path.join(rel, name)] = f.read()
    return out


def refused(capsys, argv, *must) -> str:
    """Run the command; it must exit 2 with one stderr line holding every string of ``must``."""
    capsys.readouterr()
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for m in must:
        assert m in err, (m, err)
    return err


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # reaped: the pid no longer exists
    return p.pid


def problem_file(path, n=4, seed=0) -> str:
    save_problems(generate_problems(n, 1, seed=seed), path)
    return str(path)


# --- evolve: validate before writing, run records, --restart -------------------------------------
def test_evolve_missing_train_file_writes_nothing_and_runs_after_the_fix(tmp_path, capsys, stop_before_base):
    out = tmp_path / "run"
    train = tmp_path / "train.jsonl"
    argv = [*EVOLVE, "--out", out, f"domain.train_file={train}", f"domain.test_file={train}"]
    refused(capsys, argv, "domain.train_file", str(train), "does not exist")
    assert not out.exists()
    problem_file(train)
    with pytest.raises(Stop):
        cli.main([str(a) for a in argv])
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["domain"]["train_file"] == str(train)
    assert record["inputs"]["domain.train_file"]["sha256"]
    assert WorkDir(str(out)).done("problems")


def test_evolve_empty_train_file_writes_nothing(tmp_path, capsys, stop_before_base):
    (tmp_path / "empty.jsonl").write_text("")
    out = tmp_path / "run"
    refused(
        capsys, [*EVOLVE, "--out", out, f"domain.train_file={tmp_path / 'empty.jsonl'}"], "empty.jsonl", "no problems"
    )
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    refused(capsys, [*EVOLVE, "--out", out, f"domain.train_file={tmp_path / 'empty.jsonl'}"], "empty.jsonl")
    assert snapshot(out) == before


def test_evolve_rerun_with_other_settings_is_refused_and_restart_starts_over(tmp_path, capsys, stop_before_base):
    out = tmp_path / "run"
    train = problem_file(tmp_path / "train.jsonl")
    base = [*EVOLVE, "--out", out, f"domain.train_file={train}"]
    with pytest.raises(Stop):
        cli.main([str(a) for a in base])
    (out / "mine.txt").write_text("not evolve's")
    before = snapshot(out)
    with pytest.raises(Stop):  # the same arguments resume
        cli.main([str(a) for a in base])
    assert snapshot(out) == before

    err = refused(capsys, [*base, "seed=1", "sft.lr=0.5"], "different config", "seed: 0 (then) -> 1 (now)", "sft.lr")
    assert "--restart" in err and "--out" in err
    assert snapshot(out) == before
    problem_file(train, n=5)  # same path, other content
    refused(capsys, base, "domain.train_file", "content changed", "--restart")
    assert snapshot(out) == before

    with pytest.raises(Stop):
        cli.main([str(a) for a in [*base, "seed=1", "--restart"]])
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["seed"] == 1 and "seed: 1" in (out / "config.yaml").read_text()
    assert len((out / "problems" / "train.jsonl").read_text().splitlines()) == 5  # redone from the new file
    assert (out / "mine.txt").read_text() == "not evolve's"  # --restart removes only what evolve wrote


def test_evolve_folder_with_an_empty_config_can_be_started(tmp_path, capsys, stop_before_base):
    train = problem_file(tmp_path / "train.jsonl")
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("")  # never validly started: nothing to resume or to lose
    with pytest.raises(Stop):
        cli.main([*EVOLVE, "--out", str(out), f"domain.train_file={train}"])
    assert "train_file" in (out / "config.yaml").read_text() and (out / "run.json").exists()

    # a folder with finished units but an empty config.yaml and no run record cannot be checked
    (out / "run.json").unlink()
    (out / "config.yaml").write_text("")
    before = snapshot(out)
    refused(capsys, [*EVOLVE, "--out", out, f"domain.train_file={train}"], "config.yaml is empty", "--restart")
    assert snapshot(out) == before
    (out / "config.yaml").write_text("seed: [1,\n")  # cut short
    refused(capsys, [*EVOLVE, "--out", out, f"domain.train_file={train}"], "config.yaml", "--restart")
    with pytest.raises(Stop):
        cli.main([*EVOLVE, "--out", str(out), f"domain.train_file={train}", "--restart"])
    assert json.loads((out / "run.json").read_text())["config"]["domain"]["train_file"] == train


def test_partial_folders_of_dead_processes_are_removed(tmp_path, capsys, stop_before_base):
    train = problem_file(tmp_path / "train.jsonl")
    out = tmp_path / "run"
    argv = [*EVOLVE, "--out", str(out), f"domain.train_file={train}"]
    with pytest.raises(Stop):
        cli.main(argv)
    dead = dead_pid()
    stale = [out / f"base.partial.{dead}", out / "round1" / "search" / f"shard_000.partial.{dead}"]
    stale.append(out / (os.path.basename(partial_path(str(out / "round1"))).rsplit(".", 1)[0] + f".{dead}"))
    live = out / "round1" / "policy.partial.1"  # pid 1 exists
    for p in [*stale, live]:
        p.mkdir(parents=True)
        (p / "x").write_text("half")
    with pytest.raises(Stop):
        cli.main(argv)
    assert not [p for p in stale if p.exists()] and live.exists()

    wd = WorkDir(str(tmp_path / "wd"))  # and a unit removes its own dead partials when it starts
    os.makedirs(wd.path(f"u.partial.{dead}"))
    with wd.unit("u") as tmp:
        open(os.path.join(tmp, "f"), "w").close()
    assert sorted(os.listdir(wd.root)) == ["manifest.json", "u"]


# --- train-policy: run records, --restart ----------------------------------------------------------
def test_train_policy_rerun_with_other_lr_is_refused_and_restart_retrains(tmp_path, capsys):
    from rstar_jax.train.examples import write_sft
    from tests.test_train_loop import SFT, _base_folder

    base = _base_folder(tmp_path / "base")
    write_sft(SFT, tmp_path / "sft.jsonl")
    out = tmp_path / "pol"
    argv = ["train-policy", "--trees", tmp_path / "sft.jsonl", "--init", base, "--out", out, "--steps", 2]
    argv += ["batch_size=2", "seq_len=160", "log_every=1"]
    assert cli.main([str(a) for a in argv]) == 0
    assert json.loads((out / "run.json").read_text())["config"]["lr"] != 0.5
    weights = (out / "hf" / "model.safetensors").read_bytes()
    before = snapshot(out)

    refused(capsys, [*argv, "lr=0.5"], str(out), "lr:", "(then) -> 0.5 (now)", "--restart")
    assert snapshot(out) == before
    other = tmp_path / "base2"
    shutil.copytree(base, other)
    (other / "tokenizer_config.json").write_text((other / "tokenizer_config.json").read_text() + " ")
    i = argv.index(base)
    refused(capsys, [*argv[:i], other, *argv[i + 1 :]], "--init", "not the model the run started from")
    assert snapshot(out) == before
    refused(capsys, [*argv, "--ckpt", tmp_path / "ck"], "ckpt")
    assert snapshot(out) == before

    assert cli.main([str(a) for a in argv]) == 0  # the same arguments: resumes the finished run
    assert (out / "hf" / "model.safetensors").read_bytes() == weights

    assert cli.main([str(a) for a in [*argv, "lr=0.5", "--restart"]]) == 0
    assert json.loads((out / "run.json").read_text())["config"]["lr"] == 0.5
    assert json.loads((out / "summary.json").read_text())["start_step"] == 0  # trained again from --init
    assert (out / "hf" / "model.safetensors").read_bytes() != weights
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert not [n for n in os.listdir(out) if n.startswith(".")]


def test_train_policy_into_a_folder_without_record_is_refused(tmp_path, capsys):
    from rstar_jax.train.examples import write_sft
    from tests.test_train_loop import SFT, _base_folder

    base = _base_folder(tmp_path / "base")
    write_sft(SFT, tmp_path / "sft.jsonl")
    out = tmp_path / "pol"
    (out / "hf").mkdir(parents=True)
    (out / "hf" / "config.json").write_text("{}")
    before = snapshot(out)
    argv = ["train-policy", "--trees", tmp_path / "sft.jsonl", "--init", base, "--out", out, "--steps", 2]
    refused(capsys, argv, str(out), "hf", "run.json", "--restart")
    assert snapshot(out) == before


# --- convert: a non-empty destination -------------------------------------------------------------
def test_convert_refuses_a_non_empty_destination_and_overwrite_replaces_it_whole(tmp_path, qwen_ckpt, capsys):
    from tests.conftest import make_hf_checkpoint

    qwen, _ = qwen_ckpt
    llama = tmp_path / "llama"
    make_hf_checkpoint(llama, "llama", hidden_size=32, intermediate_size=48)
    dst = tmp_path / "dst"
    assert cli.main(["convert", str(qwen), str(dst)]) == 0  # an orbax folder: config.json + params/
    before = snapshot(dst)

    refused(capsys, ["convert", llama, dst, "--to", "hf"], str(dst), "not empty", "--overwrite")
    assert snapshot(dst) == before
    assert cli.main(["convert", str(llama), str(dst), "--to", "hf", "--overwrite"]) == 0
    assert sorted(os.listdir(dst)) == ["config.json", "model.safetensors"]  # nothing of the orbax model
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".dst")]
    capsys.readouterr()
    assert cli.main(["info", str(dst), "--load"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "hf" and info["config"]["hidden_size"] == 32
    assert info["parameters"] == info["loaded_parameters"]
    refused(capsys, ["convert", dst, dst, "--overwrite"], "source")


# --- sandbox temp folders ---------------------------------------------------------------------------
def test_sandbox_temp_folders_of_dead_processes_are_removed(monkeypatch):
    from pathlib import Path

    from rstar_jax.sandbox import Sandbox

    # a temp dir of our own, which the unprivileged user the workers may run as can traverse
    tmp = Path(tempfile.mkdtemp(prefix="rstar-test-tmp-"))
    try:
        tmp.chmod(0o755)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        dead = tmp / f"rstar-sandbox-{dead_pid()}-abcd1234"
        live = tmp / "rstar-sandbox-1-abcd1234"  # pid 1 exists
        other = tmp / "rstar-sandbox-notapid"
        for p in (dead, live, other):
            (p / "lean0").mkdir(parents=True)
        with Sandbox(num_workers=1) as sb:
            assert sb.run("print(6 * 7)").stdout == "42\n"
            mine = sb._tmp_root
            assert os.path.basename(mine).startswith(f"rstar-sandbox-{os.getpid()}-")
            assert not dead.exists() and live.exists() and other.exists()
        assert not os.path.exists(mine)
        assert sorted(os.listdir(tmp)) == sorted([live.name, other.name])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- TensorBoard after a resume ---------------------------------------------------------------------
def test_tensorboard_has_no_duplicate_steps_after_a_resume(tmp_path):
    from rstar_jax.train.metrics import read_scalars
    from rstar_jax.train.sft import train_policy
    from tests.test_train_loop import SFT, sft_cfg, tiny, tokenizer

    config, params = tiny()
    cfg = sft_cfg(steps=6, checkpoint_every=3)

    def die(step, _):
        if step == 4:  # logged up to step 4, last checkpoint at step 3
            raise KeyboardInterrupt("killed")

    out = str(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        train_policy(SFT, (config, params), tokenizer(), out, cfg, callback=die)
    with open(os.path.join(out, "metrics.jsonl"), "a") as f:
        f.write('{"step": 5, "spl')  # a line cut short by the kill
    train_policy(SFT, (config, params), tokenizer(), out, cfg)
    assert json.loads(open(os.path.join(out, "summary.json")).read())["start_step"] == 3
    steps: dict[str, list[int]] = {}
    for tag, step, _ in read_scalars(os.path.join(out, "tb")):
        steps.setdefault(tag, []).append(step)
    assert steps and all(sorted(s) == [1, 2, 3, 4, 5, 6] for s in steps.values()), steps
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
