"""Training runs on a tiny model: SFT memorises, PPM separates, resume is exact, NaN stops,
exports load in transformers and rstar_jax, the CLI runs."""

import argparse
import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstar_jax.models import ModelConfig, init_params, logits, ppm_scores
from rstar_jax.steps import answer_step, build_prompt, output_block
from rstar_jax.train.config import RewardConfig, SFTConfig
from rstar_jax.train.examples import Continuation, PairGroup, SFTExample, write_sft
from rstar_jax.train.reward import train_reward_model
from rstar_jax.train.sft import train_policy
from rstar_jax.train.trainer import TrainingDiverged

os.environ["RSTAR_NO_PROGRESS"] = "1"


def _solution(a, b):
    return f"# add them\nx = {a} + {b}\nprint(x)\n<end_of_code>" + output_block(str(a + b)) + answer_step(str(a + b))


SFT = [
    SFTExample(f"p{i}", build_prompt(f"What is {a} plus {b}?"), _solution(a, b), 1.0, 1.0, (0, 1, 2))
    for i, (a, b) in enumerate([(12, 7), (3, 45), (28, 16), (5, 9)])
]


def ppm_groups(n=48, seed=0):
    """Separable pairs: the preferred step prints x, the other prints a wrong expression."""
    rng = np.random.RandomState(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 99, 2)
        good = [Continuation("# print the sum\nprint(x)\n<end_of_code>", 0.9, 1)]
        bad = [
            Continuation(f"# print the difference\nprint(x - {2 * b})\n<end_of_code>", -0.8, 2),
            Continuation(f"# guess\nprint({a * b})\n<end_of_code>", -0.9, 3),
        ]
        out.append(
            PairGroup(
                f"p{i}",
                "step",
                build_prompt(f"What is {a} plus {b}?"),
                f"x = {a} + {b}\n<end_of_step>",
                0,
                tuple(good),
                tuple(bad),
                ((0, 0), (0, 1)),
            )
        )
    return out


@functools.lru_cache(maxsize=None)
def tokenizer():
    from rstar_jax.domain.tokenizer import train_domain_tokenizer

    texts = [e.prompt + e.solution for e in SFT] + [
        g.prompt + g.prefix + c.text for g in ppm_groups() for c in g.pos + g.neg
    ]
    return train_domain_tokenizer(texts, vocab_size=320)


@functools.lru_cache(maxsize=None)
def tiny(seed=0, hidden=32):
    tok = tokenizer()
    config = ModelConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return config, jax.jit(init_params, static_argnums=0)(config, jax.random.key(seed))


def sft_cfg(**kw):
    return SFTConfig(
        **{
            "lr": 3e-3,
            "batch_size": 2,
            "seq_len": 160,
            "steps": 8,
            "warmup_steps": 2,
            "log_every": 1,
            "weight_decay": 0.0,
            **kw,
        }
    )


def _flat(params):
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}


@functools.partial(jax.jit, static_argnums=0)
def _next_token(config, params, buf, t):
    return jnp.argmax(logits(config, params, buf)[0, t - 1])


def greedy(config, params, prompt_ids, n_new, length=128):
    """Greedy continuation by full forwards over one fixed-length buffer (causal: what follows is unseen)."""
    buf = np.zeros((1, length), np.int32)
    buf[0, : len(prompt_ids)] = prompt_ids
    for t in range(len(prompt_ids), len(prompt_ids) + n_new):
        buf[0, t] = int(_next_token(config, params, buf, t))
    return buf[0, len(prompt_ids) : len(prompt_ids) + n_new]


def test_sft_memorises_and_reproduces_greedily(tmp_path):
    tok = tokenizer()
    config, params = tiny(hidden=64)
    cfg = sft_cfg(steps=160, warmup_steps=10, log_every=10, seq_len=192)
    config, params = train_policy(SFT, (config, params), tok, str(tmp_path), cfg)
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "metrics.jsonl")]
    assert losses[-1] < 0.05 < losses[0] / 10, losses
    for ex in SFT:
        prompt = tok(ex.prompt, add_special_tokens=False)["input_ids"]
        want = tok(ex.prompt + ex.solution, add_special_tokens=False)["input_ids"][len(prompt) :] + [tok.eos_token_id]
        got = greedy(config, params, prompt, len(want))
        assert tok.decode(got) == tok.decode(want)


