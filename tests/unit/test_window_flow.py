"""One window flow (rules.windows.WindowFlow) for the worker and replay: over a store that
keeps its values as JSON and is scanned for what is due, as the worker's Faust tables and
timer are, with every record forwarded twice (a takeover), it raises what replay's
WindowTracker raises, alert for alert."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import orjson

from jiancha.producers.contract import Alert
from jiancha.rules.windows import (
    BURST,
    CLOSE,
    COUNT,
    DENIAL,
    SILENT,
    WindowFlow,
    WindowRecord,
    WindowRules,
    WindowTracker,
)
from tests.unit.test_windows import TZ, rec, rules, t


class JsonTables:
    """A :class:`~rules.windows.WindowStore` as the worker's tables hold it: every value
    stored as JSON (a read is a fresh copy), what is due found by scanning them."""

    def __init__(self, rules: WindowRules) -> None:
        self.rules = rules
        self.tables: dict[str, dict[Any, bytes]] = {"state": {}, "window": {}, "handler": {},
                                                    "spans": {}}

    def _get(self, table: str, key: Any) -> Any:
        raw = self.tables[table].get(key)
        return None if raw is None else orjson.loads(raw)

    def _put(self, table: str, key: Any, value: Any) -> None:
        if value is None:
            self.tables[table].pop(key, None)
        else:
            self.tables[table][key] = orjson.dumps(value)

    def state(self, department: str) -> dict[str, Any]:
        return self._get("state", department) or {}

    def put_state(self, department: str, value: dict[str, Any]) -> None:
        self._put("state", department, value)

    def window(self, department: str, start: float, at: float) -> dict[str, Any] | None:
        return self._get("window", (department, start))

    def put_window(self, department: str, start: float, at: float, value: dict[str, Any]) -> None:
        self._put("window", (department, start), value)

    def drop_window(self, department: str, start: float) -> None:
        self._put("window", (department, start), None)

    def handler(self, handler: str) -> dict[str, Any] | None:
        return self._get("handler", handler)

    def put_handler(self, handler: str, value: dict[str, Any] | None) -> None:
        self._put("handler", handler, value)

    def spans(self, department: str) -> list[list[Any]]:
        return self._get("spans", department) or []

    def put_spans(self, department: str, spans: list[list[Any]]) -> None:
        self._put("spans", department, spans)

    def due(self, t: float) -> list[tuple[int, str, float]]:
        """As the worker's timer scans its tables: what is due by ``t``, in order."""
        r = self.rules
        listed = [(start + r.cfg.dept_size, CLOSE, dept, start)
                  for dept, start in self.tables["window"]]
        for handler in self.tables["handler"]:
            nxt = r.burst_next(self._get("handler", handler))
            if nxt is not None:
                listed.append((nxt, COUNT, handler, nxt))
        return [(kind, scope, start) for end, kind, scope, start in sorted(listed)
                if r.is_late(end, t)]


def _traffic(seed: int) -> list[WindowRecord]:
    """Three weeks of two departments' office-hours traffic with 5 % refusals; one day of
    gongan with many more decisions, half of them refused, a handler's burst across 10:10, and a
    department that falls silent for a day."""
    rng = random.Random(seed)
    out = []
    day = datetime(2026, 11, 2, tzinfo=TZ)
    for d in range(21):
        when = day + timedelta(days=d)
        if when.weekday() >= 5:
            continue
        for dept in ("gongan", "gongshang"):
            if dept == "gongshang" and d == 10:
                continue  # silent
            for _ in range(rng.randint(40, 60)):
                at = when.replace(hour=9) + timedelta(seconds=rng.uniform(0, 8 * 3600))
                step = rng.choice(["submitted", "accepted", "decided", "decided"])
                refused = step == "decided" and rng.random() < 0.05
                out.append(rec(at, step, dept=dept, actor=f"h{rng.randint(1, 6)}", refused=refused))
    out += [rec(t("2026-11-11 10:05:30") + timedelta(seconds=27 * i), actor="burster")
            for i in range(21)]
    out += [rec(t("2026-11-17 09:30") + timedelta(minutes=11 * i), actor=f"h{i % 6 + 1}",
                refused=i % 2 == 0) for i in range(40)]
    return out


def test_the_flow_over_json_tables_scanned_raises_what_replay_raises() -> None:
    r = rules()
    records = sorted(_traffic(7), key=lambda x: x.at)
    # arrival order: shuffled within a few minutes (well inside the allowed lateness)
    rng = random.Random(3)
    arrival = sorted(records, key=lambda x: x.at + rng.uniform(0, 300))
    until = t("2026-12-01 00:00")

    tracker = WindowTracker(r)
    expected: list[Alert] = []
    now = datetime.fromtimestamp(arrival[0].at, TZ)
    for x in arrival:
        now = max(now, datetime.fromtimestamp(x.at, TZ))
        expected += tracker.observe(x, now)
    expected += tracker.advance(until)

    late: list[str] = []
    duplicates: list[int] = []
    flow = WindowFlow(r, late.append, lambda: duplicates.append(1))
    tables = JsonTables(r)
    departments = ("gongan", "gongshang")
    got: list[Alert] = []
    now = datetime.fromtimestamp(arrival[0].at, TZ)

    def tick(when: datetime) -> None:
        ts = when.timestamp()
        got.extend(flow.advance(tables, tables.due(ts), departments, ts, when))

    for offset, x in enumerate(arrival):
        now = max(now, datetime.fromtimestamp(x.at, TZ))
        tick(now)
        for _ in range(2):  # forwarded again after a takeover: counted once
            flow.observe(tables, x, now.timestamp(), ("0", offset))
    tick(until)

    def key(a: Alert) -> tuple[datetime, str]:
        return a.event_time, a.alert_id

    assert {a.rule for a in expected} == {BURST, DENIAL, SILENT}
    assert [a.to_json() for a in sorted(got, key=key)] == [
        a.to_json() for a in sorted(expected, key=key)]
    assert late == [] and tracker.late == 0
    assert len(duplicates) == len(arrival)  # each department window counted each record once
    assert tables.tables["window"] == {} and tables.tables["handler"] == {}
