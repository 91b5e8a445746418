"""The producer library imports only the standard library and the base install's
dependencies (pyproject.toml [project].dependencies), so a department installs it alone."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: import name of each distribution in [project].dependencies
IMPORT_NAMES = {"aiokafka": "aiokafka", "pydantic": "pydantic", "orjson": "orjson", "pyyaml": "yaml"}


def _base_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {dep.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower()
             for dep in project["dependencies"]}
    assert names <= IMPORT_NAMES.keys(), f"name the import of {names - IMPORT_NAMES.keys()}"
    return {IMPORT_NAMES[n] for n in names}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_producer_library_imports_only_its_own_dependencies() -> None:
    allowed = _base_dependencies()
    outside = {}
    for path in sorted((ROOT / "producers").glob("*.py")):
        bad = {name for name in _imports(path)
               if name.split(".")[0] not in sys.stdlib_module_names
               and name.split(".")[0] not in allowed
               and not name.startswith("jiancha.producers")}
        if bad:
            outside[path.name] = sorted(bad)
    assert not outside, f"producers/ imports beyond the base install: {outside}"


def test_the_check_sees_an_engine_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from jiancha.settings import WorkerSettings\n")
    assert "jiancha.settings" in _imports(module)
