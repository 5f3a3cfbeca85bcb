"""Self-evolution (docs/DESIGN.md §1, §9): search -> extract -> train policy -> train PPM -> evaluate.

Each round runs with its settings from ``evolve.schedule``: by default round 1
searches with the scripted bootstrap proposer (terminal-guided MCTS) and round
r > 1 with round r-1's policy and PPM; a schedule may give round 1 an HF folder
with a few-shot prompt, keep later rounds terminal-guided, or pick problems by
the previous round's results. Each round's policy is trained again from the
base model on that round's SFT data; its PPM starts from that policy (a round
whose search yields no preference pairs trains none). Every
stage is a unit of a ``WorkDir``: rerunning the same command resumes after the
last finished unit, and a search shard resumes after its last finished batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections import Counter

import yaml

from rstar_jax.config import load_config
from rstar_jax.data.problems import Problem, load_problems, save_problems
from rstar_jax.distributed import Cluster, barrier
from rstar_jax.errors import UserError, one_line
from rstar_jax.evolve.base_model import build_base_model
from rstar_jax.evolve.config import EvolveConfig
from rstar_jax.evolve.evaluate import evaluate_round
from rstar_jax.evolve.inputs import eval_problems, load_inputs
from rstar_jax.evolve.loading import round_searchers
from rstar_jax.evolve.report import write_report
from rstar_jax.evolve.schedule import BOOTSTRAP, PREVIOUS, Round, resolve, resolve_all
from rstar_jax.evolve.workdir import WorkDir
from rstar_jax.io import atomic_write_json, atomic_write_text
from rstar_jax.runs import (
    RUN_RECORD,
    clear_folder,
    differences,
    file_sha256,
    folder_sha256,
    read_run_record,
    write_run_record,
)
from rstar_jax.sandbox import Sandbox
from rstar_jax.search import mcts
from rstar_jax.search.answers import solved_any
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.records import read_records, write_records
from rstar_jax.search.sharded import gather, merged_stats, search_shards
from rstar_jax.train.api import train_policy_folder, train_reward_folder
from rstar_jax.train.examples import extract, read_pairs, read_sft, write_pairs, write_sft
from rstar_jax.viewer import write_eval_page


def log(msg: str) -> None:
    print(f"[evolve {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- problems and the base model -------------------------------------------------------
def prepare_problems(
    cfg: EvolveConfig, wd: WorkDir, loaded: tuple[list[Problem], list[Problem], list[str]] | None = None
) -> tuple[list[Problem], list[Problem]]:
    """The run's problems, saved once as the ``problems`` unit (``loaded``: what ``load_inputs``
    already read and validated, so the files are not read twice)."""
    if not wd.done("problems"):
        with wd.unit("problems") as tmp:
            train, test, skipped = loaded if loaded is not None else load_inputs(cfg)
            save_problems(train, os.path.join(tmp, "train.jsonl"))
            save_problems(test, os.path.join(tmp, "test.jsonl"))
            if skipped:
                log(f"skipped {len(skipped)} training problem(s) without a checkable gold answer, e.g. {skipped[0]}")
            info = {"train": len(train), "test": len(test), "skipped_train": len(skipped)}
            atomic_write_json(os.path.join(tmp, "info.json"), info)
    saved = [wd.path("problems", f"{split}.jsonl") for split in ("train", "test")]
    return tuple(load_problems(p) if os.path.getsize(p) else [] for p in saved)  # no test file: no test problems


def prepare_base(cfg: EvolveConfig, wd: WorkDir, train: list[Problem], cluster: Cluster = Cluster()) -> str:
    """The base model folder (HF format + tokenizer): from ``model.init`` or from scratch (its copy
    warm-up trains on every process of the run, ``_replicated_unit``)."""

    def build(tmp: str) -> None:
        info = build_base_model(cfg.model, train, tmp, seed=cfg.seed)
        if cluster.is_main:
            atomic_write_json(os.path.join(tmp, "info.json"), info)

    _replicated_unit(wd, "base", cluster, build)
    return wd.path("base")


def _replicated_unit(wd: WorkDir, name: str, cluster: Cluster, fn) -> None:
    """Run ``fn(folder)`` on every process of the run (a training job: its collectives and orbax
    checkpoints span all of them, in one shared folder; the trainer writes outputs from process 0
    only); the folder then becomes unit ``name``."""
    if wd.done(name):
        return
    if not cluster.multi:
        with wd.unit(name) as tmp:
            fn(tmp)
    else:
        shared = wd.path(f".{name.replace('/', '__')}.replicas")  # the same path on every process
        if cluster.is_main:
            shutil.rmtree(shared, ignore_errors=True)  # an attempt that died: redone whole
            os.makedirs(shared)
        barrier(f"{name}/start", cluster)
        fn(shared)
        barrier(f"{name}/trained", cluster)
        if cluster.is_main:
            wd.commit(name, shared)
        barrier(f"{name}/done", cluster)
    log(f"{name}: {wd.info(name)}")


# --- search --------------------------------------------------------------------------------
def round_search_config(cfg: EvolveConfig, r: int) -> SearchConfig:
    """Round r's search settings (``evolve.schedule``)."""
    return resolve(cfg, r).search


