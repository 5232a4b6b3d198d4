"""Decoding: one venue response (or one searched execution) in, the records it becomes out (no I/O).

For each ``CreateOrderSubscriptionResponse`` (DESIGN.md §1, §4), read by documented field names only:

- ``heartbeat`` -> no record (the engine decides what the heartbeat proves);
- ``snapshot`` -> one OrderSnapshotEvent per order (Kafka timestamp: ``processed_sent_time``);
- ``update`` -> one ExecutionEvent per execution (timestamp and proof: ``transact_time``), and a
  CancelRejectEvent for ``cancel_reject`` (proof: its ``transact_time`` when it has one);
- an event the venue sent that cannot become a record (:class:`~connector.errors.VenueDataError`)
  -> a dead letter: its raw protobuf bytes for the DLQ topic, keyed by its order ID, with ``error``
  and ``error_type`` headers. Only venue data is dead-lettered: any other exception is a bug of the
  connector and propagates.

Every record is keyed by the order ID's UTF-8 bytes. The connector's own records (ConnectorHeartbeat,
GapDetected) are built here too, so one module knows every record the connector writes but the
checkpoint (``kafka/checkpoints.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import Message

from connector import __version__
from connector.core.backfill_plan import Gap
from connector.core.mapping import EventContext, RecordMapper, Source, timestamp_ns
from connector.core.record_schemas import RecordType
from connector.core.records import EventType, MessageKind, OutRecord, VenueMessage
from connector.errors import VenueDataError

_LOG: Final = logging.getLogger(__name__)

DLQ_ERROR_BYTES: Final = 1000

Encoder = Callable[[Mapping[str, Any], str], bytes]  # (record, topic) -> value


@dataclass(frozen=True, slots=True)
class Topics:
    """Destination topic per record kind."""

    executions: str
    snapshots: str
    cancel_rejects: str
    heartbeats: str
    dlq: str


class VenueDecoder:
    """Turns venue messages into records ready to publish (mapping, encoding, keys, proofs)."""

    def __init__(
        self,
        *,
        mapper: RecordMapper,
        encoders: Mapping[RecordType, Encoder],
        topics: Topics,
        connector_name: str,
        subscription: str,
    ) -> None:
        """Hold the mapper, the encoder of each record type and the destination topics."""
        self._mapper = mapper
        self._encode_execution = encoders[RecordType.EXECUTION]
        self._encode_snapshot = encoders[RecordType.ORDER_SNAPSHOT]
        self._encode_cancel_reject = encoders[RecordType.CANCEL_REJECT]
        self._encode_heartbeat = encoders[RecordType.CONNECTOR_HEARTBEAT]
        self._encode_gap = encoders[RecordType.GAP_DETECTED]
        self._topics = topics
        self._connector = connector_name
        self._connector_key = connector_name.encode()
        self._subscription = subscription

    @property
    def executions_topic(self) -> str:
        """Where executions go."""
        return self._topics.executions

    @property
    def dlq_topic(self) -> str:
        """Where dead letters go."""
        return self._topics.dlq

    def response(self, response: Any, received_ns: int) -> VenueMessage:
        """Decode one ``CreateOrderSubscriptionResponse``."""
        session_id: str = response.session_id
        sent_ns = _optional_timestamp(response, "processed_sent_time")
        records: tuple[OutRecord, ...] = ()
        if response.HasField("heartbeat"):
            kind = MessageKind.HEARTBEAT
        elif response.HasField("snapshot"):
            kind = MessageKind.SNAPSHOT
            context = EventContext(Source.SNAPSHOT, session_id, sent_ns, received_ns, self._connector)
            records = tuple(self._snapshot(response.snapshot.orders, context))
        elif response.HasField("update"):
            kind = MessageKind.UPDATE
            context = EventContext(Source.STREAM, session_id, sent_ns, received_ns, self._connector)
            update = response.update
            decoded = [self.execution(execution, context) for execution in update.executions]
            if update.HasField("cancel_reject"):
                decoded.append(self._cancel_reject(update.cancel_reject, context))
            records = tuple(decoded)
        else:
            kind = MessageKind.NONE
        return VenueMessage(kind, session_id, sent_ns, received_ns, records, response.ByteSize())

    def execution(self, execution: Any, context: EventContext) -> OutRecord:
        """Decode one execution (from the stream or a backfill): an ExecutionEvent, or a dead letter."""
        try:
            record = self._mapper.execution(execution, context)
        except VenueDataError as exc:
            return self._dead_letter(EventType.EXECUTION, execution, exc, context)
        transact_ns: int | None = record["transact_time"]
        topic = self._topics.executions
        return OutRecord(
            topic,
            record["order_id"].encode(),
            self._encode_execution(record, topic),
            EventType.EXECUTION,
            context.source.value.lower(),
            context.session_id,
            transact_ns,
            transact_ns,
            record["execution_id"],
        )

    def _snapshot(self, orders: Any, context: EventContext) -> list[OutRecord]:
        size = len(orders)
        snapshot_id = f"{context.session_id}@{context.processed_sent_time_ns or context.received_time_ns}"
        topic = self._topics.snapshots
        timestamp = context.processed_sent_time_ns
        decoded = []
        for position, order in enumerate(orders):
            try:
                record = self._mapper.snapshot_order(order, snapshot_id, position, size, context)
            except VenueDataError as exc:
                decoded.append(self._dead_letter(EventType.ORDER_SNAPSHOT, order, exc, context))
                continue
            # A snapshot is state, not history: it proves nothing about earlier executions.
            decoded.append(
                OutRecord(
                    topic,
                    record["order_id"].encode(),
                    self._encode_snapshot(record, topic),
                    EventType.ORDER_SNAPSHOT,
                    "snapshot",
                    context.session_id,
                    timestamp,
                    None,
                    "",
                )
            )
        return decoded

    def _cancel_reject(self, cancel_reject: Any, context: EventContext) -> OutRecord:
        try:
            record = self._mapper.cancel_reject(cancel_reject, context)
        except VenueDataError as exc:
            return self._dead_letter(EventType.CANCEL_REJECT, cancel_reject, exc, context)
        transact_ns: int | None = record["transact_time"]
        topic = self._topics.cancel_rejects
        return OutRecord(
            topic,
            record["order_id"].encode(),
            self._encode_cancel_reject(record, topic),
            EventType.CANCEL_REJECT,
            context.source.value.lower(),
            context.session_id,
            transact_ns or context.processed_sent_time_ns,
            transact_ns,  # without a transact_time only the send time is known: it proves nothing
            "",
        )

    def _dead_letter(
        self, event_type: EventType, message: Message, error: VenueDataError, context: EventContext
    ) -> OutRecord:
        reason = type(error).__name__
        execution_id = str(getattr(message, "id", "")) if event_type is EventType.EXECUTION else ""
        _LOG.warning(
            "%s sent to the dead-letter topic (order_id=%r, execution_id=%r): %s",
            event_type.value,
            order_id_of(message),
            execution_id,
            error,
        )
        return dead_letter(
            self._topics.dlq,
            event_type,
            message.SerializeToString(),
            order_id_of(message).encode(),
            source=context.source.value.lower(),
            session_id=context.session_id,
            timestamp_ns=context.processed_sent_time_ns,
            reason=reason,
            error=str(error),
            execution_id=execution_id,
        )

    def connector_heartbeat(self, fields: Mapping[str, Any], emitted_ns: int) -> OutRecord:
        """The connector's own heartbeat record (phase, session, F, the last venue heartbeat)."""
        record = {
            "connector": self._connector,
            "subscription": self._subscription,
            "emitted_time": emitted_ns,
            "version": __version__,
            **fields,
        }
        topic = self._topics.heartbeats
        return self._own(topic, EventType.CONNECTOR_HEARTBEAT, self._encode_heartbeat(record, topic))

    def gap_detected(self, gap: Gap, session_id: str, detected_ns: int) -> OutRecord:
        """The GapDetected record declaring a window unproven."""
        record = {
            "connector": self._connector,
            "subscription": self._subscription,
            "reason": gap.reason.value,
            "window_start": gap.window.start_ns,
            "window_end": gap.window.end_ns,
            "detected_time": detected_ns,
            "detail": gap.detail,
            "session_id": session_id,
            "version": __version__,
        }
        topic = self._topics.heartbeats
        return self._own(topic, EventType.GAP_DETECTED, self._encode_gap(record, topic), session_id)

    def _own(self, topic: str, event_type: EventType, value: bytes, session_id: str = "") -> OutRecord:
        return OutRecord(
            topic, self._connector_key, value, event_type, "connector", session_id, None, None, ""
        )


