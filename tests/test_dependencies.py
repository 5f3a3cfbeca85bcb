"""setup.py's version ranges: what is installed lies inside them, and (slow: it downloads) the lowest
jax, jaxlib and flax they allow still pass the model, engine and mesh tests.

The lower bound by hand (README): pip install -e ".[test]" "jax==0.10.2" "jaxlib==0.10.2" "flax==0.12.8"
and run the tests; or `python -m pytest -q -m slow tests/test_dependencies.py`, which installs
exactly setup.py's lower bounds into a folder put ahead of the environment's packages.
"""

import ast
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PINNED = ("jax", "jaxlib", "flax")  # the lower bounds the slow test installs


def requirements() -> dict[str, Requirement]:
    """setup.py's install_requires, read from its source (setup.py runs setup() when imported)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    found = next(
        kw.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "install_requires"
    )
    reqs = [Requirement(ast.literal_eval(e)) for e in found.elts]
    return {r.name.lower(): r for r in reqs}


def lower_bound(req: Requirement) -> str:
    return next(s.version for s in req.specifier if s.operator == ">=")


def test_installed_versions_lie_in_setup_ranges():
    reqs = requirements()
    for name in (*PINNED, "optax", "orbax-checkpoint", "transformers", "numpy", "ml_dtypes"):
        have = Version(metadata.version(name))
        assert reqs[name.lower()].specifier.contains(have, prereleases=True), (name, str(have), str(reqs[name]))
    for name in PINNED:  # every pinned package has a lower bound that its own range admits
        req = reqs[name]
        assert req.specifier.contains(lower_bound(req)), str(req)


@pytest.mark.slow
def test_lower_bounds_pass_the_core_tests(tmp_path):
    reqs = requirements()
    pins = [f"{n}=={lower_bound(reqs[n])}" for n in PINNED]
    site = tmp_path / "site"
    got = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), *pins],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if got.returncode:
        pytest.skip(f"cannot install {pins} (no package index?): {got.stderr.strip()[-300:]}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    probe = "import jax, jaxlib, flax; print(jax.__version__, jaxlib.__version__, flax.__version__)"
    versions = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert versions.stdout.split() == [p.split("==")[1] for p in pins]
    tests = ["tests/test_models.py", "tests/test_engine.py", "tests/test_sharded_inference.py"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", *tests], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
