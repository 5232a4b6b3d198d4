"""A fake Kafka for the simulation, with librdkafka's producer semantics on a virtual clock.

- topics of partitions; a record's partition is the CRC-32 of its key (the same key, the same
  partition, so one order's records keep their relative order in one log);
- :class:`SimProducer` (the engine's ``RecordSink``): a bounded queue (``try_publish`` says False
  when full, never blocks, never drops), one batch in flight per partition, acknowledged after a
  random latency, so acknowledgements interleave across partitions but never reorder within one;
  while the cluster is down nothing is sent or acknowledged (idempotent retries: nothing is lost);
- a record larger than ``max_record_bytes`` is refused at hand-over (``RecordRefused``);
- a permanent batch error with the gapless guarantee (the connector's setting) stops the producer:
  the error is fatal and every queued and in-flight record is purged, none written;
- ``message_timeout_s`` (None: librdkafka's 0, infinite, the connector's setting): a queued record
  older than that fails (``_MSG_TIMED_OUT``), an in-flight batch fails too (possibly persisted), and
  the ones behind them go on — the gap librdkafka's documentation describes (1, 4, 5), kept so a
  test can show what the infinite timeout prevents;
- a crash: each partition's in-flight batch is written or not (a coin), everything queued is lost.

Transactions (:class:`SimTransactions`, the engine's ``Transactions`` port), as the broker and its
transaction coordinator keep them:

- a producer has a ``transactional.id`` and an epoch; :meth:`SimTransactions.initialise` (a start-up
  step; ``KafkaUnavailable`` while the cluster is down) bumps the epoch of its id and aborts that
  id's open transaction, whose records already appended are then aborted;
- every record is appended inside a transaction and tagged with it; a commit completes once every
  record of the transaction is acknowledged, plus a coordinator latency, and never while the
  cluster is down; then its records are committed;
- a crash leaves the open transaction open (its records neither committed nor aborted) until the
  next ``initialise`` of the id aborts it; a crash while the commit request (EndTxn) is with the
  coordinator commits it or not (a coin);
- a producer whose epoch is older than the newest of its id is fenced: once it reaches the cluster,
  its next begin, hand-over, poll or commit raises ``FatalProducerError`` (the real "fenced" line),
  and nothing it sends after the newer ``initialise`` is appended.

The checkpoint store and the dedup seeder read these logs the way the real ones read Kafka, with
``isolation.level=read_committed``: the last committed checkpoint by key, and every committed record
since the first one stamped at or after a time. (The last stable offset is not modelled: a read sees
the committed records past an open transaction too. Every read comes after ``initialise``, which
leaves no open transaction of the id but a zombie's, aborted by it.)
"""

from __future__ import annotations

import random
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from connector.core.dedup import RecentExecutionIds
from connector.core.records import Headers, OutRecord
from connector.core.venue_time import NANOS_PER_MILLI
from connector.engine.ports import Checkpoint
from connector.errors import FatalProducerError, KafkaUnavailable, RecordRefused
from connector.kafka.checkpoints import KafkaCheckpointStore
from connector.kafka.transactions import fenced_message
from tests.simulation.clock import SimClock

BATCH_RECORDS = 500
COORDINATOR_LATENCY_S = (0.002, 0.050)  # EndTxn: the coordinator writes its markers


class TransactionState(StrEnum):
    """Where a transaction stands."""

    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"


@dataclass(slots=True, eq=False)
class SimTransaction:
    """One transaction of one producer (``producer``: the world's number for the process)."""

    transactional_id: str
    epoch: int
    producer: int
    state: TransactionState = TransactionState.OPEN
    ended_serial: int = 0  # the cluster's serial when it committed or aborted


@dataclass(frozen=True, slots=True)
class Stored:
    """A record in a partition's log (``serial``: the cluster's order of events when it was appended)."""

    offset: int
    key: bytes
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int
    appended_at: float
    transaction: SimTransaction | None = None
    producer: int = 0
    serial: int = 0

    @property
    def committed(self) -> bool:
        """Whether a ``read_committed`` consumer sees it (committed, or written outside a transaction)."""
        return self.transaction is None or self.transaction.state is TransactionState.COMMITTED


@dataclass(slots=True)
class _Pending:
    record: OutRecord
    headers: Headers
    sequence: int | None
    enqueued_at: float
    transaction: SimTransaction | None = None


