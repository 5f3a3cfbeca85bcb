"""Self-evolution end to end at tiny sizes: every artifact, and resume after crashes."""

from __future__ import annotations

import json
import os

import pytest

from rstar_jax.config import ConfigError, load_config
from rstar_jax.evolve import driver as evolve_mod
from rstar_jax.evolve.config import EvolveConfig
from rstar_jax.evolve.schedule import resolve_all
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.records import read_records

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
        "round1/search/trees.jsonl",
        "round1/data/sft.jsonl",
        "round1/data/pairs.jsonl",
        "round2/data/sft.jsonl",
    ):
        with open(os.path.join(out, rel)) as f:
            files[rel] = f.read()
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    for row in report["rounds"]:
        row.pop("seconds")  # wall time: the one thing an interruption may change
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
    assert not [f for f in os.listdir(os.path.join(out, "round1")) if ".partial" in f or "progress" in f]


def test_resume_after_crashes_matches_uninterrupted(uninterrupted, tmp_path, monkeypatch):
    import rstar_jax.search.mcts as mcts

    out = str(tmp_path / "run")
    cfg = tiny_config()
    real_run_mcts, calls = mcts.run_mcts, []

    def crash_in_second_batch(*args, **kw):
        calls.append(1)
        if len(calls) == 2:  # inside shard 0 of 2: its first batch is saved, the second is lost
            raise KeyboardInterrupt("killed inside a search shard")
        return real_run_mcts(*args, **kw)

    monkeypatch.setattr(mcts, "run_mcts", crash_in_second_batch)
    with pytest.raises(KeyboardInterrupt):
        evolve_mod.run(cfg, out)
    assert os.path.getsize(os.path.join(out, "round1/search.progress/s0000of0002.jsonl")) > 0
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


# --- per-round settings ------------------------------------------------------------------------
def _legacy_round(cfg: EvolveConfig, r: int):
    """Round r as the driver chose it before per-round settings: the reference the defaults must keep."""
    base = cfg.bootstrap_search if r == 1 else cfg.policy_search
    if r == cfg.rounds and r > 1 and cfg.final_extra_rollouts:
        base = base.replace(extra_rollouts_if_unsolved=cfg.final_extra_rollouts)
    limit = cfg.policy_search_limit if r > 1 else 0
    return base.replace(seed=cfg.seed * 1000 + r), limit, "bootstrap" if r == 1 else "previous"


@pytest.mark.parametrize("name", ["demo.yaml", "demo_quick.yaml"])
@pytest.mark.parametrize("extra", [[], ["final_extra_rollouts=5", "rounds=3", "policy_search_limit=7"]])
def test_schedule_defaults_are_the_demo_rounds(name, extra):
    cfg = load_config(EvolveConfig, os.path.join(ROOT, "configs", name), extra)
    assert not cfg.schedule
    for rnd in resolve_all(cfg):
        search, limit, policy = _legacy_round(cfg, rnd.index)
        assert (rnd.search, rnd.problem_limit, rnd.policy, rnd.problems) == (search, limit, policy, "all")
        assert (rnd.sft, rnd.ppm, rnd.few_shot) == (cfg.sft, cfg.ppm, None)
        assert rnd.uses_ppm == (rnd.index > 1)  # the demos search rounds >= 2 with the previous PPM


def test_paper_config_is_the_papers_schedule():
    """configs/paper.yaml against the table of docs/DESIGN.md §10."""
    cfg = load_config(EvolveConfig, os.path.join(ROOT, "configs", "paper.yaml"))
    r1, r2, r3, r4 = resolve_all(cfg)
    table = [  # mode, rollouts, extra if unsolved, candidates, temperature
        (r1, "terminal", 8, 0, 5, 0.7),
        (r2, "terminal", 16, 16, 8, 1.0),
        (r3, "ppm", 16, 16, 8, 1.0),
        (r4, "ppm", 64, 64, 16, 1.0),
    ]
    for rnd, mode, rollouts, extra, k, temp in table:
        s = rnd.search
        assert (s.mode, s.rollouts, s.extra_rollouts_if_unsolved, s.candidates, s.temperature) == (
            mode,
            rollouts,
            extra,
            k,
            temp,
        )
        assert (s.c_uct, s.max_depth, s.reward) == (2.0, 16, "gold")
        assert (rnd.sft.lr, rnd.sft.epochs, rnd.sft.batch_size, rnd.sft.weight_decay, rnd.sft.schedule) == (
            7e-6,
            2.0,
            128,
            0.1,
            "linear",
        )
        assert (rnd.ppm.lr, rnd.ppm.epochs, rnd.ppm.batch_size) == (7e-6, 1.0, 512)
    assert r1.policy not in ("bootstrap", "previous") and r1.few_shot == "builtin"
    assert [r.policy for r in (r2, r3, r4)] == ["previous"] * 3 and r4.problems == "solve_rate"
    assert cfg.policy_init == "base" and cfg.extract.min_q_margin == 0.5 and cfg.extract.min_edit_distance == 20
    assert (cfg.eval.mcts.candidates, cfg.eval.mcts.mode, cfg.eval.mcts.reward) == (32, "ppm", "ppm")
    round2 = load_config(SearchConfig, os.path.join(ROOT, "configs", "search_round2.yaml"))
    assert (round2.mode, round2.rollouts, round2.candidates) == ("terminal", 16, 8)


