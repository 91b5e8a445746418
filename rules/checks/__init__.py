"""The checks: one small pure function per rule, grouped by concern, and the table that
names them. A check reads a :class:`~rules.findings.CaseView` and returns
:class:`~rules.findings.Finding` s. A new rule is a function in one of these modules, a
line in that module's ``CHECKS`` and an entry in ``rules/ruleset/*.yaml``; ``@reads(...)`` on
the function names the steps it reads, so that the engine runs it only after facts of those
steps (without it, it runs after every fact; ``tests/unit/test_reads.py`` checks it).
"""

from __future__ import annotations

from ..findings import Check
from . import deadlines, intake, integrity, process, suspensions

CHECKS: dict[str, Check] = {}
for _module in (process, deadlines, intake, integrity, suspensions):
    for _name, _check in _module.CHECKS.items():
        if _name in CHECKS:
            raise RuntimeError(f"rule {_name} is defined twice")
        CHECKS[_name] = _check
