"""Fixes reverted and guarantees broken: the simulation must find every one of them.

1-5 are issue 12's observations, each its fix reverted (5 can no longer happen once every record is
in a transaction: ``test_schedules.MASKED`` says why). 6-9 break what issue 15's transactions
promise: exactly_once counting a record at Kafka's acknowledgement instead of its commit; the dedup
seed reading records that a crash left in an aborted transaction; a fenced instance carrying on; and
no ``init_transactions`` at start (nothing aborted, nothing fenced). 10-12 break what the Drop Copy
feed promises (``connector/engine/dropcopy.py``): a batch's token confirmed as soon as the batch is
emitted, not once Kafka acknowledged it; a refused token followed by a live stream, skipping the
resume by time and the gap; and Drop Copy's records proving their ``transact_time`` while the order
stream, not Drop Copy, owns F.

Each mutation is a context manager that patches the real engine (or the fake Kafka) back to the
behaviour a review found unsafe; ``test_schedules`` runs seeds until the invariants fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.dedup import RecentExecutionIds
from connector.core.mapping import Source
from connector.core.records import Headers, MessageKind, OutRecord
from connector.engine.dropcopy import DropCopyFeed
from connector.engine.frontier import Frontier
from connector.engine.recovery import RecoverySession, RecoveryState
from connector.engine.service import ConnectorService
from connector.engine.transactions import TransactionalSink
from connector.errors import FatalProducerError
from tests.simulation.kafka import SimKafka, SimProducer, SimSeeder, SimTransactions


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


@contextmanager
def exactly_once_acknowledges_at_delivery(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """6: exactly_once passes Kafka's acknowledgement on at once, not when the transaction commits."""

    def acknowledged(self: TransactionalSink, sequence: int) -> None:
        self._acknowledge(sequence)

    monkeypatch.setattr(TransactionalSink, "acknowledged", acknowledged)
    yield


class _Uncommitted:
    """A cluster seen ``read_uncommitted``: the committed view is every record."""

    def __init__(self, kafka: SimKafka) -> None:
        self._kafka = kafka

    def down(self) -> bool:
        return self._kafka.down()

    def committed_records(self, topic: str) -> Any:
        return self._kafka.records(topic)


@contextmanager
def seed_reads_uncommitted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """7: the dedup seed reads ``read_uncommitted``: IDs only an aborted transaction holds count as sent."""
    original = SimSeeder.seed

    def seed(self: SimSeeder, recent_ids: RecentExecutionIds, since_ns: int | None) -> int:
        kafka, self._kafka = self._kafka, _Uncommitted(self._kafka)  # type: ignore[assignment]
        try:
            return original(self, recent_ids, since_ns)
        finally:
            self._kafka = kafka

    monkeypatch.setattr(SimSeeder, "seed", seed)
    yield


@contextmanager
def fenced_instance_carries_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """8: a fenced producer's error is taken for a full queue (retried), not a reason to stop."""
    original_publish, original_poll = TransactionalSink.try_publish, TransactionalSink.poll

    def try_publish(
        self: TransactionalSink, record: OutRecord, headers: Headers, sequence: int | None
    ) -> bool:
        try:
            return original_publish(self, record, headers, sequence)
        except FatalProducerError as exc:
            if "fenced" not in str(exc):
                raise
            return False

    def poll(self: TransactionalSink) -> None:
        try:
            original_poll(self)
        except FatalProducerError as exc:
            if "fenced" not in str(exc):
                raise

    monkeypatch.setattr(TransactionalSink, "try_publish", try_publish)
    monkeypatch.setattr(TransactionalSink, "poll", poll)
    yield


@contextmanager
def no_init_transactions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """9: no ``init_transactions`` at start: a predecessor's transaction stays open, nobody is fenced.

    (librdkafka would refuse to begin a transaction; the fake goes on with the id's current epoch.)
    """

    def initialise(self: SimTransactions) -> None:
        producer = self._producer
        producer.epoch = self._kafka.epochs.setdefault(producer.transactional_id, 0)
        producer.transaction = None

    monkeypatch.setattr(SimTransactions, "initialise", initialise)
    yield


@contextmanager
def dropcopy_token_confirmed_at_emission(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """10: a Drop Copy batch's token is confirmed once its records are emitted, not acknowledged."""
    original = DropCopyFeed._on_response

    def on_response(self: DropCopyFeed, data: bytes, now: float) -> None:
        original(self, data, now)
        while self._pending:
            _, self._confirmed_token, self._confirmed_time_ns = self._pending.popleft()

    monkeypatch.setattr(DropCopyFeed, "_on_response", on_response)
    yield


@contextmanager
def dropcopy_refused_token_goes_live(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """11: a refused Drop Copy token opens the stream live: no resume by time, no gap declared."""

    def resume_refused(self: DropCopyFeed, mode: str, ended: Any, now: float) -> None:
        self._refused |= {"token", "time"}
        self._reconnect_at = now

    monkeypatch.setattr(DropCopyFeed, "_resume_refused", resume_refused)
    monkeypatch.setattr(DropCopyFeed, "_declare_unreplayable", lambda self: None)
    yield


class _ProvingHost:
    """The feed's host, handed Drop Copy executions that prove their ``transact_time`` (mutation 12)."""

    def __init__(self, host: Any) -> None:
        self._host = host

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    def emit(self, record: OutRecord, *, relaxed: bool = False) -> None:
        if (
            record.source == Source.DROP_COPY.value.lower()
            and record.execution_id
            and record.proof_ns is None
        ):
            record = record._replace(proof_ns=record.timestamp_ns)
        self._host.emit(record, relaxed=relaxed)


@contextmanager
def dropcopy_proves_beside_the_order_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """12: with the order stream a source too, Drop Copy's records prove their ``transact_time``."""
    original = DropCopyFeed.__init__

    def init(self: DropCopyFeed, **kwargs: Any) -> None:
        original(self, **kwargs)
        self._host = _ProvingHost(self._host)

    monkeypatch.setattr(DropCopyFeed, "__init__", init)
    yield


MUTATIONS = {
    "1 first message not a snapshot": (first_message_taken_as_recovered, None),
    "2 checkpoint past an unacknowledged backfill": (frontier_before_the_backfill_is_acknowledged, None),
    "3 heartbeat ahead of a backlog": (heartbeats_prove_their_send_time, None),
    "4 GapDetected dropped silently": (gap_records_fire_and_forget, None),
    "5 reordered history after a failed delivery": (restart_after_the_producer_drained, 2.0),
    "6 exactly_once acknowledges at delivery": (exactly_once_acknowledges_at_delivery, None),
    "7 dedup seed reads uncommitted records": (seed_reads_uncommitted, None),
    "8 a fenced instance carries on": (fenced_instance_carries_on, None),
    "9 no init_transactions at start": (no_init_transactions, None),
    "10 drop copy token confirmed at emission": (dropcopy_token_confirmed_at_emission, None),
    "11 drop copy refused token goes live without a gap": (dropcopy_refused_token_goes_live, None),
    "12 drop copy proves its time beside the order stream": (dropcopy_proves_beside_the_order_stream, None),
}
