"""Seeding the recent-ID set from the executions topic, so a restart publishes nothing twice.

A restart re-reads the venue from the resume point minus the backfill margin, so every execution the
executions topic holds from that time on may come again. The seed therefore reads, per partition,
every record appended since the first one stamped at or after that time (record timestamps are the
executions' ``transact_time``), and remembers their ``execution_id`` headers, whatever the value
encoding. Reading by time, not by count, keeps a hot partition's newest IDs even when the keys are
skewed. When the set's capacity is smaller than what the window holds, the newest IDs are kept and a
warning says a restart may republish the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from connector.core.dedup import RecentExecutionIds
from connector.core.venue_time import NANOS_PER_MILLI
from connector.kafka.topic_reader import (
    first_offset_since,
    partition_offsets,
    read_since,
    read_tail,
    reader_consumer,
)

_LOG: Final = logging.getLogger(__name__)

READ_TIMEOUT_S: Final = 60.0
TAIL_POLL_S: Final = 0.2
EXECUTION_ID_HEADER: Final = "execution_id"


class KafkaRecentIdSeeder:
    """Fills the recent-ID set from the executions topic."""

    def __init__(self, *, bootstrap_servers: str, properties: Mapping[str, object], topic: str) -> None:
        """Hold where to read (no I/O yet)."""
        self.bootstrap_servers = bootstrap_servers
        self.properties = properties
        self.topic = topic

    def seed(self, recent_ids: RecentExecutionIds, since_ns: int | None) -> int:
        """Replace the set's contents with the IDs recorded since ``since_ns`` (None: the newest).

        Raises:
            KafkaUnavailable: Kafka does not answer.
            RuntimeFailure: the topic cannot be read.
        """
        recent_ids.clear()
        if since_ns is None:
            messages = read_tail(
                self.bootstrap_servers,
                self.properties,
                self.topic,
                last=recent_ids.capacity,
                timeout_s=READ_TIMEOUT_S,
            )
        else:
            messages = read_since(
                self.bootstrap_servers,
                self.properties,
                self.topic,
                since_ms=since_ns // NANOS_PER_MILLI,
                fallback_last=recent_ids.capacity,
                timeout_s=READ_TIMEOUT_S,
            )
        seen = add_execution_ids(recent_ids, messages)
        if seen > recent_ids.capacity:
            _LOG.warning(
                "%s holds %d executions since the resume point, more than connector.recent_execution_ids "
                "(%d): the oldest may be published again",
                self.topic,
                seen,
                recent_ids.capacity,
            )
        _LOG.info("dedup seeded with %d execution ids from %s", len(recent_ids), self.topic)
        return len(recent_ids)


def add_execution_ids(recent_ids: RecentExecutionIds, messages: Iterable[Message]) -> int:
    """Remember the ``execution_id`` header of each message; return how many messages carried one."""
    seen = 0
    for message in messages:
        headers = message.headers()
        if not isinstance(headers, list):
            continue
        for name, value in headers:
            if name == EXECUTION_ID_HEADER and isinstance(value, bytes) and value:
                recent_ids.add(value.decode(errors="replace"))
                seen += 1
                break
    return seen


class WarmRecentIdSeeder:
    """A standby's seeder: it tails the executions topic while standing by, so a takeover seeds at once.

    :meth:`start_tailing` (on standby) reads, on a thread of its own, every execution committed
    from ``lookback_s`` ago on into the recent-ID set, and keeps following the topic. When the
    instance is elected and its engine asks for the seed (after its transactions were initialised,
    which fenced the old leader and aborted its open transaction, so nothing more can appear behind
    the end offsets), the tail reads up to the topic's current end and stops: the set then holds
    every ID since the tail began, and the seed costs the last few records instead of the whole
    window. A tail that begins before the topic exists (beside the first leader, which makes it) waits
    for it. If the tail began after the point the seed must cover, or the set overflowed (it forgot
    IDs), or the tail failed, the seed is the cold one (:class:`KafkaRecentIdSeeder`).

    The set belongs to the tail thread until the seed has joined it; the engine touches it only after.
    """

    def __init__(self, cold: KafkaRecentIdSeeder, recent_ids: RecentExecutionIds, lookback_s: float) -> None:
        """Tail into ``recent_ids`` (the engine's) from ``lookback_s`` before :meth:`start_tailing`."""
        self._cold = cold
        self._recent_ids = recent_ids
        self._lookback_s = lookback_s
        self._tail: _Tail | None = None
        self.seeded_warm = False  # whether the last seed was the tail's

    def start_tailing(self) -> None:
        """Begin tailing (returns at once)."""
        self._tail = _Tail(self._cold, self._recent_ids, time.time() - self._lookback_s)
        self._tail.start()

    def seed(self, recent_ids: RecentExecutionIds, since_ns: int | None) -> int:
        """The seed: the warm set, caught up to the topic's end, when it covers ``since_ns``; else cold.

        Raises:
            KafkaUnavailable: Kafka does not answer.
            RuntimeFailure: the topic cannot be read.
        """
        tail, self._tail = self._tail, None
        if tail is not None and recent_ids is self._recent_ids:
            caught_up = tail.finish(catch_up=since_ns is not None)
            # Only now: the tail's thread may have moved its start (a partition it could not place).
            covers = since_ns is not None and since_ns // NANOS_PER_MILLI >= tail.since_ms
            if covers and caught_up:
                self.seeded_warm = True
                _LOG.info(
                    "dedup seeded warm: %d execution ids tailed from %s while standing by",
                    len(recent_ids),
                    self._cold.topic,
                )
                return len(recent_ids)
            _LOG.info("the standby's tail does not cover the resume point: seeding from the topic")
        self.seeded_warm = False
        return self._cold.seed(recent_ids, since_ns)


class _Tail(threading.Thread):
    """The tailing thread of :class:`WarmRecentIdSeeder`."""

    def __init__(self, cold: KafkaRecentIdSeeder, recent_ids: RecentExecutionIds, since_s: float) -> None:
        super().__init__(name="standby-tail", daemon=True)
        self._cold = cold
        self._recent_ids = recent_ids
        self.since_ms = int(since_s * 1000)
        self._stopping = threading.Event()
        self._catch_up = False
        self._ends: dict[int, int] | None = None  # set by finish(): read to these, then stop
        self._lock = threading.Lock()
        self.caught_up = False
        self.failed: str | None = None
        self.added = 0

    def finish(self, *, catch_up: bool, timeout_s: float = READ_TIMEOUT_S) -> bool:
        """Stop the tail (after reading to the current end, if ``catch_up``); whether it caught up intact."""
        with self._lock:
            self._catch_up = catch_up
        self._stopping.set()
        self.join(timeout_s)
        if self.is_alive():
            self.failed = "the tail did not catch up in time"
        overflowed = self.added > self._recent_ids.capacity
        return catch_up and self.caught_up and self.failed is None and not overflowed

    def run(self) -> None:
        try:
            self._follow()
        except KafkaException as exc:  # Kafka's trouble only means a cold seed; a bug still shows
            self.failed = str(exc)
            _LOG.warning("the standby's tail of %s failed (%s): a takeover seeds cold", self._cold.topic, exc)

    def _follow(self) -> None:
        consumer = reader_consumer(self._cold.bootstrap_servers, self._cold.properties)
        topic = self._cold.topic
        try:
            partitions = self._partitions(consumer, topic)
            if partitions is None:
                return  # stopped before the topic existed: not caught up, the seed is cold
            positions = self._start(consumer, topic, partitions)  # the next offset to read
            consumer.assign([TopicPartition(topic, p, offset) for p, offset in positions.items()])
            while True:
                message = consumer.poll(TAIL_POLL_S)
                if message is not None:
                    self._take(message, positions)
                if not self._stopping.is_set():
                    continue
                with self._lock:
                    catch_up = self._catch_up
                if not catch_up:
                    return
                if self._ends is None:
                    self._ends = {
                        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=READ_TIMEOUT_S)[1]
                        for p in partitions
                    }
                if message is None:  # only with nothing queued locally is the position what was read
                    for position in consumer.position([TopicPartition(topic, p) for p in partitions]):
                        positions[position.partition] = max(positions[position.partition], position.offset)
                if all(positions[p] >= end for p, end in self._ends.items()):
                    # A partition added while the tail ran was never read: only a cold seed covers it.
                    self.caught_up = self._partitions(consumer, topic) == partitions
                    return
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer, topic: str) -> list[int] | None:
        """The topic's partitions once it exists (the first leader may not have made it yet); None: stop."""
        while True:
            metadata = consumer.list_topics(topic, timeout=READ_TIMEOUT_S).topics.get(topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                return sorted(metadata.partitions)
            if self._stopping.wait(TAIL_POLL_S):
                return None

    def _start(self, consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
        """Each partition's first offset stamped at or after ``since_ms`` (its end if there is none)."""
        positions: dict[int, int] = {}
        deadline = time.monotonic() + READ_TIMEOUT_S
        now_ms = int(time.time() * 1000)
        for number in partitions:
            partition = TopicPartition(topic, number)
            offsets = partition_offsets(consumer, partition, deadline)
            found = first_offset_since(consumer, partition, self.since_ms, offsets, deadline)
            if found is None:  # the broker cannot say where (the mock): covered from now on only
                self.since_ms = max(self.since_ms, now_ms)
            positions[number] = offsets[1] if found is None else found
        return positions

    def _take(self, message: Message, positions: dict[int, int]) -> None:
        """Remember a record's execution ID; an end-of-partition event moves the position past markers."""
        partition = message.partition() or 0
        error = message.error()
        if error is None:
            self.added += add_execution_ids(self._recent_ids, (message,))
            positions[partition] = (message.offset() or 0) + 1
        elif error.code() == KafkaError._PARTITION_EOF:
            positions[partition] = max(positions[partition], message.offset() or 0)
