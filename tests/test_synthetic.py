"""The synthetic domain: answers match the reference programs, splits are fixed and disjoint,
slips rarely reach the gold answer, and the domain tokenizer round-trips exactly."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest

from rstar_jax.domain.synthetic import (
    MAX_VALUE,
    MIN_VALUE,
    TIER_OPS,
    coincidence_rate,
    execute_trusted,
    generate_problems,
    make_splits,
    perturbations,
    plan_of,
    reference_solution,
)
from rstar_jax.domain.tokenizer import ALL_SPECIAL, train_domain_tokenizer
from rstar_jax.models.tokenizer import load_tokenizer
from rstar_jax.steps import SPECIAL_TOKENS, build_prompt, path_program, step_kind


@pytest.mark.parametrize("tier", sorted(TIER_OPS))
def test_answer_is_what_the_reference_program_prints(tier):
    for p in generate_problems(150, tier, seed=3):
        steps = reference_solution(p)
        assert Fraction(execute_trusted(path_program(steps))) == Fraction(p.answer)
        assert [step_kind(s) for s in steps] == ["code"] * (len(steps) - 2) + ["final_code", "answer"]
        lo, hi = TIER_OPS[tier]
        assert lo <= len(plan_of(p)) - 2 <= hi  # operations, without start value and question
        assert MIN_VALUE <= Fraction(p.answer) <= MAX_VALUE
        assert p.answer not in re.findall(r"\d+", p.question)


def test_answers_include_fractions_and_spread_widely():
    problems = generate_problems(400, 3, seed=0)
    answers = [Fraction(p.answer) for p in problems]
    assert any(a.denominator > 1 for a in answers)
    assert len(set(answers)) > 0.5 * len(answers)
    assert sum(a >= 100 for a in answers) > 0.3 * len(answers)  # chains do not collapse to small numbers


def test_generator_is_deterministic_and_seeded():
    a = generate_problems(30, 2, seed=7)
    assert a == generate_problems(30, 2, seed=7)
    assert a[:10] == generate_problems(10, 2, seed=7)  # a larger n extends a smaller one
    assert not {p.question for p in a} & {p.question for p in generate_problems(30, 2, seed=8)}
    assert len({p.question for p in a}) == 30 and len({p.id for p in a}) == 30


def test_splits_are_fixed_and_disjoint():
    train, test = make_splits(seed=0, n_train_per_tier=300, n_test_per_tier=40)
    assert len(train) == 900 and len(test) == 120
    assert not {p.question for p in train} & {p.question for p in test}
    assert [sum(p.meta["tier"] == t for p in test) for t in (1, 2, 3)] == [40, 40, 40]
    _, test_again = make_splits(seed=0, n_train_per_tier=10, n_test_per_tier=40)
    assert test_again == test  # the held-out set does not depend on the train size


def test_splits_with_a_count_per_tier():
    train, _ = make_splits(seed=0, n_train_per_tier=(3, 5, 8), n_test_per_tier=4)
    assert [sum(p.meta["tier"] == t for p in train) for t in (1, 2, 3)] == [3, 5, 8]
    uniform, _ = make_splits(seed=0, n_train_per_tier=8, n_test_per_tier=4)
    assert [p for p in train if p.meta["tier"] == 3] == [p for p in uniform if p.meta["tier"] == 3]
    with pytest.raises(ValueError, match="3 tiers"):
        make_splits(seed=0, n_train_per_tier=(3, 5), n_test_per_tier=4)


def test_problem_survives_json(tmp_path):
    p = generate_problems(1, 3, seed=0)[0]
    assert reference_solution(type(p)(**json.loads(json.dumps(p.to_json())))) == reference_solution(p)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="tier"):
        generate_problems(3, 4, seed=0)
    with pytest.raises(ValueError, match="not a synthetic problem"):
        reference_solution(type(generate_problems(1, 1, 0)[0])("x", "q", "1", {}))


def test_coincidence_rate_is_tiny():
    problems = [p for t in TIER_OPS for p in generate_problems(40, t, seed=1)]
    kinds = {k for p in problems[:5] for k, _ in perturbations(p)}
    assert kinds == {"wrong_operand", "wrong_operation", "skip_step"}
    rates = coincidence_rate(problems)
    assert rates["overall"] <= 0.002 and rates["answer_collision"] < 0.03, rates


def test_coincidence_rate_can_detect_a_coincidence():
    p = generate_problems(1, 1, seed=0)[0]
    rigged = type(p)(
        p.id,
        p.question,
        p.answer,
        {
            **p.meta,
            "plan": [
                *p.meta["plan"][:-1],
                {"op": "mul", "args": [1], "clause": "Nothing changes."},
                p.meta["plan"][-1],
            ],
        },
    )
    assert coincidence_rate([rigged])["skip_step"] > 0  # skipping "x = x * 1" is harmless


@pytest.fixture(scope="module")
def domain_texts():
    train, _ = make_splits(seed=0, n_train_per_tier=200, n_test_per_tier=5)
    return [build_prompt(p.question) + "".join(reference_solution(p)) for p in train]


def test_tokenizer_round_trip_digits_and_markers(domain_texts, tmp_path):
    tok = train_domain_tokenizer(domain_texts, vocab_size=400, out_dir=tmp_path / "tok")
    assert {f.name for f in (tmp_path / "tok").iterdir()} >= {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    # a model config naming another family in the same folder must not change the class or ids
    (tmp_path / "tok" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    loaded = load_tokenizer(tmp_path / "tok")
    odd = "  two  spaces,\n\n\ttab , 12.50 ? é\n<end_of_step>x<end_of_code>"
    for text in domain_texts[:50] + [odd]:
        ids = loaded.encode(text, add_special_tokens=False)
        assert ids == tok.encode(text, add_special_tokens=False)
        assert loaded.decode(ids) == text
    assert loaded.convert_tokens_to_ids(list(ALL_SPECIAL)) == list(range(len(ALL_SPECIAL)))
    assert loaded.pad_token_id == 0 and loaded.eos_token_id == 1
    for marker in SPECIAL_TOKENS:
        assert len(loaded.encode(marker, add_special_tokens=False)) == 1
    digits = loaded.convert_ids_to_tokens(loaded.encode("x = 12345 * 678", add_special_tokens=False))
    # one digit per token; a space before a number rides on its first digit (no lone space token)
    assert [t for t in digits if any(c.isdigit() for c in t)] == ["Ġ1", "2", "3", "4", "5", "Ġ6", "7", "8"]
    assert len(loaded) <= 400


def test_tokenizer_rejects_tiny_vocab(domain_texts):
    with pytest.raises(ValueError, match="vocab_size"):
        train_domain_tokenizer(domain_texts[:5], vocab_size=100)


@pytest.mark.parametrize("tie", [True, False])
def test_base_model_from_scratch_ties_embeddings_as_asked(tie, tmp_path):
    import numpy as np
    import transformers

    from rstar_jax.evolve.base_model import BaseModelSpec, build_base_model
    from rstar_jax.models import load_hf

    spec = BaseModelSpec(
        vocab_size=320,
        hidden_size=32,
        intermediate_size=64,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        tie_word_embeddings=tie,
    )
    build_base_model(spec, generate_problems(20, 1, seed=0), str(tmp_path))
    config, params = load_hf(str(tmp_path))
    assert config.tie_word_embeddings is tie and ("lm_head" in params) is not tie
    hf = transformers.AutoConfig.from_pretrained(str(tmp_path))
    assert hf.tie_word_embeddings is tie
    if not tie:  # a separate head, initialised apart from the embedding
        assert not np.allclose(np.asarray(params["lm_head"]["kernel"]).T, np.asarray(params["embed"]["embedding"]))
