"""The package layers, enforced over the AST: a package imports only from packages in
layers below it (module-level and function-local imports alike), and no modules import
each other in a cycle."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "rstar_jax"
# Lowest first. kernels sit below models because the model's attention calls them.
LAYERS = [
    {"errors"},  # the user-error type every layer raises
    {"steps", "sequences", "config", "io", "lru", "shapes"},
    {"runs", "memory", "distributed"},  # run folders (uses io); the device memory budget; processes
    {"kernels"},
    {"models"},
    {"engine"},
    {"grading", "sandbox", "data"},
    {"search"},
    {"domain", "train", "viewer"},
    {"evolve"},
    {"cli", "bench"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every rstar_jax import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module_name(path, root).split(".")
                pkg = pkg if path.name == "__init__.py" else pkg[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]  # a module, or a name in one
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out += [(n, node.lineno, id(node) in top) for n in names if n.startswith("rstar_jax.")]
    return out


def package_of(module: str) -> str:
    return module.split(".")[1]


def violations(root: pathlib.Path = ROOT) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        if path.parent == root and path.name == "__init__.py":
            continue  # the lazy top-level namespace
        src = package_of(module_name(path, root))
        if src not in RANK:
            bad.append(f"{path}: package {src!r} has no layer")
            continue
        for target, line, _ in imports(path, root):
            dst = package_of(target)
            if dst != src and RANK.get(dst, len(LAYERS)) >= RANK[src]:
                bad.append(f"{path}:{line}: {src} imports {target} (layer {RANK.get(dst)} >= {RANK[src]})")
    return bad


def module_cycles(root: pathlib.Path = ROOT) -> list[list[str]]:
    """Cycles among module-level imports (function-local ones run after import and cannot deadlock)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for target, _, top in imports(path, root):
            while target and target not in modules:  # `from pkg.mod import name` -> pkg.mod
                target = target.rpartition(".")[0]
            if top and target and target != name:
                deps.add(target)
        graph[name] = deps
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # a package __init__ importing its own submodules is the normal re-export, not a cycle
    return [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c[1:])]


def test_every_import_goes_down_the_layers():
    assert violations() == []


def test_no_module_import_cycles():
    assert module_cycles() == []


def test_the_check_catches_an_upward_import_and_a_cycle(tmp_path):
    """The checker itself: an engine module importing search is reported."""
    fake = tmp_path / "rstar_jax"
    (fake / "engine").mkdir(parents=True)
    (fake / "search").mkdir()
    (fake / "engine" / "bad.py").write_text("def f():\n    from rstar_jax.search import mcts\n")
    (fake / "search" / "a.py").write_text("from rstar_jax.search import b\n")
    (fake / "search" / "b.py").write_text("from rstar_jax.search.a import x\n")
    assert any("engine imports rstar_jax.search.mcts" in v for v in violations(fake))
    assert any(set(c) >= {"rstar_jax.search.a", "rstar_jax.search.b"} for c in module_cycles(fake))
