"""PolicyProposer: the Proposer protocol over the engine, with per-node prefix-KV reuse."""

from __future__ import annotations

from rstar_jax.engine import Engine
from rstar_jax.search.proposers import PolicyProposer
from rstar_jax.search.types import ProposalRequest
from rstar_jax.steps import STEP_STOPS, build_prompt, output_block

MAX_STEP = 12


def texts(proposal):
    return [[c.text for c in cs] for cs in proposal.candidates]


def test_policy_proposer(tiny):
    config, params, _, tokenizer = tiny
    engine = Engine(config, params, tokenizer)
    proposer = PolicyProposer(engine, max_step_tokens=MAX_STEP)
    r1 = ProposalRequest("p1", "What is 3 + 4?", ())
    r2 = ProposalRequest("p2", "the cat sat on the mat", (), node=(1, 0))
    out = proposer.propose([r1, r2], 3, temperature=1.0, seed=0).candidates
    assert [len(cs) for cs in out] == [3, 3]
    for c in (c for cs in out for c in cs):
        assert 1 <= c.num_tokens <= MAX_STEP
        assert (c.finish_reason == "stop") == c.text.endswith(STEP_STOPS)
        assert c.finish_reason in ("stop", "length", "eos")
    # a request's candidates depend on (seed, problem, path), not on the batch (same shapes: no compile)
    other = PolicyProposer(Engine(config, params, tokenizer), max_step_tokens=MAX_STEP)
    r3 = ProposalRequest("p3", "x = 3 + 4", (), node=(2, 0))
    assert texts(other.propose([r2, r3], 3, temperature=1.0, seed=0))[0] == [c.text for c in out[1]]
    assert texts(other.propose([r2, r3], 3, temperature=1.0, seed=1))[0] != [c.text for c in out[1]]
    # independent chains through the same path (best-of-N, self-consistency) draw differently
    chains = [ProposalRequest("p2", r2.question, (), node=(1, 0), sample_id=i) for i in range(4)]
    drawn = texts(other.propose(chains, 1, temperature=1.0, seed=0))
    assert len({d[0] for d in drawn}) > 1
    # ...and each chain's next step reuses its own KV, though all started at the same root
    nxt = [ProposalRequest("p2", r2.question, (d[0],), node=(1, i + 1), sample_id=i) for i, d in enumerate(drawn)]
    reused = other.propose(nxt, 1, temperature=1.0, seed=0).prefix_reused
    root_tokens = len(other.engine.encode(build_prompt(r2.question)))
    assert reused >= len(chains) * root_tokens

    # expanding a child reuses its KV from the parent's expansion (its step may carry an output block)
    step = out[0][0].text
    children = [
        ProposalRequest("p1", r1.question, (step,), node=(0, 1)),
        ProposalRequest("p1", r1.question, (out[0][1].text + output_block("7"),), node=(0, 2)),
    ]
    got = proposer.propose(children, 3, temperature=1.0, seed=0)
    prompt_tokens = len(engine.encode(build_prompt(r1.question)))
    assert got.prefix_reused >= 2 * (prompt_tokens - 1)
    fresh = PolicyProposer(Engine(config, params, tokenizer), max_step_tokens=MAX_STEP, prefix_cache_mb=0)
    fresh_out = fresh.propose(children, 3, temperature=1.0, seed=0)
    assert texts(got) == texts(fresh_out)
    assert fresh_out.prefix_reused == 0
    assert proposer.propose([], 2, temperature=1.0, seed=0).candidates == []
