"""Replay sharded by case across processes: the output of :func:`rules.replay.replay`,
alert for alert, with the case rules spread over ``workers`` processes.

Why it is exact: the case rules of a case read that case's facts and the clock, nothing
else; the clock is the latest ``occurred_at`` of the events and complaints accepted so
far. So once every process knows which lines were accepted, each can judge its own cases
as the single-process replay would. The file goes through in chunks, each in two phases:

1. the parent reads the lines and hands each shard the events of its cases (a hash of
   ``case_id``); the shard takes them through the gate and into their states and
   reports which lines it accepted, with their instants, and the window records it took
   for the departments each other shard judges (a hash of the department: the window
   rules too read nothing but their department's records and the clock);
2. the parent, from those reports and the complaints it reads itself, knows the clock
   after every line. It sends each shard the lines at which the clock moved and the
   window records of its departments that the others took, then drives the complaint
   rules while the shards judge their cases and windows line by line, each case on its
   facts up to that line, firing deadlines as the clock moves.

The parent keeps one chunk handed out ahead: a shard takes chunk k+1 in (phase 1) while
the parent works out the clock of chunk k from the reports, then judges chunk k. A case's
state then holds facts beyond the line being judged, and a judgement at a line sees only
the facts of lines up to it (:class:`_Shard` keeps how many of each case's facts are
released). The parent's own pass over a chunk (its complaints) comes after it has sent
phase 2 out, so the shards and the parent work at the same time. Instants travel as
(epoch seconds, UTC offset): pickling datetimes was a third of the traffic's cost.

Replay with indicators stays in one process (the book is one object).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import traceback
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from itertools import accumulate, chain, islice, pairwise
from multiprocessing.connection import Connection
from operator import itemgetter
from typing import Any

import orjson

from jiancha.producers.contract import Alert, Step

from .calendar import OfficialCalendar
from .case import CaseState, Fact, fixed_offset_us
from .clock import EventTimeClock
from .collector import tuned_collector
from .complaints import ComplaintGate, ComplaintRejected
from .driver import CaseDriver
from .engine import Engine
from .indicators import IndicatorBook
from .ingest import MAX_EVENT_BYTES, Gate, KeyRing, Rejected, received_at
from .replay import ReplayResult, SideRules, complaint_payload, replay
from .schedule import DeadlineIndex
from .summary import summary_from_facts
from .windows import WindowRules, WindowTracker, fact_fields, record_of

#: Lines per chunk: the parent and the shards exchange a report per chunk (smaller chunks
#: let them overlap more; below a few thousand the messages cost more than that gains).
CHUNK = 5_000


def replay_workers() -> int:
    """Processes for a replay by default: the CPUs this process may run on (at most 8;
    the parent's share of the work grows with them)."""
    return max(1, min(8, len(os.sched_getaffinity(0))))


def shard_of(raw: bytes, workers: int) -> int | None:
    """Which shard takes an event line (a hash of its ``case_id``); None for a complaint
    line (the parent's). A line that is no readable event goes to shard 0, which rejects
    it as the single-process replay would.

    The case id is found without parsing the line where that cannot be wrong: no escape
    anywhere in it (so every ``"`` ends or starts a string), and the key ``"case_id"``
    once only, followed by ``:"`` (so it is no string value, nor one of two keys). That
    one key may still sit in a nested object of a line that has none at the top, or the
    line may be no JSON at all: then every shard rejects it alike, whichever takes it."""
    if complaint_payload(raw) is not None:
        return None
    if len(raw) > MAX_EVENT_BYTES:
        return 0
    if b"\\" not in raw and raw.count(b'"case_id"') == 1:
        key = raw.find(b'"case_id":"')
        if key >= 0:
            number = _quoted_shard(raw, key, workers)
            if number is not None:
                return number
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return 0
    case_id = payload.get("case_id") if isinstance(payload, dict) else None
    if not isinstance(case_id, str):
        return 0
    return zlib.crc32(case_id.encode()) % workers


def shards_of(lines: list[bytes], workers: int) -> list[int | None]:
    """:func:`shard_of` of each line, the tests that read a whole line made once over all
    of them: with no escape and no ``"complaint_id"`` in any, and the key ``"case_id"``
    as many times as there are lines, each followed by ``:"`` in every line, each line
    holds it once (the rest is :func:`shard_of`'s fast path); else line by line."""
    joined = b"\n".join(lines)  # no key holds a newline: none is found across two lines
    if b"\\" not in joined and b'"complaint_id"' not in joined:
        keys = [raw.find(b'"case_id":"') for raw in lines]
        if joined.count(b'"case_id"') == len(lines) and (not keys or min(keys) >= 0):
            out: list[int | None] = []
            for raw, key in zip(lines, keys, strict=True):
                number = _quoted_shard(raw, key, workers) if len(raw) <= MAX_EVENT_BYTES else None
                out.append(number if number is not None else shard_of(raw, workers))
            return out
    return [shard_of(raw, workers) for raw in lines]


def _quoted_shard(raw: bytes, key: int, workers: int) -> int | None:
    """The shard of the case id quoted after ``"case_id":"`` at ``key`` in ``raw`` (a line
    with no escape), None if its closing quote is missing."""
    start = key + 11
    end = raw.find(b'"', start)
    return zlib.crc32(raw[start:end]) % workers if end >= 0 else None


_PICKLE = pickle.HIGHEST_PROTOCOL
_INF = float("inf")

#: An instant as it travels between the processes: epoch seconds and UTC offset seconds.
Instant = tuple[float, float]
#: The clock's moves in a chunk: lines, epoch seconds, UTC offsets (compact arrays).
Moves = tuple["array[int]", "array[float]", "array[float]"]


def _pack(at: datetime, ts: float | None = None) -> Instant:
    """``at`` to travel (``ts``: its epoch seconds, if the caller has them)."""
    offset = at.utcoffset()
    return (at.timestamp() if ts is None else ts,
            offset.total_seconds() if offset is not None else 0.0)


_ZONES: dict[float, timezone] = {}


def _unpack(instant: Instant) -> datetime:
    ts, offset = instant
    tz = _ZONES.get(offset)
    if tz is None:
        tz = _ZONES[offset] = timezone(timedelta(seconds=offset))
    return datetime.fromtimestamp(ts, tz)


#: window records: (line within the chunk, the record's fields), in line order
Records = list[tuple[int, list[Any]]]


@dataclass
class _Report:
    """What a shard found in a chunk (line numbers within the chunk): the lines it
    accepted with their instants (compact arrays: the parent reads nothing else of
    them), those it rejected, and the window records of the departments each other
    shard judges, pickled here (the parent passes them on unread)."""

    lines: array[int] = field(default_factory=lambda: array("l"))
    stamps: array[float] = field(default_factory=lambda: array("d"))
    offsets: array[float] = field(default_factory=lambda: array("d"))
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    records: list[bytes] = field(default_factory=list)


class _Shard:
    """The case rules of the cases one shard owns, and the window rules of its departments."""

    def __init__(self, engine: Engine, keys: KeyRing | None, number: int, workers: int,
                 windows: bool = True) -> None:
        self.engine = engine
        self.tracker = WindowTracker(WindowRules(
            engine.ruleset, engine.working_time, engine.catalog.departments)) if windows else None
        self.driver = CaseDriver(engine, Gate(engine.catalog, keys))
        self.number = number
        self.workers = workers
        self.cases: dict[str, CaseState] = {}
        self.released: dict[str, int] = {}  # facts of a case judged on so far
        self.index = DeadlineIndex()
        self.alerts: list[Alert] = []
        self.events = 0
        #: the accepted events of each chunk taken and not judged yet, in line order:
        #: (line, case id, step, the fact whose received time is the clock at its line, or
        #: None when it said when it was received, its ``occurred_at``: the clock's instant
        #: where it moves the clock); a shard takes the next chunk before judging this one
        self._taken: deque[list[tuple[int, str, Step, Fact | None, datetime]]] = deque()
        #: the window records of its own departments in each chunk taken, not judged yet
        self._records: deque[Records] = deque()
        #: the shard that judges each department's window records
        self._judged_by: dict[str, int] = {}
        self._clock = EventTimeClock()

    def take(self, lines: list[tuple[int, bytes, float | None]]) -> _Report:
        """Phase 1: the gate and the states, for this shard's lines of a chunk (each with a
        bound of the replay clock before it, with a keyring: see :func:`_chunks`)."""
        report = _Report()
        cases, take = self.cases, self.driver.take
        taken: list[tuple[int, str, Step, Fact | None, datetime]] = []
        self._taken.append(taken)
        accepted, stamps, offsets = report.lines, report.stamps, report.offsets
        workers, windows, judged_by = self.workers, self.tracker is not None, self._judged_by
        records: list[Records] = [[] for _ in range(workers)]
        for i, raw, bound in lines:
            try:
                event, state = take(raw, cases, None,
                                    arrived=None if bound is None else _arrival(bound))
            except Rejected as r:
                report.rejected.append((i, r.reason, r.detail))
                continue
            case_id = event.case_id
            cases[case_id] = state
            fact = state.facts[-1]
            received = None if event.received_at is None else received_at(event)
            if received is not None:
                fact.received = received.timestamp()
            at = event.occurred_at
            taken.append((i, case_id, event.step, fact if received is None else None, at))
            accepted.append(i)
            stamps.append(fact.at)
            zone_us = fixed_offset_us(at.tzinfo)
            if zone_us is not None:  # what utcoffset().total_seconds() gives, kept per zone
                offsets.append(zone_us / 1_000_000)
            else:
                delta = at.utcoffset()
                offsets.append(delta.total_seconds() if delta is not None else 0.0)
            if windows:
                fields = fact_fields(case_id, fact)
                number = judged_by.get(fields[2])
                if number is None:
                    number = judged_by[fields[2]] = zlib.crc32(
                        str(fields[2]).encode()) % workers
                records[number].append((i, fields))
        self.events += len(taken)
        self._records.append(records[self.number])
        report.records = [b"" if number == self.number else pickle.dumps(share, _PICKLE)
                          for number, share in enumerate(records)]
        return report

    def get(self, case_id: str) -> CaseState:
        """The case with the facts released so far (its later facts are not there yet): the
        shard is the store its judgements read."""
        state, n = self.cases[case_id], self.released[case_id]
        if state.summary is None and n < len(state.facts):
            # the cut shares the case's summary (else each cut would build its own again
            # from the facts, and lose what earlier judgements kept in it)
            state.summary = summary_from_facts(state.facts[:n])
        return state.upto(n)

    def judge(self, moves: Moves, others: list[bytes]) -> None:
        """Phase 2: judge the chunk's events and window records in line order, and fire
        what is due where the clock first passes it (``moves``: the lines at which the
        clock moved and its instants after them, in order; ``others``: the window records
        of this shard's departments that the other shards took, pickled).

        A shard steps only to its own lines and to the moves at which something of its
        own falls due (found by bisection: the clock only goes forward), not through
        every line of the file."""
        lines_m, stamps_m, _ = moves
        index, alerts, released, cases = self.index, self.alerts, self.released, self.cases
        clock, tracker, on_event = self._clock, self.tracker, self.driver.on_event
        taken = self._taken.popleft()
        records = self._records.popleft()
        if any(others):
            records = sorted(chain(records, *(pickle.loads(b) for b in others if b)),
                             key=itemgetter(0))
        never = 1 << 62
        n_taken, n_records, n_moves = len(taken), len(records), len(lines_m)
        t = r = 0
        event_line = taken[0][0] if n_taken else never
        record_line = records[0][0] if n_records else never
        k_now = -1  # the last move stepped to
        pending = -1  # a move stepped to but not applied to the clock yet (``now`` None)
        now: datetime | None = clock.now()
        now_ts = clock.now_epoch()
        index_due = index.next_due
        # the next due of the cases and of the windows change only when they are judged or
        # fired (asked again then)
        case_due = index_due()
        window_due = tracker.next_due() if tracker is not None else None
        while True:
            fire_line = never
            due = case_due
            if window_due is not None and (due is None or window_due < due):
                due = window_due
            if due is not None:
                k = bisect_left(stamps_m, due, k_now + 1)
                if k < n_moves:
                    fire_line = lines_m[k]
            line = event_line if event_line < record_line else record_line
            if fire_line < line:
                line = fire_line
            elif line == never:
                break
            k = bisect_right(lines_m, line, k_now + 1) - 1
            if k > k_now:
                k_now = k
                if lines_m[k] == event_line:  # moved to this shard's event: its own instant
                    clock.advance(taken[t][4], stamps_m[k])
                    now, now_ts, pending = clock.now(), clock.now_epoch(), -1
                else:  # its datetime built only where it is read (most records do not)
                    now, now_ts, pending = None, stamps_m[k], k
            if event_line == line:
                if pending >= 0:
                    now, pending = _apply(clock, moves, pending), -1
                _, case_id, step, fact, _ = taken[t]
                t += 1
                event_line = taken[t][0] if t < n_taken else never
                if fact is not None:  # received when its line was read (the clock known now)
                    fact.received = now_ts
                n = released[case_id] = released.get(case_id, 0) + 1
                state = cases[case_id]
                facts = state.facts
                if n == len(facts):
                    on_event(index, state, step, now, now_ts, alerts.extend)
                else:
                    # the case as of this line: the facts later lines (of this chunk or the
                    # one ahead) added set aside while it is judged, cheaper than a cut
                    later = facts[n:]
                    del facts[n:]
                    try:
                        on_event(index, state, step, now, now_ts, alerts.extend)
                    finally:
                        facts += later
                case_due = index_due()
            observed = record_line == line
            if observed:
                if tracker is not None:
                    # the fields as fact_fields() made them here or in another shard
                    found = tracker.observe(record_of(records[r][1]), now, now_ts)
                    if found:
                        alerts.extend(found)
                r += 1
                record_line = records[r][0] if r < n_records else never
            if observed and tracker is not None:
                window_due = tracker.next_due()
            # (the next due instants kept: may_be_due without the calls)
            windows_due = window_due is not None and window_due <= now_ts
            if k_now >= 0 and lines_m[k_now] == line:
                # the clock moved at this line: what is due by it, if anything
                if windows_due or (case_due is not None and case_due <= now_ts):
                    if pending >= 0:
                        now, pending = _apply(clock, moves, pending), -1
                    self.fire_due()
                    case_due = index_due()
                    if tracker is not None:
                        window_due = tracker.next_due()
            elif observed and windows_due:
                # as replay() after every event: what the record scheduled may be due now
                alerts.extend(tracker.advance(now, now_ts))  # type: ignore[union-attr]
                window_due = tracker.next_due()  # type: ignore[union-attr]
        if n_moves > k_now + 1:  # the clock as the chunk leaves it, for the next one
            _apply(clock, moves, n_moves - 1)
        elif pending >= 0:
            _apply(clock, moves, pending)

    def fire_due(self) -> None:
        """What is due by the clock (cases, windows)."""
        now, t = self._clock.now(), self._clock.now_epoch()
        self.driver.fire_due(self.index, self, now, t, self.alerts.extend)
        if self.tracker is not None and self.tracker.may_be_due(t):
            self.alerts.extend(self.tracker.advance(now, t))

    def finish(self, until: datetime | None) -> None:
        if until is not None:
            self._clock.advance(until)
            self.fire_due()

    @property
    def late(self) -> int:
        return self.tracker.late if self.tracker is not None else 0


def _shard_main(inbox: Any, conn: Connection, engine: Engine, keys: KeyRing | None,
                number: int, workers: int, windows: bool
                ) -> None:  # pragma: no cover - in a child process
    shard = _Shard(engine, keys, number, workers, windows)
    calendar = engine.working_time.calendar
    official = calendar if isinstance(calendar, OfficialCalendar) else None
    if official is not None:
        official.announce = False  # the parent says it, once, not once per shard
    try:
        while True:
            message = inbox.get()
            if message[0] == "chunk":  # phase 1 (the next chunk's may come before phase 2)
                conn.send(shard.take(message[1]))
            elif message[0] == "judge":  # phase 2 of the oldest chunk taken
                shard.judge(message[1], message[2])
            else:
                shard.finish(message[1])
                fallback = official.fallback_years if official is not None else frozenset()
                conn.send(("done", shard.alerts, shard.late, engine.check_errors, fallback))
                return
    except Exception:
        conn.send(("error", traceback.format_exc()))


class ReplayWorkerError(RuntimeError):
    """A shard process failed; the message holds its traceback."""


def replay_parallel(
    lines: Iterable[bytes],
    engine: Engine,
    until: datetime | None = None,
    keys: KeyRing | None = None,
    on_progress: Callable[[int], None] | None = None,
    *,
    workers: int = 2,
    windows: bool = True,
    indicators: IndicatorBook | None = None,
) -> ReplayResult:
    """:func:`rules.replay.replay` with the case rules in ``workers`` processes (forked:
    the engine is shared as it is); one worker, or indicators, replay in this process."""
    if workers <= 1 or indicators is not None:
        return replay(lines, engine, until, keys, on_progress, windows=windows,
                      indicators=indicators)
    # as the worker runs (rules/collector.py); the children inherit the heap and the
    # collector's settings: their collections leave what is here alone
    with tuned_collector():
        return _replay_sharded(lines, engine, until, keys, on_progress, workers, windows)


def _replay_sharded(lines: Iterable[bytes], engine: Engine, until: datetime | None,
                    keys: KeyRing | None, on_progress: Callable[[int], None] | None,
                    workers: int, windows: bool) -> ReplayResult:
    source = iter(_packed(lines) if isinstance(lines, list) else lines)
    # with a keyring, the lines read are kept: a verdict a shard could not know sends the
    # whole file to the single-process replay (see _chunks)
    read: list[bytes] | None = [] if keys is not None else None
    context = multiprocessing.get_context("fork")
    inboxes: list[Any] = []  # queues: a put does not wait for a busy shard
    pipes: list[Connection] = []
    processes = []
    for number in range(workers):
        inbox = context.Queue()
        parent_end, child_end = context.Pipe(duplex=False)
        process = context.Process(target=_shard_main, name=f"jiancha-replay-{number}",
                                  args=(inbox, child_end, engine, keys, number, workers,
                                        windows),
                                  daemon=True)
        process.start()
        child_end.close()
        inboxes.append(inbox)
        pipes.append(parent_end)
        processes.append(process)
    finished = clock_dependent = False
    try:
        result = _drive(source, read, engine, until, keys, inboxes, pipes, on_progress, windows)
        finished = True
    except _ClockDependent:
        clock_dependent = True
    finally:
        for inbox in inboxes:
            inbox.close()
        for conn in pipes:
            conn.close()
        for process in processes:
            if finished:  # each has sent its result and is exiting
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
    if clock_dependent:
        assert read is not None
        return replay(chain(read, source), engine, until, keys, on_progress, windows=windows)
    return result


def _packed(lines: list[bytes]) -> list[bytes]:
    """A copy of lines held in memory before the shards are forked, the lines side by side.

    After a fork every page the parent shares with the shards is copied on its first
    write, and reading a line writes to it (its reference count): lines made one by one
    among other objects lie about a page each, so reading them cost a page copy per
    line. The copies fill few pages."""
    joined = b"".join(lines)
    return [joined[start:end]
            for start, end in pairwise(accumulate(map(len, lines), initial=0))]


def _chunks(lines: Iterator[bytes], workers: int, read: list[bytes] | None
            ) -> Iterator[tuple[list[bytes], list[list[tuple[int, bytes, float | None]]],
                                list[int]]]:
    """The file in chunks: the lines, each shard's event lines, and the complaint lines
    (lines within the chunk).

    With a keyring (``read`` a list: the lines are kept there) each event line goes with
    a bound of the replay clock before it: the latest time of any line before it, taken
    as if all were accepted. A key is valid up to its ``not_after``, so an event whose
    signature verifies when it arrived at that bound verifies at the replay clock too;
    one that does not is judged again by the parent at the replay clock, once known
    (:func:`_drive`). Without a keyring the clock decides nothing in the gate."""
    bound = float("-inf")
    while chunk := list(islice(lines, CHUNK)):
        if read is not None:
            read.extend(chunk)
        shares: list[list[tuple[int, bytes, float | None]]] = [[] for _ in range(workers)]
        complaint_lines: list[int] = []
        filled = [i for i, raw in enumerate(chunk) if raw and not raw.isspace()]  # not blank
        for i, number in zip(filled, shards_of([chunk[i] for i in filled], workers),
                             strict=True):
            raw = chunk[i]
            if number is None:
                complaint_lines.append(i)
            else:
                shares[number].append((i, raw, bound if read is not None else None))
            if read is not None:
                bound = max(bound, _line_time(raw))
        yield chunk, shares, complaint_lines


def _line_time(raw: bytes) -> float:
    """The time a line would move the replay clock to if accepted (epoch seconds): -inf
    for a line without one; +inf for one that cannot be read here (no bound then)."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return float("-inf")
    at = payload.get("occurred_at") if isinstance(payload, dict) else None
    if not isinstance(at, str):
        return float("-inf")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return float("inf")
    return when.timestamp() if when.tzinfo is not None else float("inf")


def _arrival(bound: float | None) -> datetime | None:
    """A bound of :func:`_chunks` as the instant an event is taken to have arrived."""
    if bound is None or bound == float("-inf"):
        return None
    if bound == float("inf"):
        return datetime.max.replace(tzinfo=UTC)
    return datetime.fromtimestamp(bound, UTC)


class _ClockDependent(Exception):
    """A line a shard rejected is accepted at the replay clock: the shards' states no
    longer follow the file (replay it in one process)."""


def _receive(conn: Connection) -> Any:
    try:
        message = conn.recv()
    except EOFError:
        raise ReplayWorkerError("a replay shard exited without a word (killed? out of "
                                "memory?); run with --workers 1 to replay in one process"
                                ) from None
    if isinstance(message, tuple) and message and message[0] == "error":
        raise ReplayWorkerError(f"a replay shard failed:\n{message[1]}")
    return message


def _drive(lines: Iterator[bytes], read: list[bytes] | None, engine: Engine,
           until: datetime | None, keys: KeyRing | None, inboxes: list[Any],
           pipes: list[Connection], on_progress: Callable[[int], None] | None,
           windows: bool) -> ReplayResult:
    result = ReplayResult()
    clock = EventTimeClock()
    sides = SideRules(engine, clock, result, windows=False, indicators=None,
                      keys=keys)  # complaints
    gate = Gate(engine.catalog, keys)
    probe = EventTimeClock()  # the clock as the shards will see it, a chunk ahead of ``clock``
    chunks = _chunks(lines, len(inboxes), read)
    first_line = 1

    def hand_out() -> tuple[list[bytes], list[int]] | None:
        """The next chunk to the shards: its lines and its complaint lines."""
        got = next(chunks, None)
        if got is None:
            return None
        chunk, shares, complaint_lines = got
        for inbox, share in zip(inboxes, shares, strict=True):
            inbox.put(("chunk", share))
        return chunk, complaint_lines

    # a chunk ahead: the shards take it in while this process works out the clock of the
    # one before (else they would wait for it, idle, at every chunk)
    handed = hand_out()
    ahead = hand_out() if handed is not None else None
    while handed is not None:
        chunk, complaint_lines = handed
        reports: list[_Report] = [_receive(conn) for conn in pipes]
        size = len(chunk)
        # the clock after every line: accepted events (any shard) and complaints (here);
        # -inf: no accepted event at the line
        stamps = array("d", (-_INF,)) * size
        offsets = array("d", (0.0,)) * size
        accepted = 0
        problems: list[tuple[int, str]] = []
        again: list[int] = []  # rejected at a bound of the clock: judged at the clock
        for report in reports:
            for i, ts, offset in zip(report.lines, report.stamps, report.offsets, strict=True):
                stamps[i] = ts
                offsets[i] = offset
            accepted += len(report.lines)
            for i, reason, detail in report.rejected:
                if reason == "bad_signature" and keys is not None:
                    again.append(i)
                    continue
                result.rejected[reason] = result.rejected.get(reason, 0) + 1
                problems.append((i, f"line {first_line + i}: {reason}: {detail}"))
        complaints = {i: payload for i in complaint_lines
                      if (payload := complaint_payload(chunk[i])) is not None}
        moves: Moves = (array("l"), array("d"), array("d"))
        moved_lines, moved_stamps, moved_offsets = moves
        # the lines are stepped through with the probe's epoch seconds alone; a datetime is
        # built only where a complaint or a line judged again reads the probe
        probe_ts, last = probe.now_epoch(), -1
        begin = 0
        for special in chain(sorted(chain(again, complaints)), (size,)):
            for i in range(begin, special):
                ts = stamps[i]
                if probe_ts < ts:
                    probe_ts, last = ts, i
                    moved_lines.append(i)
                    moved_stamps.append(ts)
                    moved_offsets.append(offsets[i])
            if last >= 0:
                probe.advance(_unpack((probe_ts, offsets[last])), probe_ts)
                last = -1
            if special == size:
                break
            begin = special + 1
            payload = complaints.get(special)
            if payload is None:  # as replay() judges it: the key valid at the clock before it
                try:
                    gate.parse(chunk[special], None, arrived=probe.now())
                except Rejected as r:
                    result.rejected[r.reason] = result.rejected.get(r.reason, 0) + 1
                    problems.append((special,
                                     f"line {first_line + special}: {r.reason}: {r.detail}"))
                    continue
                raise _ClockDependent(first_line + special)
            when = _complaint_time(sides.gate, payload, probe.now())
            if when is not None and probe.now() < when:
                probe.advance(when)
                _move(moves, special, _pack(when))
                probe_ts = probe.now_epoch()
        for number, inbox in enumerate(inboxes):
            inbox.put(("judge", moves, [report.records[number] for report in reports]
                       if windows else []))
        handed, ahead = ahead, hand_out() if ahead is not None else None
        # meanwhile: the complaints of this chunk, here; with none and none waiting, only
        # the clock moves (a complaint deadline can fall due at no line)
        if complaints or sides.index.next_due() is not None:
            # after every accepted event as replay(): the complaints due (no windows here:
            # fire_due is the complaints' due alone), the clock moved to the event first;
            # both only where something is due or a complaint reads the clock
            clock_ts, moved = clock.now_epoch(), -1  # moved: the line the clock is behind
            for i in range(size):
                payload = complaints.get(i)
                if payload is not None:
                    if moved >= 0:
                        clock.advance(_unpack((clock_ts, offsets[moved])), clock_ts)
                        moved = -1
                    before = len(result.problems)
                    if sides.complaint(first_line + i, payload):
                        sides.fire_due(clock.now())
                    problems.extend((i, p) for p in result.problems[before:])
                    del result.problems[before:]
                    clock_ts = clock.now_epoch()
                    continue
                ts = stamps[i]
                if ts == -_INF:  # no event accepted here
                    continue
                if clock_ts < ts:
                    clock_ts, moved = ts, i
                if sides.index.may_be_due(clock_ts):
                    if moved >= 0:
                        clock.advance(_unpack((clock_ts, offsets[moved])), clock_ts)
                        moved = -1
                    sides.fire_due(clock.now(), clock_ts)
            if moved >= 0:
                clock.advance(_unpack((clock_ts, offsets[moved])), clock_ts)
        elif moved_lines and clock.now_epoch() < moved_stamps[-1]:
            clock.advance(_unpack((moved_stamps[-1], moved_offsets[-1])), moved_stamps[-1])
        result.problems.extend(p for _, p in sorted(problems, key=lambda lp: lp[0]))
        before_events = result.events
        result.events += accepted
        first_line += size
        if on_progress is not None:  # at every 10,000 events, as replay() reports
            for n in range(before_events // 10_000 + 1, result.events // 10_000 + 1):
                on_progress(n * 10_000)
    for inbox in inboxes:
        inbox.put(("finish", until))
    if until is not None:
        clock.advance(until)
        sides.fire_due(clock.now())
    calendar = engine.working_time.calendar
    for conn in pipes:
        _, alerts, late, check_errors, fallback_years = _receive(conn)
        if isinstance(calendar, OfficialCalendar):
            for year in sorted(fallback_years):
                calendar.note_fallback(year)
        result.alerts.extend(alerts)
        result.late_window_records += late
        for rule, n in check_errors.items():
            engine.check_errors[rule] = engine.check_errors.get(rule, 0) + n
    result.alerts.sort(key=lambda a: (a.event_time, a.alert_id))
    return result


def _apply(clock: EventTimeClock, moves: Moves, k: int) -> datetime:
    """The clock moved to the instant of move ``k``; that instant."""
    clock.advance(_unpack((moves[1][k], moves[2][k])), moves[1][k])
    return clock.now()


def _move(moves: Moves, line: int, instant: Instant) -> None:
    moves[0].append(line)
    moves[1].append(instant[0])
    moves[2].append(instant[1])


def _complaint_time(gate: ComplaintGate, payload: dict[str, Any], clock: datetime
                    ) -> datetime | None:
    """The instant a complaint line moves the clock to, None if it will be rejected (as
    :meth:`SideRules.complaint` decides: the same gate at the same clock)."""
    try:
        return gate.validate(payload, None, arrived=clock).occurred_at
    except ComplaintRejected:
        return None
