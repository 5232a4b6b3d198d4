"""The Drop Copy feed on scripted streams and a virtual clock: tokens, refusals, proofs, reconnects.

The real :class:`~connector.engine.dropcopy.DropCopyFeed`, the real decoder and watermark; the host
(the service's side: publish, number, gaps, the frontier) is a recorder that numbers each record in
the watermark as the service does, and a test acknowledges arrivals by hand, as Kafka would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from connector._pb.polymarket.v1 import dropcopy_pb2, trading_pb2
from connector.core.backfill_plan import Gap, GapReason
from connector.core.records import OutRecord
from connector.core.venue_time import seconds_to_ns
from connector.core.watermark import Position, Watermark
from connector.engine.dropcopy import DropCopyFeed
from connector.engine.ports import Checkpoint, Disposition, DropCopyResume, StreamEnd
from connector.engine.status import DropCopyStatus
from connector.errors import StreamRefused
from tests.engine_fixtures import ScriptedStream, venue_executions
from tests.simulation.clock import SimClock
from tests.venue_strategies import DECODER

MARGIN_S = 2.0
AFTER_S = 1.0
SILENCE_S = 90.0
EXECUTIONS = venue_executions(12)


@dataclass
class Host:
    """The service's side, recorded: every record is numbered in the watermark, as ``emit`` does."""

    watermark: Watermark
    records: list[tuple[int, OutRecord]] = field(default_factory=list)
    relaxed: list[bool] = field(default_factory=list)  # each record's ordering: relaxed mark
    frontier: Position | None = None  # F, as the test sets it
    gaps: list[Gap] = field(default_factory=list)
    recoveries: list[tuple[int, int | None]] = field(default_factory=list)
    begun: int = 0
    backlogged: bool = False
    seen: set[str] = field(default_factory=set)

    def emit(self, record: OutRecord, *, relaxed: bool = False) -> None:
        if record.execution_id and record.topic == DECODER.executions_topic:
            if record.execution_id in self.seen:
                return  # the recent-ID set
            self.seen.add(record.execution_id)
        self.records.append((self.watermark.arrive(record.proof_ns, record.execution_id), record))
        self.relaxed.append(relaxed)

    def declare_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
        self.watermark.arrive(None)

    def begin_recovery(self) -> None:
        self.begun += 1

    def recovered(self, barrier: int, proven_ns: int | None) -> None:
        self.recoveries.append((barrier, proven_ns))

    def acknowledge_all(self) -> None:
        for sequence in range(self.watermark.last_sequence + 1):
            self.watermark.acknowledge(sequence)


@dataclass
class Observed:
    """The metrics calls."""

    calls: list[tuple[str, object]] = field(default_factory=list)

    def connected(self, connected: bool) -> None:
        self.calls.append(("connected", connected))

    def reconnect(self, reason: str) -> None:
        self.calls.append(("reconnect", reason))

    def executions(self, count: int) -> None:
        self.calls.append(("executions", count))

    def resume_refused(self, resume: str) -> None:
        self.calls.append(("resume_refused", resume))

    def token_confirmed(self) -> None:
        self.calls.append(("token_confirmed", None))


class Venue:
    """Opens the streams the test scripted, and remembers where each was asked to start."""

    def __init__(self) -> None:
        self.asked: list[DropCopyResume] = []
        self.streams: list[ScriptedStream] = []

    def __call__(self, resume: DropCopyResume, /) -> ScriptedStream:
        self.asked.append(resume)
        self.streams.append(ScriptedStream())
        return self.streams[-1]


def batch(
    token: bytes, *executions: trading_pb2.Execution
) -> dropcopy_pb2.CreateDropCopySubscriptionResponse:
    return dropcopy_pb2.CreateDropCopySubscriptionResponse(resume_token=token, executions=list(executions))


def transact_ns(execution: trading_pb2.Execution) -> int:
    return execution.transact_time.ToNanoseconds()