def round_problems(cfg: EvolveConfig, wd: WorkDir, rnd: Round, train: list[Problem]) -> list[Problem]:
    """The training problems round r searches (``RoundSettings.problems``), at most ``problem_limit``
    of them: those with the fewest SFT examples in round r-1's data first, ties in a seeded order."""
    r = rnd.index
    have = Counter(x.problem_id for x in read_sft(wd.path(f"round{r - 1}/data", "sft.jsonl"))) if r > 1 else Counter()
    if rnd.problems == "unsolved":
        train = [p for p in train if not have[p.id]]
    elif rnd.problems == "solve_rate":
        rates = _solve_rates(wd, r - 1)
        train = [p for p in train if rates.get(p.id, 1.0 if have[p.id] else 0.0) <= rnd.max_solve_rate]
    limit = rnd.problem_limit
    if not limit or limit >= len(train):
        return train
    tie = {p.id: hashlib.sha1(f"{cfg.seed}/{r}/{p.id}".encode()).hexdigest() for p in train}
    return sorted(train, key=lambda p: (have[p.id], tie[p.id]))[:limit]


def _solve_rates(wd: WorkDir, r: int) -> dict[str, float]:
    """Per problem searched in round r: the share of its tree's answers that are correct."""
    out = {}
    for rec in read_records(wd.path(f"round{r}/search", "trees.jsonl")):
        graded = [n.correct for n in rec.nodes if n.answer is not None]
        out[rec.problem_id] = sum(map(bool, graded)) / len(graded) if graded else 0.0
    return out


def search_round(cfg: EvolveConfig, wd: WorkDir, rnd: Round, train: list[Problem], cluster: Cluster) -> list:
    """Round r's trees: every process searches the hash shards it owns (``search.sharded``), then the
    main process merges them into the ``round{r}/search`` unit."""
    r = rnd.index
    name = f"round{r}/search"
    if not wd.done(name):
        train = round_problems(cfg, wd, rnd, train)
        if not train:
            raise UserError(
                f"schedule[{r - 1}]: no training problems left to search with problems={rnd.problems!r}; "
                "choose another selection"
            )
        scfg, progress = rnd.search, wd.path(f"round{r}/search.progress")
        proposer, scorer = round_searchers(cfg, wd, rnd, train)
        with Sandbox() as sandbox:
            search_shards(
                train,
                lambda batch: mcts.run_mcts(batch, proposer, sandbox, scfg, scorer),
                progress,
                cluster,
                cfg.search_shards or cluster.num_processes,
                scfg.batch_size,
                log,
            )
        barrier(f"{name}/searched", cluster)
        if cluster.is_main:
            with wd.unit(name) as tmp:
                write_records(os.path.join(tmp, "trees.jsonl"), gather(train, progress))
                atomic_write_json(os.path.join(tmp, "info.json"), merged_stats(progress, cluster).as_dict())
            shutil.rmtree(progress)
        barrier(f"{name}/merged", cluster)
    return read_records(wd.path(name, "trees.jsonl"))