def test_ppm_separates_held_out_pairs(tmp_path):
    config, params = tiny()
    cfg = RewardConfig(
        lr=3e-3, batch_size=4, seq_len=128, steps=24, warmup_steps=3, eval_fraction=0.25, weight_decay=0.0, log_every=10
    )
    config, params = train_reward_model(ppm_groups(), (config, params), tokenizer(), str(tmp_path), cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["eval_groups"] == 12 and summary["eval"]["pairs"] == 24
    assert summary["eval"]["pair_acc"] > 0.9, summary
    assert config.value_head and "value_head" in params


def test_packed_candidates_score_like_whole_texts(tmp_path):
    """The shared-prefix packing is exact: each candidate's score equals ppm_scores on its full text."""
    from rstar_jax.models import init_value_head
    from rstar_jax.train.batching import encode_groups, group_caps, pack_groups
    from rstar_jax.train.losses import candidate_scores

    tok = tokenizer()
    config, params = init_value_head(*tiny(seed=3), jax.random.key(1))
    params["value_head"] = {**params["value_head"], "kernel": params["value_head"]["kernel"] * 50}  # scores far from 0
    groups = ppm_groups(5, seed=2)
    items = encode_groups(groups, tok)
    rows = pack_groups(items, range(len(items)), 512, group_caps(items, 512))
    packed = np.asarray(jax.jit(candidate_scores, static_argnums=0)(config, params, rows))
    texts = [g.prompt + g.prefix + c.text for g in groups for c in g.pos + g.neg]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    n = max(map(len, ids))
    batch = np.array([[0] * (n - len(x)) + x for x in ids])  # left padded, like the search's scorer
    mask = np.array([[0] * (n - len(x)) + [1] * len(x) for x in ids])
    whole = np.asarray(jax.jit(ppm_scores, static_argnums=0)(config, params, batch, mask))
    got = packed[rows["cand_mask"] > 0]
    assert np.abs(whole).max() > 0.1
    np.testing.assert_allclose(got, whole, atol=2e-5)


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    config, params = tiny()
    cfg = sft_cfg(steps=6, checkpoint_every=3)

    def die(step, _):
        if step == 3:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train_policy(SFT, (config, params), tokenizer(), str(tmp_path / "a"), cfg, callback=die)
    _, resumed = train_policy(SFT, (config, params), tokenizer(), str(tmp_path / "a"), cfg)
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["start_step"] == 3
    _, straight = train_policy(SFT, (config, params), tokenizer(), str(tmp_path / "b"), cfg)
    a, b = _flat(resumed), _flat(straight)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
    with pytest.raises(ValueError, match="other settings"):  # a checkpoint of other data is refused
        train_policy(SFT[:3], (config, params), tokenizer(), str(tmp_path / "a"), cfg)


def test_runs_differing_only_in_seed_share_the_compiled_step(tmp_path):
    """Self-evolution trains with a new seed each round: that must not compile the step again."""
    from rstar_jax.train.trainer import _train_step

    config, params = tiny()
    cfg = sft_cfg(steps=2, batch_size=1)
    train_policy(SFT, (config, params), tokenizer(), str(tmp_path / "a"), cfg)
    compiled = _train_step._cache_size()
    train_policy(SFT, (config, params), tokenizer(), str(tmp_path / "b"), dataclasses.replace(cfg, seed=cfg.seed + 7))
    assert _train_step._cache_size() == compiled


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    from rstar_jax.train.checkpoint import Checkpointer

    config, params = tiny()
    with pytest.raises(TrainingDiverged, match="at step 2; last good checkpoint: step 1"):
        train_policy(
            SFT, (config, params), tokenizer(), str(tmp_path), sft_cfg(lr=1e30, warmup_steps=0, checkpoint_every=1)
        )
    ck = Checkpointer(str(tmp_path / "ckpt"))
    assert ck.latest_step() == 1
    ck.close()


def test_bfloat16_compute_keeps_float32_master_weights(tmp_path):
    config, params = tiny()
    _, trained = train_policy(SFT, (config, params), tokenizer(), str(tmp_path), sft_cfg(compute_dtype="bfloat16"))
    assert all(v.dtype == np.float32 for v in _flat(trained).values())
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "metrics.jsonl")]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_bad_inputs(tmp_path):
    config, params = tiny()
    with pytest.raises(ValueError, match="no SFT examples"):
        train_policy([], (config, params), tokenizer(), str(tmp_path), sft_cfg())
    with pytest.raises(ValueError, match="mismatched tokenizer"):  # checked before the params are used
        train_policy(SFT, (config.replace(vocab_size=100), params), tokenizer(), str(tmp_path), sft_cfg())
    with pytest.raises(ValueError, match="no final-answer pair groups"):
        train_reward_model(ppm_groups(4), (config, params), tokenizer(), str(tmp_path), RewardConfig(), kind="orm")
    with pytest.raises(ValueError, match="no training examples left"):
        train_policy(SFT, (config, params), tokenizer(), str(tmp_path), sft_cfg(seq_len=8))
    with pytest.raises(ValueError, match="no prefix group fits seq_len=4: the shortest .* has [0-9]+ tokens"):
        train_reward_model(ppm_groups(4), (config, params), tokenizer(), str(tmp_path), RewardConfig(seq_len=4))