@dataclass(slots=True)
class _Partition:
    queue: deque[_Pending] = field(default_factory=deque)
    batch: list[_Pending] = field(default_factory=list)
    ack_at: float = 0.0


class SimKafka:
    """The cluster: logs per partition, and when it is down."""

    def __init__(self, partitions: dict[str, int], clock: SimClock) -> None:
        self.partitions = partitions
        self.logs: dict[str, list[list[Stored]]] = {t: [[] for _ in range(n)] for t, n in partitions.items()}
        self.outages: list[tuple[float, float]] = []  # the whole cluster
        self.leader_outages: list[tuple[float, float, str, int]] = []  # one partition without a leader
        self.serial = 0  # counts appends, commits, aborts and initialisations: their order
        self.epochs: dict[str, int] = {}  # transactional id -> its newest epoch
        self.open_transactions: dict[str, SimTransaction] = {}
        self.initialisations: list[tuple[int, int]] = []  # (producer, serial), in order
        self.aborted_records = 0
        self._clock = clock

    def down(self, at: float | None = None) -> bool:
        """Whether the cluster is down at ``at`` (default: now)."""
        now = self._clock.monotonic() if at is None else at
        return any(start <= now < end for start, end in self.outages)

    def partition_down(self, topic: str, partition: int, now: float) -> bool:
        """Whether a partition takes no writes at ``now`` (the cluster, or its leader, is down)."""
        return self.down(now) or any(
            start <= now < end and (t, p) == (topic, partition) for start, end, t, p in self.leader_outages
        )

    def up_again_at(self, now: float, topic: str = "", partition: int = -1) -> float:
        """When outages covering ``now`` (the cluster's, or the partition's) end (``now`` if none does)."""
        ends = [end for start, end in self.outages if start <= now < end]
        ends += [
            end
            for start, end, t, p in self.leader_outages
            if start <= now < end and (t, p) == (topic, partition)
        ]
        return max(ends, default=now)

    def partition_of(self, topic: str, key: bytes) -> int:
        """The partition a key goes to."""
        return zlib.crc32(key) % self.partitions[topic]

    def append(self, pending: _Pending, now: float, producer: int = 0) -> None:
        """Write one record to its log."""
        record = pending.record
        log = self.logs[record.topic][self.partition_of(record.topic, record.key)]
        timestamp_ms = (record.timestamp_ns or self._clock.time_ns()) // NANOS_PER_MILLI
        self.serial += 1
        log.append(
            Stored(
                len(log),
                record.key,
                record.value,
                dict(pending.headers),
                timestamp_ms,
                now,
                pending.transaction,
                producer,
                self.serial,
            )
        )

    def records(self, topic: str) -> list[list[Stored]]:
        """Every partition's log of a topic (what a ``read_uncommitted`` consumer sees)."""
        return self.logs[topic]

    def committed_records(self, topic: str) -> list[list[Stored]]:
        """Every partition's log of a topic as a ``read_committed`` consumer sees it."""
        return [[stored for stored in log if stored.committed] for log in self.logs[topic]]

    # --------------------------------------------------------------------- the coordinator

    def initialise(self, transactional_id: str, producer: int) -> int:
        """``InitProducerId``: abort the id's open transaction, fence older epochs; the new epoch.

        Raises:
            KafkaUnavailable: the cluster is down.
        """
        if self.down():
            msg = "cannot initialise transactions: Kafka is not reachable (simulated outage)"
            raise KafkaUnavailable(msg)
        epoch = self.epochs.get(transactional_id, -1) + 1
        self.epochs[transactional_id] = epoch
        open_transaction = self.open_transactions.pop(transactional_id, None)
        if open_transaction is not None:
            self.end(open_transaction, TransactionState.ABORTED)
        self.serial += 1
        self.initialisations.append((producer, self.serial))
        return epoch

    def fenced(self, transactional_id: str, epoch: int | None) -> bool:
        """Whether a producer of this id and epoch has been fenced by a newer one."""
        return epoch is not None and self.epochs.get(transactional_id, -1) > epoch

    def begin(self, transaction: SimTransaction) -> None:
        """A transaction is open (its first record registers it with the coordinator)."""
        self.open_transactions[transaction.transactional_id] = transaction

    def end(self, transaction: SimTransaction, state: TransactionState) -> None:
        """Commit or abort a transaction (the coordinator's markers)."""
        assert transaction.state is TransactionState.OPEN, transaction
        self.serial += 1
        transaction.state = state
        transaction.ended_serial = self.serial
        if self.open_transactions.get(transaction.transactional_id) is transaction:
            del self.open_transactions[transaction.transactional_id]
        if state is TransactionState.ABORTED:
            self.aborted_records += sum(
                1 for logs in self.logs.values() for log in logs for s in log if s.transaction is transaction
            )


