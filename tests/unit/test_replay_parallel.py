"""Replay sharded by case across processes gives the single-process replay's result: the
same alerts (ids, stages, texts, detected times, in order), events, rejections and
problems, late window records, on random files with complaints and bad lines, across
chunk boundaries, and on the simulator's workload."""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jiancha.rules.replay_parallel as parallel
from jiancha.rules.engine import Engine
from jiancha.rules.replay import ReplayResult, replay
from jiancha.rules.replay_parallel import (
    ReplayWorkerError,
    replay_parallel,
    shard_of,
    shards_of,
)
from tests.unit.eventkit_integrity import CST, engine
from tests.unit.test_reads import BASE, UNTIL, random_file

ENGINE = engine()


def _complaint(n: int, minutes: int, *, kind: str = "complaint", valid: bool = True) -> bytes:
    c: dict[str, Any] = {"schema_version": 1, "kind": kind, "complaint_id": f"Q{n}",
                         "department": "gongan", "case_id": "R0",
                         "occurred_at": (BASE + timedelta(minutes=minutes)).isoformat()}
    if not valid:
        c["occurred_at"] = "yesterday"
    return orjson.dumps(c)


@st.composite
def mixed_file(draw: st.DrawFn) -> list[bytes]:
    """Random cases, with complaints, blank and bad lines and duplicates put in."""
    lines = list(draw(random_file()))
    extras = [b"", b"   ", b"not json", b"[1, 2]", b'{"case_id": 5}',
              orjson.dumps({"case_id": "R1", "step": "nonsense"}),
              _complaint(1, 60), _complaint(2, 3 * 24 * 60), _complaint(1, 9 * 24 * 60,
                                                                        kind="complaint_handled"),
              _complaint(3, 100, valid=False)]
    for extra in draw(st.lists(st.sampled_from(extras), max_size=6)):
        lines.insert(draw(st.integers(0, len(lines))), extra)
    if lines and draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), lines[draw(st.integers(0, len(lines) - 1))])
    return lines


def _same(a: ReplayResult, b: ReplayResult) -> None:
    assert [x.model_dump_json() for x in b.alerts] == [x.model_dump_json() for x in a.alerts]
    assert (b.events, b.rejected, b.rejected_complaints, b.problems, b.complaints,
            b.late_window_records) == (a.events, a.rejected, a.rejected_complaints, a.problems,
                                       a.complaints, a.late_window_records)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_file(), st.integers(2, 3), st.integers(1, 9))
def test_sharded_replay_is_replay(lines: list[bytes], workers: int, chunk: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parallel, "CHUNK", chunk)  # many chunk boundaries (the children inherit it)
        got = replay_parallel(lines, ENGINE, UNTIL, workers=workers)
    _same(replay(lines, ENGINE, UNTIL), got)


def test_sharded_replay_is_replay_on_the_simulator_workload() -> None:
    from jiancha.bench import _workload
    from jiancha.rules.factory import build_engine
    from jiancha.settings import DEFAULT_CATALOG_DIR

    lines, end, _ = _workload(6000)
    until = end + timedelta(days=60)

    def fresh() -> Engine:
        return build_engine(DEFAULT_CATALOG_DIR, on_calendar_fallback=lambda year: None)

    expected = replay(lines, fresh(), until)
    assert expected.alerts and expected.events == len(lines)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parallel, "CHUNK", 1000)
        for workers in (2, 3):
            progress: list[int] = []
            _same(expected, replay_parallel(lines, fresh(), until, on_progress=progress.append,
                                            workers=workers))
            assert progress == [] if len(lines) < 10_000 else progress


def test_one_worker_or_indicators_replay_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from jiancha.rules.indicators import IndicatorBook

    monkeypatch.setattr(parallel, "_drive", None)  # would fail if it were called
    lines = [orjson.dumps({"no": "event"})]
    assert replay_parallel(lines, ENGINE, UNTIL, workers=1).rejected == {"invalid_event": 1}
    book = IndicatorBook(ENGINE)
    assert replay_parallel(lines, ENGINE, UNTIL, workers=4, indicators=book).rejected == {
        "invalid_event": 1}


