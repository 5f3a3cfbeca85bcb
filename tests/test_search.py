"""The search driver end to end: bootstrap proposer, real sandbox, grader, toy reward models."""

from __future__ import annotations

import numpy as np
import pytest

from rstar_jax.domain.bootstrap import BootstrapProposer, ErrorRates, solve_rate
from rstar_jax.domain.synthetic import generate_problems, reference_solution
from rstar_jax.sandbox import Sandbox
from rstar_jax.search import answers
from rstar_jax.search.baselines import run_beam, run_chains
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.mcts import run_mcts
from rstar_jax.search.records import TreeRecord, trajectories


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(num_workers=2, timeout_s=5.0) as sb:
        yield sb


@pytest.fixture(scope="module")
def problems():
    return generate_problems(6, tier=3, seed=11)


def check_record(rec: TreeRecord, mode: str) -> None:
    """Structural invariants every search record must satisfy."""
    nodes = rec.nodes
    assert nodes[0].parent == -1 and nodes[0].depth == 0
    for n in nodes[1:]:
        assert 0 <= n.parent < n.index
        assert n.depth == nodes[n.parent].depth + 1
        assert -1.0 - 1e-6 <= n.q <= 1.0 + 1e-6
        if n.answer is not None or n.text.rstrip().endswith("<end_of_answer>"):
            assert n.terminal
    kids: dict[int, list] = {}
    for n in nodes[1:]:
        kids.setdefault(n.parent, []).append(n)

    # A failed step that ended its branch: invalid, childless, -1 on itself only.
    def failed(n):
        return not n.valid and n.terminal and not kids.get(n.index)

    if mode == "terminal":
        for n in nodes:
            own = 1 if n.text.rstrip().endswith("<end_of_answer>") else 0
            if failed(n):
                assert n.visits == 1 and n.q == -1.0
                continue
            below = sum(c.visits for c in kids.get(n.index, []) if not failed(c))
            assert n.visits == below + own, (n.index, n.visits, below, own)


def test_mcts_terminal_mode_records_are_consistent(problems, sandbox):
    cfg = SearchConfig(rollouts=6, candidates=4, batch_size=3, error_threshold=2)
    proposer = BootstrapProposer(problems)
    records, stats = run_mcts(problems, proposer, sandbox, cfg, progress=False)
    assert len(records) == len(problems)
    for rec, p in zip(records, problems):
        assert rec.problem_id == p.id and rec.gold == p.answer
        check_record(rec, "terminal")
        for n in rec.nodes:
            if n.answer is not None:
                assert n.correct is not None
    assert stats.tokens > 0 and stats.nodes_expanded > 0
    assert stats.tokens == sum(n.num_tokens for r in records for n in r.nodes)


def test_mcts_finds_more_than_plain_sampling(sandbox):
    probs = generate_problems(32, tier=3, seed=5)
    rates = {3: ErrorRates.split(0.3)}
    proposer = BootstrapProposer(probs, error_rates=rates)
    plain = solve_rate(proposer, probs, samples=1)[3]
    records, _ = run_mcts(
        probs, proposer, sandbox, SearchConfig(rollouts=8, candidates=4, batch_size=32), progress=False
    )
    found = np.mean([any(n.correct for n in r.nodes) for r in records])
    # measured 0.44 vs 0.13 here (seed 6: 0.38 vs 0.09); 16 problems were too few to hold a margin
    assert found >= plain + 0.2, (found, plain)
    # A found solution is a real one: its steps replay to the gold answer.
    for r in records:
        for path in trajectories(r):
            if r.nodes[path[-1]].correct:
                assert r.nodes[path[-1]].answer is not None


def test_search_is_independent_of_batching(problems, sandbox):
    proposer = BootstrapProposer(problems)
    cfg = SearchConfig(rollouts=4, candidates=3, leaves_per_tree=2)
    a, _ = run_mcts(problems, proposer, sandbox, cfg.replace(batch_size=6), progress=False)
    b, _ = run_mcts(problems, proposer, sandbox, cfg.replace(batch_size=2), progress=False)
    assert [r.to_json() for r in a] == [r.to_json() for r in b]


class ReferenceScorer:
    """A toy PPM that knows the reference solution: +3 for a step on it, -3 otherwise."""

    def __init__(self, problems):
        self.ref = {p.question: reference_solution(p) for p in problems}

    def score(self, questions, paths):
        out = []
        for q, path in zip(questions, paths):
            ref, step = self.ref[q], path[-1]
            ok = step in ref or (step.startswith("<answer>") and step == ref[-1])
            out.append(3.0 if ok else -3.0)
        return np.asarray(out)