@pytest.mark.parametrize(
    "schedule,match",
    [
        ("[{policy: previous}]", "round 1 has no previous round"),
        ("[{search: {mode: ppm}}]", "round 1 has no PPM"),
        ("[{}, {problems: hardest}]", "problems must be one of"),
        ("[{problems: unsolved}]", "round 1 has no previous round to select by"),
        ("[{few_shot: builtin}]", "bootstrap proposer takes no prompt"),
        ("[{}, {search: {reward: ppm}}]", "gold"),
        ("[{}, {sft: {lr: fast}}]", r"schedule\[1\].sft"),
        ("[{}, {search: {no_such: 1}}]", "unknown keys"),
    ],
)
def test_bad_schedules_are_refused_naming_the_round(schedule, match):
    with pytest.raises(ConfigError, match=match):
        tiny_config(f"schedule={schedule}")


def test_round_settings_reach_the_run(tmp_path):
    """Per-round SFT overrides and problem selection are what a round trains and searches with."""
    cfg = tiny_config("schedule=[{}, {sft: {steps: 4, lr: 0.01}, problems: unsolved, problem_limit: 3}]")
    r1, r2 = resolve_all(cfg)
    assert (r1.sft.steps, r2.sft.steps, r2.sft.lr, r2.sft.batch_size) == (3, 4, 0.01, cfg.sft.batch_size)
    from rstar_jax.data.problems import Problem
    from rstar_jax.evolve.workdir import WorkDir
    from rstar_jax.train.examples import SFTExample, write_sft

    wd = WorkDir(str(tmp_path))
    train = [Problem(f"p{i}", f"q{i}", "1") for i in range(6)]
    with wd.unit("round1/data") as tmp:
        write_sft([SFTExample(p, "prompt", "s", 0.0, 0.0, ()) for p in ("p1", "p4")], os.path.join(tmp, "sft.jsonl"))
    chosen = evolve_mod.round_problems(cfg, wd, r2, train)
    assert len(chosen) == 3 and {p.id for p in chosen} < {"p0", "p2", "p3", "p5"}
    assert evolve_mod.round_problems(cfg, wd, r1, train) == train
    first = resolve_all(tiny_config("schedule=[{problem_limit: 4}]"))[0]
    sample = evolve_mod.round_problems(cfg, wd, first, train)
    assert (
        len(sample) == 4
        and len({p.id for p in sample}) == 4
        and sample == evolve_mod.round_problems(cfg, wd, first, train)
    )


# --- an HF policy in round 1, real problem files -----------------------------------------------------
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
GSM8K = os.path.join(DATA, "gsm8k", "test.jsonl")
needs_data = pytest.mark.skipif(not os.path.isdir(DATA), reason="shared/data not present")