@dataclass
class Rig:
    feed: DropCopyFeed
    host: Host
    venue: Venue
    clock: SimClock
    observed: Observed
    status: DropCopyStatus

    def step(self) -> float:
        return self.feed.step(self.clock.monotonic())

    def later(self, seconds: float) -> None:
        self.clock.advance_to(self.clock.monotonic() + seconds)

    @property
    def stream(self) -> ScriptedStream:
        return self.venue.streams[-1]


def rig(checkpoint: Checkpoint | None = None, *, owns_frontier: bool = False) -> Rig:
    clock = SimClock()
    watermark = Watermark()
    host = Host(watermark)
    venue = Venue()
    observed = Observed()
    status = DropCopyStatus()
    feed = DropCopyFeed(
        host=host,
        open_stream=venue,
        decoder=DECODER,
        watermark=watermark,
        clock=clock,
        observer=observed,
        status=status,
        checkpoint=checkpoint,
        start_ns=None,
        margin_s=MARGIN_S,
        after_s=AFTER_S,
        silence_s=SILENCE_S,
        owns_frontier=owns_frontier,
        invalidate_token=lambda: None,
    )
    return Rig(feed, host, venue, clock, observed, status)


def test_a_token_is_confirmed_only_once_every_record_of_its_batch_is_acknowledged() -> None:
    r = rig()
    r.step()
    assert r.venue.asked == [DropCopyResume()]  # no checkpoint: live
    r.stream.push(batch(b"T1", *EXECUTIONS[:3]))
    r.step()
    assert [record.execution_id for _, record in r.host.records] == [e.id for e in EXECUTIONS[:3]]
    assert r.feed.confirmed == (b"", None)
    r.host.watermark.acknowledge(0)
    r.host.watermark.acknowledge(2)  # out of order: the batch is not acknowledged through yet
    assert r.feed.confirmed == (b"", None)
    r.host.watermark.acknowledge(1)
    assert r.feed.confirmed == (b"T1", max(transact_ns(e) for e in EXECUTIONS[:3]))
    assert ("token_confirmed", None) in r.observed.calls and r.status.confirmed_token


def test_a_dropped_stream_resumes_from_the_confirmed_token_not_a_newer_unacknowledged_one() -> None:
    r = rig()
    r.step()
    r.stream.push(batch(b"T1", EXECUTIONS[0]), batch(b"T2", EXECUTIONS[1]))
    r.step()
    r.host.watermark.acknowledge(0)  # T1's batch; T2's is in flight
    r.stream.push(StreamEnd("UNAVAILABLE", "reset", Disposition.RECONNECT))
    wake = r.step()
    r.later(wake - r.clock.monotonic())
    r.step()
    assert r.venue.asked[-1] == DropCopyResume(token=b"T1")
    assert ("reconnect", "unavailable") in r.observed.calls


def test_a_refused_token_falls_back_to_the_time_less_the_margin_then_a_refused_time_to_live_with_a_gap() -> (
    None
):
    f = Position(transact_ns(EXECUTIONS[5]), "E", "s")
    token_time = transact_ns(EXECUTIONS[3])
    r = rig(Checkpoint(f, b"T0", token_time), owns_frontier=True)
    r.step()
    assert r.venue.asked == [DropCopyResume(token=b"T0")]
    r.stream.push(StreamEnd("FAILED_PRECONDITION", "resume token expired", Disposition.RECONNECT))
    r.step()
    r.step()
    resume_time = token_time - seconds_to_ns(MARGIN_S)
    assert r.venue.asked[-1] == DropCopyResume(time_ns=resume_time)
    assert not r.host.gaps, "a resume by time proves the window: no gap"
    r.stream.push(StreamEnd("OUT_OF_RANGE", "resume time too old", Disposition.RECONNECT))
    r.step()
    r.step()
    assert r.venue.asked[-1] == DropCopyResume()
    (gap,) = r.host.gaps
    assert gap.reason is GapReason.DROPCOPY_RESUME_REFUSED
    assert gap.window.start_ns == resume_time
    assert gap.window.end_ns == r.clock.time_ns() + seconds_to_ns(AFTER_S)
    assert [call for call in r.observed.calls if call[0] == "resume_refused"] == [
        ("resume_refused", "token"),
        ("resume_refused", "time"),
    ]
    # Drop Copy alone: the live stream's first batch completes the recovery, F may pass the gap.
    r.stream.push(batch(b"T9", EXECUTIONS[8]))
    r.step()
    assert r.host.recoveries == [(0, gap.window.end_ns)]  # barrier: the gap record (arrival 0)


