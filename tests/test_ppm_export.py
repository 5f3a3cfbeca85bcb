"""The PPM as a transformers token-classification model with its head, and the official backbone +
value_head.bin layout: transformers (PyTorch) scores equal ``models.ppm_scores``; bad folders are refused."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstar_jax import cli, models
from rstar_jax.errors import UserError
from rstar_jax.models.hf_ppm import load_ppm, ppm_layout, save_ppm_hf
from rstar_jax.steps import build_prompt
from tests.conftest import make_hf_checkpoint


def _batch(vocab: int, seed: int = 0, lengths=(9, 5, 12, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids [B, T] (pad id 0) and their attention mask."""
    rng = np.random.RandomState(seed)
    ids, mask = np.zeros((len(lengths), max(lengths)), np.int64), np.zeros((len(lengths), max(lengths)), np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n], mask[i, :n] = rng.randint(1, vocab, n), 1
    return ids, mask


def _left(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same rows left-padded."""
    n = mask.sum(1)
    shift = lambda a: np.stack([np.roll(r, len(r) - k) for r, k in zip(a, n)])  # noqa: E731
    return shift(ids), shift(mask)


def _ours(config, params, ids, mask) -> np.ndarray:
    return np.asarray(models.ppm_scores(config, params, jnp.asarray(ids), jnp.asarray(mask)), np.float64)


def _torch_scores(folder, ids, mask, left: bool = False) -> np.ndarray:
    """AutoModelForTokenClassification's one logit at each row's last non-pad token."""
    import torch
    import transformers

    model, info = transformers.AutoModelForTokenClassification.from_pretrained(
        str(folder), dtype=torch.float32, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.no_grad():
        logits = model.eval()(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    assert logits.shape == (*ids.shape, 1)
    last = np.full(len(ids), ids.shape[1] - 1) if left else mask.sum(1) - 1
    return logits[np.arange(len(ids)), last, 0].astype(np.float64)


def _random_ppm(path, family):
    config, params = models.load_hf(str(path))
    config, params = models.init_value_head(config, params, jax.random.key(3))
    # O(1) scores: a head as small as the initial one would hide a wrong hidden state in the tolerance
    params["value_head"] = {
        "kernel": jax.random.normal(jax.random.key(4), (config.hidden_size, 1), jnp.float32),
        "bias": jnp.array([0.7], jnp.float32),
    }
    return config, params


@pytest.mark.parametrize("family,tie", [("qwen2", False), ("llama", True)])
def test_transformers_loads_the_ppm_with_its_head(tmp_path, family, tie):
    make_hf_checkpoint(tmp_path / "base", family, tie=tie)
    config, params = _random_ppm(tmp_path / "base", family)
    save_ppm_hf(config, params, str(tmp_path / "ppm"))
    cfg = json.loads((tmp_path / "ppm" / "config.json").read_text())
    assert cfg["architectures"] == [f"{'Qwen2' if family == 'qwen2' else 'Llama'}ForTokenClassification"]
    ids, mask = _batch(config.vocab_size)
    ours = _ours(config, params, ids, mask)
    assert np.abs(ours).max() > 0.1  # scores the comparison can tell apart
    np.testing.assert_allclose(_torch_scores(tmp_path / "ppm", ids, mask), ours, atol=1e-4)
    lids, lmask = _left(ids, mask)
    np.testing.assert_allclose(_torch_scores(tmp_path / "ppm", lids, lmask, left=True), ours, atol=1e-4)
    # and back: the folder is our PPM again, without an LM head
    assert ppm_layout(str(tmp_path / "ppm")) == "transformers"
    config2, params2 = load_ppm(str(tmp_path / "ppm"))
    assert config2.value_head and config2.tie_word_embeddings and "lm_head" not in params2
    np.testing.assert_allclose(_ours(config2, params2, ids, mask), ours, atol=1e-6)


def test_official_backbone_and_value_head_bin(tmp_path, capsys):
    """A causal-LM folder + value_head.bin (the official save_rm.py layout), written with torch: our score is
    the official one (v_head.summary on the last token's final hidden state), and `convert` makes it a
    transformers PPM with the same scores."""
    import torch

    model = make_hf_checkpoint(tmp_path / "official", "qwen2")
    d = model.config.hidden_size
    torch.manual_seed(1)
    head = {"v_head.summary.weight": torch.randn(1, d), "v_head.summary.bias": torch.tensor([-0.4])}
    torch.save(head, tmp_path / "official" / "value_head.bin")
    config, params = load_ppm(str(tmp_path / "official"))
    assert config.value_head and not config.tie_word_embeddings
    ids, mask = _batch(config.vocab_size, seed=1)
    with torch.no_grad():  # the official RewardModelWithValueHead, read at the last non-pad token
        h = model(torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True).hidden_states[-1]
        value = (h @ head["v_head.summary.weight"].T + head["v_head.summary.bias"])[..., 0].numpy()
    ref = value[np.arange(len(ids)), mask.sum(1) - 1].astype(np.float64)
    np.testing.assert_allclose(_ours(config, params, ids, mask), ref, atol=1e-4)
    assert cli.main(["convert", str(tmp_path / "official"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    np.testing.assert_allclose(_torch_scores(tmp_path / "hf", ids, mask), ref, atol=1e-4)
    capsys.readouterr()
    assert cli.main(["info", str(tmp_path / "hf"), "--load"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ppm"] == "transformers" and info["parameters"] == info["loaded_parameters"]


def test_bad_ppm_folders(tmp_path, qwen_ckpt):
    import torch

    path, _ = qwen_ckpt
    with pytest.raises(UserError, match=f"{path}: not a PPM: no value head"):
        load_ppm(str(path))
    bad = tmp_path / "bad"
    make_hf_checkpoint(bad, "qwen2")
    torch.save(
        {"v_head.summary.weight": torch.zeros(1, 7), "v_head.summary.bias": torch.zeros(1)}, bad / "value_head.bin"
    )
    with pytest.raises(UserError, match=r"value_head.bin: v_head.summary.weight \(1, 7\)"):
        load_ppm(str(bad))
    torch.save({"summary.w": torch.zeros(1, 64)}, bad / "value_head.bin")
    with pytest.raises(UserError, match="value_head.bin: expected the tensors v_head.summary.weight"):
        load_ppm(str(bad))
    (bad / "value_head.bin").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="value_head.bin: not a torch state dict"):
        load_ppm(str(bad))


def test_search_refuses_a_ppm_without_head_or_with_another_tokenizer(tmp_path, qwen_ckpt, capsys):
    """Through the command line: exit 2, the folder named, nothing written; and a PPM whose tokenizer is
    not the policy's."""
    from rstar_jax.data import save_problems
    from rstar_jax.domain import generate_problems
    from rstar_jax.search.loading import load_scorer
    from tests.engine_helpers import make_tokenizer

    path, _ = qwen_ckpt
    save_problems(generate_problems(2, 1, seed=0), tmp_path / "p.jsonl")
    argv = ["search", "--policy", "bootstrap", "--ppm", str(path), "--data", str(tmp_path / "p.jsonl")]
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert f"{path}: not a PPM: no value head" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    tokenizer = make_tokenizer()
    make_hf_checkpoint(tmp_path / "ppm_base", "qwen2", vocab_size=len(tokenizer))
    config, params = _random_ppm(tmp_path / "ppm_base", "qwen2")
    save_ppm_hf(config, params, str(tmp_path / "ppm"), tokenizer)
    tokenizer.save_pretrained(str(tmp_path / "policy"))
    scorer = load_scorer(str(tmp_path / "ppm"), policy=str(tmp_path / "policy"))
    question, steps = "What is 1 plus 2?", ["x = 1 + 2\n<end_of_step>", "print(x)\n<end_of_code>"]
    ids = np.array([tokenizer(build_prompt(question) + "".join(steps), add_special_tokens=False)["input_ids"]])
    np.testing.assert_allclose(
        scorer.score([question], [steps]), _ours(config, params, ids, np.ones_like(ids)), atol=1e-4
    )
    tokenizer.add_tokens(["<extra_token>"])
    tokenizer.save_pretrained(str(tmp_path / "other"))
    with pytest.raises(UserError, match=r"ppm: the PPM's tokenizer differs from the policy's \(.*other\)"):
        load_scorer(str(tmp_path / "ppm"), policy=str(tmp_path / "other"))