# --- extraction and training -------------------------------------------------------------
def extract_round(cfg: EvolveConfig, wd: WorkDir, r: int, records) -> str:
    """SFT examples and PPM pairs of round r (plus, with ``accumulate_data``, the previous
    round's data for problems this round did not cover, so the data set only grows)."""
    name = f"round{r}/data"
    if not wd.done(name):
        with wd.unit(name) as tmp:
            sft, pairs, stats = extract(records, cfg.extract)
            info = {**stats, "train_solved_share": solved_any(records), "new_sft_examples": len(sft)}
            if cfg.accumulate_data and r > 1:
                prev = wd.path(f"round{r - 1}/data")
                sft, pairs = (
                    _carry_over(sft, read_sft(os.path.join(prev, "sft.jsonl"))),
                    _carry_over(pairs, read_pairs(os.path.join(prev, "pairs.jsonl"))),
                )
                info.update(sft_examples=len(sft), pair_groups=len(pairs), pairs=sum(len(g.pairs) for g in pairs))
            if not sft:
                raise RuntimeError(
                    f"round {r}: the search found no correct solution to train on "
                    f"({len(records)} problems); see {wd.path(f'round{r}/search')}"
                )
            write_sft(sft, os.path.join(tmp, "sft.jsonl"))
            write_pairs(pairs, os.path.join(tmp, "pairs.jsonl"))
            atomic_write_json(os.path.join(tmp, "info.json"), info)
        log(f"round {r} data: {wd.info(name)}")
    return wd.path(name)


def _carry_over(new: list, old: list) -> list:
    """``new`` plus the items of ``old`` whose problem ``new`` does not cover."""
    covered = {x.problem_id for x in new}
    return new + [x for x in old if x.problem_id not in covered]


def _train_unit(
    wd: WorkDir, name: str, train_fn, data_file: str, init: str, train_cfg, seed: int, cluster: Cluster
) -> str:
    """Train one model as a unit, every process a data-parallel replica; the trainer checkpoints into
    a stable ``NAME.ckpt`` folder, so a kill mid-training resumes there. Returns its HF folder."""
    ckpt = wd.path(name + ".ckpt")

    def train(out: str) -> None:
        info = train_fn(data_file, init, out, ckpt, train_cfg, seed=seed)
        if cluster.is_main:
            atomic_write_json(os.path.join(out, "info.json"), _portable(info))

    if not wd.done(name):
        _replicated_unit(wd, name, cluster, train)
        if cluster.is_main:
            shutil.rmtree(ckpt, ignore_errors=True)
    return wd.path(name, "hf")


def _train_policy(cfg: EvolveConfig, wd: WorkDir, rnd: Round, data_dir: str, init: str, cluster: Cluster) -> str:
    """Round r's policy, trained from ``init`` (the base model, or the previous round's policy)."""
    r = rnd.index
    sft = os.path.join(data_dir, "sft.jsonl")
    seed = cfg.seed * 1000 + r
    return _train_unit(wd, f"round{r}/policy", train_policy_folder, sft, init, rnd.sft, seed, cluster)


def _train_ppm(cfg: EvolveConfig, wd: WorkDir, rnd: Round, data_dir: str, policy: str, cluster: Cluster) -> str:
    """Round r's PPM, initialised from round r's policy, trained on this round's pairs."""
    r = rnd.index
    pairs = os.path.join(data_dir, "pairs.jsonl")
    seed = cfg.seed * 1000 + r
    return _train_unit(wd, f"round{r}/ppm", train_reward_folder, pairs, policy, rnd.ppm, seed, cluster)


def _portable(info: dict) -> dict:
    """Training summaries without the temporary output path (the unit is renamed afterwards)."""
    return {k: v for k, v in info.items() if k != "hf"}


