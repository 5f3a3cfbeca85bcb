"""Build engine-backed proposers and scorers from HF checkpoint folders."""

from __future__ import annotations

from rstar_jax.engine import Buckets, Engine
from rstar_jax.models.hf_ppm import check_same_tokenizer, load_ppm
from rstar_jax.models.placement import Inference, placer
from rstar_jax.models.tokenizer import load_tokenizer
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.proposers import PolicyProposer, PPMScorer


def search_engine(
    config, params, tokenizer, min_rows: int = 8, compact: bool = False, memory_gb: float | None = None, mesh=None
) -> Engine:
    """An engine with coarse buckets: search changes its batch and lengths every iteration, and
    on a small model each new shape costs more to compile than its padding costs to run."""
    buckets = Buckets.coarse(min_rows=min_rows, min_length=32)
    return Engine(config, params, tokenizer, buckets=buckets, compact=compact, memory_gb=memory_gb, mesh=mesh)


def inference_of(cfg: SearchConfig | None) -> Inference:
    """dtype, tensor-parallel size and memory budget of the models a search loads."""
    cfg = cfg or SearchConfig()
    return Inference(cfg.dtype, cfg.tensor_parallel or None, cfg.memory_gb)


def load_engine(path: str, cfg: SearchConfig | None = None) -> Engine:
    """The model in HF folder ``path``, loaded slice by slice onto the mesh of ``cfg``'s settings."""
    cfg = cfg or SearchConfig()
    config, params, mesh = inference_of(cfg).load(path)
    return search_engine(config, params, load_tokenizer(path), cfg.min_batch, memory_gb=cfg.memory_gb, mesh=mesh)


def load_policy(path: str, cfg: SearchConfig, prompt_prefix: str = "") -> PolicyProposer:
    """The policy in HF folder ``path`` (with its tokenizer) as a step proposer; ``prompt_prefix``
    goes before every prompt (a few-shot block, ``rstar_jax.data.fewshot``)."""
    engine = load_engine(path, cfg)
    return PolicyProposer(engine, max_step_tokens=cfg.max_step_tokens, top_p=cfg.top_p, prompt_prefix=prompt_prefix)


def load_scorer(ppm: str, policy: str | None = None, cfg: SearchConfig | None = None) -> PPMScorer:
    """The PPM in folder ``ppm`` (any layout of ``models.hf_ppm``; one without a head: UserError) as a
    scorer, placed as ``cfg`` says; given the ``policy`` folder, a PPM whose tokenizer differs from the
    policy's is refused."""
    dtype, mesh = inference_of(cfg).setup(ppm)
    config, params = load_ppm(ppm, dtype, placer(mesh))
    tokenizer = load_tokenizer(ppm)
    if policy is not None:
        check_same_tokenizer(load_tokenizer(policy), tokenizer, policy, ppm)
    return PPMScorer(search_engine(config, params, tokenizer, memory_gb=cfg.memory_gb if cfg else None, mesh=mesh))
