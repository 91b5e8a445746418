"""Faust's, aiokafka's and mode's internals are touched in agents/runtime/ only.

Every other module of the repository (the worker, the command line, the notifier, the
producer library, the tests) uses their public API: ``faust.App``, agents, tables, timers,
web views, ``faust.types.TP``, aiokafka's clients and errors. This scans their source and
fails on:

- an import of an internal module (``faust.transport.consumer``, ``aiokafka.consumer.fetcher``,
  anything not in :data:`PUBLIC_MODULES`) or of a name with a leading underscore;
- an attribute with a leading underscore that the libraries define (``consumer._committed_offset``,
  ``app._consumer``), read, written or reached through ``getattr``/``setattr``/``hasattr``;
- any private attribute of, or an assignment to an attribute of (monkey-patching), the
  app's consumer, producer, transport, assignor, monitor, flow control or topic conductor.

A private name the project itself defines (``self._session``) counts as the project's even
where a library uses the same name; the scan is by name, not by type.

The tests of the runtime itself (``tests/unit/test_runtime_*.py``) work on its internals
and are not scanned.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "agents" / "runtime"
SCANNED = ["agents", "dashboards", "jiancha", "notifier", "producers", "rules", "tests", "settings.py"]
LIBRARIES = ("faust", "aiokafka", "mode")
#: the modules of the libraries' public API that code outside the runtime may import
PUBLIC_MODULES = frozenset({
    "faust", "faust.types", "faust.web", "faust.exceptions",
    "aiokafka", "aiokafka.errors", "aiokafka.structs", "aiokafka.admin", "aiokafka.helpers",
})
#: a receiver that is one of the app's Faust services: nothing private of it, no patching
FAUST_SERVICE = re.compile(
    r"(^|\.)app\.(consumer|producer|transport|assignor|monitor|flow_control|topics)$")


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


#: private names a module defines on its classes and instances: ``self._x``, ``cls._x``,
#: ``def _x`` and ``_x: T`` / ``_x = v`` in a class body (indented)
_MEMBER = re.compile(r"\b(?:self|cls)\.(_\w+)|^[ \t]+(?:async[ \t]+)?def[ \t]+(_\w+)"
                     r"|^[ \t]+(_\w+)[ \t]*[:=]", re.MULTILINE)
#: what a module must contain to reach a library's internals at all (the others are not parsed)
_MAY_REACH = re.compile(r"\b(?:faust|aiokafka|mode)\b|(?<!self)(?<!cls)\._[A-Za-z]"
                        r"|\b(?:get|set|has|del)attr\(|\.(?:consumer|producer|transport|assignor"
                        r"|monitor|flow_control|topics)\.")


def _private_members(source: str) -> set[str]:
    return {name for match in _MEMBER.finditer(source) for name in match.groups()
            if name and _is_private(name)}


def _library_dir(lib: str) -> Path:
    # the package's folder (faust replaces its module with a lazy one that has no spec)
    return Path(importlib.import_module(lib).__file__ or "").parent


@functools.cache
def _library_private_names() -> frozenset[str]:
    names: set[str] = set()
    for lib in LIBRARIES:
        for path in _library_dir(lib).rglob("*.py"):
            names |= _private_members(path.read_text(encoding="utf-8"))
    return frozenset(names)


def _project_sources() -> Iterator[Path]:
    for entry in SCANNED:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            if RUNTIME in file.parents or ".venv" in file.parts:
                continue
            if file.parent == ROOT / "tests" / "unit" and file.name.startswith("test_runtime_"):
                continue
            yield file


def _dotted(node: ast.expr) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    else:
        parts.append("(...)")
    return ".".join(reversed(parts))


def _library_module(name: str) -> bool:
    return name.split(".")[0] in LIBRARIES


def _module_allowed(name: str) -> bool:
    return name in PUBLIC_MODULES and not any(_is_private(p) for p in name.split("."))


def scan(path: Path, tree: ast.AST, faust_private: frozenset[str]) -> list[Violation]:
    rel = str(path.relative_to(ROOT))
    out: list[Violation] = []

    def flag(node: ast.AST, what: str) -> None:
        out.append(Violation(rel, getattr(node, "lineno", 0), what))

    library_aliases: dict[str, str] = {}  # local name -> library module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _library_module(alias.name):
                    if not _module_allowed(alias.name):
                        flag(node, f"imports the internal module {alias.name}")
                    local = alias.asname or alias.name.split(".")[0]
                    library_aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and _library_module(node.module):
            if not _module_allowed(node.module):
                flag(node, f"imports from the internal module {node.module}")
            for alias in node.names:
                if _is_private(alias.name):
                    flag(node, f"imports the private name {alias.name} from {node.module}")
                elif f"{node.module}.{alias.name}" in _library_submodules():
                    submodule = f"{node.module}.{alias.name}"
                    if not _module_allowed(submodule):
                        flag(node, f"imports the internal module {submodule}")
                    library_aliases[alias.asname or alias.name] = submodule

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            receiver = _dotted(node.value)
            if receiver.split(".")[0] in library_aliases:
                # a library module's attribute path: faust.transport.consumer.Consumer
                root, *rest = receiver.split(".")
                module = library_aliases[root]
                for part in [*rest, node.attr]:
                    if _is_private(part):
                        flag(node, f"reaches the private {module}.{part}")
                        break
                    if f"{module}.{part}" not in _library_submodules():
                        break  # an attribute of a public module
                    module = f"{module}.{part}"
                    if not _module_allowed(module):
                        flag(node, f"reaches the internal module {module}")
                        break
                continue
            if _is_private(node.attr) and node.attr in faust_private and receiver not in ("self", "cls"):
                flag(node, f"{receiver}.{node.attr}: a private attribute of Faust/aiokafka/mode")
            elif _is_private(node.attr) and FAUST_SERVICE.search(receiver):
                flag(node, f"{receiver}.{node.attr}: a private attribute of a Faust service")
            elif isinstance(node.ctx, ast.Store | ast.Del) and FAUST_SERVICE.search(receiver):
                flag(node, f"{receiver}.{node.attr} assigned: patches a Faust service")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            name = node.args[1].value
            receiver = _dotted(node.args[0])
            if _is_private(name) and (name in faust_private or FAUST_SERVICE.search(receiver)):
                flag(node, f"{node.func.id}({receiver}, {name!r}): a private attribute of Faust")
    return list(dict.fromkeys(out))  # an attribute path is seen once per prefix


@functools.cache
def _library_submodules() -> frozenset[str]:
    found: set[str] = set()
    for lib in LIBRARIES:
        base = _library_dir(lib)
        for path in base.rglob("*.py"):
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.add(".".join((lib, *parts)))
    return frozenset(found)


def violations() -> list[Violation]:
    sources = {path: path.read_text(encoding="utf-8") for path in _project_sources()}
    project_private: set[str] = set()
    for source in sources.values():
        project_private |= _private_members(source)
    # a name the project defines for itself (self._session) is the project's, even where a
    # library happens to use it too
    faust_private = _library_private_names() - project_private
    return [v for path, source in sources.items() if _MAY_REACH.search(source)
            for v in scan(path, ast.parse(source, str(path)), faust_private)]


def test_no_module_outside_the_runtime_touches_faust_or_aiokafka_internals() -> None:
    found = violations()
    assert not found, (
        "Faust/aiokafka internals outside agents/runtime/ (move the code into the runtime "
        "and give the worker a method of its interface):\n" + "\n".join(map(str, found)))


def _scan_text(source: str) -> list[str]:
    return [v.what for v in scan(ROOT / "agents" / "example.py", ast.parse(source),
                                 _library_private_names())]


def test_the_scan_sees_each_kind_of_reach() -> None:
    """Each rule on a line of its own: the scan is not vacuous."""
    assert _scan_text("from faust.transport.consumer import Consumer\n")
    assert _scan_text("import aiokafka.consumer.fetcher\n")
    assert _scan_text("from faust.types.tuples import ack_lock\n")
    assert _scan_text("import faust\nfaust.transport.consumer.Consumer\n")
    assert _scan_text("x = app.consumer._committed_offset.get(tp)\n")
    assert _scan_text("x = getattr(self.app.consumer, '_committed_offset', {})\n")
    assert _scan_text("app.producer._producer\n")
    assert _scan_text("app.producer.flush = flush\n")
    assert _scan_text("if app._consumer is None: pass\n")
    # and the public API passes
    assert not _scan_text("import faust\nfrom faust.types import TP\n"
                          "from aiokafka.errors import KafkaError\n"
                          "app = faust.App('x')\ntp = faust.types.TP('t', 0)\n"
                          "end = app.consumer.highwater(tp)\nself._mine = 1\n")