# --- the loop ------------------------------------------------------------------------------
def run(cfg: EvolveConfig, out: str, restart: bool = False, cluster: Cluster = Cluster()) -> dict:
    """Run (or resume) every round; returns the report.

    The inputs are validated before anything is written to ``out``; the folder then records what
    the run was started with (``run.json``). Rerunning with the same config and inputs resumes;
    different ones are refused unless ``restart``, which discards the folder's run first.

    With several processes (``cluster``; ``out`` on a filesystem they share) each searches its own
    shards and trains as a data-parallel replica; the main process opens the folder, merges the
    search, extracts, evaluates and reports while the others wait at a barrier (docs/SCALE.md)."""

    loaded = load_inputs(cfg)
    _main_only(cluster, "evolve/opened", lambda: _check_config(cfg, out, _run_record(cfg), restart))
    wd = WorkDir(out)
    _main_only(cluster, "evolve/problems", lambda: prepare_problems(cfg, wd, loaded))
    train, test = prepare_problems(cfg, wd)
    evals = eval_problems(cfg, test)
    base = prepare_base(cfg, wd, train, cluster)
    rows = []
    for rnd in resolve_all(cfg):
        r, t0 = rnd.index, time.time()
        records = search_round(cfg, wd, rnd, train, cluster)
        _main_only(cluster, f"round{r}/data", lambda: extract_round(cfg, wd, r, records))
        data_dir = wd.path(f"round{r}/data")
        init = base if cfg.policy_init == "base" or r == 1 else wd.path(f"round{r - 1}/policy", "hf")
        policy = _train_policy(cfg, wd, rnd, data_dir, init, cluster)
        ppm = None
        if wd.info(f"round{r}/data")["pairs"]:
            ppm = _train_ppm(cfg, wd, rnd, data_dir, policy, cluster)
        else:  # too few solutions to compare (a small run): no PPM, so no PPM-guided method this round
            log(f"round {r}: the search found no preference pairs; no PPM is trained this round")
        name = f"round{r}/eval"
        _main_only(cluster, name, lambda: _evaluate_round(cfg, wd, r, policy, ppm, evals, len(train), t0))
        rows.append(wd.info(name))
        if cluster.is_main:
            write_report(rows, out, cfg)
    return {"rounds": rows}


def _main_only(cluster: Cluster, name: str, fn) -> None:
    """Run ``fn`` on the main process only; every process waits at the barrier ``name`` until it is done."""
    if cluster.is_main:
        fn()
    barrier(name, cluster)


def _evaluate_round(cfg: EvolveConfig, wd: WorkDir, r: int, policy: str, ppm, evals, n_train: int, t0: float):
    """The ``round{r}/eval`` unit: every method on the held-out problems, plus the round's data stats."""
    name = f"round{r}/eval"
    if wd.done(name):
        return
    with wd.unit(name) as tmp:
        ecfg = cfg.eval if ppm else dataclasses.replace(cfg.eval, methods=_without_ppm(cfg.eval.methods))
        metrics = evaluate_round(policy, ppm, evals, ecfg, tmp, seed=cfg.seed)
        write_eval_page(tmp, title=f"Round {r} evaluation trees")  # trees.html: every method's trees
        data = wd.info(f"round{r}/data")
        metrics.update(
            round=r,
            train_solved_share=data["train_solved_share"],
            sft_examples=data.get("sft_examples"),
            ppm_pairs=data.get("pairs"),
            train_problems=n_train,
            skipped_train_problems=wd.info("problems").get("skipped_train", 0),
        )
        atomic_write_json(os.path.join(tmp, "info.json"), metrics)
    log(f"round {r} done in {time.time() - t0:.0f} s: {wd.info(name)}")


def _without_ppm(methods: tuple[str, ...]) -> tuple[str, ...]:
    """The evaluation methods that need no reward model."""
    return tuple(m for m in methods if m in ("greedy", "sc"))


# What `evolve` writes at the top of a run folder (and all that --restart removes): the records,
# units, their partial/claim/lock/temporary files, the report.
_RUN_ENTRIES = (
    r"\.?(config\.yaml|run\.json|manifest(\.json)?|problems|base|round\d+|report\.(md|json)|accuracy_by_round\.png|tb)"
    r"(\..*)?",
    r"\.round\d+__.*",  # the shared folders of training replicas (and claims of older runs' shards)
)