class SimProducer:
    """The engine's record sink over :class:`SimKafka` (one per connector process)."""

    def __init__(
        self,
        kafka: SimKafka,
        on_acknowledged: Callable[[int], None],
        clock: SimClock,
        rng: random.Random,
        *,
        capacity: int,
        max_record_bytes: int = 1_000_000,
        message_timeout_s: float | None = None,
        ack_latency_s: tuple[float, float] = (0.001, 0.030),
        transactional_id: str = "sim",
        number: int = 0,
    ) -> None:
        self._kafka = kafka
        self.transactional_id = transactional_id
        self.number = number  # the world's number for the process (tags what it appends)
        self.epoch: int | None = None  # set by ``initialise``
        self.transaction: SimTransaction | None = None  # the open one
        self._acknowledge = on_acknowledged
        self._clock = clock
        self._rng = rng
        self._capacity = capacity
        self._max_record_bytes = max_record_bytes
        self._timeout_s = message_timeout_s
        self._ack_latency_s = ack_latency_s
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._acknowledged: deque[int] = deque()
        self._count = 0
        self._fatal: str | None = None  # librdkafka's fatal error: the producer stops, nothing more is sent
        self._failed_delivery: str | None = None  # a delivery report with an error: the engine stops
        self._permanent_error_due = False
        self.permanent_error_injected = False
        self.in_flight_execution_ids: set[str] = set()

    # --------------------------------------------------------------------- the RecordSink port

    @property
    def in_flight(self) -> int:
        return self._count

    def try_publish(self, record: OutRecord, headers: Headers, sequence: int | None) -> bool:
        self.check_fenced()
        if self._fatal is not None:
            raise FatalProducerError(self._fatal)
        transaction = self.transaction
        if transaction is None or transaction.state is not TransactionState.OPEN:
            # librdkafka: a transactional producer refuses a record outside a transaction (_STATE)
            msg = "a record produced outside a transaction"
            raise AssertionError(msg)
        if len(record.value) + len(record.key) > self._max_record_bytes:
            msg = f"a {len(record.value)}-byte record for {record.topic} is larger than the producer takes"
            raise RecordRefused(msg)
        if self._count >= self._capacity:
            return False
        partition = self._partitions.setdefault(
            (record.topic, self._kafka.partition_of(record.topic, record.key)), _Partition()
        )
        partition.queue.append(_Pending(record, headers, sequence, self._clock.monotonic(), transaction))
        self._count += 1
        return True

    def poll(self) -> None:
        self.tick()
        self.check_fenced()
        while self._acknowledged:
            self._acknowledge(self._acknowledged.popleft())
        failure = self._fatal or self._failed_delivery
        if failure is not None:
            raise FatalProducerError(failure)

    # --------------------------------------------------------------------- the simulated broker

    @property
    def delivery_failed(self) -> bool:
        """Whether a delivery failed (a permanent error, a timeout): the engine stops on it."""
        return self._failed_delivery is not None or self.permanent_error_injected

    @property
    def failed(self) -> bool:
        """Whether the producer hit a fatal error (fenced, a permanent error): nothing more happens."""
        return self._fatal is not None

    @property
    def fenced(self) -> bool:
        """Whether a newer producer with the same transactional id has initialised."""
        return self._kafka.fenced(self.transactional_id, self.epoch)

    def check_fenced(self) -> None:
        """Raise the fencing error once this producer reaches the cluster and learns it was fenced.

        Raises:
            FatalProducerError: fenced (librdkafka's fatal ``_FENCED``: the producer stops).
        """
        if self._fatal is None and self.fenced and not self._kafka.down():
            self._fatal = fenced_message(self.transactional_id)
            self._purge()
        if self._fatal is not None and self.fenced:
            raise FatalProducerError(self._fatal)

    def _purge(self) -> None:
        for partition in self._partitions.values():
            partition.batch = []
            partition.queue.clear()
        self._count = 0

    def inject_permanent_error(self) -> None:
        """The next batch sent fails with a permanent error (INVALID_RECORD)."""
        self._permanent_error_due = True
        self.permanent_error_injected = True

    def next_event(self) -> float | None:
        """When this producer has something to do next (a send or an acknowledgement)."""
        now = self._clock.monotonic()
        times = []
        for (topic, number), partition in self._partitions.items():
            if partition.batch:
                times.append(max(partition.ack_at, self._kafka.up_again_at(now, topic, number)))
            elif partition.queue:
                times.append(self._kafka.up_again_at(now, topic, number))
                if self._timeout_s is not None:
                    times.append(partition.queue[0].enqueued_at + self._timeout_s)
        return min(times) if times else None

    def tick(self) -> None:
        """Send, acknowledge and time out what is due now."""
        now = self._clock.monotonic()
        if self._fatal is not None:
            return
        for (topic, number), partition in self._partitions.items():
            self._expire(partition, now)
            if self._kafka.partition_down(topic, number, now):
                if partition.batch:
                    partition.ack_at = max(partition.ack_at, now + 0.001)  # no answer while it is down
                continue
            if partition.batch and partition.ack_at <= now:
                if self.fenced:  # the broker refuses an older epoch: nothing of it is appended
                    self.check_fenced()  # raises
                for pending in partition.batch:
                    self._kafka.append(pending, now, self.number)
                    if pending.sequence is not None:
                        self._acknowledged.append(pending.sequence)
                self._count -= len(partition.batch)
                partition.batch = []
            if not partition.batch and partition.queue:
                if self._permanent_error_due:
                    self._permanent_error_due = False
                    self._fatal = "delivery failed: INVALID_RECORD (gap-less guarantee: the producer stops)"
                    return
                for _ in range(min(BATCH_RECORDS, len(partition.queue))):
                    partition.batch.append(partition.queue.popleft())
                partition.ack_at = now + self._rng.uniform(*self._ack_latency_s)

    def _expire(self, partition: _Partition, now: float) -> None:
        if self._timeout_s is None:
            return
        batch = partition.batch
        if batch and now >= batch[0].enqueued_at + self._timeout_s and partition.ack_at > now:
            # A request timed out in flight: possibly persisted (a coin), reported failed either way;
            # librdkafka bumps the epoch and sends what is queued behind it.
            if self._rng.random() < 0.5 and not self.fenced:
                for pending in batch:
                    self._kafka.append(pending, now, self.number)
            self._count -= len(batch)
            partition.batch = []
            self._failed_delivery = self._failed_delivery or "delivery failed: _MSG_TIMED_OUT (in flight)"
        while partition.queue and now >= partition.queue[0].enqueued_at + self._timeout_s:
            partition.queue.popleft()
            self._count -= 1
            # librdkafka reports it and goes on with the next queued record: the gap the infinite
            # timeout prevents (the connector stops on the report, but what was sent meanwhile lands)
            self._failed_delivery = self._failed_delivery or "delivery failed: _MSG_TIMED_OUT"

    def crash(self) -> None:
        """The process died: in-flight batches are written or not, queued records are lost."""
        now = self._clock.monotonic()
        for partition in self._partitions.values():
            for pending in [*partition.batch, *partition.queue]:
                if pending.record.execution_id:
                    self.in_flight_execution_ids.add(pending.record.execution_id)
            if (
                partition.batch
                and not self._kafka.down(now)
                and self._fatal is None
                and not self.fenced
                and self._rng.random() < 0.5
            ):
                for pending in partition.batch:
                    self._kafka.append(pending, now, self.number)
            partition.batch = []
            partition.queue.clear()
        self._count = 0


