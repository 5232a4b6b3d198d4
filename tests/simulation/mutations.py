"""The issue's observations 1-5, each its fix reverted: the simulation must find every one of them.

Each mutation is a context manager that patches the real engine (or the fake Kafka's configuration)
back to the behaviour a review found unsafe; ``test_schedules`` runs seeds until the invariants fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.records import MessageKind
from connector.engine.frontier import Frontier
from connector.engine.recovery import RecoverySession, RecoveryState
from connector.engine.service import ConnectorService
from tests.simulation.kafka import SimProducer


@contextmanager
def first_message_taken_as_recovered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Observation 1: a stream opening with a heartbeat or updates counts as recovered at once."""
    original = RecoverySession.on_message

    def on_message(self: RecoverySession, message: Any, now: float, now_ns: int) -> None:
        if self.state is RecoveryState.AWAITING_FIRST_MESSAGE and message.kind is not MessageKind.SNAPSHOT:
            self._out.live(message, relaxed=False)
            self._out.recovered(self._out.last_sequence(), None)
            return
        original(self, message, now, now_ns)

    monkeypatch.setattr(RecoverySession, "on_message", on_message)
    yield


@contextmanager
def frontier_before_the_backfill_is_acknowledged(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Observation 2: F follows the watermark once the backfill is published, not acknowledged."""
    monkeypatch.setattr(Frontier, "recovered", property(lambda self: self._barrier is not None))
    yield


@contextmanager
def heartbeats_prove_their_send_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Observation 3: a heartbeat moves the watermark to its send time, backlog or not."""
    original = ConnectorService._on_response

    def on_response(self: ConnectorService, response: bytes, now: float) -> None:
        original(self, response, now)
        parsed = trading_pb2.CreateOrderSubscriptionResponse.FromString(response)  # the stream's bytes
        if parsed.HasField("heartbeat") and parsed.HasField("processed_sent_time"):
            stamp = parsed.processed_sent_time
            sequence = self._watermark.arrive(stamp.seconds * 10**9 + stamp.nanos)
            self._watermark.acknowledge(sequence)

    monkeypatch.setattr(ConnectorService, "_on_response", on_response)
    yield


@contextmanager
def gap_records_fire_and_forget(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Observation 4: a GapDetected record is published without an arrival (dropped if Kafka is full)."""

    def declare_gap(self: ConnectorService, gap: Any) -> None:
        self._publish_own(self._decoder.gap_detected(gap, self._session_id, self._clock.time_ns()))

    monkeypatch.setattr(ConnectorService, "declare_gap", declare_gap)
    yield


@contextmanager
def restart_after_the_producer_drained(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Observation 5: a record times out (finite message.timeout.ms); the connector lets what is in
    flight drain before it restarts from F, so a later record of the same order lands first."""
    original = SimProducer.poll

    def poll(self: SimProducer) -> None:
        self.tick()
        failure, self._failed_delivery = self._failed_delivery, None
        original(self)  # acknowledgements of the records that went on after the failed one
        if failure is not None and self.in_flight:
            self._failed_delivery = failure  # remembered, not yet raised: the drain goes on
        elif failure is not None:
            self._failed_delivery = failure
            original(self)  # drained: now the restart

    monkeypatch.setattr(SimProducer, "poll", poll)
    yield


MUTATIONS = {
    "1 first message not a snapshot": (first_message_taken_as_recovered, None),
    "2 checkpoint past an unacknowledged backfill": (frontier_before_the_backfill_is_acknowledged, None),
    "3 heartbeat ahead of a backlog": (heartbeats_prove_their_send_time, None),
    "4 GapDetected dropped silently": (gap_records_fire_and_forget, None),
    "5 reordered history after a failed delivery": (restart_after_the_producer_drained, 2.0),
}
