"""The package structure: no import cycles, no library module importing a script, layers kept.

Every `import` statement counts, also the ones inside functions: a lazy import hides a cycle
from Python's import machinery, not from a reader (the two halves still cannot be understood,
tested or moved apart).  Only `if TYPE_CHECKING:` blocks are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("datagen", "mobrecon", "train", "pretrain")
SCRIPTS = ("blender_scripts", "scripts", "benchmarks", "tests")


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports_of(path: Path, known: set[str], root: Path = REPO) -> set[str]:
    """Project modules that `path` imports (resolved to the longest known module name).

    Tests run with tests/ on sys.path, so a bare `test_x` there means `tests.test_x`.
    """
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree)
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            if me.startswith("tests.") and f"tests.{name.split('.')[0]}" in known:
                name = f"tests.{name}"
            parts = name.split(".")
            for k in range(len(parts), 0, -1):
                cand = ".".join(parts[:k])
                if cand in known:
                    if cand != me:
                        found.add(cand)
                    break
    return found


def project_graph(root: Path = REPO) -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES + SCRIPTS for p in (root / pkg).rglob("*.py")]
    known = {module_name(p, root) for p in files}
    return {module_name(p, root): imports_of(p, known, root) for p in files}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _library(graph):
    return {m: deps for m, deps in graph.items() if m.split(".")[0] in PACKAGES}


def test_no_import_cycles():
    cycles = find_cycles(_library(project_graph()))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_library_module_imports_a_script():
    bad = [(m, d) for m, deps in _library(project_graph()).items() for d in deps if d.split(".")[0] in SCRIPTS]
    assert not bad, f"library modules importing scripts: {bad}"


def test_network_does_not_depend_on_the_generator():
    """mobrecon may use the numpy geometry kernel, nothing else of datagen (nor train)."""
    graph = project_graph()
    bad = [(m, d) for m, deps in graph.items() if m.startswith("mobrecon") for d in deps
           if (d.startswith("datagen") and not d.startswith("datagen.geometry")) or d.startswith(("train", "pretrain"))]
    assert not bad, f"mobrecon depends on: {bad}"


def test_geometry_kernel_is_a_leaf():
    graph = project_graph()
    bad = [(m, d) for m, deps in graph.items() if m.startswith("datagen.geometry") for d in deps
           if not d.startswith("datagen.geometry") and d != "datagen"]
    assert not bad, f"datagen.geometry imports other project modules: {bad}"


def test_tests_do_not_import_other_test_modules():
    graph = project_graph()
    bad = [(m, d) for m, deps in graph.items() if m.startswith("tests") for d in deps
           if d.startswith("tests.test_")]
    assert not bad, f"tests importing test modules (use tests/support): {bad}"


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
])
def test_cycle_finder(edges, expected):
    assert find_cycles(edges) == expected


def test_a_new_cycle_is_caught(tmp_path):
    """Write two modules that import each other (one lazily) and check the graph sees the cycle."""
    pkg = tmp_path / "datagen" / "toy"
    pkg.mkdir(parents=True)
    (tmp_path / "datagen" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from datagen.toy.b import g\n\ndef f():\n    return g()\n")
    (pkg / "b.py").write_text("def g():\n    from .a import f\n    return f\n")
    for d in PACKAGES[1:] + SCRIPTS:
        (tmp_path / d).mkdir()
    assert find_cycles(_library(project_graph(tmp_path))) == [["datagen.toy.a", "datagen.toy.b"]]
