"""The pure VenueStream: openings, send queue, heartbeat queueing, sessions, snapshots, dice, determinism.

Single-threaded on a virtual clock, fed by the real exchange and order flow (``virtual_exchange``).
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector._pb.polymarket.v1 import trading_pb2
from connector.simulator.exchange import Exchange, OrderFilter, Subscription
from connector.simulator.faults import FaultSettings
from connector.simulator.order_flow import VenueUpdate
from connector.simulator.stream_behaviour import SentMessage, StreamEnd, VenueStream
from tests.simulator_fixtures import VirtualClock, virtual_exchange

INTERVAL_S = 5.0


def open_stream(
    exchange: Exchange,
    settings_: FaultSettings,
    *,
    seed: int = 1,
    snapshot_only: bool = False,
    interval_s: float = INTERVAL_S,
) -> tuple[VenueStream, Subscription]:
    made: list[VenueStream] = []

    def sink(book: list[trading_pb2.Order], now: datetime) -> VenueStream:
        made.append(
            VenueStream(
                settings_,
                session_id="s-1",
                opened_at=now,
                book=book,
                rng=random.Random(seed),
                heartbeat_interval_s=interval_s,
                snapshot_only=snapshot_only,
            )
        )
        return made[0]

    subscription = exchange.subscribe(OrderFilter(), sink)
    return made[0], subscription


def drain(stream: VenueStream, now: datetime) -> list[SentMessage]:
    sent = []
    while (message := stream.next_message(now)) is not None:
        sent.append(message)
    return sent


def kinds(messages: list[SentMessage]) -> list[str]:
    return [message.kind for message in messages]


def ids(messages: list[SentMessage]) -> list[str]:
    return [execution_id for message in messages for execution_id in message.execution_ids]


def produced_ids(updates: list[VenueUpdate]) -> list[str]:
    return [execution.id for update in updates for execution in update.executions]


def order_ids(orders: list[trading_pb2.Order]) -> list[str]:
    return [order.id for order in orders]


def book_ids(exchange: Exchange) -> list[str]:
    return exchange.read(lambda flow, _journal: [order.id for order in flow.open_orders()])


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def exchange(clock: VirtualClock) -> Exchange:
    venue = virtual_exchange(clock)
    venue.advance(40)
    return venue


# ---------------------------------------------------------------------- openings


def test_snapshot_first_then_updates_in_feed_order(exchange: Exchange, clock: VirtualClock) -> None:
    book = book_ids(exchange)
    stream, _ = open_stream(exchange, FaultSettings())
    produced = exchange.advance(5)
    sent = drain(stream, clock())
    assert kinds(sent) == ["snapshot"] + ["update"] * 5
    assert order_ids(list(sent[0].response.snapshot.orders)) == book
    assert ids(sent) == produced_ids(produced)
    assert {m.response.session_id for m in sent} == {"s-1"}


def test_heartbeat_first_then_the_snapshot(exchange: Exchange, clock: VirtualClock) -> None:
    stream, _ = open_stream(exchange, FaultSettings(stream_opening="heartbeat"))
    exchange.advance(2)
    assert kinds(drain(stream, clock())) == ["heartbeat", "snapshot", "update", "update"]


def test_updates_first_and_the_snapshot_shows_the_book_at_its_place_in_the_feed(
    exchange: Exchange, clock: VirtualClock
) -> None:
    stream, _ = open_stream(exchange, FaultSettings(stream_opening="updates", opening_updates=2))
    assert stream.next_message(clock()) is None, "nothing to send before the first update"
    first = exchange.advance(2)
    book_after_two = book_ids(exchange)
    exchange.advance(3)
    sent = drain(stream, clock())
    assert kinds(sent) == ["update", "update", "snapshot", "update", "update", "update"]
    assert ids(sent[:2]) == produced_ids(first)
    assert order_ids(list(sent[2].response.snapshot.orders)) == book_after_two


def test_updates_first_snapshot_goes_anyway_after_the_opening_wait(
    exchange: Exchange, clock: VirtualClock
) -> None:
    settings_ = FaultSettings(stream_opening="updates", opening_updates=3, opening_wait_s=1.0)
    stream, subscription = open_stream(exchange, settings_)
    exchange.advance(1)
    assert not stream.snapshot_due(clock.advance(0.5))
    assert stream.snapshot_due(clock.advance(0.6))
    exchange.insert_snapshot(subscription)  # what the owner does: read the book at this feed point
    book = book_ids(exchange)
    sent = drain(stream, clock())
    assert kinds(sent) == ["update", "snapshot"]
    assert order_ids(list(sent[1].response.snapshot.orders)) == book
    assert not stream.snapshot_due(clock())


def test_random_opening_picks_every_variant_across_streams(exchange: Exchange, clock: VirtualClock) -> None:
    settings_ = FaultSettings(stream_opening="random", opening_updates=4)
    openings = set()
    counts = set()
    for seed in range(40):
        stream, _ = open_stream(exchange, settings_, seed=seed)
        openings.add(stream.opening)
        if stream.opening == "updates":
            exchange.advance(4)
            sent = drain(stream, clock())
            counts.add(kinds(sent).index("snapshot"))
    assert openings == {"snapshot", "heartbeat", "updates"}
    assert counts <= {1, 2, 3, 4}
    assert len(counts) >= 2


def test_snapshot_only_ends_ok_after_the_snapshot(exchange: Exchange, clock: VirtualClock) -> None:
    stream, _ = open_stream(exchange, FaultSettings(stream_opening="heartbeat"), snapshot_only=True)
    assert kinds(drain(stream, clock())) == ["heartbeat", "snapshot"]
    assert stream.ended == StreamEnd("OK", "snapshot_only: the snapshot was sent")


# ---------------------------------------------------------------------- heartbeats and the send queue


def test_heartbeats_are_stamped_at_send_time(exchange: Exchange, clock: VirtualClock) -> None:
    stream, _ = open_stream(exchange, FaultSettings())
    drain(stream, clock())
    clock.advance(INTERVAL_S + 3)  # due 3 s ago; the client reads only now
    heartbeat = stream.next_message(clock())
    assert heartbeat is not None and heartbeat.kind == "heartbeat"
    assert heartbeat.response.processed_sent_time.ToDatetime(tzinfo=UTC) == clock()


def test_a_jumping_heartbeat_goes_ahead_of_a_backlog(exchange: Exchange, clock: VirtualClock) -> None:
    stream, _ = open_stream(exchange, FaultSettings(heartbeat_queueing="jump"))
    drain(stream, clock())
    backlog = exchange.advance(10)  # the client does not read
    clock.advance(INTERVAL_S)
    exchange.advance(2)
    sent = drain(stream, clock())
    assert kinds(sent) == ["heartbeat"] + ["update"] * 12
    assert sent[0].queued_behind == 12
    assert sent[0].jumped
    assert stream.counts.heartbeats_jumped == 1
    oldest_queued = backlog[0].executions[0].transact_time.ToDatetime(tzinfo=UTC)
    assert sent[0].oldest_queued == oldest_queued
    assert sent[0].response.processed_sent_time.ToDatetime(tzinfo=UTC) > oldest_queued


def test_a_queued_heartbeat_keeps_its_place_behind_the_backlog(
    exchange: Exchange, clock: VirtualClock
) -> None:
    stream, _ = open_stream(exchange, FaultSettings(heartbeat_queueing="queue"))
    drain(stream, clock())
    exchange.advance(10)
    clock.advance(INTERVAL_S)
    exchange.advance(2)
    clock.advance(1)
    sent = drain(stream, clock())
    assert kinds(sent) == ["update"] * 10 + ["heartbeat"] + ["update"] * 2
    assert sent[10].response.processed_sent_time.ToDatetime(tzinfo=UTC) == clock(), "stamped at send"
    assert not sent[10].jumped
    assert sent[10].oldest_queued == sent[11].response.update.executions[0].transact_time.ToDatetime(
        tzinfo=UTC
    )


def test_jumping_heartbeats_do_not_pile_up(exchange: Exchange, clock: VirtualClock) -> None:
    stream, _ = open_stream(exchange, FaultSettings(heartbeat_queueing="jump"))
    drain(stream, clock())
    clock.advance(INTERVAL_S * 4.5)
    assert kinds(drain(stream, clock())) == ["heartbeat"]
    clock.advance(INTERVAL_S * 0.5)
    assert kinds(drain(stream, clock())) == ["heartbeat"], "the grid stays at open + k * interval"


def test_a_jumping_heartbeat_never_precedes_a_snapshot_first_opening(
    exchange: Exchange, clock: VirtualClock
) -> None:
    stream, _ = open_stream(exchange, FaultSettings(heartbeat_queueing="jump"))
    clock.advance(INTERVAL_S * 2)
    assert kinds(drain(stream, clock())) == ["snapshot", "heartbeat"]


@pytest.mark.parametrize("status", ["RESOURCE_EXHAUSTED", "UNAVAILABLE"])
def test_a_full_send_queue_ends_the_stream(exchange: Exchange, clock: VirtualClock, status: str) -> None:
    stream, _ = open_stream(exchange, FaultSettings(send_queue_capacity=5, queue_overflow_status=status))
    exchange.advance(4)  # snapshot + 4 updates: full
    assert stream.ended is None
    exchange.advance(1)
    assert stream.ended is not None
    assert stream.ended.status == status
    assert "send queue of 5 messages is full" in stream.ended.details
    assert stream.next_message(clock()) is None, "what was queued is dropped"
    assert stream.queued == 0


def test_queued_heartbeats_count_against_the_capacity(exchange: Exchange, clock: VirtualClock) -> None:
    stream, _ = open_stream(exchange, FaultSettings(heartbeat_queueing="queue", send_queue_capacity=3))
    clock.advance(INTERVAL_S * 3)
    assert stream.next_message(clock()) is None
    assert stream.ended is not None and stream.ended.status == "RESOURCE_EXHAUSTED"


# ---------------------------------------------------------------------- sessions and snapshots mid-stream


def test_new_session_on_demand_applies_to_messages_sent_after(
    exchange: Exchange, clock: VirtualClock
) -> None:
    stream, _ = open_stream(exchange, FaultSettings())
    exchange.advance(2)
    first = stream.next_message(clock())
    assert first is not None
    assert stream.new_session() == "s-1.2"
    rest = drain(stream, clock())
    assert first.response.session_id == "s-1"
    assert {m.response.session_id for m in rest} == {"s-1.2"}


def test_new_session_every_few_seconds(exchange: Exchange, clock: VirtualClock) -> None:
    stream, _ = open_stream(exchange, FaultSettings(new_session_every_s=10.0))
    sessions = []
    for _ in range(40):
        clock.advance(2.0)
        exchange.advance(1)
        sessions.extend(m.response.session_id for m in drain(stream, clock()))
    changes = sum(1 for a, b in itertools.pairwise(sessions) if a != b)
    assert 80 / 15 - 1 <= changes <= 80 / 5 + 1  # intervals drawn from 5..15 s over 80 s


def test_a_second_snapshot_replaces_the_book_at_its_feed_point(
    exchange: Exchange, clock: VirtualClock
) -> None:
    stream, subscription = open_stream(exchange, FaultSettings())
    exchange.advance(3)
    stream.request_snapshot()
    assert stream.snapshot_due(clock())
    exchange.insert_snapshot(subscription)
    book = book_ids(exchange)
    exchange.advance(2)
    sent = drain(stream, clock())
    assert kinds(sent) == ["snapshot", "update", "update", "update", "snapshot", "update", "update"]
    assert order_ids(list(sent[4].response.snapshot.orders)) == book
    assert stream.counts.snapshots == 2


def test_periodic_snapshots(exchange: Exchange, clock: VirtualClock) -> None:
    stream, subscription = open_stream(exchange, FaultSettings(snapshot_every_s=10.0))
    snapshots = 0
    for _ in range(60):
        clock.advance(1.0)
        if stream.snapshot_due(clock()):
            exchange.insert_snapshot(subscription)
        snapshots += kinds(drain(stream, clock())).count("snapshot")
    assert 1 + 60 / 15 - 1 <= snapshots <= 1 + 60 / 5 + 1


def test_settings_applied_to_an_open_stream(exchange: Exchange, clock: VirtualClock) -> None:
    stream, _ = open_stream(exchange, FaultSettings(heartbeat_queueing="jump"))
    drain(stream, clock())
    stream.apply(FaultSettings(heartbeat_queueing="queue", duplicate_rate=1.0), clock())
    assert stream.heartbeat_queueing == "queue"
    exchange.advance(1)
    assert kinds(drain(stream, clock())) == ["update", "duplicate"]


# ---------------------------------------------------------------------- dice


def test_duplicates_resend_already_queued_executions(exchange: Exchange, clock: VirtualClock) -> None:
    stream, _ = open_stream(exchange, FaultSettings(duplicate_rate=1.0))
    produced = produced_ids(exchange.advance(20))
    sent = drain(stream, clock())
    duplicates = [m for m in sent if m.kind == "duplicate"]
    assert len(duplicates) == 20
    assert all(len(m.execution_ids) == 1 and m.execution_ids[0] in produced for m in duplicates)
    assert [i for m in sent if m.kind == "update" for i in m.execution_ids] == produced


def test_unknown_enum_values_alter_sent_copies_only(exchange: Exchange, clock: VirtualClock) -> None:
    stream, _ = open_stream(exchange, FaultSettings(unknown_enum_rate=1.0, unknown_enum_value=77))
    produced = exchange.advance(3)
    sent = drain(stream, clock())
    assert {e.type for m in sent[1:] for e in m.response.update.executions} == {77}
    assert all(e.type != 77 for u in produced for e in u.executions)


def test_same_seed_same_messages_other_seed_other_choices(clock: VirtualClock) -> None:
    hostile = FaultSettings().with_hostile()

    def run(seed: int) -> list[bytes]:
        local_clock = VirtualClock(clock())
        venue = virtual_exchange(local_clock)
        venue.advance(30)
        streams = [open_stream(venue, hostile, seed=seed * 100 + n)[0] for n in range(5)]
        out = []
        for step in range(30):
            local_clock.advance(0.7)
            venue.advance(3)
            for stream in streams[: 1 + step % 5]:
                out.extend(m.response.SerializeToString() for m in drain(stream, local_clock()))
        return out

    assert run(1) == run(1)
    assert run(1) != run(2)


# ---------------------------------------------------------------------- properties

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("produce"), st.integers(1, 5)),
        st.tuples(st.just("wait"), st.floats(0.1, 12.0)),
        st.tuples(st.just("read"), st.integers(1, 30)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    ops=_OPS, queueing=st.sampled_from(["jump", "queue"]), opening=st.sampled_from(["snapshot", "updates"])
)
def test_property_the_stream_loses_and_reorders_nothing(
    ops: list[tuple[str, float]], queueing: str, opening: str
) -> None:
    """Every produced execution is sent once, in feed order; heartbeats obey their queueing."""
    clock = VirtualClock(datetime(2026, 1, 2, tzinfo=UTC))
    venue = virtual_exchange(clock)
    venue.advance(10)
    settings_ = FaultSettings(heartbeat_queueing=queueing, stream_opening=opening, send_queue_capacity=None)
    stream, subscription = open_stream(venue, settings_)
    opened = clock()
    produced: list[tuple[datetime, list[str]]] = []
    sent: list[SentMessage] = []
    for op, arg in ops:
        if op == "produce":
            for update in venue.advance(int(arg)):
                produced.append((clock(), [e.id for e in update.executions]))
        elif op == "wait":
            clock.advance(arg)
        else:
            if stream.snapshot_due(clock()):
                venue.insert_snapshot(subscription)
            for _ in range(int(arg)):
                message = stream.next_message(clock())
                if message is None:
                    break
                sent.append(message)
                assert message.response.processed_sent_time.ToDatetime(tzinfo=UTC) == clock()
    sent.extend(drain(stream, clock()))
    sent_ids = ids(sent)
    all_ids = [i for _, batch in produced for i in batch]
    assert sent_ids[: len(all_ids)] == all_ids[: len(sent_ids)], "feed order, nothing lost in between"
    if queueing == "queue":
        # the k-th heartbeat is due at opened + k * interval: every update produced before that comes first
        heartbeat_number = 0
        seen: set[str] = set()
        for message in sent:
            if message.kind == "heartbeat":
                heartbeat_number += 1
                due = opened + timedelta(seconds=INTERVAL_S * heartbeat_number)
                earlier = {i for moment, batch in produced if moment < due for i in batch}
                assert earlier <= seen
            seen.update(message.execution_ids)