class SimTransactions:
    """The engine's ``Transactions`` port over one :class:`SimProducer` and the cluster's coordinator."""

    def __init__(
        self,
        producer: SimProducer,
        kafka: SimKafka,
        clock: SimClock,
        rng: random.Random,
        *,
        coordinator_latency_s: tuple[float, float] = COORDINATOR_LATENCY_S,
    ) -> None:
        self._producer = producer
        self._kafka = kafka
        self._clock = clock
        self._rng = rng
        self._latency_s = coordinator_latency_s
        self._committing: SimTransaction | None = None
        self._end_txn_at: float | None = None  # the commit request is with the coordinator from then

    def initialise(self) -> None:
        """``init_transactions`` (a start-up step): a new epoch for the id, its open transaction aborted.

        Raises:
            KafkaUnavailable: the cluster is down (the engine retries).
        """
        producer = self._producer
        producer.epoch = self._kafka.initialise(producer.transactional_id, producer.number)
        producer.transaction = None

    def begin(self) -> None:
        """Begin a transaction.

        Raises:
            FatalProducerError: fenced by a newer instance.
        """
        producer = self._producer
        producer.check_fenced()
        assert producer.epoch is not None, "begin_transaction before init_transactions"
        assert producer.transaction is None, "begin_transaction while one is open"
        transaction = SimTransaction(producer.transactional_id, producer.epoch, producer.number)
        producer.transaction = transaction
        self._kafka.begin(transaction)

    def start_commit(self) -> None:
        """Start committing the open transaction: flush its records, then EndTxn to the coordinator."""
        transaction = self._producer.transaction
        assert transaction is not None, "commit_transaction without a transaction"
        self._committing = transaction
        self._end_txn_at = None

    def commit_finished(self) -> bool:
        """Whether the commit completed (every record acknowledged, then the coordinator's latency).

        Raises:
            FatalProducerError: fenced by a newer instance.
        """
        transaction = self._committing
        if transaction is None:
            return False
        producer = self._producer
        producer.check_fenced()
        if producer.in_flight or self._kafka.down():
            return False  # nothing is produced while a commit runs: these are the transaction's
        now = self._clock.monotonic()
        if self._end_txn_at is None:
            self._end_txn_at = now + self._rng.uniform(*self._latency_s)
        if now < self._end_txn_at:
            return False
        self._complete(transaction)
        return True

    def next_event(self) -> float | None:
        """When the commit running may complete (None: none runs, or it waits for records)."""
        if self._committing is None or self._producer.in_flight or self._producer.failed:
            return None
        now = self._clock.monotonic()
        if self._kafka.down():
            return self._kafka.up_again_at(now)
        return self._end_txn_at if self._end_txn_at is not None else now

    def crash(self) -> None:
        """The process died: a commit whose EndTxn reached the coordinator completes or not (a coin)."""
        transaction = self._committing
        if (
            transaction is not None
            and self._end_txn_at is not None
            and not self._kafka.down()
            and not self._producer.fenced
            and self._rng.random() < 0.5
        ):
            self._complete(transaction)
        self._committing = None

    def _complete(self, transaction: SimTransaction) -> None:
        self._kafka.end(transaction, TransactionState.COMMITTED)
        self._committing = None
        self._end_txn_at = None
        self._producer.transaction = None