def test_a_refusal_status_after_the_first_batch_is_not_a_refused_resume() -> None:
    r = rig(Checkpoint(None, b"T0", None))
    r.step()
    r.stream.push(batch(b"T1", EXECUTIONS[0]), StreamEnd("NOT_FOUND", "gone", Disposition.RECONNECT))
    with pytest.raises(StreamRefused, match="NOT_FOUND"):
        r.step()
    assert not [call for call in r.observed.calls if call[0] == "resume_refused"]


def test_a_missing_scope_stops_the_connector_with_one_line_naming_it() -> None:
    r = rig()
    r.step()
    r.stream.push(StreamEnd("PERMISSION_DENIED", "missing required scope read:dropcopy", Disposition.FATAL))
    with pytest.raises(StreamRefused, match=r"needs the read:dropcopy scope"):
        r.step()


@pytest.mark.parametrize("owns_frontier", [False, True])
def test_records_prove_their_time_only_when_drop_copy_is_the_only_source(owns_frontier: bool) -> None:
    r = rig(owns_frontier=owns_frontier)
    r.step()
    r.stream.push(batch(b"T1", *EXECUTIONS[:2]))
    r.step()
    proofs = [record.proof_ns for _, record in r.host.records]
    assert proofs == ([transact_ns(e) for e in EXECUTIONS[:2]] if owns_frontier else [None, None])
    assert all(record.source == "drop_copy" for _, record in r.host.records)
    assert r.host.begun == (1 if owns_frontier else 0)


def test_an_execution_the_order_stream_published_is_not_published_again() -> None:
    r = rig()
    r.host.seen.add(EXECUTIONS[1].id)
    r.step()
    r.stream.push(batch(b"T1", *EXECUTIONS[:3]))
    r.step()
    assert [record.execution_id for _, record in r.host.records] == [EXECUTIONS[0].id, EXECUTIONS[2].id]
    r.host.acknowledge_all()
    assert r.feed.confirmed[0] == b"T1"


def test_nothing_is_read_while_the_producer_is_full_and_that_is_not_silence() -> None:
    r = rig()
    r.step()
    r.stream.push(batch(b"T1", EXECUTIONS[0]))
    r.host.backlogged = True
    r.later(SILENCE_S + 1)
    r.step()
    assert not r.host.records and len(r.venue.asked) == 1
    r.host.backlogged = False
    r.step()
    assert len(r.host.records) == 1


def test_a_silent_stream_is_reopened_from_the_confirmed_token() -> None:
    r = rig()
    r.step()
    r.stream.push(batch(b"T1", EXECUTIONS[0]))
    r.step()
    r.host.acknowledge_all()
    r.later(SILENCE_S + 0.1)
    r.step()
    assert r.venue.streams[0].cancelled
    assert ("reconnect", "stall") in r.observed.calls
    r.later(60)
    r.step()
    assert r.venue.asked[-1] == DropCopyResume(token=b"T1")


