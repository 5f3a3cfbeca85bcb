"""The inputs of a self-evolution run, read and checked before anything is written: the problem
files (or the synthetic domain), the base model folders, each round's policy folder and few-shot file,
and the held-out problems evaluated each round."""

from __future__ import annotations

import os

from rstar_jax.data.fewshot import load_few_shot
from rstar_jax.data.problems import Problem, load_answered, load_problems
from rstar_jax.domain.synthetic import make_splits, plan_of
from rstar_jax.errors import UserError
from rstar_jax.evolve.config import EvolveConfig
from rstar_jax.evolve.schedule import BOOTSTRAP, PREVIOUS, resolve_all
from rstar_jax.grading import normalize
from rstar_jax.models.tokenizer import load_tokenizer


def load_inputs(cfg: EvolveConfig) -> tuple[list[Problem], list[Problem], list[str]]:
    """Read and check every input the config names (problem files, model folders, few-shot files)
    without writing anything; a problem is raised as ``UserError`` naming the setting and the file.
    Returns (train, test, ``where: why`` of each training problem skipped for want of a checkable
    gold answer)."""
    d, m = cfg.domain, cfg.model
    for key, path in (("domain.train_file", d.train_file), ("domain.test_file", d.test_file)):
        if path and not os.path.isfile(path):
            what = "is a folder, not a problem file" if os.path.isdir(path) else "does not exist"
            raise UserError(f"{key}: {path} {what}; fix the path (in the config or as an override {key}=PATH)")
    for key, path in (("model.init", m.init), ("model.tokenizer", m.tokenizer)):
        if path and not os.path.isdir(path):
            raise UserError(f"{key}: {path}: model folder does not exist; fix the path or unset {key}")
    if m.init and not os.path.isfile(os.path.join(m.init, "config.json")):
        raise UserError(f"model.init: {os.path.join(m.init, 'config.json')}: no config.json (not an HF model folder)")
    _check_round_inputs(cfg)
    skipped: list[str] = []
    if d.train_file:
        train, skipped = checkable_problems(d.train_file, d.train_limit or None)
        test = load_problems(d.test_file) if d.test_file else []
    else:
        try:
            train, test = make_splits(cfg.seed, d.n_train_per_tier, d.n_test_per_tier, tuple(d.tiers))
        except ValueError as e:
            raise UserError(f"domain: {e}") from None
    if not train:
        raise UserError(
            f"domain: no training problems (n_train_per_tier={d.n_train_per_tier}, tiers={list(d.tiers)}); "
            "set domain.n_train_per_tier >= 1 or domain.train_file"
        )
    _check_scripted_rounds(cfg, train)
    return train, test, skipped


def _check_scripted_rounds(cfg: EvolveConfig, train: list[Problem]) -> None:
    """The scripted bootstrap proposer writes solutions from a synthetic problem's clause plan: a
    round that uses it needs synthetic training problems (generated, or saved to a file)."""
    scripted = [rnd for rnd in resolve_all(cfg) if rnd.policy == BOOTSTRAP]
    foreign = next((p for p in train if not _synthetic(p)), None)
    if scripted and foreign is not None:
        raise UserError(
            f"schedule[{scripted[0].index - 1}].policy: the scripted bootstrap proposer only knows synthetic "
            f"problems, and {cfg.domain.train_file} holds others (problem {foreign.id}); give that round an HF "
            "folder (schedule: [{policy: PATH, few_shot: builtin}])"
        )


def _synthetic(problem: Problem) -> bool:
    try:
        plan_of(problem)
    except (ValueError, KeyError, TypeError, IndexError):
        return False
    return True


def checkable_problems(path: str, limit: int | None = None) -> tuple[list[Problem], list[str]]:
    """The problems of a training file whose gold answer the grader can check (present, and non-empty
    once normalised), and ``where: why`` of each one skipped; with ``limit``, the file is read up to
    its ``limit``-th problem with an answer."""
    problems, skipped = load_answered(path, limit)
    kept = []
    for p in problems:
        if normalize(p.answer):
            kept.append(p)
        else:
            skipped.append(f"{path}: problem {p.id}: gold answer {p.answer!r} is empty once normalised")
    if not kept:
        raise UserError(f"{path}: no problem has a gold answer the grader can check ({skipped[0]})")
    return kept, skipped


def _check_round_inputs(cfg: EvolveConfig) -> None:
    """Each round's HF policy folder (config.json and a tokenizer) and few-shot file, before any work."""
    for rnd in resolve_all(cfg):
        where = f"schedule[{rnd.index - 1}]"
        if rnd.policy not in (BOOTSTRAP, PREVIOUS):
            if not os.path.isfile(os.path.join(rnd.policy, "config.json")):
                raise UserError(f"{where}.policy: {rnd.policy}: not an HF model folder (no config.json)")
            load_tokenizer(rnd.policy)  # a folder without one is a UserError naming it
        if rnd.few_shot:
            load_few_shot(rnd.few_shot)


def eval_problems(cfg: EvolveConfig, test: list[Problem]) -> list[Problem]:
    """The held-out problems evaluated each round; ``eval_tier`` filters synthetic problems only."""
    d = cfg.domain
    chosen = [p for p in test if d.eval_tier is None or p.meta.get("tier", d.eval_tier) == d.eval_tier]
    return chosen[: d.eval_limit] if d.eval_limit else chosen
