"""``rstar-jax extract``, ``rstar-jax train-policy`` and ``rstar-jax train-ppm``."""

from __future__ import annotations

import argparse
import json


def _common(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--trees",
        "--data",
        nargs="+",
        required=True,
        metavar="FILE_OR_DIR",
        help="tree records (search output)"
        + (
            ""
            if what == "tree"
            else f", extracted {what} files or the released rStar-Math {'PPM' if what == 'pairs' else what} data"
        )
        + ", or folders of them",
    )
    p.add_argument("--config", metavar="YAML", help="settings file (fields of the config dataclass)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="setting overrides, e.g. lr=1e-4")


def _train_args(p: argparse.ArgumentParser, what: str) -> None:
    _common(p, what)
    p.add_argument(
        "--format",
        choices=("auto", "rstar", "rstar-jax"),
        default="auto",
        help="data format: auto (each file's, from the fields of its first record), rstar (the released "
        "rStar-Math data: SFT {query, response}, PPM {prompt, pos, neg, pos_count, neg_count}) or rstar-jax "
        "(tree records, sft.jsonl, pairs.jsonl)",
    )
    p.epilog = (
        "Overrides named extract.KEY=VALUE (e.g. extract.min_edit_distance=3) set how tree "
        "records become training data (rstar_jax.train.examples.ExtractConfig)."
    )
    p.add_argument("--init", required=True, metavar="DIR", help="HF folder (model + tokenizer) to start from")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output: hf/, metrics, summary.json, run.json (what the run was started with; a rerun with "
        "the same settings and inputs resumes, one with others is refused unless --restart)",
    )
    p.add_argument("--ckpt", metavar="DIR", help="orbax checkpoints, resumed if present (default OUT/ckpt)")
    p.add_argument(
        "--memory-gb",
        type=float,
        metavar="GB",
        help="memory one device may use for a training step (default: the device's free memory; on CPU 60%% of "
        "the host's available memory); the global batch is split into micro-batches to fit",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard the run already in --out (and the checkpoints in --ckpt) and train again from --init",
    )
    p.add_argument("--steps", type=int, help="optimizer steps (default: the configured epochs)")
    p.add_argument("--coordinator", metavar="HOST:PORT", help="multi-process run: coordinator address")
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--process-id", type=int, default=0)


def _config(cls, args, overrides=None):
    from rstar_jax.config import load_config

    overrides = list(args.overrides if overrides is None else overrides)
    overrides += [f"steps={args.steps}"] if getattr(args, "steps", None) else []
    overrides += [f"memory_gb={args.memory_gb}"] if getattr(args, "memory_gb", None) is not None else []
    return load_config(cls, args.config, overrides)


def _train_configs(cls, args):
    """(training config, ExtractConfig) of a training command: its ``extract.KEY=VALUE`` overrides
    set how tree records given as --trees are extracted, the rest the training config."""
    from rstar_jax.config import load_config
    from rstar_jax.train.examples import ExtractConfig

    extract = [o for o in args.overrides if o.startswith("extract.")]
    return (
        _config(cls, args, [o for o in args.overrides if o not in extract]),
        load_config(ExtractConfig, None, [o[len("extract.") :] for o in extract]),
    )


def _distributed(args) -> None:
    if args.coordinator:
        from rstar_jax.train.trainer import init_distributed

        init_distributed(args.coordinator, args.num_processes, args.process_id)


def _run_policy(args) -> int:
    _distributed(args)
    from rstar_jax.train.api import train_policy_folder
    from rstar_jax.train.config import SFTConfig

    cfg, extract_cfg = _train_configs(SFTConfig, args)
    info = train_policy_folder(
        args.trees,
        args.init,
        args.out,
        args.ckpt,
        cfg,
        extract_cfg=extract_cfg,
        run_record=True,
        restart=args.restart,
        fmt=args.format,
    )
    print(json.dumps(info, indent=2))
    return 0


def _run_reward(args) -> int:
    _distributed(args)
    from rstar_jax.train.api import train_reward_folder
    from rstar_jax.train.config import RewardConfig

    cfg, extract_cfg = _train_configs(RewardConfig, args)
    info = train_reward_folder(
        args.trees,
        args.init,
        args.out,
        args.ckpt,
        cfg,
        kind=args.kind,
        extract_cfg=extract_cfg,
        run_record=True,
        restart=args.restart,
        fmt=args.format,
    )
    print(json.dumps(info, indent=2))
    return 0


def _run_extract(args) -> int:
    from rstar_jax.train.examples import ExtractConfig, run_extract, write_extracted
    from rstar_jax.train.formats import write_rstar

    write = write_rstar if args.format == "rstar" else write_extracted
    stats = run_extract(args.trees, args.out, _config(ExtractConfig, args), write)
    print(json.dumps(stats, indent=2))
    return 0


def add_train_policy_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-policy",
        help="SFT the policy on the best correct trajectories of search trees",
        description="Supervised fine-tuning of the policy (causal LM loss on solution tokens, packed "
        "sequences, AdamW) from an HF folder; writes OUT/hf. Resumes from --ckpt.",
    )
    _train_args(p, "SFT")
    p.set_defaults(func=_run_policy)


def add_train_ppm_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-ppm",
        help="train the process preference model (or a PQM / ORM) from search trees",
        description="Train a reward model on the policy backbone + value head: PPM (Bradley-Terry on "
        "step pairs), PQM (Q regression) or ORM (outcome); writes OUT/hf with the head, a transformers "
        "<Family>ForTokenClassification folder (one label: the score at the last token).",
    )
    _train_args(p, "pairs")
    p.add_argument("--kind", choices=("ppm", "pqm", "orm"), default="ppm")
    p.set_defaults(func=_run_reward)


def add_extract_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "extract",
        help="SFT examples and PPM pairs from search trees",
        description="Write OUT/sft.jsonl, OUT/pairs.jsonl and OUT/stats.json from tree records "
        "(settings: rstar_jax.train.examples.ExtractConfig); with --format rstar, OUT/rstar_sft.jsonl and "
        "OUT/rstar_ppm.jsonl in the layouts of the released rStar-Math data instead.",
    )
    _common(p, "tree")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--format",
        choices=("rstar-jax", "rstar"),
        default="rstar-jax",
        help="rstar-jax: ours (sft.jsonl, pairs.jsonl); rstar: the official rStar-Math SFT {query, response} "
        "and PPM {prompt, pos, neg, pos_count, neg_count} records",
    )
    p.set_defaults(func=_run_extract)