def test_an_unreadable_response_is_dead_lettered_and_the_stream_reopened() -> None:
    r = rig()
    r.step()
    r.stream.push(b"\xff\xff\xff")  # not protobuf
    r.step()
    ((_, letter),) = r.host.records
    assert letter.topic == DECODER.dlq_topic and letter.source == "drop_copy"
    assert r.venue.streams[0].cancelled and ("reconnect", "other") in r.observed.calls


def test_a_refused_token_is_forgotten_so_the_next_reconnect_replays_by_time_again() -> None:
    token_time = transact_ns(EXECUTIONS[3])
    r = rig(Checkpoint(None, b"T0", token_time))
    r.step()
    r.stream.push(StreamEnd("INVALID_ARGUMENT", "unknown resume token", Disposition.FATAL))
    r.step()
    r.step()
    r.stream.push(batch(b"T1", EXECUTIONS[4]), StreamEnd("UNAVAILABLE", "reset", Disposition.RECONNECT))
    r.step()  # the time-resumed stream answered, then dropped before T1's batch was acknowledged
    r.later(60)
    r.step()
    # by time again, from the newest execution published (it is delivered, or the process stops)
    assert r.venue.asked[-1] == DropCopyResume(time_ns=transact_ns(EXECUTIONS[4]) - seconds_to_ns(MARGIN_S))
    assert r.feed.confirmed == (b"", token_time), "the checkpoint no longer offers the dead token"


def test_after_a_refused_time_the_position_is_the_gaps_end_once_the_gap_record_is_acknowledged() -> None:
    r = rig(Checkpoint(None, b"", transact_ns(EXECUTIONS[3])))
    r.step()
    r.stream.push(StreamEnd("OUT_OF_RANGE", "too old", Disposition.RECONNECT))
    r.step()
    r.step()
    (gap,) = r.host.gaps
    assert r.venue.asked[-1] == DropCopyResume()
    assert r.feed.confirmed == (b"", transact_ns(EXECUTIONS[3])), "not before the gap record is acknowledged"
    r.host.acknowledge_all()
    assert r.feed.confirmed == (b"", gap.window.end_ns)


def test_a_live_stream_after_a_refusal_that_drops_unanswered_declares_the_next_window_too() -> None:
    r = rig(Checkpoint(None, b"", transact_ns(EXECUTIONS[3])))
    r.step()
    r.stream.push(StreamEnd("OUT_OF_RANGE", "too old", Disposition.RECONNECT))
    r.step()
    r.step()
    r.stream.push(StreamEnd("UNAVAILABLE", "reset", Disposition.RECONNECT))  # live, silent, gone
    r.step()
    r.later(60)
    r.step()
    first, second = r.host.gaps
    assert r.venue.asked[-1] == DropCopyResume()
    assert second.window.start_ns < first.window.end_ns, "the windows leave nothing between them"
    assert second.window.end_ns == r.clock.time_ns() + seconds_to_ns(AFTER_S)


def test_a_first_live_start_is_a_position_so_a_token_always_comes_with_a_time() -> None:
    r = rig()
    opened_ns = r.clock.time_ns()
    r.step()
    r.stream.push(batch(b"T1"))  # a batch without executions
    r.step()
    r.host.acknowledge_all()
    assert r.feed.confirmed == (b"T1", opened_ns)


def test_beside_the_order_stream_after_a_gap_records_are_relaxed_until_f_passes_the_gaps_end() -> None:
    r = rig(Checkpoint(None, b"", transact_ns(EXECUTIONS[3])))
    r.step()
    r.stream.push(StreamEnd("OUT_OF_RANGE", "too old", Disposition.RECONNECT))
    r.step()
    r.step()
    (gap,) = r.host.gaps
    r.stream.push(batch(b"T1", EXECUTIONS[6]))
    r.step()
    r.host.frontier = Position(gap.window.end_ns, "", "")  # the order stream's backfill is through it
    r.stream.push(batch(b"T2", EXECUTIONS[7]))
    r.step()
    assert r.host.relaxed == [True, False], "its backfill may still publish what the gap lost"
