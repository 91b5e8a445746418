"""Performance evaluation end to end: a worker catches up on a month of events and
complaints; its HTTP API, its Prometheus gauges and ``jiancha report --url`` agree with
each other and with ``jiancha report --events`` (replay) on the same file."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from jiancha.rules.catalog import load_catalog
from jiancha.rules.clock import SimulatedClock
from jiancha.rules.factory import build_engine
from jiancha.rules.indicators import INDICATORS, IndicatorBook, report_rows
from jiancha.rules.replay import replay
from jiancha.simulator import generate_cases
from tests.integration.conftest import ROOT, TEST_CATALOG, WorkerSpec

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
PERIOD = "2026-11"
#: the worker's clock starts here: November is over, nothing falls due in the next hour
NOW = datetime(2026, 12, 1, 0, 30, tzinfo=TZ)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def _month() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events, complaints) of November 2026 in the test catalog."""
    events = [e.wire_dict() for e in generate_cases(
        load_catalog(TEST_CATALOG), start=t("2026-11-02 09:00"), cases=120, seed=7,
        violations=0.3, days=18) if e.occurred_at <= NOW]
    # one handler decides 21 cases within ten minutes, across 10:10 (actor.burst)
    for i in range(21):
        case_id = f"BURST-{i:02d}"
        base = t("2026-11-16 09:00") + timedelta(minutes=i)
        steps = [("submitted", base, None, {}), ("accepted", base + timedelta(minutes=25), "h1", {}),
                 ("decided", t("2026-11-16 10:05") + timedelta(seconds=25 * i), "h9",
                  {"outcome": "grant"}),
                 ("delivered", t("2026-11-17 10:00") + timedelta(minutes=i), "h1", {})]
        for n, (step, when, actor, attrs) in enumerate(steps):
            e: dict[str, Any] = {"schema_version": 1, "event_id": f"{case_id}-{n}", "case_id": case_id,
                                 "item_code": "T-SIMPLE", "department": "gongan", "step": step,
                                 "occurred_at": when.isoformat(), "actor": actor or "applicant"}
            if step == "submitted":
                e["applicant_id"] = "sha256:burst"
            if attrs:
                e["attributes"] = attrs
            events.append(e)
    events.sort(key=lambda e: e["occurred_at"])
    gongan_case = next(e["case_id"] for e in events if e["department"] == "gongan"
                       and e["step"] == "accepted" and not e["case_id"].startswith("BURST"))

    def c(cid: str, when: str, dept: str, case_id: str | None = None, kind: str = "complaint") -> dict:
        out = {"schema_version": 1, "kind": kind, "complaint_id": cid, "department": dept,
               "occurred_at": t(when).isoformat(), "category": "delay"}
        if case_id:
            out["case_id"] = case_id
        return out

    complaints = [
        c("Q1", "2026-11-03 10:00", "gongan", gongan_case),  # never handled: overdue Nov 25
        c("Q2", "2026-11-10 10:00", "gongshang"),
        c("Q2", "2026-11-12 15:00", "gongshang", kind="complaint_handled"),
        c("Q3", "2026-11-20 11:00", "jianshe"),  # open, not yet overdue
    ]
    return events, complaints


def _file(tmp: Path, events: list[dict], complaints: list[dict]) -> Path:
    items = sorted(events + complaints, key=lambda x: x["occurred_at"])
    path = tmp / "november.jsonl"
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in items))
    return path


async def _backfill(spec: WorkerSpec, events: list[dict], complaints: list[dict],
                    clock: SimulatedClock) -> None:
    """Every record stamped with the time it happened, as if reported on the spot."""
    from jiancha.agents.topics import ensure_topics
    from jiancha.producers.client import DepartmentProducer
    from jiancha.producers.complaints import ComplaintProducer
    from jiancha.settings import WorkerSettings

    await ensure_topics(WorkerSettings.load(
        broker_url=spec.stack.broker_url, events_topic=spec.events_topic,
        dlq_topic=spec.dlq_topic, complaints_topic=spec.extra_env["JIANCHA_COMPLAINTS_TOPIC"],
        complaints_dlq_topic=spec.complaints_dlq_topic,
        topic_partitions=spec.partitions))

    def stamp(when: str) -> int:
        return int(clock.real_time_of(datetime.fromisoformat(when)) * 1000)

    async with DepartmentProducer(spec.stack.bootstrap, None, topic=spec.events_topic) as p:
        acks = []
        for e in events:
            acks.append(await p.submit_encoded(replace(p.encode(e), timestamp_ms=stamp(e["occurred_at"]))))
        await asyncio.gather(*acks)
    async with ComplaintProducer(spec.stack.bootstrap,
                                 topic=spec.extra_env["JIANCHA_COMPLAINTS_TOPIC"]) as cp:
        for c in complaints:
            await cp.send(c, timestamp_ms=stamp(c["occurred_at"]))


