"""The base model a self-evolution run starts from, as an HF folder with its tokenizer.

Either a local checkpoint (``init``: any Qwen2/Llama HF folder; the step markers
are added to its tokenizer and embeddings) or, for the embedded default, a
domain tokenizer trained on the problems' reference solutions plus a randomly
initialised small transformer, optionally given a copy warm-up
(``rstar_jax.train.copy_warmup``) in place of the pretraining a real base had.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import jax
import numpy as np

from rstar_jax.domain.synthetic import reference_solution
from rstar_jax.domain.tokenizer import save_tokenizer, train_domain_tokenizer
from rstar_jax.evolve.config import BaseModelSpec
from rstar_jax.models.config import ModelConfig
from rstar_jax.models.hf_io import load_hf, save_hf
from rstar_jax.models.tokenizer import add_step_tokens, load_tokenizer
from rstar_jax.models.transformer import init_params
from rstar_jax.steps import build_prompt
from rstar_jax.train.copy_warmup import copy_warmup
from rstar_jax.train.trainer import gather_params


def build_base_model(spec: BaseModelSpec, problems: Sequence, out_dir: str, seed: int = 0) -> dict:
    """Write the base model + tokenizer to ``out_dir``; return a summary."""
    if spec.init:
        config, params = load_hf(spec.init, dtype=spec.dtype)
        tokenizer = load_tokenizer(spec.tokenizer or spec.init)
        tokenizer, config, params = add_step_tokens(tokenizer, config, params)
        source = spec.init
    else:
        if spec.tokenizer:
            tokenizer = load_tokenizer(spec.tokenizer)
        else:
            tokenizer = train_domain_tokenizer(_corpus(problems), vocab_size=spec.vocab_size)
        config = ModelConfig(
            vocab_size=len(tokenizer),
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_layers=spec.num_layers,
            num_heads=spec.num_heads,
            num_kv_heads=spec.num_kv_heads,
            max_position_embeddings=spec.max_position_embeddings,
            rope_theta=spec.rope_theta,
            tie_word_embeddings=spec.tie_word_embeddings,
            dtype=spec.dtype,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        params = init_params(config, jax.random.key(seed))
        source = "scratch"
        if spec.copy_warmup.steps:
            ordinary = np.setdiff1d(np.arange(config.vocab_size), tokenizer.all_special_ids)
            config, params = copy_warmup(
                (config, params),
                ordinary,
                os.path.join(out_dir, "copy_warmup"),
                dataclasses.replace(spec.copy_warmup, seed=seed),
            )
            params = gather_params(params)  # from the training mesh (a collective across processes)
    if jax.process_index() == 0:  # every process of a run built the same model: one writes it
        save_hf(config, params, out_dir)
        save_tokenizer(tokenizer, out_dir) if not spec.init else tokenizer.save_pretrained(out_dir)
    return {
        "source": source,
        "parameters": config.num_params(),
        "vocab_size": config.vocab_size,
        "copy_warmup_steps": 0 if spec.init else spec.copy_warmup.steps,
    }


def _corpus(problems: Sequence) -> list[str]:
    """Prompts plus reference solutions of the synthetic domain: what the policy will read and write."""
    texts = []
    for p in problems:
        try:
            texts.append(build_prompt(p.question) + "".join(reference_solution(p)))
        except (KeyError, ValueError):  # not a synthetic problem: the question alone
            texts.append(build_prompt(p.question))
    return texts