def _run_record(cfg: EvolveConfig) -> dict:
    """What a run is started with: its config, and the files it reads by content hash."""
    d, m = cfg.domain, cfg.model
    inputs = {}
    for key, path in (("domain.train_file", d.train_file), ("domain.test_file", d.test_file)):
        if path:
            inputs[key] = {"path": path, "sha256": file_sha256(path)}
    for key, path in (("model.init", m.init), ("model.tokenizer", m.tokenizer)):
        if path:
            inputs[key] = {"path": path, "sha256": folder_sha256(path)}
    for rnd in resolve_all(cfg):
        if rnd.policy not in (BOOTSTRAP, PREVIOUS):
            inputs[f"schedule[{rnd.index - 1}].policy"] = {"path": rnd.policy, "sha256": folder_sha256(rnd.policy)}
        if rnd.few_shot and os.path.isfile(rnd.few_shot):
            inputs[f"schedule[{rnd.index - 1}].few_shot"] = {"path": rnd.few_shot, "sha256": file_sha256(rnd.few_shot)}
    config = json.loads(json.dumps(dataclasses.asdict(cfg)))
    if not config["schedule"]:  # run folders started before per-round settings resume
        del config["schedule"]
    return {"command": "evolve", "config": config, "inputs": inputs}


def _check_config(cfg: EvolveConfig, out: str, record: dict, restart: bool = False) -> WorkDir:
    """Open ``out`` for this run: a new folder is started (config.yaml, run.json); a folder started
    with the same config and inputs resumes; one started with others is refused, naming the
    differences, unless ``restart`` (which first removes what an earlier run wrote there)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file, not a folder; use a new --out folder")
    state, detail = _folder_state(out, record)
    again = f"rerun with --restart to discard the run in {out} and start over, or use a new --out folder"
    if restart:
        removed = clear_folder(out, _RUN_ENTRIES)
        if removed:
            log(f"--restart: removed {len(removed)} entries of the earlier run in {out}")
    elif state == "differs":
        raise UserError(
            f"{out} was started with a different config or inputs ({'; '.join(detail)}); {again} "
            "(or rerun with the settings it was started with)"
        )
    elif state == "invalid":
        raise UserError(f"{out} cannot be resumed: {detail}; {again}")
    wd = WorkDir(out)
    path = wd.path("config.yaml")
    text = _config_text(cfg)
    if not (os.path.isfile(path) and _read_bytes(path) == text.encode()):
        atomic_write_text(path, text)
    if read_run_record(out) != record:  # new, or a folder started before run records (inputs hashed now)
        write_run_record(out, record)
    removed = wd.sweep_partials()
    if removed:
        log(f"removed {len(removed)} partial folder(s) of processes that are gone")
    return wd


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _config_text(cfg: EvolveConfig) -> str:
    return yaml.safe_dump(json.loads(json.dumps(dataclasses.asdict(cfg))), sort_keys=False)


def _folder_state(out: str, record: dict) -> tuple[str, list[str] | str | None]:
    """("new" | "same" | "differs" | "invalid", the differences or what is wrong) of ``out``."""
    old = read_run_record(out)
    if old is not None:
        if old.get("command", "evolve") != "evolve":
            return "invalid", f"{os.path.join(out, RUN_RECORD)} records a {old['command']} run, not an evolve run"
        diff = differences({"config": old["config"]}, {"config": record["config"]})
        then = old.get("inputs", {})
        for key, now in record["inputs"].items():  # a changed path is named by the config already
            if then.get(key, {}).get("path") == now["path"] and then[key].get("sha256") != now["sha256"]:
                diff.append(f"{key} ({now['path']}): its content changed since the run started")
        return ("differs", diff) if diff else ("same", None)
    started = os.path.exists(os.path.join(out, "manifest.json"))  # some unit finished
    path = os.path.join(out, "config.yaml")
    if not os.path.isfile(path):
        return ("invalid", f"it holds finished units but no config.yaml or {RUN_RECORD}") if started else ("new", None)
    if not _read_bytes(path).strip():
        return (
            ("invalid", f"{path} is empty, so the run cannot be checked against this one") if started else ("new", None)
        )
    try:
        old_cfg = load_config(EvolveConfig, path)
    except (UserError, ValueError, TypeError) as e:
        return "invalid", f"{path} is not a valid evolve config ({one_line(e)}): the folder was never validly started"
    diff = differences({"config": json.loads(json.dumps(dataclasses.asdict(old_cfg)))}, {"config": record["config"]})
    if not diff:
        return "same", None  # a folder started before run records: resumes
    # config.yaml but no finished unit (older versions wrote it before checking the inputs): nothing to lose
    return ("differs", diff) if started else ("new", None)