def test_synthetic_evolve_with_an_hf_round1_policy(tmp_path_factory):
    """Round 1 searches with an HF folder (a policy trained on two problems' solutions) instead of the
    scripted proposer; round 2 searches the problems round 1 left unsolved with round 1's policy."""
    from rstar_jax.domain import make_splits, reference_solution
    from rstar_jax.train.examples import read_sft
    from tests.demo_policy import trained_policy

    train, _ = make_splits(0, 4, 2, (1,))
    taught = train[:2]
    policy = trained_policy(
        str(tmp_path_factory.mktemp("synthetic_policy")), [("", p, reference_solution(p)) for p in taught]
    )
    out = str(tmp_path_factory.mktemp("evolve_hf_round1"))
    search = "{rollouts: 2, candidates: 2, max_step_tokens: 64, max_depth: 8, error_threshold: 1}"
    cfg = tiny_config(
        "domain.tiers=[1]",
        "domain.n_train_per_tier=4",
        "domain.eval_tier=1",
        "search_shards=1",
        "eval.methods=[greedy]",  # every method's evaluation: test_run_writes_every_artifact
        f"schedule=[{{policy: {policy}, search: {search}}}, {{search: {{mode: terminal}}, problems: unsolved}}]",
    )
    evolve_mod.run(cfg, out)
    round1 = read_records(os.path.join(out, "round1/search/trees.jsonl"))
    assert [r.problem_id for r in round1] == [p.id for p in train]
    assert all(r.meta["mode"] == "terminal" for r in round1)
    solved = {r.problem_id for r in round1 if any(n.correct for n in r.nodes)}
    assert {p.id for p in taught} <= solved  # the HF policy wrote the solutions it was taught
    sft = read_sft(os.path.join(out, "round1/data/sft.jsonl"))
    assert {x.problem_id for x in sft} == solved
    round2 = read_records(os.path.join(out, "round2/search/trees.jsonl"))
    assert {r.problem_id for r in round2} == {p.id for p in train} - solved
    rows = json.load(open(os.path.join(out, "report.json")))["rounds"]
    assert [r["round"] for r in rows] == [1, 2] and rows[0]["train_solved_share"] == len(solved) / len(train)


@needs_data
def test_real_problem_file_with_an_hf_bootstrap_and_few_shot_prompt(tmp_path_factory, tmp_path):
    """GSM8K problems as the training set (a record without an answer skipped and counted), round 1 with
    an HF bootstrap policy reading the builtin few-shot prompt, evaluation on a MATH-500 problem."""
    from rstar_jax.data.problems import load_problems
    from rstar_jax.train.examples import read_sft
    from tests.demo_policy import gsm8k_models

    problem, policy, _ = gsm8k_models(str(tmp_path_factory.getbasetemp()), GSM8K)
    train_file = tmp_path / "train.jsonl"
    with open(GSM8K) as f:
        lines = [next(f) for _ in range(3)]
    unanswerable = json.dumps({"problem": "Prove that there are infinitely many primes.", "solution": "Euclid."})
    train_file.write_text("".join(lines) + unanswerable + "\n")
    out = str(tmp_path / "run")
    search = "{rollouts: 2, candidates: 2, max_step_tokens: 48, max_depth: 5, error_threshold: 1}"
    cfg = tiny_config(
        "rounds=1",
        f"domain.train_file={train_file}",
        f"domain.test_file={os.path.join(DATA, 'math500', 'test.jsonl')}",
        "domain.eval_limit=1",
        "search_shards=1",
        "eval.methods=[greedy]",
        f"schedule=[{{policy: {policy}, few_shot: builtin, search: {search}}}]",
    )
    evolve_mod.run(cfg, out)
    info = json.load(open(os.path.join(out, "problems/info.json")))
    assert info == {
        "train": 3,
        "test": len(load_problems(os.path.join(DATA, "math500", "test.jsonl"))),
        "skipped_train": 1,
    }
    trees = read_records(os.path.join(out, "round1/search/trees.jsonl"))
    assert [r.gold for r in trees] == [p.answer for p in load_problems(GSM8K, limit=3)]
    first = trees[0]  # GSM8K's first problem, the one the policy was taught
    assert first.question == problem.question
    assert any(n.correct for n in first.nodes)  # the few-shot-prompted policy solved it in the search
    assert first.problem_id in {x.problem_id for x in read_sft(os.path.join(out, "round1/data/sft.jsonl"))}
    assert not os.path.exists(os.path.join(out, "round1/ppm"))  # one solved problem: no pairs, no PPM
    (row,) = json.load(open(os.path.join(out, "report.json")))["rounds"]
    assert row["problems"] == 1 and row["skipped_train_problems"] == 1 and row["train_problems"] == 3
    assert "1 skipped" in open(os.path.join(out, "report.md")).read()
    from rstar_jax.data.fewshot import load_few_shot
    from rstar_jax.evolve.loading import round_searchers
    from rstar_jax.evolve.workdir import WorkDir

    proposer, scorer = round_searchers(cfg, WorkDir(out), resolve_all(cfg)[0], [])
    assert proposer.prompt_prefix == load_few_shot("builtin") and scorer is None  # what round 1 searched with