def dead_letter(
    topic: str,
    event_type: str,
    raw: bytes,
    key: bytes,
    *,
    source: str,
    session_id: str,
    timestamp_ns: int | None,
    reason: str,
    error: str,
    execution_id: str = "",
) -> OutRecord:
    """A dead-letter record: the raw event bytes with ``error`` and ``error_type`` headers.

    A dead letter proves nothing (its only time is the venue's send time), but it is an arrival like
    any record: the frontier cannot pass it before Kafka acknowledged it.
    """
    return OutRecord(
        topic,
        key,
        raw,
        event_type,
        source,
        session_id,
        timestamp_ns,
        None,
        execution_id,
        (("error", error.encode()[:DLQ_ERROR_BYTES]), ("error_type", reason.encode())),
    )


def refused_dead_letter(record: OutRecord, error: Exception, dlq_topic: str, max_bytes: int) -> OutRecord:
    """The dead letter that takes the place of a record Kafka refused for itself (too large).

    The event's raw bytes are gone by then: its encoded value goes instead, cut to half of what the
    producer takes, with the IDs in the key and headers so it can be fetched from the venue again.
    """
    limit = max_bytes // 2
    size = len(record.value)
    return dead_letter(
        dlq_topic,
        record.event_type,
        record.value[:limit],
        record.key,
        source=record.source,
        session_id=record.session_id,
        timestamp_ns=record.timestamp_ns,
        reason=type(error).__name__,
        error=f"{error}; the value is cut to {min(limit, size)} of its {size} bytes",
        execution_id=record.execution_id,
    )


def order_id_of(message: Message) -> str:
    """The order ID of a venue message: an Execution's order, an Order's or a CancelReject's own."""
    if hasattr(message, "order_id"):
        return str(message.order_id)
    order = getattr(message, "order", None)
    if order is not None:
        return str(order.id)
    return str(getattr(message, "id", ""))


def _optional_timestamp(message: Any, field: str) -> int | None:
    try:
        return timestamp_ns(message, field)
    except VenueDataError:
        return None