def test_a_failing_shard_fails_the_replay_with_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Engine, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom in a shard")

    lines = [orjson.dumps({
        "schema_version": 1, "event_id": "X-1", "case_id": "X", "item_code": "T-SHORT",
        "department": "gongan", "step": "submitted", "actor": "applicant", "applicant_id": "p",
        "occurred_at": datetime(2024, 3, 4, 9, tzinfo=CST).isoformat()})]
    monkeypatch.setattr(Engine, "judge", broken)  # forked children inherit it
    with pytest.raises(ReplayWorkerError, match="boom in a shard"):
        replay_parallel(lines, ENGINE, UNTIL, workers=2)


def test_lines_are_routed_by_case() -> None:
    event = orjson.dumps({"case_id": "C-1", "step": "submitted"})
    assert shard_of(event, 4) == shard_of(orjson.dumps({"case_id": "C-1", "x": 1}), 4)
    assert shard_of(b"not json", 4) == 0
    assert shard_of(b'{"case_id": 7}', 4) == 0
    assert shard_of(_complaint(1, 0), 4) is None
    spread = {shard_of(orjson.dumps({"case_id": f"C-{n}"}), 4) for n in range(200)}
    assert spread == {0, 1, 2, 3}


def _owner(raw: bytes, workers: int) -> int:
    """The shard of a line by its parsed top-level ``case_id``."""
    return zlib.crc32(orjson.loads(raw)["case_id"].encode()) % workers


_TEXT = st.text(alphabet=st.sampled_from('ab监察"\\:{} ,\n\u00e9'), max_size=6)


@given(st.dictionaries(st.sampled_from(["case_id", "x", "note", "attrs"]),
                       st.one_of(_TEXT, st.dictionaries(st.sampled_from(["case_id", "y"]), _TEXT,
                                                        max_size=2)), max_size=4),
       _TEXT, st.sampled_from([(",", ":"), (", ", ": "), (",", " :")]), st.booleans())
def test_a_case_id_found_without_parsing_is_the_parsed_one(
        payload: dict[str, Any], case_id: str, separators: tuple[str, str], ascii: bool) -> None:
    payload["case_id"] = case_id
    raw = json.dumps(payload, separators=separators, ensure_ascii=ascii).encode()
    for workers in (2, 3, 5):
        assert shard_of(raw, workers) == _owner(raw, workers)


@given(st.lists(st.one_of(
    st.builds(lambda case_id, note: orjson.dumps({"case_id": case_id, "note": note}),
              st.sampled_from(["A", "B", "监察", ""]), _TEXT),
    st.sampled_from([b'{"case_id":"B", "case_id":"A"}', b'{"attrs": {"case_id":"B"}}',
                     b'{"case\\u005fid":"A"}', b"not json", b'{"case_id":"A',
                     b'{"note":"x", "complaint_id":"Q"}'])), max_size=6))
def test_the_shards_of_a_chunk_are_those_of_each_line(lines: list[bytes]) -> None:
    for workers in (2, 3):
        assert shards_of(lines, workers) == [shard_of(raw, workers) for raw in lines]


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_lines_held_in_memory_are_read_as_they_are(lines: list[bytes]) -> None:
    packed = parallel._packed(lines)
    assert packed == lines
    assert all(type(raw) is bytes for raw in packed)


def test_lines_that_hide_their_case_id_are_parsed() -> None:
    for raw in (b'{"attrs": {"case_id":"B"}, "case_id" : "A"}',  # the nested one compact
                b'{"case_id":"B", "case_id":"A"}',  # the last one counts
                b'{"case\\u005fid":"A", "attrs": {"case_id":"B"}}',  # an escaped key
                b'{"note":"case_id", "case_id":"A"}'):
        assert orjson.loads(raw)["case_id"] == "A"
        assert {shard_of(raw, 7)} == {_owner(raw, 7)}, raw


def test_a_shard_that_dies_fails_the_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def die(self: Engine, *args: Any, **kwargs: Any) -> Any:
        os._exit(3)  # as a kill would: no word to the parent

    lines = [orjson.dumps({
        "schema_version": 1, "event_id": "X-1", "case_id": "X", "item_code": "T-SHORT",
        "department": "gongan", "step": "submitted", "actor": "applicant", "applicant_id": "p",
        "occurred_at": datetime(2024, 3, 4, 9, tzinfo=CST).isoformat()})]
    monkeypatch.setattr(Engine, "judge", die)
    with pytest.raises(ReplayWorkerError, match="exited without a word"):
        replay_parallel(lines, ENGINE, UNTIL, workers=2)


