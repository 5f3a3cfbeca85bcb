"""rstar_jax: rStar-Math (self-evolved deep thinking for small LMs) in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="rstar_jax",
    version="0.1.0",
    description="JAX/Flax reimplementation of rStar-Math: MCTS over code-augmented steps, "
    "process preference models and self-evolution",
    # Kernels install as rstar_jax.kernels: a top-level `kernels` would shadow the one transformers imports.
    packages=find_packages(include=["rstar_jax", "rstar_jax.*"]),
    python_requires=">=3.11",
    # jax 0.10.2 through the 0.12 series (jax 0.11+ needs Python >= 3.12: pip takes the newest the
    # interpreter allows) with the flax 0.12 series; tests/test_dependencies.py (slow) runs the lower bounds.
    install_requires=[
        "jax>=0.10.2,<0.13",
        "jaxlib>=0.10.2,<0.13",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "transformers>=5.0",
        "tokenizers>=0.21",
        "safetensors>=0.5",
        "ml_dtypes>=0.5",
        "sympy>=1.13",
        "math-verify==0.9.0",
        "numpy>=2.0",
        "tqdm>=4.66",
        "pyyaml>=6.0",
        "matplotlib>=3.8",
        "tensorboardX>=2.6",
        # the sandbox's seccomp filters (libseccomp2, and bubblewrap for its namespaces, from the OS)
        "pyseccomp>=0.1.2; sys_platform == 'linux'",
    ],
    # ruff pinned: its formatter's output is part of the test command
    extras_require={"test": ["pytest>=8.0", "torch==2.13.0", "ruff==0.17.6"]},
    entry_points={"console_scripts": ["rstar-jax=rstar_jax.cli:main"]},
    include_package_data=True,
    # the tree viewer's page script and style, inlined into each page it writes
    package_data={"rstar_jax.viewer": ["*.js", "*.css"]},
)
