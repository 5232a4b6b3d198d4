"""Read part of a topic once, up to the offsets it had when reading began (no consumer group).

A start needs two bounded reads (DESIGN.md §4): the whole (compacted) checkpoint topic, to take the
last checkpoint per key, and the executions recorded since a point in time, to seed the recent-ID
set. Reading *by time* uses ``offsets_for_times`` (the first offset whose timestamp is at or after
the time; every record before it is older), so a partition that holds more recent records than
another is read further back, whatever the key skew. A broker that cannot answer by time (the
embedded mock cluster answers -1) is detected, per partition, by its newest record being at or
after the time: that partition is then read from the last ``fallback_last`` records.

Every record the connector writes is in a Kafka transaction, so a reader reads ``read_committed``
(records of aborted or still-open transactions are skipped) and a partition's last offsets may be
transaction markers, which are never delivered: a partition is read to its end when the consumer
says it reached it (``_PARTITION_EOF`` at or past the end offset), not when a record at end - 1
arrives.

Kafka's errors are translated here: no answer within the deadline is
:class:`~connector.errors.KafkaUnavailable` (the caller retries), an authorization failure or a
missing topic is a :class:`~connector.errors.RuntimeFailure`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from connector.errors import KafkaUnavailable, RuntimeFailure
from connector.kafka.publisher import LIBRDKAFKA_LOG, client_config

_LOG: Final = logging.getLogger(__name__)

POLL_S: Final = 0.5
RETRY_S: Final = 0.5
READER_FETCH_WAIT_MS: Final = 20
NEWEST_PROBE_RECORDS: Final = 16  # how far back from the end the newest record is looked for

# (consumer, partition, low, high) -> the offset to start reading that partition from
StartChooser = Callable[[Consumer, TopicPartition, int, int, float], int]


def read_tail(
    bootstrap_servers: str,
    properties: Mapping[str, object],
    topic: str,
    *,
    last: int | None,
    timeout_s: float,
) -> Iterator[Message]:
    """Yield about the last ``last`` records of each partition's share (None: every record).

    Raises:
        KafkaUnavailable: Kafka does not answer, or the read outlasts ``timeout_s``.
        RuntimeFailure: the topic is missing, or the connector may not read it.
    """

    def start(_consumer: Consumer, _partition: TopicPartition, low: int, high: int, _deadline: float) -> int:
        return low if share is None else max(low, high - share)

    share: int | None = None
    if last is not None:
        partitions = _partition_count(bootstrap_servers, properties, topic, timeout_s)
        share = -(-last // max(1, partitions))
    return _read(bootstrap_servers, properties, topic, start, timeout_s)


def read_since(
    bootstrap_servers: str,
    properties: Mapping[str, object],
    topic: str,
    *,
    since_ms: int,
    fallback_last: int,
    timeout_s: float,
) -> Iterator[Message]:
    """Yield every record appended at or after the first one stamped ``since_ms`` or later, per partition.

    Raises:
        KafkaUnavailable: Kafka does not answer, or the read outlasts ``timeout_s``.
        RuntimeFailure: the topic is missing, or the connector may not read it.
    """

    def start(consumer: Consumer, partition: TopicPartition, low: int, high: int, deadline: float) -> int:
        found = first_offset_since(consumer, partition, since_ms, (low, high), deadline)
        if found is not None:
            return found
        _LOG.warning(
            "%s[%d]: the broker cannot find offsets by time; reading its last %d records instead",
            partition.topic,
            partition.partition,
            fallback_last,
        )
        return max(low, high - fallback_last)

    return _read(bootstrap_servers, properties, topic, start, timeout_s)


def first_offset_since(
    consumer: Consumer, partition: TopicPartition, since_ms: int, offsets: tuple[int, int], deadline: float
) -> int | None:
    """The partition's first offset stamped ``since_ms`` or later (its high offset if none is).

    None when the broker cannot say (the embedded mock answers every time query with -1): its newest
    record is at or after the time, but the broker names no offset. ``offsets``: (low, high).

    Raises:
        KafkaUnavailable: Kafka does not answer before ``deadline``.
    """
    low, high = offsets
    if high <= low:
        return high
    found = _offset_for_time(
        consumer, TopicPartition(partition.topic, partition.partition, since_ms), deadline
    )
    if found >= 0:
        return max(low, found)
    newest = _newest_timestamp(consumer, partition, max(low, high - NEWEST_PROBE_RECORDS), high, deadline)
    if newest is None or newest < since_ms:
        return high  # nothing at or after the time
    return None


def partition_offsets(consumer: Consumer, partition: TopicPartition, deadline: float) -> tuple[int, int]:
    """A partition's low and high offsets (retried while its leader is unavailable)."""
    return _offsets(consumer, partition, deadline)


def reader_consumer(bootstrap_servers: str, properties: Mapping[str, object]) -> Consumer:
    """A consumer outside any group (it is assigned partitions), reading committed records only."""
    return Consumer(
        {
            **client_config(bootstrap_servers, properties),
            "logger": LIBRDKAFKA_LOG,
            "group.id": f"pmx-connector-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            # A fetch at the end waits this long for more before it answers (librdkafka's default is
            # 500 ms): a start reads two topics to their ends, and a standby's takeover waits on it.
            "fetch.wait.max.ms": READER_FETCH_WAIT_MS,
        }
    )


