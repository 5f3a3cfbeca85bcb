"""Smoke tests of the model, training and search benchmark scripts at tiny sizes (slow: they build
and train models)."""

import json

import pytest


@pytest.mark.slow
def test_bench_scripts_write_tables_and_json(tmp_path, capsys):
    from rstar_jax.bench import model, train

    assert model.main(["--batch", "2", "--seq", "64", "--repeats", "1", "--out", str(tmp_path / "m.json")]) == 0
    assert (
        train.main(
            [
                "--batch",
                "2",
                "--seq",
                "256",
                "--repeats",
                "1",
                "--problems",
                "30",
                "--attention-core",
                "--out",
                str(tmp_path / "t.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| train step |" in out and "| ppm |" in out
    m, t = json.loads((tmp_path / "m.json").read_text()), json.loads((tmp_path / "t.json").read_text())
    assert [r["what"] for r in m["rows"]] == ["forward", "train step"]
    assert [r["what"] for r in t["rows"]] == ["sft", "ppm"]
    for r in m["rows"] + t["rows"]:
        assert r["ours_tok_s"] > 0 and r["torch_tok_s"] > 0 and 0 < r["ours_peak_frac"]
    assert t["rows"][1]["ours_work_s"] > t["rows"][1]["torch_work_s"]  # shared prefixes: more pairs per step
    core = t["attention_core"]  # the step without its attention core is faster, not free
    assert 0 < core["without_core_s"] < core["step_s"] and 0 < core["rest_peak_frac"]


@pytest.mark.slow
def test_bench_search_smoke(tmp_path):
    """`bench search` end to end at toy size: every loop expands nodes, ours prefills less per node."""
    from rstar_jax.bench import search

    out = tmp_path / "s.json"
    r = search.main(
        [
            "--problems",
            "4",
            "--naive-problems",
            "1",
            "--rollouts",
            "1",
            "--candidates",
            "2",
            "--train-steps",
            "2",
            "--warmup-rollouts",
            "1",
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text())["speedup_nodes_per_s"] == r["speedup_nodes_per_s"] > 0
    ours, packed, naive = r["rows"].values()
    assert ours["nodes_expanded"] >= ours["problems"] and naive["nodes_expanded"] >= 1
    assert ours["prefill_per_expansion"] < naive["prefill_per_expansion"]
    # compaction moves rows between batches, never changes what they draw: the same trees
    assert (packed["nodes_expanded"], packed["tokens"]) == (ours["nodes_expanded"], ours["tokens"])
    for row in (ours, packed, naive):  # compile time is part of the timed run, and excluding it only speeds up
        assert 0 <= row["compile_seconds"] < row["seconds"]
        assert row["nodes_per_s_excl_compile"] >= row["nodes_per_s"]
        assert 0 < row["decode_utilization"] <= 1