def _base_folder(path):
    from rstar_jax.domain.tokenizer import save_tokenizer
    from rstar_jax.models import save_hf

    config, params = tiny()
    save_hf(config, params, str(path))
    save_tokenizer(tokenizer(), str(path))
    return str(path)


@pytest.mark.slow
def test_cli_and_hf_exports(tmp_path):
    """extract -> train-policy -> train-ppm through the CLI parsers; both exports load back."""
    import torch
    import transformers

    from rstar_jax.cli.train import add_extract_parser, add_train_policy_parser, add_train_ppm_parser
    from rstar_jax.models import load_hf
    from rstar_jax.models.hf_ppm import load_ppm
    from rstar_jax.search.records import write_records
    from rstar_jax.train.examples import write_pairs
    from tests.test_extract import TREE1

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    for add in (add_extract_parser, add_train_policy_parser, add_train_ppm_parser):
        add(sub)
    run = lambda *argv: (lambda a: a.func(a))(parser.parse_args([str(x) for x in argv]))  # noqa: E731
    base = _base_folder(tmp_path / "base")
    write_records(tmp_path / "trees.jsonl", [TREE1])
    assert run("extract", "--trees", tmp_path / "trees.jsonl", "--out", tmp_path / "data", "min_edit_distance=1") == 0
    assert json.loads((tmp_path / "data" / "stats.json").read_text())["pairs"] == 4
    write_sft(SFT, tmp_path / "sft.jsonl")
    assert (
        run(
            "train-policy",
            "--trees",
            tmp_path / "sft.jsonl",
            "--init",
            base,
            "--out",
            tmp_path / "pol",
            "--steps",
            2,
            "batch_size=2",
            "seq_len=160",
        )
        == 0
    )
    config, params = load_hf(str(tmp_path / "pol" / "hf"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "pol" / "hf")).eval()
    ids = np.array([tokenizer()(SFT[0].prompt, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(logits(config, params, ids)), ref, atol=1e-4)
    write_pairs(ppm_groups(8), tmp_path / "pairs.jsonl")
    assert (
        run(
            "train-ppm",
            "--trees",
            tmp_path / "pairs.jsonl",
            "--init",
            tmp_path / "pol" / "hf",
            "--out",
            tmp_path / "ppm",
            "--steps",
            2,
            "batch_size=2",
            "seq_len=256",
            "eval_fraction=0.25",
        )
        == 0
    )
    ppm_config, ppm_params = load_ppm(str(tmp_path / "ppm" / "hf"))
    assert ppm_config.value_head and ppm_params["value_head"]["kernel"].dtype == np.float32
    assert (tmp_path / "ppm" / "hf" / "tokenizer.json").exists()
    assert np.isfinite(np.asarray(ppm_scores(ppm_config, ppm_params, ids))).all()


def test_load_data_kinds(tmp_path):
    from rstar_jax.search.records import write_records
    from rstar_jax.train.api import load_data
    from rstar_jax.train.examples import write_pairs
    from tests.test_extract import TREE1

    write_sft(SFT, tmp_path / "data" / "sft.jsonl")
    write_pairs(ppm_groups(3), tmp_path / "data" / "pairs.jsonl")
    write_records(tmp_path / "data" / "trees" / "t.jsonl", [TREE1])
    sft = load_data([tmp_path / "data"], "sft")  # the folder: sft.jsonl + the trees' examples
    assert len(sft) == len(SFT) + 1 and sft[-1].problem_id == TREE1.problem_id
    assert len(load_data([tmp_path / "data"], "pairs")) == 3 + 2
    with pytest.raises(ValueError, match="holds pairs data"):
        load_data([tmp_path / "data" / "pairs.jsonl"], "sft")
    # extract.KEY=VALUE overrides of the training commands reach the extraction of tree records
    from rstar_jax.cli.train import _train_configs
    from rstar_jax.config import ConfigError

    args = argparse.Namespace(
        overrides=["lr=1e-4", "extract.final_pairs=false", "extract.sft_per_problem=1"], config=None, steps=None
    )
    cfg, ecfg = _train_configs(SFTConfig, args)
    assert cfg.lr == 1e-4
    assert (ecfg.final_pairs, ecfg.sft_per_problem) == (False, 1)
    assert len(load_data([tmp_path / "data" / "trees"], "pairs", ecfg)) < 2
    with pytest.raises(ConfigError):
        _train_configs(SFTConfig, argparse.Namespace(overrides=["extract.nonsense=1"], config=None, steps=None))