def test_a_year_without_a_calendar_is_reported_once_not_once_per_shard(
        caplog: pytest.LogCaptureFixture) -> None:
    from jiancha.rules.factory import build_engine
    from jiancha.settings import DEFAULT_CATALOG_DIR

    years: list[int] = []
    lines = [orjson.dumps({
        "schema_version": 1, "event_id": f"Y-{n}", "case_id": f"Y-{n}", "item_code": "GA-0001",
        "department": "gongan", "step": "submitted", "actor": "applicant", "applicant_id": "p",
        "occurred_at": datetime(2031, 3, 4, 9, tzinfo=CST).isoformat()}) for n in range(40)]
    assert {shard_of(line, 2) for line in lines} == {0, 1}  # both shards count in 2031
    engine = build_engine(DEFAULT_CATALOG_DIR, on_calendar_fallback=years.append)
    with caplog.at_level("WARNING", logger="jiancha.rules.calendar"):
        result = replay_parallel(lines, engine, datetime(2031, 6, 1, tzinfo=CST), workers=2)
    assert result.events == 40 and result.alerts  # the intake deadlines passed
    # the shards count without a word; this process says it once, for the one year used
    # (the years between the calendar's last known one and 2031 are counted, not used)
    assert years == [2031]
    assert [r.getMessage()[:37] for r in caplog.records] == [
        f"no official holiday calendar for {year}" for year in years]


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_shard_failing_while_a_chunk_is_ahead_fails_the_replay(
        monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """A shard has the next chunk taken in, and its report sent, when it judges this one:
    a failure then still reaches the parent (as the next chunk's report or as EOF)."""
    import os

    def fail(self: Engine, *args: Any, **kwargs: Any) -> Any:
        if how == "exit":
            os._exit(3)
        raise RuntimeError("boom in a shard")

    lines = [orjson.dumps({
        "schema_version": 1, "event_id": f"X-{n}", "case_id": f"X{n}", "item_code": "T-SHORT",
        "department": "gongan", "step": "submitted", "actor": "applicant", "applicant_id": "p",
        "occurred_at": datetime(2024, 3, 4, 9, n, tzinfo=CST).isoformat()}) for n in range(12)]
    monkeypatch.setattr(parallel, "CHUNK", 2)  # chunks ahead of the one judged
    monkeypatch.setattr(Engine, "judge", fail)
    expected = "boom in a shard" if how == "raise" else "exited without a word"
    with pytest.raises(ReplayWorkerError, match=expected):
        replay_parallel(lines, ENGINE, UNTIL, workers=2)


def _arrival_order(behind: timedelta, *, received_at: bool = False) -> list[bytes]:
    """Case R's last line, its decision, read once the clock is ``behind`` past when it was
    decided (another case's submission moved it there), the rest reported on the spot; with
    ``received_at`` the decision says it was received on time."""
    from tests.unit.eventkit_integrity import find, lawful, lines, tick

    events = lawful("R", "T-SIMPLE", "09:00", gap=60, through="decided")
    decided = find(events, "decided")
    occurred = datetime.fromisoformat(decided["occurred_at"])
    if received_at:
        decided["received_at"] = (occurred + timedelta(minutes=5)).isoformat()
    events.remove(decided)
    return lines([*events, tick(occurred + behind, "OTHER"), decided])


@pytest.mark.parametrize("workers", [1, 2])
def test_a_line_read_late_counts_as_received_at_the_replay_clock(workers: int) -> None:
    late = replay_parallel(_arrival_order(timedelta(hours=30)), ENGINE, UNTIL, workers=workers)
    found = [a for a in late.alerts if a.rule == "reporting.late"]
    assert [a.details["delay_hours"] for a in found] == [30.0]
    assert [a.case_id for a in found] == ["R"]
    for quiet in (_arrival_order(timedelta(hours=23)),
                  _arrival_order(timedelta(hours=30), received_at=True)):
        result = replay_parallel(quiet, ENGINE, UNTIL, workers=workers)
        assert [a for a in result.alerts if a.rule == "reporting.late"] == []