class SimCheckpointStore(KafkaCheckpointStore):
    """The real checkpoint record and decoding, reading the simulated checkpoint topic (read_committed)."""

    def __init__(self, kafka: SimKafka, *, topic: str, connector: str, subscription: str) -> None:
        super().__init__(
            bootstrap_servers="sim:9092",
            properties={},
            topic=topic,
            connector=connector,
            subscription=subscription,
        )
        self._kafka = kafka

    def read(self) -> Checkpoint | None:
        if self._kafka.down():
            msg = "cannot reach Kafka (simulated outage)"
            raise KafkaUnavailable(msg)
        last: bytes | None = None
        for log in self._kafka.committed_records(self.topic):
            for stored in log:
                if stored.key == self.key:
                    last = stored.value
        return None if last is None else self.decode(last)


class SimSeeder:
    """Seeds the recent-ID set from the simulated executions topic, by time like the real seeder.

    It reads committed records only (``read_committed``), as the real one does.
    """

    def __init__(self, kafka: SimKafka, topic: str) -> None:
        self._kafka = kafka
        self._topic = topic

    def seed(self, recent_ids: RecentExecutionIds, since_ns: int | None) -> int:
        if self._kafka.down():
            msg = "cannot reach Kafka (simulated outage)"
            raise KafkaUnavailable(msg)
        recent_ids.clear()
        for log in self._kafka.committed_records(self._topic):
            if since_ns is None:
                start = max(0, len(log) - recent_ids.capacity)
            else:  # offsets_for_times: the first record stamped at or after the time
                since_ms = since_ns // NANOS_PER_MILLI
                start = next((i for i, s in enumerate(log) if s.timestamp_ms >= since_ms), len(log))
            for stored in log[start:]:
                execution_id = stored.headers.get("execution_id")
                if execution_id:
                    recent_ids.add(execution_id.decode())
        return len(recent_ids)


def decoded_headers(stored: Stored) -> dict[str, Any]:
    """A stored record's headers as text."""
    return {name: value.decode(errors="replace") for name, value in stored.headers.items()}
