"""Which programs may share one forked child (run one after another, each in a fresh namespace).

A fork per program costs ~2-5 ms of CPU here (page tables and copy-on-write
faults of the zygote's heap); running several programs in one child costs
~0.1 ms each. Sharing a process is only safe when one program cannot change
what the next one sees. That holds for programs built from a conservative
subset of Python, checked statically on the AST:

- imports only of stateless standard modules (math, fractions, itertools, ...);
  not random (global RNG state), decimal (global context), sys, os, numpy, sympy;
- no attribute stores or deletes (so no ``math.pi = 3``), no class definitions,
  no ``with``, no async, no names or attributes starting with ``_``
  (no ``__builtins__``, ``__class__``, ``__globals__``, ...);
- none of the builtins that reach or mutate shared objects indirectly
  (open, exec, eval, getattr, setattr, vars, globals, ...), nor the few
  stdlib callables that do (ABC ``register``, ``operator.attrgetter``, ...).

Everything else (and anything this check rejects) runs in a child of its own.
Standard library only — the worker loads this file without the package.
"""

from __future__ import annotations

import ast
import sys

BATCH_MODULES = frozenset(
    {
        "math",
        "cmath",
        "fractions",
        "itertools",
        "functools",
        "collections",
        "operator",
        "heapq",
        "bisect",
        "statistics",
        "string",
        "numbers",
        "copy",
        "datetime",
    }
)
DENIED_NAMES = frozenset(
    {
        "open",
        "exec",
        "eval",
        "compile",
        "getattr",
        "setattr",
        "delattr",
        "vars",
        "globals",
        "locals",
        "input",
        "breakpoint",
        "help",
        "exit",
        "quit",
        "memoryview",
        "super",
        "classmethod",
        "staticmethod",
        "property",
        "dir",
        "__import__",
    }
)
DENIED_ATTRS = frozenset({"register", "attrgetter", "methodcaller", "setcontext", "getcontext"})


def denied_attributes() -> frozenset[str]:
    """Attribute names a batchable program may not touch, given what is imported now.

    Besides DENIED_ATTRS: every loaded module's name (``fractions.sys`` would
    reach ``sys.modules``) and every public mutable container of the batch
    modules (``copy.dispatch_table``-like objects).
    """
    names = set(DENIED_ATTRS) | {name.partition(".")[0] for name in sys.modules}
    for mod_name in BATCH_MODULES:
        mod = sys.modules.get(mod_name)
        for attr, value in vars(mod).items() if mod is not None else ():
            if isinstance(value, (list, dict, set, bytearray)):
                names.add(attr)
    return frozenset(names - BATCH_MODULES)


_ALLOWED_NODES = tuple(
    getattr(ast, name)
    for name in (
        # statements
        "Module",
        "Expr",
        "Assign",
        "AugAssign",
        "AnnAssign",
        "For",
        "While",
        "If",
        "Break",
        "Continue",
        "Pass",
        "FunctionDef",
        "Return",
        "Try",
        "ExceptHandler",
        "Raise",
        "Assert",
        "Delete",
        "Global",
        "Nonlocal",
        "Import",
        "ImportFrom",
        "alias",
        "arguments",
        "arg",
        "keyword",
        # expressions
        "BoolOp",
        "BinOp",
        "UnaryOp",
        "Lambda",
        "IfExp",
        "Dict",
        "Set",
        "ListComp",
        "SetComp",
        "DictComp",
        "GeneratorExp",
        "comprehension",
        "Yield",
        "YieldFrom",
        "Compare",
        "Call",
        "FormattedValue",
        "JoinedStr",
        "Constant",
        "Attribute",
        "Subscript",
        "Starred",
        "Name",
        "List",
        "Tuple",
        "Slice",
        "NamedExpr",
        "Load",
        "Store",
        "Del",
        # operators
        "And",
        "Or",
        "Add",
        "Sub",
        "Mult",
        "MatMult",
        "Div",
        "Mod",
        "Pow",
        "LShift",
        "RShift",
        "BitOr",
        "BitXor",
        "BitAnd",
        "FloorDiv",
        "Invert",
        "Not",
        "UAdd",
        "USub",
        "Eq",
        "NotEq",
        "Lt",
        "LtE",
        "Gt",
        "GtE",
        "Is",
        "IsNot",
        "In",
        "NotIn",
    )
)


def batchable(tree: ast.AST, denied_attrs: frozenset[str] = DENIED_ATTRS) -> bool:
    """True when the program provably cannot alter state shared with later programs.

    ``denied_attrs``: pass :func:`denied_attributes` of the process that will run it.
    """
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            return False
        if isinstance(node, ast.Name) and (node.id.startswith("_") or node.id in DENIED_NAMES):
            return False
        if isinstance(node, ast.Attribute) and (
            not isinstance(node.ctx, ast.Load) or node.attr.startswith("_") or node.attr in denied_attrs
        ):
            return False
        if isinstance(node, ast.alias) and (node.name.startswith("_") or (node.asname or "").startswith("_")):
            return False
        if isinstance(node, ast.Import) and any(a.name.partition(".")[0] not in BATCH_MODULES for a in node.names):
            return False
        if isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").partition(".")[0] not in BATCH_MODULES
        ):
            return False
        if isinstance(node, (ast.FunctionDef, ast.Lambda)) and getattr(node, "name", "x").startswith("_"):
            return False
        if isinstance(node, ast.arg) and node.arg.startswith("_"):
            return False
        if isinstance(node, ast.keyword) and node.arg is not None and node.arg.startswith("_"):
            return False
        if isinstance(node, (ast.Global, ast.Nonlocal)) and any(n.startswith("_") for n in node.names):
            return False
    return True
