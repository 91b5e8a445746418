"""The structure drawn from the imports: no circle among the modules of ``jiancha``, and
the rule core (``rules/``) and the producer library (``producers/``) depend on nothing of
the project outside their own package.

Every import counts, wherever it is written: at module level, inside a function, under
``if TYPE_CHECKING:``, and ``importlib.import_module("jiancha....")`` or ``__import__`` with
a literal name.
A deferred import hides a circle from the interpreter, not from the reader.
"""

from __future__ import annotations

import ast
import itertools
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: package -> the parts of jiancha its modules may import: the producer library is the
#: bottom (the contract, signing), the rule core stands on it and on nothing else
LAYERS = {"jiancha.producers": ("jiancha.producers",),
          "jiancha.rules": ("jiancha.rules", "jiancha.producers")}


def package_dirs() -> dict[str, Path]:
    """Each installed package of pyproject.toml and its folder in the repository."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {name: ROOT / folder
            for name, folder in config["tool"]["setuptools"]["package-dir"].items()}


def modules() -> dict[str, Path]:
    """Every module under jiancha.* by its dotted name (sub-packages found by walking)."""
    out: dict[str, Path] = {}
    for package, folder in package_dirs().items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every dotted name this module imports (``from x import y`` as ``x.y``, which
    :func:`resolve` cuts back to ``x`` when ``y`` is not a module), with its line."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[:-(node.level - 1)]
                base = ".".join(base_parts)
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                yield (source if alias.name == "*" else f"{source}.{alias.name}"), node.lineno
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and _called(node.func) in ("import_module", "__import__")):
            yield node.args[0].value, node.lineno


def _called(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def resolve(name: str, known: set[str]) -> str | None:
    """The module of jiancha a dotted name lands in (its longest known prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {module of jiancha it imports: a line where it does}."""
    found = modules()
    known = set(found)
    graph: dict[str, dict[str, int]] = {}
    for module, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges: dict[str, int] = {}
        for name, line in _imported_names(tree, module, path.name == "__init__.py"):
            target = resolve(name, known)
            if target is not None and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One circle through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_circle(graph, set(group)) for group in groups]


def _circle(graph: dict[str, dict[str, int]], group: set[str]) -> list[str]:
    """A path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w == start:
                return paths[v] + [start]
            if w in group and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"no circle in {group}")


def _describe(graph: dict[str, dict[str, int]], circle: list[str]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(circle)) \
        + f" -> {circle[-1]}"


def test_the_finder_sees_a_circle_and_each_kind_of_import() -> None:
    known = {"jiancha.a", "jiancha.b", "jiancha.b.c", "jiancha.d"}
    tree = ast.parse("import jiancha.a\n"
                     "from . import c\n"
                     "def f():\n"
                     "    from jiancha.d import name\n"
                     "    importlib.import_module('jiancha.a')\n"
                     "    __import__('jiancha.d')\n")
    names = [resolve(n, known) for n, _ in _imported_names(tree, "jiancha.b", True)]
    assert None not in names
    assert set(names) == {"jiancha.a", "jiancha.b.c", "jiancha.d"}
    graph = {"jiancha.a": {"jiancha.b": 1}, "jiancha.b": {"jiancha.d": 2},
             "jiancha.d": {"jiancha.a": 3}, "jiancha.e": {"jiancha.a": 1}}
    assert cycles(graph) == [["jiancha.a", "jiancha.b", "jiancha.d", "jiancha.a"]]
    assert cycles({"jiancha.a": {"jiancha.b": 1}, "jiancha.b": {}}) == []


def test_the_graph_covers_every_package() -> None:
    graph = import_graph()
    for package in package_dirs():
        assert package in graph, package
    assert "jiancha.rules.engine" in graph["jiancha.rules.factory"]


def test_no_module_imports_itself_in_a_circle() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(_describe(graph, c) for c in found)


def _outside(package: str) -> list[str]:
    graph = import_graph()
    allowed = LAYERS[package]
    return [f"{module} imports {target} (line {line})"
            for module, edges in sorted(graph.items())
            if module == package or module.startswith(package + ".")
            for target, line in sorted(edges.items())
            if not any(target == a or target.startswith(a + ".") for a in allowed)]


def test_the_rule_core_imports_only_itself_and_the_producer_library() -> None:
    wrong = _outside("jiancha.rules")
    assert not wrong, "\n".join(wrong)


def test_the_producer_library_imports_only_itself() -> None:
    wrong = _outside("jiancha.producers")
    assert not wrong, "\n".join(wrong)
