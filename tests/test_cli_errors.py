"""Bad input through the real command line: every case ends with exit status 2 and one line on
stderr that names the file (and line, key or tensor) and what is wrong, no traceback, and an
untouched output folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from rstar_jax.data import save_problems
from rstar_jax.domain import generate_problems

ENV = {**os.environ, "RSTAR_JAX_COMPILE_CACHE": "off", "JAX_PLATFORMS": "cpu"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Good and damaged input files, and a tiny model folder with its tokenizer."""
    from rstar_jax.cli import main
    from rstar_jax.evolve.base_model import build_base_model
    from rstar_jax.evolve.config import BaseModelSpec

    d = tmp_path_factory.mktemp("inputs")
    problems = d / "p.jsonl"
    save_problems(generate_problems(3, 1, seed=0), problems)
    good_line = problems.read_text().splitlines()[0]
    files = {
        "problems": problems,
        "empty": "",
        "binary.jsonl": b"\xff\xfe garbage\n",
        "badjson.jsonl": good_line + "\n{not json\n",
        "noquestion.jsonl": json.dumps({"id": "x", "answer": "1"}) + "\n",
        "objanswer.jsonl": json.dumps({"question": "1+1?", "answer": {"value": 2}}) + "\n",
        "p.txt": good_line + "\n",
        "notarray.json": json.dumps({"question": "q", "answer": "1"}),
        "bad.yaml": "rollouts: [1,\n",
        "list.yaml": "- 1\n- 2\n",
        "sft.jsonl": json.dumps({"problem_id": "x", "prompt": "p", "solution": "s"}) + "\n",
    }
    paths = {}
    for name, content in files.items():
        if name == "problems":
            paths[name] = str(content)
            continue
        path = d / (name if "." in name else f"{name}.jsonl")
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        paths[name] = str(path)
    model = d / "model"
    spec = BaseModelSpec(
        vocab_size=300,
        hidden_size=16,
        intermediate_size=32,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        max_position_embeddings=256,
    )
    spec = spec.__class__(**{**spec.__dict__, "copy_warmup": spec.copy_warmup.__class__(steps=0)})
    build_base_model(spec, generate_problems(5, 1, seed=0), str(model))
    paths["model"] = str(model)
    weights = (model / "model.safetensors").read_bytes()
    config = (model / "config.json").read_text()
    for name, change in {
        "no_config": lambda m: os.remove(m / "config.json"),
        "bad_config": lambda m: (m / "config.json").write_text(config[:40]),
        "gpt2": lambda m: (m / "config.json").write_text(json.dumps({**json.loads(config), "model_type": "gpt2"})),
        "empty_weights": lambda m: (m / "model.safetensors").write_bytes(b""),
        "cut_weights": lambda m: (m / "model.safetensors").write_bytes(weights[: len(weights) // 2]),
        "bad_header": lambda m: (m / "model.safetensors").write_bytes(weights[:8] + b"{oops" + weights[13:]),
        "no_tokenizer": lambda m: [os.remove(f) for f in m.iterdir() if "token" in f.name],
    }.items():
        copy = d / name
        copy.mkdir()
        for f in model.iterdir():
            (copy / f.name).write_bytes(f.read_bytes())
        change(copy)
        paths[name] = str(copy)
    trees = d / "trees"
    assert (
        main(["search", "--policy", "bootstrap", "--data", str(problems), "--out", str(trees), "--rollouts", "2"]) == 0
    )
    paths["trees"] = str(trees / "trees.jsonl")
    (d / "empty_dir").mkdir()
    paths["empty_dir"] = str(d / "empty_dir")
    return paths


S = ["search", "--policy", "bootstrap", "--data", "{problems}", "--out", "{out}"]
CASES = [
    # (name, argv, substrings stderr must hold)
    (
        "missing problem file",
        ["search", "--policy", "bootstrap", "--data", "{empty_dir}/nope.jsonl", "--out", "{out}"],
        ["nope.jsonl", "No such file"],
    ),
    ("empty problem file", [*S[:4], "{empty}", *S[5:]], ["empty.jsonl", "no problems"]),
    ("not UTF-8", [*S[:4], "{binary.jsonl}", *S[5:]], ["binary.jsonl:1", "not UTF-8"]),
    ("bad JSON line", [*S[:4], "{badjson.jsonl}", *S[5:]], ["badjson.jsonl:2", "invalid JSON"]),
    ("record without question", [*S[:4], "{noquestion.jsonl}", *S[5:]], ["noquestion.jsonl:1", "no question"]),
    ("answer as object", [*S[:4], "{objanswer.jsonl}", *S[5:]], ["objanswer.jsonl:1", "'answer' must be"]),
    ("unknown suffix", [*S[:4], "{p.txt}", *S[5:]], ["p.txt", "unsupported problem file suffix"]),
    (".json not an array", [*S[:4], "{notarray.json}", *S[5:]], ["notarray.json", "JSON array"]),
    ("unknown override key", [*S, "no_such_key=1"], ["unknown keys ['no_such_key']"]),
    ("boolean as integer", [*S, "rollouts=yes"], ["rollouts", "expected int, got True"]),
    ("zero rollouts", [*S, "rollouts=0"], ["rollouts must be >= 1"]),
    ("negative temperature", [*S, "temperature=-1"], ["temperature must be >= 0"]),
    ("override without =", [*S, "rollouts"], ["'rollouts' is not key=value"]),
    ("literal out of range", [*S, "mode=fast"], ["mode", "'fast' not one of"]),
    ("ppm reward without ppm mode", [*S, "reward=ppm"], ["reward='ppm' needs mode='ppm'"]),
    ("ppm mode without a ppm", [*S, "mode=ppm"], ["needs a scorer", "--ppm"]),
    ("missing config file", [*S, "--config", "{empty_dir}/none.yaml"], ["none.yaml", "No such file"]),
    ("invalid YAML", [*S, "--config", "{bad.yaml}"], ["bad.yaml", "not valid YAML"]),
    ("YAML not a mapping", [*S, "--config", "{list.yaml}"], ["list.yaml", "top level must be a mapping"]),
    ("bad flag value", [*S, "--rollouts", "many"], ["--rollouts", "invalid int value"]),
    ("missing required flag", ["search", "--policy", "bootstrap", "--out", "{out}"], ["required", "--data"]),
    (
        "missing policy folder",
        ["search", "--policy", "{empty_dir}/nomodel", "--data", "{problems}", "--out", "{out}"],
        ["nomodel", "model folder does not exist"],
    ),
    (
        "policy without config.json",
        ["search", "--policy", "{no_config}", "--data", "{problems}", "--out", "{out}"],
        ["no_config/config.json", "no config.json"],
    ),
    (
        "policy config not JSON",
        ["search", "--policy", "{bad_config}", "--data", "{problems}", "--out", "{out}"],
        ["bad_config/config.json", "not valid JSON"],
    ),
    (
        "unsupported model type",
        ["search", "--policy", "{gpt2}", "--data", "{problems}", "--out", "{out}"],
        ["gpt2/config.json", "unsupported model_type 'gpt2'"],
    ),
    (
        "0-byte weights",
        ["search", "--policy", "{empty_weights}", "--data", "{problems}", "--out", "{out}"],
        ["empty_weights/model.safetensors", "not a safetensors file"],
    ),
    (
        "truncated weights",
        ["search", "--policy", "{cut_weights}", "--data", "{problems}", "--out", "{out}"],
        ["cut_weights/model.safetensors", "tensor", "truncated"],
    ),
    (
        "corrupt header",
        ["search", "--policy", "{bad_header}", "--data", "{problems}", "--out", "{out}"],
        ["bad_header/model.safetensors", "corrupt safetensors header"],
    ),
    (
        "model without tokenizer",
        ["search", "--policy", "{no_tokenizer}", "--data", "{problems}", "--out", "{out}"],
        ["no_tokenizer", "not a tokenizer folder"],
    ),
    (
        "solve: bad override",
        ["solve", "--policy", "bootstrap", "--question", "1+1?", "candidates=-2"],
        ["candidates must be >= 1"],
    ),
    (
        "eval: unknown method",
        ["eval", "--policy", "bootstrap", "--data", "{problems}", "--method", "magic"],
        ["--method", "invalid choice: 'magic'"],
    ),
    (
        "eval: mcts without ppm",
        ["eval", "--policy", "bootstrap", "--data", "{problems}", "--method", "mcts", "--out", "{out}"],
        ["need a reward model", "--ppm"],
    ),
    (
        "eval: empty problems",
        ["eval", "--policy", "bootstrap", "--data", "{empty}", "--out", "{out}"],
        ["empty.jsonl", "no problems"],
    ),
    (
        "eval: bad override",
        ["eval", "--policy", "bootstrap", "--data", "{problems}", "--out", "{out}", "mcts.rollouts=0"],
        ["mcts", "rollouts must be >= 1"],
    ),
    ("extract: empty folder", ["extract", "--trees", "{empty_dir}", "--out", "{out}"], ["empty_dir", "no .jsonl"]),
    (
        "extract: not trees",
        ["extract", "--trees", "{badjson.jsonl}", "--out", "{out}"],
        ["badjson.jsonl:1", "missing fields"],
    ),
    (
        "extract: unknown setting",
        ["extract", "--trees", "{trees}", "--out", "{out}", "per_sides=3"],
        ["unknown keys ['per_sides']"],
    ),
    (
        "train-policy: missing init",
        ["train-policy", "--trees", "{trees}", "--init", "{empty_dir}/nomodel", "--out", "{out}"],
        ["nomodel", "model folder does not exist"],
    ),
    (
        "train-ppm: sft data",
        ["train-ppm", "--trees", "{sft.jsonl}", "--init", "{model}", "--out", "{out}"],
        ["sft.jsonl", "holds sft data", "needs pairs"],
    ),
    (
        "train-policy: binary data",
        ["train-policy", "--trees", "{binary.jsonl}", "--init", "{model}", "--out", "{out}"],
        ["binary.jsonl:1", "not UTF-8"],
    ),
    (
        "train-policy: empty data",
        ["train-policy", "--trees", "{empty}", "--init", "{model}", "--out", "{out}"],
        ["empty.jsonl", "empty data file"],
    ),
    ("info: corrupt weights", ["info", "{cut_weights}", "--load"], ["cut_weights/model.safetensors", "truncated"]),
    ("info: no model", ["info", "{empty_dir}"], ["empty_dir", "config.json"]),
    ("convert: missing source", ["convert", "{empty_dir}/nomodel", "{out}"], ["nomodel"]),
    ("view: missing file", ["view", "{empty_dir}/none.jsonl", "--out", "{out}/t.html"], ["none.jsonl"]),
    (
        "view: not tree records",
        ["view", "{badjson.jsonl}", "--out", "{out}/t.html"],
        ["badjson.jsonl:1", "missing fields"],
    ),
    ("view: bad JSON", ["view", "{binary.jsonl}", "--out", "{out}/t.html"], ["binary.jsonl:1", "not UTF-8"]),
    ("evolve: missing config", ["evolve", "--config", "{empty_dir}/none.yaml", "--out", "{out}"], ["none.yaml"]),
    ("evolve: zero rounds", ["evolve", "--out", "{out}", "rounds=0"], ["rounds must be >= 1"]),
    ("evolve: unknown section key", ["evolve", "--out", "{out}", "sft.stepz=3"], ["unknown keys ['stepz']"]),
    (
        "evolve: bool as int",
        ["evolve", "--out", "{out}", "bootstrap_search.rollouts=yes"],
        ["bootstrap_search.rollouts", "expected int"],
    ),
    (
        "evolve: missing train file",
        ["evolve", "--out", "{out}", "domain.train_file={empty_dir}/train.jsonl"],
        ["train.jsonl"],
    ),
]


def _fill(argv: list[str], values: dict) -> list[str]:
    """``{name}`` placeholders (names may hold dots, e.g. ``{p.txt}``) replaced by ``values``."""
    return [re.sub(r"\{([\w.]+)\}", lambda m: str(values[m.group(1)]), a) for a in argv]


def _run(argv: list[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rstar_jax.cli", *argv], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )


def test_bad_inputs_get_one_line_and_exit_2(inputs, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    jobs = []
    for i, (name, argv, must) in enumerate(CASES):
        out = tmp_path / f"out{i}"
        jobs.append((name, _fill(argv, {**inputs, "out": out}), must, out))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: _run(job[1], root), jobs))
    failures = []
    for (name, argv, must, out), r in zip(jobs, results):
        lines = r.stderr.strip().splitlines()
        problems = []
        if r.returncode != 2:
            problems.append(f"exit {r.returncode}")
        if len(lines) != 1 or "Traceback" in r.stderr:
            problems.append(f"{len(lines)} stderr lines")
        problems += [f"no {m!r}" for m in must if m not in r.stderr]
        if out.exists() and any(out.iterdir()):
            problems.append(f"wrote {sorted(p.name for p in out.iterdir())}")
        if problems:
            failures.append(f"{name}: {', '.join(problems)}\n    {' '.join(argv)}\n    {r.stderr.strip()[-600:]}")
    assert len(CASES) >= 40
    assert not failures, "\n".join(failures)


def test_debug_shows_the_traceback(inputs, tmp_path):
    r = _run(["--debug", *_fill([*S, "rollouts=0"], {**inputs, "out": tmp_path / "o"})], str(tmp_path))
    assert r.returncode == 1 and "Traceback" in r.stderr and "rollouts must be >= 1" in r.stderr
