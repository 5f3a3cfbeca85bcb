"""A tiny policy trained in the test run until it writes known solutions: a real HF folder that solves
real problems, fast enough for the default suite.

The SFT targets are the synthetic domain's reference solutions, or solutions written by hand in the
step format for real benchmark problems; the prompt may carry a few-shot block (what an HF bootstrap
policy reads). The folder is built once per test session under pytest's base temp folder.
"""

from __future__ import annotations

import os

from rstar_jax.domain.tokenizer import train_domain_tokenizer
from rstar_jax.evolve.base_model import BaseModelSpec, build_base_model
from rstar_jax.steps import END_OF_CODE, END_OF_STEP, answer_step, build_prompt, output_block
from rstar_jax.train.api import train_policy_folder, train_reward_folder
from rstar_jax.train.config import CopyWarmupConfig, RewardConfig, SFTConfig
from rstar_jax.train.examples import Continuation, PairGroup, SFTExample, write_pairs, write_sft

# Our step-format solution of GSM8K's first test problem (gold 18), checked by the tests that use it.
GSM8K_FIRST_SOLUTION = [
    f"# Janet's ducks lay 16 eggs; she eats 3 and bakes with 4.\nleft = 16 - 3 - 4\n{END_OF_STEP}",
    f"# She sells the rest at $2 each; print her daily income.\nprint(left * 2)\n{END_OF_CODE}" + output_block("18"),
    answer_step("18"),
]


def trained_policy(folder: str, items, steps: int = 120, seed: int = 0) -> str:
    """An HF folder (``folder/hf``) whose policy writes ``solution`` (a list of steps) after
    ``prefix + build_prompt(problem.question)`` for each ``(prefix, problem, solution)`` of ``items``;
    reused if already built."""
    hf = os.path.join(folder, "hf")
    if os.path.isfile(os.path.join(hf, "config.json")):
        return hf
    prompts = [prefix + build_prompt(p.question) for prefix, p, _ in items]
    texts = [q + "".join(s) for q, (_, _, s) in zip(prompts, items)]
    tokenizer, base = os.path.join(folder, "tokenizer"), os.path.join(folder, "base")
    tok = train_domain_tokenizer(texts, vocab_size=400, out_dir=tokenizer)
    spec = BaseModelSpec(
        tokenizer=tokenizer,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        max_position_embeddings=2048,
        copy_warmup=CopyWarmupConfig(steps=0),
    )
    build_base_model(spec, [p for _, p, _ in items], base, seed=seed)
    data = os.path.join(folder, "sft.jsonl")
    write_sft([SFTExample(p.id, q, "".join(s), 1.0, 1.0, ()) for q, (_, p, s) in zip(prompts, items)], data)
    cfg = SFTConfig(
        lr=3e-3,
        warmup_steps=5,
        weight_decay=0.0,
        batch_size=len(items),
        seq_len=max(len(tok(t)["input_ids"]) for t in texts) + 8,
        steps=steps,
        schedule="cosine",
    )
    train_policy_folder(data, base, folder, os.path.join(folder, "ckpt"), cfg, seed=seed)
    return hf


def trained_ppm(folder: str, policy: str, problem, good: str, bad: str, steps: int = 5) -> str:
    """A PPM (``folder/hf``) trained from ``policy`` for a few steps to prefer first step ``good`` to ``bad``."""
    hf = os.path.join(folder, "hf")
    if os.path.isfile(os.path.join(hf, "config.json")):
        return hf
    group = PairGroup(
        problem.id,
        "step",
        build_prompt(problem.question),
        "",
        0,
        (Continuation(good, 1.0, 1),),
        (Continuation(bad, -1.0, 2),),
        ((0, 0),),
    )
    data = os.path.join(folder, "pairs.jsonl")
    write_pairs([group], data)
    cfg = RewardConfig(lr=1e-3, batch_size=1, seq_len=512, steps=steps, eval_fraction=0.0)
    train_reward_folder(data, policy, folder, os.path.join(folder, "ckpt"), cfg, seed=0)
    return hf


def gsm8k_models(root: str, gsm8k_file: str) -> tuple[object, str, str]:
    """(GSM8K's first test problem, a policy that solves it after the plain prompt and after the builtin
    few-shot block, a PPM from that policy), built once under ``root``."""
    from rstar_jax.data.fewshot import load_few_shot
    from rstar_jax.data.problems import load_problems

    problem = load_problems(gsm8k_file, limit=1)[0]
    items = [("", problem, GSM8K_FIRST_SOLUTION), (load_few_shot("builtin"), problem, GSM8K_FIRST_SOLUTION)]
    policy = trained_policy(os.path.join(root, "gsm8k_policy"), items)
    wrong = GSM8K_FIRST_SOLUTION[0].replace("16 - 3 - 4", "16 - 3 + 4")
    ppm = trained_ppm(os.path.join(root, "gsm8k_ppm"), policy, problem, GSM8K_FIRST_SOLUTION[0], wrong)
    return problem, policy, ppm
