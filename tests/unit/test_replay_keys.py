"""Replay with a keyring: an event's or a complaint's key must be valid when its line was
read, at the replay clock before it (else its ``received_at``, else its own time), and the
sharded replay decides every line as the single-process replay does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

import jiancha.rules.replay_parallel as parallel
from jiancha.producers.complaints import COMPLAINT_CENTRE
from jiancha.producers.contract import sign_payload
from jiancha.producers.keys import DepartmentKeys
from jiancha.rules.factory import build_engine
from jiancha.rules.replay import ReplayResult, replay
from jiancha.rules.replay_parallel import replay_parallel
from tests.events import at, case, event
from tests.integration.conftest import TEST_CATALOG

ENGINE = build_engine(TEST_CATALOG)
UNTIL = at("2026-12-31 00:00")
# gongan and the complaint centre rotated their keys at midnight
KEYS = DepartmentKeys.from_mapping({
    "gongan": [{"key": "old-gongan", "not_after": "2026-12-01T00:00:00+08:00"}, "new-gongan"],
    COMPLAINT_CENTRE: [{"key": "old-centre", "not_after": "2026-12-01T00:00:00+08:00"},
                       "new-centre"],
})


def _honest(n: int, day: str, key: bytes) -> list[dict[str, Any]]:
    """Cases submitted and accepted on ``day``, signed with ``key``."""
    out = []
    for i in range(n):
        out += case(f"{day}-{i}", [("submitted", f"{day} 09:{i:02d}"),
                                   ("accepted", f"{day} 10:{i:02d}")], key=key)
    return out


def _complaint(cid: str, when: str, key: bytes | None, **change: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"schema_version": 1, "complaint_id": cid, "department": "gongan",
                         "occurred_at": at(when).isoformat(), **change}
    return {**c, "signature": sign_payload(c, key)} if key is not None else c


def _both(items: list[dict[str, Any]]) -> tuple[ReplayResult, int]:
    """The single-process replay, checked against the sharded one (small chunks), and how
    often the sharded one was redone in one process."""
    lines = [orjson.dumps(i) for i in items]
    one = replay(lines, ENGINE, UNTIL, KEYS)
    redone = []

    def in_one_process(*args: Any, **kwargs: Any) -> ReplayResult:
        redone.append(args)
        return replay(*args, **kwargs)

    for workers in (2, 3):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(parallel, "CHUNK", 4)
            mp.setattr(parallel, "replay", in_one_process)
            many = replay_parallel(iter(lines), ENGINE, UNTIL, KEYS, workers=workers)
        assert ([a.to_json() for a in many.alerts], many.events, many.rejected,
                many.rejected_complaints, many.problems, many.complaints) == (
            [a.to_json() for a in one.alerts], one.events, one.rejected,
            one.rejected_complaints, one.problems, one.complaints)
    return one, len(redone)


def test_a_backdated_event_signed_with_a_retired_key_is_rejected_by_both_replays() -> None:
    before = _honest(3, "2026-11-30", b"old-gongan")
    after = _honest(3, "2026-12-01", b"new-gongan")
    backdated = event("B-1", "submitted", "2026-11-30 16:00", key=b"old-gongan")
    one, redone = _both([*before, *after, backdated])
    assert redone == 0  # the shard rejected it at a bound of the clock, the parent agreed
    assert one.rejected == {"bad_signature": 1} and one.events == len(before) + len(after)
    assert f"line {len(before) + len(after) + 1}: bad_signature" in one.problems[0]
    # read before any line past the retirement, the clock had not passed it: accepted
    one, redone = _both([*before, backdated, *after])
    assert redone == 0 and one.rejected == {} and one.events == len(before) + len(after) + 1


def test_a_rejected_line_does_not_move_the_clock_that_chooses_the_key() -> None:
    """A line past the retirement that is rejected leaves the clock before it: an event
    signed with the old key and dated before the retirement, read next, is accepted (a
    shard, which cannot know the clock, rejects it, and the replay is redone in one
    process)."""
    before = _honest(3, "2026-11-30", b"old-gongan")
    forged = event("F-1", "submitted", "2026-12-02 09:00", key=b"wrong")
    last = event("B-1", "submitted", "2026-11-30 23:00", key=b"old-gongan")
    one, redone = _both([*before, forged, last])
    assert one.rejected == {"bad_signature": 1} and one.events == len(before) + 1
    assert redone == 2  # once per sharded run


def test_complaints_pass_the_complaints_gate_at_the_replay_clock() -> None:
    items = [*_honest(2, "2026-11-30", b"old-gongan"),
             _complaint("Q-old", "2026-11-30 12:00", b"old-centre"),
             *_honest(2, "2026-12-01", b"new-gongan"),
             _complaint("Q-new", "2026-12-01 12:00", b"new-centre"),
             _complaint("Q-backdated", "2026-11-30 13:00", b"old-centre"),
             _complaint("Q-unsigned", "2026-12-01 13:00", None),
             _complaint("Q-nowhere", "2026-12-01 13:00", b"new-centre", department="nowhere"),
             {"schema_version": 1, "complaint_id": "Q-bad"}]
    one, _ = _both(items)
    assert one.complaints == 2
    assert one.rejected == {}
    assert one.rejected_complaints == {"bad_signature": 1, "missing_signature": 1,
                                       "unknown_department": 1, "invalid_complaint": 1}
    received = {a.details.get("complaint_id") for a in one.alerts if a.rule == "complaint.received"}
    assert received == {"Q-old", "Q-new"}


def test_without_a_keyring_complaints_are_checked_all_the_same() -> None:
    lines = [orjson.dumps(_complaint("Q-1", "2026-11-30 12:00", None, item_code="NOPE")),
             orjson.dumps(_complaint("Q-2", "2026-11-30 12:00", None))]
    result = replay(lines, ENGINE, UNTIL + timedelta(days=1))
    assert result.complaints == 1 and result.rejected_complaints == {"unknown_item": 1}
