"""Publishing records to Kafka: the idempotent producer, non-blocking hand-over, delivery tracking.

One thread (the engine's) calls :meth:`KafkaPublisher.try_publish` and :meth:`KafkaPublisher.poll`;
delivery callbacks run on that same thread inside ``poll`` (librdkafka serves them there), so nothing
here needs a lock. Each record that carries an arrival sequence reports its acknowledgement to the
watermark from its own delivery callback. Nothing counts as delivered before Kafka acknowledged it.

A record's delivery callback is one small ``functools.partial`` of a bound method holding the
record's sequence, topic and venue time. confluent-kafka passes no per-message opaque, and Kafka
acknowledges partitions in any order relative to each other (in produce order only within one), and
the engine does not choose partitions, so only state carried by the callback itself ties an
acknowledgement to its sequence. The metrics of the acknowledged records (counts, event-to-ack
latency) are reported once per ``poll``, per topic, not once per record.

The producer is configured so that a delivery can never leave a gap or reorder an order's history
(librdkafka's INTRODUCTION.md, "Idempotent Producer"): with ``message.timeout.ms`` finite, records
that time out while queued are skipped and the ones behind them written (1, 4, 5), so a later record
of an order could land before the failed one's re-send. Hence, enforced:

- ``enable.idempotence`` and ``acks=all``: per-partition order through retries;
- ``message.timeout.ms=0``: a record is retried until it is delivered (Kafka down means the
  producer's queue fills, the engine stops reading and the venue stream pushes back);
- ``enable.gapless.guarantee``: any other error that could leave a gap is fatal to the producer.

So every delivery failure is fatal: the connector stops (exit 1), the completeness frontier never
passed the failed record, and the restart recovers from the checkpoint. A record larger than the
producer takes (``message.max.bytes``) is refused at hand-over and dead-lettered by the engine.

confluent-kafka's producer errors are translated here and nowhere else.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Producer
from pydantic import SecretStr

from connector.core.records import Headers, OutRecord
from connector.core.venue_time import NANOS_PER_MILLI
from connector.errors import FatalProducerError, RecordRefused
from connector.kafka.transactions import FENCED_CODES, fenced_message

_LOG: Final = logging.getLogger(__name__)
LIBRDKAFKA_LOG: Final = logging.getLogger("librdkafka")

PRODUCER_DEFAULTS: Final[Mapping[str, Any]] = {
    "linger.ms": 5,
    "compression.type": "lz4",
    "message.max.bytes": 1_000_000,
    "queue.buffering.max.messages": 100_000,
    "queue.buffering.max.kbytes": 262_144,
    # A transaction left open by a crashed instance is aborted by its successor's start at once; this
    # only bounds how long one can stay open without a successor (read_committed readers wait).
    "transaction.timeout.ms": 120_000,
}
PRODUCER_ONLY_PREFIXES: Final = (
    "queue.buffering.",
    "message.timeout.",
    "batch.",
    "delivery.",
    "linger.",
    "enable.gapless.",
    "transaction",
)
# These make the connector's delivery guarantee; raw properties may not weaken them.
ENFORCED: Final[Mapping[str, Any]] = {
    "enable.idempotence": True,
    "acks": "all",
    "message.timeout.ms": 0,
    "enable.gapless.guarantee": True,
}
# What an authorization failure means for the operator.
PERMISSION_HINTS: Final[Mapping[str, str]] = {
    "TOPIC_AUTHORIZATION_FAILED": "the connector's principal needs WRITE and DESCRIBE on the topic",
    "CLUSTER_AUTHORIZATION_FAILED": "the connector's principal needs IDEMPOTENT_WRITE on the cluster",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED": "the connector's principal needs WRITE on its transactional id",
}

# A fatal error purges the producer's queue: these deliveries failed because of it.
PURGED_CODES: Final = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})

# (topic, the venue timestamps in ns of the records of that topic Kafka just acknowledged)
Delivered = Callable[[str, Sequence[int | None]], None]


def producer_config(
    bootstrap_servers: str, properties: Mapping[str, object], transactional_id: str | None = None
) -> dict[str, Any]:
    """Merge defaults, the operator's raw librdkafka properties, and the enforced guarantees.

    An operator's property that would weaken a guarantee is ignored, with a warning naming it; so is
    a ``transactional.id`` of the operator's (the connector derives its own: one per name and
    subscription, which is what fences a second instance).
    """
    enforced: dict[str, Any] = dict(ENFORCED)
    if transactional_id is not None:
        enforced["transactional.id"] = transactional_id
    for key in sorted(enforced.keys() & properties.keys()):
        if str(properties[key]).lower() != str(enforced[key]).lower():
            _LOG.warning(
                "kafka.properties.%s: ignored; the connector's delivery guarantee needs %s=%s",
                key,
                key,
                str(enforced[key]).lower(),
            )
    return {**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap_servers, **_revealed(properties), **enforced}


def client_config(bootstrap_servers: str, properties: Mapping[str, object]) -> dict[str, Any]:
    """The settings any client (admin, consumer) needs: the cluster and the raw properties.

    Producer-only properties are left out, so that a consumer or admin client does not warn about them.
    """
    connection = {
        key: value
        for key, value in _revealed(properties).items()
        if key not in PRODUCER_DEFAULTS and key not in ENFORCED and not key.startswith(PRODUCER_ONLY_PREFIXES)
    }
    return {"bootstrap.servers": bootstrap_servers, **connection}


def max_record_bytes(properties: Mapping[str, object]) -> int:
    """The largest record the producer takes (``message.max.bytes``)."""
    return int(str(producer_config("", properties)["message.max.bytes"]))


def _revealed(properties: Mapping[str, object]) -> dict[str, object]:
    """Secret values (``SecretStr``) are revealed here, at the Kafka boundary, and nowhere else."""
    return {
        key: value.get_secret_value() if isinstance(value, SecretStr) else value
        for key, value in properties.items()
    }


class KafkaPublisher:
    """Hands records to the producer without blocking and feeds acknowledgements to the watermark."""

    def __init__(
        self,
        producer: Producer,
        on_acknowledged: Callable[[int], None],
        on_delivered: Delivered = lambda _topic, _timestamps_ns: None,
        on_failed: Callable[[str, str], None] = lambda _topic, _error: None,
        transactional_id: str | None = None,
    ) -> None:
        """Wrap a producer (built by the caller); ``on_acknowledged`` takes arrival sequences.

        ``on_delivered`` hears of acknowledged records once per :meth:`poll` (or :meth:`flush`),
        per topic; ``on_failed`` of each failed delivery (topic, error name) before it turns fatal.
        ``transactional_id``: the producer's, if it has one (a fenced producer then says so).
        """
        self._transactional_id = transactional_id
        self._producer = producer
        self._produce = producer.produce
        self._acknowledge = on_acknowledged
        self._on_delivered = on_delivered
        self._on_failed = on_failed
        self.acknowledged: Counter[str] = Counter()
        self._fatal: str | None = None
        self._fatal_is_consequence = False  # the reason so far is a purge: a cause may replace it
        self._delivered_now: dict[str, list[int | None]] = {}  # acknowledged since the last report

    @property
    def in_flight(self) -> int:
        """Records queued in the producer or awaiting acknowledgement."""
        return len(self._producer)

    def try_publish(self, record: OutRecord, headers: Headers, sequence: int | None) -> bool:
        """Hand one record to the producer; False when its queue is full.

        Raises:
            RecordRefused: the record is larger than the producer takes.
            FatalProducerError: the producer reported a fatal error.
        """
        if self._fatal is not None:
            raise FatalProducerError(self._fatal)
        topic = record.topic
        timestamp_ns = record.timestamp_ns
        # confluent-kafka takes a timestamp of 0 as "now" (Kafka stamps it).
        timestamp = timestamp_ns // NANOS_PER_MILLI if timestamp_ns is not None and timestamp_ns > 0 else 0
        try:
            # All positional, in the stub's order (topic, value, key, partition, callback, on_delivery,
            # timestamp, headers): keywords cost a dict and their parsing per record, about a quarter
            # of the call. ``callback`` is ``on_delivery``'s alias (a None in either slot would win).
            self._produce(
                topic,
                record.value,
                record.key,
                -1,  # the configured partitioner
                partial(self._delivered, sequence, topic, timestamp_ns),
                None,
                timestamp,
                headers,  # type: ignore[arg-type]  # bytes values; the stub is invariant
            )
        except BufferError:
            return False
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            name = error.name() if isinstance(error, KafkaError) else type(exc).__name__
            if isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                msg = f"a {len(record.value)}-byte record for {topic} is larger than the producer takes"
                raise RecordRefused(msg) from None
            if isinstance(error, KafkaError) and self._fenced(error):
                raise FatalProducerError(fenced_message(str(self._transactional_id))) from None
            msg = f"cannot produce to {topic}: {name}"
            raise FatalProducerError(msg) from None
        return True

    def poll(self) -> None:
        """Serve delivery callbacks.

        Raises:
            FatalProducerError: a delivery failed, or the producer reported a fatal error.
        """
        try:
            self._producer.poll(0)
        except KafkaException as exc:  # confluent-kafka raises a fatal error from poll()
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and self._fenced(error):
                self._fail(fenced_message(str(self._transactional_id)))
            else:
                detail = f"{error.name()}: {error.str()}" if isinstance(error, KafkaError) else str(exc)
                self._fail(f"the producer stopped: {detail}")
        finally:
            if self._delivered_now:
                self._report_delivered()
        self._raise_if_fatal()

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for every queued record (commands only); return how many remain."""
        try:
            remaining: int = self._producer.flush(timeout_s)
        finally:
            if self._delivered_now:
                self._report_delivered()
        return remaining

    def _delivered(
        self,
        sequence: int | None,
        topic: str,
        timestamp_ns: int | None,
        error: KafkaError | None,
        _message: object,
    ) -> None:
        """One record's delivery callback (bound to the record by ``try_publish``)."""
        if error is None:  # the hot path: one call per acknowledged record
            if sequence is not None:
                self._acknowledge(sequence)
            delivered = self._delivered_now.get(topic)
            if delivered is None:
                delivered = self._delivered_now[topic] = []
            delivered.append(timestamp_ns)
            return
        name = error.name()
        self._on_failed(topic, name)
        if error.code() in PURGED_CODES:  # the consequence of a failure, not its cause
            self._fail(f"delivery to {topic} failed: {name}: {error.str()}", consequence=True)
            return
        if self._fenced(error):
            self._fail(fenced_message(str(self._transactional_id)))
            return
        hint = PERMISSION_HINTS.get(name)
        why = f" ({hint})" if hint else ""
        self._fail(f"delivery to {topic} failed: {name}: {error.str()}{why}")

    def _fenced(self, error: KafkaError) -> bool:
        return self._transactional_id is not None and error.code() in FENCED_CODES

    def _report_delivered(self) -> None:
        delivered, self._delivered_now = self._delivered_now, {}
        for topic, timestamps_ns in delivered.items():
            self.acknowledged[topic] += len(timestamps_ns)
            self._on_delivered(topic, timestamps_ns)

    def _fail(self, reason: str, *, consequence: bool = False) -> None:
        """Remember why the producer stopped: the first cause (a purge only until a cause is known)."""
        if self._fatal is not None and (consequence or not self._fatal_is_consequence):
            return  # the records purged behind the first failure: it already said why
        self._fatal = reason
        self._fatal_is_consequence = consequence
        if consequence:
            return  # the cause (a fatal error from poll, a fenced producer) follows and says why
        _LOG.error(
            "%s; stopping so that nothing is skipped (the restart resumes from the checkpoint)", reason
        )

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise FatalProducerError(self._fatal)


def build_producer(
    bootstrap_servers: str, properties: Mapping[str, object], transactional_id: str | None = None
) -> Producer:
    """Create the confluent-kafka producer with the enforced delivery guarantees (transactional, if given).

    librdkafka's own log lines go through Python logging (logger ``librdkafka``), so they take the
    connector's log format (one JSON object per line with ``--log-format json``) instead of raw stderr.
    """
    config = producer_config(bootstrap_servers, properties, transactional_id)
    return Producer({**config, "logger": LIBRDKAFKA_LOG})
