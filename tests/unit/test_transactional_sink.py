"""The transactional sink: transactions bounded by age and size, and what counts as delivered per mode."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connector.core.records import Headers, OutRecord
from connector.engine.transactions import TransactionalSink
from connector.errors import FatalProducerError

HEADERS: Headers = []


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return int(self.now * 1e9)


class Producer:
    """An inner sink: records are acknowledged when the test says so; a bounded queue."""

    def __init__(self, capacity: int = 1_000) -> None:
        self.capacity = capacity
        self.queued: list[int | None] = []
        self.acknowledge: Callable[[int], None] = lambda _sequence: None

    @property
    def in_flight(self) -> int:
        return len(self.queued)

    def try_publish(self, record: OutRecord, headers: Headers, sequence: int | None) -> bool:
        del record, headers
        if len(self.queued) >= self.capacity:
            return False
        self.queued.append(sequence)
        return True

    def poll(self) -> None:
        pass

    def ack_all(self) -> None:
        queued, self.queued = self.queued, []
        for sequence in queued:
            if sequence is not None:
                self.acknowledge(sequence)


class Transactions:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.log: list[str] = []
        self.commit_running = False
        self.finish_commit = False
        self.fail_with: str | None = None

    def begin(self) -> None:
        assert not self.commit_running
        self.log.append("begin")

    def start_commit(self) -> None:
        self.log.append("commit")
        self.commit_running = True

    def commit_finished(self) -> bool:
        if self.fail_with is not None:
            raise FatalProducerError(self.fail_with)
        if not (self.commit_running and self.finish_commit):
            return False
        self.producer.ack_all()  # a commit flushes the transaction's records first
        self.commit_running = False
        self.finish_commit = False
        return True


def record() -> OutRecord:
    return OutRecord("t", b"k", b"v", "execution", "stream", "s", None, None, "e")


def sink_for(*, exactly_once: bool) -> tuple[TransactionalSink, Producer, Transactions, Clock, list[int]]:
    clock, producer = Clock(), Producer()
    transactions = Transactions(producer)
    acknowledged: list[int] = []
    sink = TransactionalSink(
        transactions,
        clock,
        acknowledge=acknowledged.append,
        exactly_once=exactly_once,
        interval_s=0.1,
        max_records=3,
    )
    producer.acknowledge = sink.acknowledged
    sink.wrap(producer)
    return sink, producer, transactions, clock, acknowledged


def test_exactly_once_counts_a_record_as_delivered_only_once_its_transaction_committed() -> None:
    sink, producer, transactions, clock, acknowledged = sink_for(exactly_once=True)
    assert sink.try_publish(record(), HEADERS, 1)
    assert sink.try_publish(record(), HEADERS, 2)
    producer.ack_all()  # Kafka acknowledged both: not committed yet
    sink.poll()
    assert acknowledged == []
    assert sink.in_flight == 2, "an uncommitted transaction's records are still in flight"
    clock.now = 0.1
    sink.poll()
    assert transactions.log == ["begin", "commit"]
    assert not sink.try_publish(record(), HEADERS, 3), "nothing is produced while a commit runs"
    transactions.finish_commit = True
    sink.poll()
    assert acknowledged == [1, 2]
    assert sink.in_flight == 0
    assert sink.try_publish(record(), HEADERS, 3)
    assert transactions.log == ["begin", "commit", "begin"]


def test_at_least_once_counts_a_record_as_delivered_when_kafka_acknowledged_it_but_commits_too() -> None:
    sink, producer, transactions, clock, acknowledged = sink_for(exactly_once=False)
    assert sink.try_publish(record(), HEADERS, 1)
    producer.ack_all()
    assert acknowledged == [1]
    assert sink.in_flight == 1, "a stop must still wait for the transaction's commit"
    clock.now = 0.2
    sink.poll()
    transactions.finish_commit = True
    sink.poll()
    assert sink.in_flight == 0
    assert transactions.log == ["begin", "commit"]


def test_a_transaction_is_committed_once_it_holds_max_records_whatever_its_age() -> None:
    sink, producer, transactions, _clock, _acknowledged = sink_for(exactly_once=True)
    for sequence in range(3):
        assert sink.try_publish(record(), HEADERS, sequence)
    producer.ack_all()
    sink.poll()
    assert transactions.log == ["begin", "commit"]


def test_the_commit_is_asked_for_only_once_every_record_of_it_is_acknowledged() -> None:
    # librdkafka's commit flushes, and a flush runs delivery callbacks on the calling thread (the
    # commit's worker): nothing may be left to deliver then, or acknowledgements race the engine's.
    sink, producer, transactions, clock, acknowledged = sink_for(exactly_once=False)
    assert sink.try_publish(record(), HEADERS, 1)
    clock.now = 0.1
    sink.poll()
    assert transactions.log == ["begin"], "a record of the transaction is not acknowledged yet"
    assert not sink.try_publish(record(), HEADERS, 2), "the transaction is closed: no record is taken"
    producer.ack_all()  # served by the engine's own poll
    assert acknowledged == [1]
    sink.poll()
    assert transactions.log == ["begin", "commit"]
    transactions.finish_commit = True
    sink.poll()
    assert sink.in_flight == 0
    assert sink.try_publish(record(), HEADERS, 2)


def test_no_transaction_is_begun_or_committed_while_nothing_is_published() -> None:
    sink, _producer, transactions, clock, _acknowledged = sink_for(exactly_once=True)
    clock.now = 10.0
    sink.poll()
    assert transactions.log == []
    assert sink.in_flight == 0


def test_a_failed_commit_is_fatal_and_nothing_it_held_counts_as_delivered() -> None:
    sink, producer, transactions, clock, acknowledged = sink_for(exactly_once=True)
    assert sink.try_publish(record(), HEADERS, 1)
    producer.ack_all()
    clock.now = 0.1
    sink.poll()
    transactions.fail_with = "fenced"
    with pytest.raises(FatalProducerError, match="fenced"):
        sink.poll()
    assert acknowledged == []