def _read(
    bootstrap_servers: str,
    properties: Mapping[str, object],
    topic: str,
    start: StartChooser,
    timeout_s: float,
) -> Iterator[Message]:
    consumer = reader_consumer(bootstrap_servers, properties)
    deadline = time.monotonic() + timeout_s
    try:
        ends = _assign(consumer, topic, start, deadline)
        while ends:
            if time.monotonic() > deadline:
                msg = f"reading {topic} took longer than {timeout_s:.0f} s"
                raise KafkaUnavailable(msg)
            message = consumer.poll(POLL_S)
            if message is None:
                _drop_read_to_end(consumer, topic, ends)
                continue
            error = message.error()
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None or partition not in ends:
                if error is not None:
                    _raise_if_final(error, topic)
                continue
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and offset >= ends[partition]:
                    del ends[partition]  # read to the end (past any transaction markers)
                else:
                    _raise_if_final(error, topic)
                continue
            yield message
            if offset >= ends[partition] - 1:
                del ends[partition]
    finally:
        consumer.close()


def _drop_read_to_end(consumer: Consumer, topic: str, ends: dict[int, int]) -> None:
    """Forget the partitions whose position reached their end (a quiet poll: no end-of-partition event)."""
    for position in consumer.position([TopicPartition(topic, partition) for partition in ends]):
        if position.offset >= ends.get(position.partition, 0):
            ends.pop(position.partition, None)


def _raise_if_final(error: KafkaError, topic: str) -> None:
    if error.code() in {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED}:
        msg = f"the connector may not read {topic}: {error.name()} (it needs READ and DESCRIBE on the topic)"
        raise RuntimeFailure(msg)
    if error.fatal():
        msg = f"cannot read {topic}: {error.name()}"
        raise RuntimeFailure(msg)


def _partition_count(
    bootstrap_servers: str, properties: Mapping[str, object], topic: str, timeout_s: float
) -> int:
    consumer = reader_consumer(bootstrap_servers, properties)
    try:
        return len(_described(consumer, topic, timeout_s).partitions)
    finally:
        consumer.close()


def _described(consumer: Consumer, topic: str, timeout_s: float) -> Any:
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        msg = f"cannot reach Kafka to read {topic}: {_reason(exc)}"
        raise KafkaUnavailable(msg) from None
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        error = getattr(described, "error", None)
        if error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            msg = f"the connector may not read {topic} (it needs DESCRIBE and READ on the topic)"
            raise RuntimeFailure(msg)
        msg = f"topic {topic} does not exist"
        raise RuntimeFailure(msg)
    return described


def _assign(consumer: Consumer, topic: str, start: StartChooser, deadline: float) -> dict[int, int]:
    """Assign each partition from its chosen start; return the end offset per partition to read."""
    described = _described(consumer, topic, max(1.0, deadline - time.monotonic()))
    ends: dict[int, int] = {}
    assignments = []
    for partition in described.partitions:
        part = TopicPartition(topic, partition)
        low, high = _offsets(consumer, part, deadline)
        first = start(consumer, part, low, high, deadline) if high > low else high
        if first >= high:
            continue
        assignments.append(TopicPartition(topic, partition, first))
        ends[partition] = high
    if assignments:
        consumer.assign(assignments)
    return ends


def _offsets(consumer: Consumer, partition: TopicPartition, deadline: float) -> tuple[int, int]:
    """A partition's low and high offsets, retried while its leader is unavailable (a broker restart)."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                partition, timeout=max(1.0, deadline - time.monotonic())
            )
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                msg = f"cannot read the offsets of {partition.topic}: {_reason(exc)}"
                raise KafkaUnavailable(msg) from None
            time.sleep(RETRY_S)


def _offset_for_time(consumer: Consumer, partition: TopicPartition, deadline: float) -> int:
    """The answer to one time query, retried while the partition answers with an error (no leader)."""
    while True:
        try:
            (found,) = consumer.offsets_for_times([partition], timeout=max(1.0, deadline - time.monotonic()))
            if found.error is None:
                return int(found.offset)
            reason = found.error.str()
        except KafkaException as exc:
            reason = _reason(exc)
        if time.monotonic() >= deadline:
            msg = f"cannot find offsets by time in {partition.topic}: {reason}"
            raise KafkaUnavailable(msg)
        time.sleep(RETRY_S)


def _newest_timestamp(
    consumer: Consumer, partition: TopicPartition, first: int, high: int, deadline: float
) -> int | None:
    """The timestamp (ms) of the newest record in [``first``, ``high``), None if there is none.

    The last offsets may be transaction markers (or aborted records), so it reads to the end.
    """
    consumer.assign([TopicPartition(partition.topic, partition.partition, first)])
    newest: int | None = None
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(POLL_S)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and (message.offset() or 0) >= high:
                    return newest
                _raise_if_final(error, partition.topic)
                continue
            _kind, stamp = message.timestamp()
            newest = int(stamp)
            if (message.offset() or 0) >= high - 1:
                return newest
    finally:
        consumer.unassign()
    msg = f"cannot read the newest record of {partition.topic}[{partition.partition}]"
    raise KafkaUnavailable(msg)


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)
