"""Self-evolution end to end at tiny sizes: every artifact, and resume after crashes."""

from __future__ import annotations

import json
import os

import pytest

from rstar_jax.config import load_config
from rstar_jax.evolve import driver as evolve_mod
from rstar_jax.evolve.config import EvolveConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "rounds=2",
    "domain.n_train_per_tier=6",
    "domain.n_test_per_tier=2",
    "domain.eval_limit=2",
    "model.hidden_size=32",
    "model.intermediate_size=64",
    "model.num_layers=1",
    "model.vocab_size=320",
    "model.copy_warmup.steps=2",
    "bootstrap_search.rollouts=3",
    "bootstrap_search.batch_size=4",
    "policy_search.rollouts=1",
    "policy_search.candidates=2",
    "policy_search.max_step_tokens=24",
    "policy_search.max_depth=6",
    "sft.steps=3",
    "sft.batch_size=4",
    "ppm.steps=2",
    "ppm.batch_size=4",
    "eval.mcts.rollouts=1",
    "eval.mcts.candidates=2",
    "eval.mcts.max_step_tokens=24",
    "eval.mcts.max_depth=6",
    "eval.max_chains=2",
]


def tiny_config(*extra: str) -> EvolveConfig:
    return load_config(EvolveConfig, os.path.join(ROOT, "configs", "demo_quick.yaml"), [*TINY, *extra])


def _outputs(out: str) -> dict:
    """What a run leaves that must not depend on interruptions."""
    files = {}
    for rel in (
        "problems/train.jsonl",
        "round1/search/shard_000/trees.jsonl",
        "round1/search/shard_001/trees.jsonl",
        "round1/data/sft.jsonl",
        "round1/data/pairs.jsonl",
        "round2/data/sft.jsonl",
    ):
        with open(os.path.join(out, rel)) as f:
            files[rel] = f.read()
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    return {"files": files, "report": report}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("evolve_full"))
    evolve_mod.run(tiny_config(), out)
    return out


def test_run_writes_every_artifact(uninterrupted):
    out = uninterrupted
    for rel in (
        "report.md",
        "report.json",
        "accuracy_by_round.png",
        "config.yaml",
        "manifest.json",
        "round1/policy/hf/config.json",
        "round1/ppm/hf/model.safetensors",
        "round2/eval/metrics.json",
        "round2/eval/mcts.jsonl",
    ):
        assert os.path.exists(os.path.join(out, rel)), rel
    assert os.listdir(os.path.join(out, "tb"))
    rounds = json.load(open(os.path.join(out, "report.json")))["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        for key in ("policy_greedy_acc", "mcts_ppm_acc", "bon_orm_acc", "sc_acc", "train_solved_share"):
            assert 0.0 <= r[key] <= 1.0, key
        assert set(r["tokens"]) == {"greedy", "mcts", "bon", "sc"} and r["tokens"]["mcts"] > 0
    assert not [f for f in os.listdir(os.path.join(out, "round1", "search")) if ".partial" in f or "progress" in f]


def test_resume_after_crashes_matches_uninterrupted(uninterrupted, tmp_path, monkeypatch):
    import rstar_jax.search.mcts as mcts

    out = str(tmp_path / "run")
    cfg = tiny_config()
    real_run_mcts, calls = mcts.run_mcts, []

    def crash_in_second_batch(*args, **kw):
        calls.append(1)
        if len(calls) == 2:  # inside shard 0: its first batch is saved, the second is lost
            raise KeyboardInterrupt("killed inside a search shard")
        return real_run_mcts(*args, **kw)

    monkeypatch.setattr(mcts, "run_mcts", crash_in_second_batch)
    with pytest.raises(KeyboardInterrupt):
        evolve_mod.run(cfg, out)
    assert os.path.getsize(os.path.join(out, "round1/search/shard_000.progress.jsonl")) > 0
    monkeypatch.setattr(mcts, "run_mcts", real_run_mcts)

    def crash_between_stages(*args, **kw):
        raise KeyboardInterrupt("killed before PPM training")

    monkeypatch.setattr(evolve_mod, "_train_ppm", crash_between_stages)
    with pytest.raises(KeyboardInterrupt):
        evolve_mod.run(cfg, out)
    assert evolve_mod.WorkDir(out).done("round1/policy") and not evolve_mod.WorkDir(out).done("round1/ppm")
    monkeypatch.undo()
    evolve_mod.run(cfg, out)
    assert _outputs(out) == _outputs(uninterrupted)


def test_changed_config_is_refused(uninterrupted):
    with pytest.raises(ValueError, match="different config"):
        evolve_mod.run(tiny_config("seed=1"), uninterrupted)


@pytest.mark.parametrize("script", ["test_time_scaling", "rounds"])
def test_experiment_scripts_quick(uninterrupted, tmp_path, script):
    import importlib.util

    spec = importlib.util.spec_from_file_location(script, os.path.join(ROOT, "experiments", f"{script}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / script
    extra = ["--seeds", "0,1"] if script == "test_time_scaling" else []
    result = module.main(["--run", uninterrupted, "--out", str(out), "--quick", *extra])
    assert (out / f"{script}.md").exists() and (out / f"{script}.json").exists()
    assert list(out.glob("*.png"))
    if script == "test_time_scaling":
        assert [q["n"] for q in result["mcts"]] == [1, 2]
        assert result["bon"][0]["tokens"] <= result["bon"][1]["tokens"]  # nested chain subsets
        for m in ("mcts", "bon", "sc"):  # the reported accuracy is the mean of the two seeds'
            for i, q in enumerate(result[m]):
                accs = [r[m][i]["acc"] for r in result["per_seed"]]
                assert len(accs) == 2 and q["acc"] == pytest.approx(sum(accs) / 2)
                assert q["acc_min"] <= q["acc"] <= q["acc_max"]
    else:
        assert [r["round"] for r in result["rounds"]] == [1, 2]
