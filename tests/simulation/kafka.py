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

The checkpoint store and the dedup seeder read these logs the way the real ones read Kafka:
the last checkpoint by key, and every record since the first one stamped at or after a time.
"""

from __future__ import annotations

import random
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connector.core.dedup import RecentExecutionIds
from connector.core.records import Headers, OutRecord
from connector.core.venue_time import NANOS_PER_MILLI
from connector.core.watermark import Position
from connector.errors import FatalProducerError, KafkaUnavailable, RecordRefused, RuntimeFailure
from connector.kafka.checkpoints import KafkaCheckpointStore
from tests.simulation.clock import SimClock

BATCH_RECORDS = 500


@dataclass(frozen=True, slots=True)
class Stored:
    """A record in a partition's log."""

    offset: int
    key: bytes
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int
    appended_at: float


@dataclass(slots=True)
class _Pending:
    record: OutRecord
    headers: Headers
    sequence: int | None
    enqueued_at: float


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

    def append(self, pending: _Pending, now: float) -> None:
        """Write one record to its log."""
        record = pending.record
        log = self.logs[record.topic][self.partition_of(record.topic, record.key)]
        timestamp_ms = (record.timestamp_ns or self._clock.time_ns()) // NANOS_PER_MILLI
        log.append(Stored(len(log), record.key, record.value, dict(pending.headers), timestamp_ms, now))

    def records(self, topic: str) -> list[list[Stored]]:
        """Every partition's log of a topic."""
        return self.logs[topic]


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
    ) -> None:
        self._kafka = kafka
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
        self.in_flight_execution_ids: set[str] = set()

    # --------------------------------------------------------------------- the RecordSink port

    @property
    def in_flight(self) -> int:
        return self._count

    def try_publish(self, record: OutRecord, headers: Headers, sequence: int | None) -> bool:
        if self._fatal is not None:
            raise FatalProducerError(self._fatal)
        if len(record.value) + len(record.key) > self._max_record_bytes:
            msg = f"a {len(record.value)}-byte record for {record.topic} is larger than the producer takes"
            raise RecordRefused(msg)
        if self._count >= self._capacity:
            return False
        partition = self._partitions.setdefault(
            (record.topic, self._kafka.partition_of(record.topic, record.key)), _Partition()
        )
        partition.queue.append(_Pending(record, headers, sequence, self._clock.monotonic()))
        self._count += 1
        return True

    def poll(self) -> None:
        self.tick()
        while self._acknowledged:
            self._acknowledge(self._acknowledged.popleft())
        failure = self._fatal or self._failed_delivery
        if failure is not None:
            raise FatalProducerError(failure)

    # --------------------------------------------------------------------- the simulated broker

    def inject_permanent_error(self) -> None:
        """The next batch sent fails with a permanent error (INVALID_RECORD)."""
        self._permanent_error_due = True

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
                for pending in partition.batch:
                    self._kafka.append(pending, now)
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
            if self._rng.random() < 0.5:
                for pending in batch:
                    self._kafka.append(pending, now)
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
                and self._rng.random() < 0.5
            ):
                for pending in partition.batch:
                    self._kafka.append(pending, now)
            partition.batch = []
            partition.queue.clear()
        self._count = 0


class SimCheckpointStore(KafkaCheckpointStore):
    """The real checkpoint record and decoding, reading the simulated checkpoint topic."""

    def __init__(self, kafka: SimKafka, *, topic: str, connector: str, subscription: str) -> None:
        super().__init__(
            bootstrap_servers="sim:9092",
            properties={},
            topic=topic,
            connector=connector,
            subscription=subscription,
        )
        self._kafka = kafka

    def read(self) -> Position | None:
        if self._kafka.down():
            msg = "cannot reach Kafka (simulated outage)"
            raise KafkaUnavailable(msg)
        last: bytes | None = None
        for log in self._kafka.records(self.topic):
            for stored in log:
                if stored.key == self.key:
                    last = stored.value
        if last is None:
            return None
        try:
            record = self._decode(last)
        except (ValueError, TypeError) as exc:
            msg = f"cannot decode the last checkpoint: {exc}"
            raise RuntimeFailure(msg) from None
        return Position(int(record["watermark"]), str(record["last_execution_id"]), str(record["session_id"]))


class SimSeeder:
    """Seeds the recent-ID set from the simulated executions topic, by time like the real seeder."""

    def __init__(self, kafka: SimKafka, topic: str) -> None:
        self._kafka = kafka
        self._topic = topic

    def seed(self, recent_ids: RecentExecutionIds, since_ns: int | None) -> int:
        if self._kafka.down():
            msg = "cannot reach Kafka (simulated outage)"
            raise KafkaUnavailable(msg)
        recent_ids.clear()
        for log in self._kafka.records(self._topic):
            if since_ns is None:
                start = max(0, len(log) - recent_ids.capacity)
            else:  # offsets_for_times: the first record stamped at or after the time
                since_ms = since_ns // NANOS_PER_MILLI
                start = next((s.offset for s in log if s.timestamp_ms >= since_ms), len(log))
            for stored in log[start:]:
                execution_id = stored.headers.get("execution_id")
                if execution_id:
                    recent_ids.add(execution_id.decode())
        return len(recent_ids)


def decoded_headers(stored: Stored) -> dict[str, Any]:
    """A stored record's headers as text."""
    return {name: value.decode(errors="replace") for name, value in stored.headers.items()}