def test_ppm_mode_and_test_time_selection(sandbox):
    probs = generate_problems(8, tier=3, seed=7)
    proposer = BootstrapProposer(probs, error_rates={3: ErrorRates.split(0.4)})
    scorer = ReferenceScorer(probs)
    cfg = SearchConfig(rollouts=3, candidates=4, mode="ppm", reward="ppm", batch_size=8)
    records, _ = run_mcts(probs, proposer, sandbox, cfg, scorer, progress=False)
    for r in records:
        check_record(r, "ppm")
        assert all(n.prior is not None for n in r.nodes[1:] if n.valid)
    guided = np.mean([answers.is_solved(r, "best") for r in records])
    chains, _ = run_chains(probs, proposer, sandbox, cfg.replace(temperature=1.0), 1, None, gold=False, progress=False)
    single = np.mean([answers.is_solved(r, "best") for r in chains])
    assert guided >= 0.75 and guided > single, (guided, single)


def test_answer_selection_rules():
    from rstar_jax.search.records import NodeRecord

    def node(i, ans, prior):
        return NodeRecord(
            index=i,
            parent=0,
            depth=1,
            text="<answer>x<end_of_answer>",
            q=0.0,
            visits=1,
            prior=prior,
            output=None,
            terminal=True,
            valid=True,
            answer=ans,
            correct=None,
            num_tokens=1,
        )

    root = NodeRecord(
        index=0,
        parent=-1,
        depth=0,
        text="",
        q=0.0,
        visits=0,
        prior=None,
        output=None,
        terminal=False,
        valid=True,
        answer=None,
        correct=None,
        num_tokens=0,
    )
    rec = TreeRecord(
        "p", "q", "7", [root, node(1, "5", 0.9), node(2, "7", 0.5), node(3, "7.0", 0.4), node(4, "\\frac{14}{2}", -0.2)]
    )
    assert answers.choose_answer(rec, "best").answer == "5"
    assert answers.choose_answer(rec, "majority").answer == "7"  # 7, 7.0 and 14/2 agree
    assert answers.choose_answer(rec, "weighted").answer == "7"
    assert answers.choose_answer(rec, "majority", top_k=1).answer == "5"
    assert answers.is_solved(rec, "majority") and not answers.is_solved(rec, "best")


def test_baselines_run_and_account_tokens(problems, sandbox):
    proposer = BootstrapProposer(problems)
    cfg = SearchConfig(candidates=3, temperature=1.0)
    chains, st = run_chains(problems, proposer, sandbox, cfg, 4, None, progress=False)
    assert st.tokens == sum(n.num_tokens for r in chains for n in r.nodes) > 0
    assert all(len(trajectories(r)) <= 4 for r in chains)
    beams, st2 = run_beam(problems, proposer, sandbox, cfg, 2, ReferenceScorer(problems), progress=False)
    assert st2.tokens > 0
    assert np.mean([answers.is_solved(r, "best") for r in beams]) >= 0.5
    # Best-of-N's ORM scores the answer steps only; beam search needs every valid step scored.
    scored, _ = run_chains(problems, proposer, sandbox, cfg, 4, ReferenceScorer(problems), progress=False)
    nodes = [n for r in scored for n in r.nodes[1:]]
    assert any(n.valid and n.answer is None for n in nodes)
    assert all((n.prior is not None) == (n.valid and n.answer is not None) for n in nodes)
    assert all((n.prior is not None) == n.valid for r in beams for n in r.nodes[1:])


def _tiny_model(problems, **config):
    """A domain tokenizer over the problems' reference solutions and a one-layer model config for it."""
    from rstar_jax.domain.tokenizer import train_domain_tokenizer
    from rstar_jax.models import ModelConfig
    from rstar_jax.steps import build_prompt

    tok = train_domain_tokenizer(
        [build_prompt(p.question) + "".join(reference_solution(p)) for p in problems], vocab_size=300
    )
    return tok, ModelConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        max_position_embeddings=512,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **config,
    )


@pytest.fixture(scope="module")
def tiny_engine_pair(problems):
    """A tiny random policy and PPM over the domain tokenizer (outputs are noise; structure is what counts)."""
    import jax

    from rstar_jax.engine import Engine
    from rstar_jax.models import init_params, init_value_head

    tok, config = _tiny_model(problems, tie_word_embeddings=True)
    params = init_params(config, jax.random.key(0))
    pcfg, pparams = init_value_head(config, params, jax.random.key(1))
    return Engine(config, params, tok), Engine(pcfg, pparams, tok)


