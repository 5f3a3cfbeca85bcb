"""Models against the transformers PyTorch reference on tiny random checkpoints."""

from __future__ import annotations

import copy
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from rstar_jax import models
from rstar_jax.errors import UserError
from rstar_jax.models import CheckpointError, ModelConfig
from tests.conftest import make_hf_checkpoint, run_with_devices


def _left_padded_batch(vocab, b=4, t=12, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(0, vocab, (b, t))
    mask = np.ones((b, t), np.int64)
    for i in range(b):
        mask[i, : rng.randint(0, t // 2)] = 0
    return ids, mask


def _torch_logits(model, ids, mask):
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
    with torch.no_grad():
        return (
            model(torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(pos))
            .logits.float()
            .numpy()
        )


@pytest.mark.parametrize(
    "family,tie,kv", [("qwen2", False, 2), ("qwen2", True, 2), ("llama", False, 1), ("llama", True, 4)]
)
def test_golden_logits(tmp_path, family, tie, kv):
    model = make_hf_checkpoint(tmp_path, family, tie=tie, num_key_value_heads=kv, rope_theta=5000.0)
    config, params = models.load_hf(str(tmp_path))
    assert config.tie_word_embeddings == tie and config.num_kv_heads == kv and config.rope_theta == 5000.0
    ids, mask = _left_padded_batch(config.vocab_size)
    ref = _torch_logits(model, ids, mask)
    ours = np.asarray(models.logits(config, params, jnp.asarray(ids), jnp.asarray(mask)))
    valid = mask.astype(bool)
    assert np.abs(ref - ours)[valid].max() <= 1e-4


def test_cache_matches_full_forward(qwen_ckpt):
    path, _ = qwen_ckpt
    config, params = models.load_hf(str(path))
    ids, mask = _left_padded_batch(config.vocab_size, t=14, seed=1)
    full = np.asarray(models.logits(config, params, jnp.asarray(ids), jnp.asarray(mask)))
    prompt = 8
    step = jax.jit(
        lambda p, x, c, m: (lambda h, c: (models.project(config, p, h), c))(*models.forward_cached(config, p, x, c, m))
    )
    cache = models.init_cache(config, ids.shape[0], 32)
    out, cache = step(params, jnp.asarray(ids[:, :prompt]), cache, jnp.asarray(mask[:, :prompt]))
    steps = [out]
    for t in range(prompt, ids.shape[1]):  # one-token decode steps
        out, cache = step(params, jnp.asarray(ids[:, t : t + 1]), cache, jnp.asarray(mask[:, t : t + 1]))
        steps.append(out)
    cached = np.concatenate([np.asarray(s) for s in steps], axis=1)
    valid = mask.astype(bool)
    assert np.abs(cached - full)[valid].max() <= 1e-5
    assert int(cache.index) == ids.shape[1]
    np.testing.assert_array_equal(np.asarray(cache.pos), mask.sum(1))


def test_round_trip_through_transformers(tmp_path, qwen_ckpt):
    import transformers

    path, model = qwen_ckpt
    config, params = models.load_hf(str(path))
    models.save_hf(config, params, str(tmp_path / "out"))
    again = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    ref = dict(model.state_dict())
    for name, t in again.state_dict().items():
        np.testing.assert_array_equal(t.numpy(), ref[name].numpy(), err_msg=name)
    ids, mask = _left_padded_batch(config.vocab_size, seed=3)
    np.testing.assert_allclose(_torch_logits(again, ids, mask), _torch_logits(model, ids, mask), atol=0)


def test_bfloat16_load(qwen_ckpt, tmp_path):
    path, model = qwen_ckpt
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(str(tmp_path))
    config, params = models.load_hf(str(tmp_path), dtype="bfloat16")
    assert params["embed"]["embedding"].dtype == jnp.bfloat16
    ids, mask = _left_padded_batch(config.vocab_size, seed=4)
    ours = np.asarray(models.logits(config, params, jnp.asarray(ids), jnp.asarray(mask)))
    ref = _torch_logits(model, ids, mask)
    assert np.abs(ours - ref)[mask.astype(bool)].max() < 0.1  # bf16 rounding, not a wrong tensor


def test_sharded_checkpoint_index(tmp_path, qwen_ckpt):
    path, model = qwen_ckpt
    model.save_pretrained(str(tmp_path), max_shard_size="20KB")
    assert os.path.exists(tmp_path / "model.safetensors.index.json")
    config, params = models.load_hf(str(tmp_path))
    _, ref_params = models.load_hf(str(path))
    jax.tree.map(np.testing.assert_array_equal, params, ref_params)


def test_ppm_head_saved_with_backbone(tmp_path, qwen_ckpt):
    path, _ = qwen_ckpt
    config, params = models.load_hf(str(path))
    pcfg, pparams = models.init_value_head(config, params, jax.random.key(1))
    pparams["value_head"]["bias"] = jnp.array([0.25])
    ids, mask = _left_padded_batch(config.vocab_size, seed=5)
    scores = np.asarray(models.ppm_scores(pcfg, pparams, jnp.asarray(ids), jnp.asarray(mask)))
    assert scores.shape == (ids.shape[0],)
    # Reference: value head applied to the hidden state of each row's last token.
    h = np.asarray(models.hidden_states(pcfg, pparams, jnp.asarray(ids), jnp.asarray(mask)))
    ref = h[:, -1] @ np.asarray(pparams["value_head"]["kernel"])[:, 0] + 0.25
    np.testing.assert_allclose(scores, ref, atol=1e-5)
    models.save_hf(pcfg, pparams, str(tmp_path / "ppm"))
    cfg2, params2 = models.load_hf(str(tmp_path / "ppm"))
    assert cfg2.value_head
    np.testing.assert_allclose(
        np.asarray(models.ppm_scores(cfg2, params2, jnp.asarray(ids), jnp.asarray(mask))), scores, atol=1e-6
    )


def test_bad_checkpoints_name_file_and_tensor(tmp_path, qwen_ckpt):
    from rstar_jax.models.hf_io import iter_safetensors, write_safetensors

    path, _ = qwen_ckpt
    with pytest.raises(UserError, match="config.json"):
        models.load_hf(str(tmp_path))
    tensors = dict(iter_safetensors(str(path / "model.safetensors")))
    cfg = json.loads((path / "config.json").read_text())

    def write(ts, c=cfg):
        d = tmp_path / "bad"
        d.mkdir(exist_ok=True)
        (d / "config.json").write_text(json.dumps(c))
        write_safetensors(str(d / "model.safetensors"), ts)
        return str(d)

    with pytest.raises(ValueError, match="unsupported model_type 'gpt2'"):
        models.load_hf(write(tensors, {**cfg, "model_type": "gpt2"}))
    missing = {k: v for k, v in tensors.items() if k != "model.layers.1.mlp.up_proj.weight"}
    with pytest.raises(CheckpointError, match="model.layers.1.mlp.up_proj.weight"):
        models.load_hf(write(missing))
    with pytest.raises(CheckpointError, match="model.safetensors.*extra_thing"):
        models.load_hf(write({**tensors, "model.extra_thing.weight": np.zeros(3, np.float32)}))
    bad_shape = {**tensors, "model.norm.weight": np.zeros(7, np.float32)}
    with pytest.raises(CheckpointError, match="model.norm.weight.*shape"):
        models.load_hf(write(bad_shape))
    # damaged files: each error names the file (and the tensor where there is one)
    folder = write(tensors)
    weights, config_json = os.path.join(folder, "model.safetensors"), os.path.join(folder, "config.json")
    whole = open(weights, "rb").read()
    for damage, pattern in [
        (b"", "model.safetensors: not a safetensors file"),
        (whole[:20], "model.safetensors: not a safetensors file"),
        (whole[:8] + b"{not json" + whole[17:], "model.safetensors: corrupt safetensors header"),
        (whole[: len(whole) - 100], "model.safetensors: tensor '.*' is truncated"),
    ]:
        with open(weights, "wb") as f:
            f.write(damage)
        with pytest.raises(CheckpointError, match=pattern):
            models.load_hf(folder)
    with open(config_json, "w") as f:
        f.write('{"model_type": "qwen2",')
    with pytest.raises(UserError, match="config.json: not valid JSON"):
        models.load_hf(folder)


def test_config_validation():
    with pytest.raises(ValueError, match="model_type"):
        ModelConfig(
            vocab_size=8,
            hidden_size=8,
            intermediate_size=8,
            num_layers=1,
            num_heads=2,
            num_kv_heads=1,
            model_type="gpt2",
        )
    with pytest.raises(ValueError, match="multiple"):
        ModelConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=1, num_heads=3, num_kv_heads=2)


def test_sharded_equals_unsharded(qwen_ckpt):
    path, _ = qwen_ckpt
    code = f"""
import jax, jax.numpy as jnp, numpy as np
from rstar_jax import models
from rstar_jax.models.sharding import make_mesh, shard_params, batch_sharding
assert jax.device_count() == 8
config, params = models.load_hf({str(path)!r})
ids = jnp.asarray(np.random.RandomState(0).randint(0, config.vocab_size, (8, 12)))
ref = np.asarray(models.logits(config, params, ids))
for shape in [(8, 1, 1), (2, 2, 2), (1, 4, 2)]:
    mesh = make_mesh(*shape)
    sp = shard_params(params, mesh)
    assert any(len(x.sharding.device_set) > 1 and not x.sharding.is_fully_replicated
               for x in jax.tree.leaves(sp)) or shape == (8, 1, 1)
    out = jax.jit(lambda p, x: models.logits(config, p, x))(sp, jax.device_put(ids, batch_sharding(mesh)))
    err = float(np.abs(np.asarray(out) - ref).max())
    assert err < 1e-5, (shape, err)
print("OK")
"""
    assert "OK" in run_with_devices(code)


def test_step_tokens_round_trip_and_resize(qwen_ckpt):
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tk_models
    from transformers import PreTrainedTokenizerFast

    from rstar_jax import steps
    from rstar_jax.models.tokenizer import add_step_tokens

    text = (
        steps.build_prompt("Tom has 3 apples and buys 12 more. How many?")
        + "# Tom has 3 apples.\nx = 3\n"
        + steps.END_OF_STEP
        + "# He buys 12 more.\nx = x + 12\nprint(x)\n"
        + steps.END_OF_CODE
        + steps.output_block("15")
        + steps.answer_step("15")
    )
    tok = Tokenizer(tk_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        [text.replace("<", " ")] * 3,
        trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False),
    )
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False)
    path, _ = qwen_ckpt
    config, params = models.load_hf(str(path))
    v, d = hf_tok.vocab_size, config.hidden_size  # a model whose vocab matches the tokenizer
    config = config.replace(vocab_size=v)
    params = {**params, "embed": {"embedding": jnp.full((v, d), 0.01)}, "lm_head": {"kernel": jnp.full((d, v), 0.01)}}
    before = len(hf_tok)
    hf_tok, config2, params2 = add_step_tokens(hf_tok, config, params)
    assert len(hf_tok) == before + len(steps.SPECIAL_TOKENS) == config2.vocab_size
    assert params2["embed"]["embedding"].shape[0] == config2.vocab_size
    assert params2["lm_head"]["kernel"].shape[1] == config2.vocab_size
    ids = hf_tok(text, add_special_tokens=False)["input_ids"]
    assert hf_tok.decode(ids) == text
    for marker in steps.SPECIAL_TOKENS:
        assert len(hf_tok(marker, add_special_tokens=False)["input_ids"]) == 1
        assert ids.count(hf_tok.convert_tokens_to_ids(marker)) == text.count(marker)
    out = models.logits(config2, params2, jnp.asarray([ids]))
    assert out.shape == (1, len(ids), config2.vocab_size)