@needs_data
def test_evolve_bad_inputs_exit_2_and_write_nothing(tmp_path, capsys):
    from rstar_jax import cli

    base = ["evolve", "--config", os.path.join(ROOT, "configs", "demo_quick.yaml")]
    out = tmp_path / "run"
    numina = tmp_path / "numina.jsonl"
    numina.write_text("".join(json.dumps({"problem": f"Show {i}.", "solution": "Done."}) + "\n" for i in range(3)))
    policy = tmp_path / "no_tokenizer"
    policy.mkdir()
    (policy / "config.json").write_text("{}")
    cases = [
        ([f"domain.train_file={numina}", f"schedule=[{{policy: {policy}}}]"], [str(policy), "tokenizer"]),
        ([f"domain.train_file={numina}", f"schedule=[{{policy: {tmp_path}}}]"], [str(tmp_path), "config.json"]),
        ([f"domain.train_file={GSM8K}"], ["bootstrap", "synthetic", GSM8K]),
    ]
    for overrides, words in cases:
        assert cli.main([*base, "--out", str(out), *overrides]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and all(w in err for w in words), err
        assert not out.exists()
    policy_ok = tmp_path / "tok"
    from rstar_jax.domain import generate_problems
    from rstar_jax.domain.tokenizer import train_domain_tokenizer

    train_domain_tokenizer([p.question for p in generate_problems(4, 1, 0)], 300, policy_ok)
    (policy_ok / "config.json").write_text("{}")
    assert (
        cli.main([*base, "--out", str(out), f"domain.train_file={numina}", f"schedule=[{{policy: {policy_ok}}}]"]) == 2
    )
    err = capsys.readouterr().err
    assert str(numina) in err and "none of its 3 problems has an extractable gold answer" in err and not out.exists()


def test_solve_rate_selection_reads_the_previous_rounds_trees(uninterrupted):
    """``problems: solve_rate`` keeps the problems whose round-1 share of correct answers is at most the
    threshold (recomputed here from the trees)."""
    from rstar_jax.evolve.workdir import WorkDir

    wd = WorkDir(uninterrupted)
    train = evolve_mod.prepare_problems(tiny_config(), wd)[0]
    records = read_records(wd.path("round1/search", "trees.jsonl"))
    rates = {}
    for r in records:
        answers = [n for n in r.nodes if n.answer is not None]
        rates[r.problem_id] = sum(bool(n.correct) for n in answers) / len(answers) if answers else 0.0
    for threshold in (0.0, 0.5):
        cfg = tiny_config(f"schedule=[{{}}, {{problems: solve_rate, max_solve_rate: {threshold}}}]")
        chosen = evolve_mod.round_problems(cfg, wd, resolve_all(cfg)[1], train)
        assert [p.id for p in chosen] == [p.id for p in train if rates[p.id] <= threshold]
    assert 0 < len([p for p in train if rates[p.id] <= 0.5]) < len(train)  # the check can tell them apart


@needs_data
def test_train_limit_reads_a_real_file_up_to_n_answered_problems(tmp_path):
    from rstar_jax.data.problems import load_problems
    from rstar_jax.domain import generate_problems
    from rstar_jax.domain.tokenizer import train_domain_tokenizer
    from rstar_jax.evolve.inputs import load_inputs

    policy = tmp_path / "policy"
    train_domain_tokenizer([p.question for p in generate_problems(4, 1, 0)], 300, policy)
    (policy / "config.json").write_text("{}")  # checked for, not loaded, before a run starts
    mixed = tmp_path / "mixed.jsonl"
    with open(GSM8K) as f:
        gsm8k = [json.loads(next(f)) for _ in range(4)]
    records = [{"problem": "Prove it.", "solution": "Done."}, *gsm8k, {"problem": "Show it.", "solution": "Ok."}]
    mixed.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = tiny_config(f"domain.train_file={mixed}", "domain.train_limit=3", f"schedule=[{{policy: {policy}}}]")
    train, test, skipped = load_inputs(cfg)
    assert [p.answer for p in train] == [p.answer for p in load_problems(GSM8K, limit=3)] and test == []
    assert skipped == [f"{mixed}:1: no answer: expected 'answer', 'final_answer' or a \\boxed{{}} in 'solution'"]