def test_engine_backed_search_and_baselines(problems, sandbox, tiny_engine_pair):
    from rstar_jax.search.proposers import PolicyProposer, PPMScorer

    policy, ppm = tiny_engine_pair
    proposer, scorer = PolicyProposer(policy, max_step_tokens=12), PPMScorer(ppm)
    probs = problems[:3]
    cfg = SearchConfig(rollouts=2, candidates=3, max_step_tokens=12, max_depth=4, error_threshold=1)
    for mode, reward in (("terminal", "gold"), ("ppm", "ppm")):
        recs, st = run_mcts(
            probs,
            proposer,
            sandbox,
            cfg.replace(mode=mode, reward=reward),
            scorer if mode == "ppm" else None,
            progress=False,
        )
        assert st.tokens == sum(n.num_tokens for r in recs for n in r.nodes) > 0
        # K samples share one prefill: each expansion saves (K - 1) copies of its prompt.
        assert st.prefill_tokens > 0 and st.prefill_saved >= (cfg.candidates - 1) * st.nodes_expanded
        assert 0 < st.as_dict()["decode_utilization"] <= 1  # generated tokens / decoded row-steps
        for r in recs:
            check_record(r, mode)
            assert len(r.nodes) > 1 and all(n.depth <= cfg.max_depth for n in r.nodes)
    chains, _ = run_chains(probs, proposer, sandbox, cfg, 2, scorer, progress=False)
    beams, _ = run_beam(probs, proposer, sandbox, cfg, 2, scorer, progress=False)
    for r in chains + beams:
        check_record(r, "chains")


@pytest.fixture(scope="module")
def step_policy(problems):
    """A tiny random policy tilted to end a step after a few tokens: trees of depth 4 to hold KV in."""
    import jax

    from rstar_jax.engine import Buckets, Engine
    from rstar_jax.models import init_params
    from rstar_jax.steps import END_OF_STEP

    tok, config = _tiny_model(problems)
    params = init_params(config, jax.random.key(0))
    # a constant hidden feature, read by the step marker's logit only: a marker every ~4 tokens
    params["embed"]["embedding"] = params["embed"]["embedding"].at[:, 0].set(3.0)
    marker = tok.convert_tokens_to_ids(END_OF_STEP)
    params["lm_head"]["kernel"] = params["lm_head"]["kernel"].at[0, marker].set(0.6)
    return Engine(config, params, tok, buckets=Buckets.coarse(min_rows=8, min_length=32))  # few programs


def test_paged_kv_search_writes_the_same_trees_and_releases_every_page(problems, step_policy):
    """The paged tree-owned KV against path copies: the same prefix KV bit for bit, so the same
    trees; under a budget too small for one iteration's pages, nodes are evicted and re-prefilled,
    which may flip a sampled token (another float order), measured and bounded here."""
    from rstar_jax.search.expand import NoExecution
    from rstar_jax.search.proposers import PolicyProposer
    from rstar_jax.steps import build_prompt

    probs = problems[:3]
    cfg = SearchConfig(rollouts=2, candidates=3, max_step_tokens=12, max_depth=4, error_threshold=1)

    def search(proposer):
        recs, st = run_mcts(probs, proposer, NoExecution(), cfg, progress=False)
        return [[(n.parent, n.text, n.visits) for n in r.nodes] for r in recs], st

    paged = PolicyProposer(step_policy, max_step_tokens=12, page_size=4)
    trees, st = search(paged)
    ref, st_ref = search(PolicyProposer(step_policy, max_step_tokens=12, paged=False))
    assert trees == ref and min(map(len, trees)) > 10
    # every node's KV is reused: past the roots' prompts, an expansion prefills its step's last token
    # (a candidate's KV stops before it) and what re-tokenizing the decoded text changes (random bytes here)
    roots = sum(len(step_policy.encode(build_prompt(p.question))) for p in probs)
    assert st.prefill_tokens == st_ref.prefill_tokens and st.prefill_tokens - roots < st.tokens
    assert st.pages_evicted == 0 and 0 < st.kv_bytes_held < st_ref.kv_bytes_held  # pages shared, not copied
    assert paged.kv.pool.peak_in_use > 0 and paged.kv.pool.in_use == 0  # every page released
    # a budget of 3/4 of the pages it held at most: least recently used nodes are evicted and re-prefilled
    budget_mb = 0.75 * paged.kv.pool.peak_in_use * paged.kv.pool.page_bytes / 2**20
    small = PolicyProposer(step_policy, max_step_tokens=12, page_size=4, prefix_cache_mb=budget_mb)
    evicted, st_small = search(small)
    assert st_small.pages_evicted > 0 and st_small.prefill_tokens > st.prefill_tokens
    assert small.kv.pool.in_use == 0
    same = sum(a == b for t, u in zip(evicted, trees) for a, b in zip(t, u))
    print(f"re-prefilled search: {same} of {sum(map(len, trees))} nodes as with every KV kept")
    assert same >= 0.8 * sum(map(len, trees))
