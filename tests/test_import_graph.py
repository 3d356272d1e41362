"""Imports inside gqlib run one way: no cycle, lazy (function-level) imports included.

Every module of the package is parsed with ``ast``; each ``import``/``from ... import``
anywhere in it (module level, functions, ``TYPE_CHECKING`` blocks) is an edge to the gqlib
module it names. A cycle in that graph fails the test, with the modules on it.
"""

import ast
from pathlib import Path

import gqlib

ROOT = Path(gqlib.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ("gqlib", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _resolve(name: str, modules: set) -> str | None:
    """``name`` or its longest prefix that is a gqlib module (``gqlib.x.y`` may be a function)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(files)
    graph = {m: set() for m in modules}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from pkg import sub` is an edge to the submodule pkg.sub when there is one,
                # else to pkg (whose namespace is read); the parent import itself is implicit
                targets = [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                dep = _resolve(target, modules)
                if dep is not None and dep != mod:
                    graph[mod].add(dep)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "gqlib.integrate._policy" in graph["gqlib.integrate._stepper"]
    assert "gqlib.interpolate" in graph["gqlib.integrate._segment"]  # `from ..interpolate import`
    assert "gqlib._jit" in graph["gqlib.integrate._numba_loop"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# the layers, bottom first; a module may import only from lower layers (or its own package)
LAYERS = [
    {"_jit", "_backend", "_checks", "errors"},
    {"tableaux", "interpolate", "quadrature", "convergence"},  # methods as data, dense output
    {"integrate"},                                            # stepper, controllers, drivers
    {"adjoint"},
    {"sde"},
    {"gqlib"},                                                # the public namespace
    {"torch", "jax"},                                         # adapters
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gqlib"


def test_layers():
    graph = import_graph()
    assert {_top(m) for m in graph} <= set(RANK), {_top(m) for m in graph} - set(RANK)
    wrong = sorted((m, d) for m, deps in graph.items() for d in deps
                   if _top(m) != _top(d) and RANK[_top(d)] >= RANK[_top(m)])
    assert not wrong, wrong


def _external_imports(path: Path) -> set[str]:
    """Top-level names of the non-gqlib modules a file imports (anywhere in it)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_adapters_import_their_frameworks():
    """jax only in gqlib/jax, torch only in gqlib/torch; the jax adapter's host callbacks
    (gqlib/jax/_host.py) are NumPy-only: a callback that calls into JAX deadlocks."""
    wrong = []
    for path in ROOT.rglob("*.py"):
        top = path.relative_to(ROOT).parts[0]
        ext = _external_imports(path)
        for framework in ("jax", "jaxlib", "torch", "equinox", "diffrax"):
            allowed = top == "jax" if framework in ("jax", "jaxlib") else top == "torch"
            if framework in ext and not allowed:
                wrong.append((str(path.relative_to(ROOT)), framework))
    assert not wrong, wrong
    assert not _external_imports(ROOT / "jax" / "_host.py") & {"jax", "jaxlib"}