BUREAU_TOKEN, GONGAN_TOKEN = "bureau-token-ind", "gongan-token-ind"


def _get(port: int, path: str, token: str | None = BUREAU_TOKEN) -> bytes:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.read()


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def _gauges(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(1))))
            out[labels] = float(m.group(2))
    return out


def _report(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "jiancha.cli", "report", *args],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_api_prometheus_and_report_agree_with_replay(stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    events, complaints = _month()
    path = _file(tmp_path, events, complaints)
    anchor = time.time()
    clock = SimulatedClock(NOW, 1.0, anchor)
    spec = WorkerSpec(stack)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(json.dumps({"tokens": [
        {"name": "bureau", "role": "bureau", "token": BUREAU_TOKEN},
        {"name": "gongan", "role": "department", "department": "gongan", "token": GONGAN_TOKEN}]}))
    spec.extra_env.update({
        "JIANCHA_COMPLAINTS_TOPIC": f"complaints-{spec.tag}",
        "JIANCHA_CLOCK_START": NOW.isoformat(),
        "JIANCHA_CLOCK_ANCHOR": repr(anchor),
        "JIANCHA_NOTIFIER_TOKENS_FILE": str(tokens),
    })
    asyncio.run(_backfill(spec, events, complaints, clock))
    worker = spec.start_worker()
    try:
        api = f"/api/indicators?period={PERIOD}&scope=department"
        deadline = time.monotonic() + 120
        last, stable_since = b"", time.monotonic()
        while time.monotonic() < deadline:  # every record processed and the API settled
            metrics = worker.metrics()
            body = _get(worker.web_port, api)
            if body != last:
                last, stable_since = body, time.monotonic()
            elif (time.monotonic() - stable_since > 4
                  and _metric(metrics, "jiancha_events_ingested_total") >= len(events)
                  and _metric(metrics, "jiancha_complaints_total") >= len(complaints)):
                break
            time.sleep(0.5)
        until = clock.now() - timedelta(seconds=5)

        # replay of the same file, the same clock
        engine = build_engine(TEST_CATALOG)
        book = IndicatorBook(engine)
        result = replay(path.read_bytes().splitlines(), engine, until, indicators=book)
        assert result.events == len(events) and result.complaints == len(complaints)
        rules = {a.rule for a in result.alerts}
        assert {"actor.burst", "complaint.received", "complaint.overdue"} <= rules

        # the alerts in Redis are replay's
        key = lambda a: (a["alert_id"], a["rule"], a["severity"], a["event_time"])  # noqa: E731
        expected_alerts = {key(a.model_dump(mode="json")) for a in result.alerts}
        assert {key(a) for a in spec.alerts()} == expected_alerts

        # 1. the API is replay
        for scope in ("department", "item", "handler"):
            got = json.loads(_get(worker.web_port, f"/api/indicators?period={PERIOD}&scope={scope}"))
            want = report_rows(book.store, PERIOD, scope, book.scoring, engine.catalog)
            assert got["rows"] == json.loads(json.dumps(want)), scope
        rows = json.loads(_get(worker.web_port, api))["rows"]
        assert len(rows) == 3 and sum(r["decided"] for r in rows) > 60
        by_dept = {r["name"]: r for r in rows}
        assert by_dept["gongan"]["complaints"] == 1 and by_dept["gongan"]["red"] >= 1
        quarter = json.loads(_get(worker.web_port, "/api/indicators?period=2026-Q4"))["rows"]
        assert [r["name"] for r in quarter] == [r["name"] for r in report_rows(
            book.store, "2026-Q4", "department", book.scoring, engine.catalog)]
        csv_text = _get(worker.web_port, f"/api/indicators.csv?period={PERIOD}").decode()
        assert csv_text.splitlines()[0].startswith("period,scope,rank,name")
        assert len(csv_text.splitlines()) == 4
        with pytest.raises(urllib.error.HTTPError) as bad:
            _get(worker.web_port, "/api/indicators?period=nope")
        assert bad.value.code == 400
        # per-handler scores name people: only with the bureau's token
        for endpoint in ("/api/indicators?scope=handler", "/api/indicators.csv?scope=handler"):
            for token in (None, GONGAN_TOKEN, "not-a-token"):
                with pytest.raises(urllib.error.HTTPError) as refused:
                    _get(worker.web_port, f"{endpoint}&period={PERIOD}", token)
                assert refused.value.code == 401, (endpoint, token)
                assert b"bureau" in refused.value.read()
        assert _get(worker.web_port, f"/api/indicators?period={PERIOD}", None)  # departments: open

        # 2. Prometheus: the previous month's gauges are the same numbers
        text = worker.metrics()
        indicator = _gauges(text, "jiancha_indicator")
        score = _gauges(text, "jiancha_score")
        for row in rows:
            dept = row["name"]
            for name in INDICATORS:
                if row[name] is None:
                    continue
                labels = tuple(sorted({"department": dept, "item": "", "indicator": name,
                                       "period": PERIOD}.items()))
                assert indicator[labels] == float(row[name]), (dept, name)
            assert score[(("department", dept), ("period", PERIOD))] == row["score"]
        item_rows = report_rows(book.store, PERIOD, "item", book.scoring, engine.catalog)
        for row in item_rows:
            labels = tuple(sorted({"department": row["department"], "item": row["name"],
                                   "indicator": "decided", "period": PERIOD}.items()))
            assert indicator[labels] == row["decided"]

        # 3. jiancha report: from the worker's API and from the file, the same table (and
        # the same charts: the html also reads the previous months, items and handlers, so
        # it needs the bureau's token, as per-handler scores do)
        until_arg = until.isoformat()
        for fmt in ("md", "csv", "json", "html"):
            from_url = _report("--period", PERIOD, "--url", f"http://127.0.0.1:{worker.web_port}",
                               "--format", fmt, *(("--token", BUREAU_TOKEN) if fmt == "html" else ()))
            from_file = _report("--period", PERIOD, "--events", str(path), "--until", until_arg,
                                "--catalog", str(TEST_CATALOG), "--format", fmt)
            assert from_url == from_file, fmt
        handlers = _report("--period", PERIOD, "--url", f"http://127.0.0.1:{worker.web_port}",
                           "--scope", "handler", "--format", "json", "--token", BUREAU_TOKEN)
        assert json.loads(handlers)["rows"] == json.loads(json.dumps(report_rows(
            book.store, PERIOD, "handler", book.scoring, engine.catalog)))
        table = _report("--period", PERIOD, "--url", f"http://127.0.0.1:{worker.web_port}")
        ranked = [line.split("|")[2].strip() for line in table.splitlines()[4:]]
        assert ranked == [r["name"] for r in rows]
    finally:
        worker.stop()


def test_complaint_overdue_fires_with_no_event_after_a_restart(stack) -> None:  # type: ignore[no-untyped-def]
    """Q-R, received Mon 2026-11-02 10:00, has 15 working days: the limit ends at 24:00 on
    Nov 23. The worker is restarted before that instant; the new worker rebuilds the
    complaint deadline index from its table and raises complaint.overdue, once, when it is
    due (the deadline plus the allowed lateness) with no further record."""
    deadline = t("2026-11-24 00:00")
    lead, lateness = 30.0, 3.0
    anchor = time.time()
    clock = SimulatedClock(deadline - timedelta(seconds=lead), 1.0, anchor)
    spec = WorkerSpec(stack)
    spec.extra_env.update({
        "JIANCHA_COMPLAINTS_TOPIC": f"complaints-{spec.tag}",
        "JIANCHA_CLOCK_START": clock.start.isoformat(),
        "JIANCHA_CLOCK_ANCHOR": repr(anchor),
        "JIANCHA_ALLOWED_LATENESS_SECONDS": str(lateness),
    })
    open_one = {"schema_version": 1, "complaint_id": "Q-R", "department": "gongan",
                "case_id": "C-R", "occurred_at": t("2026-11-02 10:00").isoformat(),
                "category": "delay"}
    handled = {"schema_version": 1, "complaint_id": "Q-OK", "department": "gongan",
               "occurred_at": t("2026-11-02 10:00").isoformat(), "category": "attitude"}
    closing = {**handled, "kind": "complaint_handled", "occurred_at": t("2026-11-20 10:00").isoformat()}
    asyncio.run(_backfill(spec, [], [open_one, handled, closing], clock))
    worker = spec.start_worker("w1")
    spec.wait_alerts(lambda a: sum(x["rule"] == "complaint.received" for x in a) == 2)
    worker.stop()
    assert time.time() < anchor + lead - 5, "the test machine is too slow for this timing"
    worker = spec.start_worker("w2")
    try:
        assert not [a for a in spec.alerts() if a["rule"] == "complaint.overdue"]
        alerts = spec.wait_alerts(lambda a: any(x["rule"] == "complaint.overdue" for x in a),
                                  timeout=lead + lateness + 20)
        fired_at = time.time()
        overdue = [a for a in alerts if a["rule"] == "complaint.overdue"]
        assert [(a["case_id"], a["severity"]) for a in overdue] == [("C-R", "red")]
        assert overdue[0]["event_time"] == "2026-11-24T00:00:00+08:00"
        assert fired_at >= anchor + lead + lateness - 0.5  # not before it is due
        assert fired_at <= anchor + lead + lateness + 5  # and promptly then
        received = [a for a in alerts if a["rule"] == "complaint.received"]
        assert len(received) == 2  # the restart raised nothing twice
        body = json.loads(_get(worker.web_port, "/api/indicators?period=2026-11"))
        assert body["rows"][0]["name"] == "gongan" and body["rows"][0]["complaints"] == 2
    finally:
        worker.stop()
