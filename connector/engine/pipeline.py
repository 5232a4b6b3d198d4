"""Decoding: one venue response (or one searched execution) in, the records it becomes out (no I/O).

The venue's bytes go through the compiled transcoder (:mod:`connector.core.transcoder`) in one call
per response: the stream hands over each ``CreateOrderSubscriptionResponse`` as its wire bytes, so no
Python protobuf object is ever built on the hot path. What each member of the response becomes
(DESIGN.md §1, §4), read by documented field names only:

- ``heartbeat`` -> no record (a heartbeat proves nothing about the past: see ``engine/service.py``);
- ``snapshot`` -> one OrderSnapshotEvent per order (Kafka timestamp: ``processed_sent_time``);
- ``update`` -> one ExecutionEvent per execution (timestamp and proof: ``transact_time``), and a
  CancelRejectEvent for ``cancel_reject`` (proof: its ``transact_time`` when it has one);
- a Drop Copy ``CreateDropCopySubscriptionResponse`` -> its ``resume_token`` and one
  ExecutionEvent per execution (source ``DROP_COPY``);
- an event the venue sent that cannot become a record -> a dead letter: its raw protobuf bytes for
  the DLQ topic, keyed by its order ID, with ``error`` and ``error_type`` headers, in its place in
  wire order. Only venue data is dead-lettered: any other exception is a bug of the connector and
  propagates.

Every record is keyed by the order ID's UTF-8 bytes. The connector's own records (ConnectorHeartbeat,
GapDetected) are built here too, so one module knows every record the connector writes but the
checkpoint (``kafka/checkpoints.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import DecodeError

from connector import __version__
from connector._pb.polymarket.v1 import dropcopy_pb2, trading_pb2
from connector.core.backfill_plan import Gap
from connector.core.mapping import EventContext, Source
from connector.core.record_schemas import RecordType
from connector.core.records import EventType, MessageKind, OutRecord, VenueMessage
from connector.core.transcoder import DeadLetter, DecodedResponse, ResponseKind, TranscodeError, Transcoder

_LOG: Final = logging.getLogger(__name__)

DLQ_ERROR_BYTES: Final = 1000
KINDS: Final = {
    ResponseKind.HEARTBEAT: MessageKind.HEARTBEAT,
    ResponseKind.SNAPSHOT: MessageKind.SNAPSHOT,
    ResponseKind.UPDATE: MessageKind.UPDATE,
    ResponseKind.NONE: MessageKind.NONE,
}
DEAD_LETTER_TYPES: Final = {
    "execution": EventType.EXECUTION,
    "snapshot_order": EventType.ORDER_SNAPSHOT,
    "cancel_reject": EventType.CANCEL_REJECT,
}

Encoder = Callable[[Mapping[str, Any], str], bytes]  # (record, topic) -> value
# A named tuple built from a tuple of all its fields, without the Python-level __new__ its call runs
# (on the hot path: one per execution, one per response).
_new: Final = tuple.__new__


@dataclass(frozen=True, slots=True)
class DropCopyBatch:
    """One Drop Copy response, decoded: its resume token and the records of its executions."""

    resume_token: bytes
    records: tuple[OutRecord, ...]
    executions: int  # how many the venue sent (each is a record: an ExecutionEvent or a dead letter)


@dataclass(frozen=True, slots=True)
class Topics:
    """Destination topic per record kind."""

    executions: str
    snapshots: str
    cancel_rejects: str
    heartbeats: str
    dlq: str


class VenueDecoder:
    """Turns venue bytes into records ready to publish (transcoding, keys, proofs, dead letters)."""

    def __init__(
        self,
        *,
        transcoder: Transcoder,
        encoders: Mapping[RecordType, Encoder],
        topics: Topics,
        connector_name: str,
        subscription: str,
    ) -> None:
        """Hold the transcoder, the encoders of the connector's own records, and the topics."""
        self._transcoder = transcoder
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

    def response(self, data: bytes, received_ns: int) -> VenueMessage:
        """Decode one ``CreateOrderSubscriptionResponse`` from its wire bytes.

        Raises:
            TranscodeError: the bytes are not a response at all (``error_type`` ``DecodeError``).
        """
        decoded = self._transcoder.response(data, received_ns)
        kind = decoded.kind
        session_id = decoded.session_id
        sent_ns = decoded.processed_sent_time_ns
        records: tuple[OutRecord, ...]
        if kind is ResponseKind.UPDATE:
            if decoded.dead_letters or decoded.cancel_reject is not None:
                records = tuple(self._update(decoded, session_id, sent_ns))
            else:  # the hot path: executions only, all mapped
                topic = self._topics.executions
                execution = EventType.EXECUTION
                records = tuple(
                    [
                        _new(OutRecord, (topic, key, value, execution, "stream", session_id, ns, ns, eid, ()))
                        for eid, key, ns, value in decoded.executions
                    ]
                )
        elif kind is ResponseKind.SNAPSHOT:
            records = tuple(self._snapshot(decoded, session_id, sent_ns))
        else:
            records = ()
        return _new(VenueMessage, (KINDS[kind], session_id, sent_ns, received_ns, records, len(data)))

    def _update(self, decoded: DecodedResponse, session_id: str, sent_ns: int | None) -> Iterator[OutRecord]:
        topic = self._topics.executions
        letters = {
            letter.position: letter for letter in decoded.dead_letters if letter.event_type == "execution"
        }
        encoded = iter(decoded.executions)
        for position in range(len(decoded.executions) + len(letters)):  # wire order
            letter = letters.get(position)
            if letter is not None:
                yield self._dead_letter(letter, "stream", session_id, sent_ns)
                continue
            execution_id, key, transact_ns, value = next(encoded)
            yield OutRecord(
                topic,
                key,
                value,
                EventType.EXECUTION,
                "stream",
                session_id,
                transact_ns,
                transact_ns,
                execution_id,
            )
        for letter in decoded.dead_letters:
            if letter.event_type == "cancel_reject":
                yield self._dead_letter(letter, "stream", session_id, sent_ns)
        cancel_reject = decoded.cancel_reject
        if cancel_reject is not None:
            key, transact_ns, value = cancel_reject
            yield OutRecord(
                self._topics.cancel_rejects,
                key,
                value,
                EventType.CANCEL_REJECT,
                "stream",
                session_id,
                transact_ns or sent_ns,
                transact_ns,  # without a transact_time only the send time is known: it proves nothing
                "",
            )

    def _snapshot(
        self, decoded: DecodedResponse, session_id: str, sent_ns: int | None
    ) -> Iterator[OutRecord]:
        topic = self._topics.snapshots
        letters = {
            letter.position: letter
            for letter in decoded.dead_letters
            if letter.event_type == "snapshot_order"
        }
        orders = iter(decoded.snapshot_orders)
        for position in range(decoded.snapshot_size):
            letter = letters.get(position)
            if letter is not None:
                yield self._dead_letter(letter, "snapshot", session_id, sent_ns)
                continue
            key, value = next(orders)
            # A snapshot is state, not history: it proves nothing about earlier executions.
            yield OutRecord(
                topic, key, value, EventType.ORDER_SNAPSHOT, "snapshot", session_id, sent_ns, None, ""
            )

    def execution(self, execution: trading_pb2.Execution, context: EventContext) -> OutRecord:
        """Decode one searched execution (a backfill): an ExecutionEvent, or a dead letter."""
        data = execution.SerializeToString()
        source = context.source.value.lower()
        try:
            execution_id, key, transact_ns, value = self._transcoder.execution(
                data,
                source=context.source,
                session_id=context.session_id,
                processed_sent_time_ns=context.processed_sent_time_ns,
                received_time_ns=context.received_time_ns,
            )
        except TranscodeError as exc:
            letter = DeadLetter("execution", 0, data, exc.key, exc.error_type, exc.reason)
            return self._dead_letter(letter, source, context.session_id, context.processed_sent_time_ns)
        topic = self._topics.executions
        return OutRecord(
            topic,
            key,
            value,
            EventType.EXECUTION,
            source,
            context.session_id,
            transact_ns,
            transact_ns,
            execution_id,
        )

    def dropcopy_batch(self, data: bytes, received_ns: int) -> DropCopyBatch:
        """Decode one ``CreateDropCopySubscriptionResponse`` from its wire bytes.

        Raises:
            TranscodeError: the bytes are not a response at all (``error_type`` ``DecodeError``).
        """
        try:
            response = dropcopy_pb2.CreateDropCopySubscriptionResponse.FromString(data)
        except DecodeError as exc:
            msg = f"not a CreateDropCopySubscriptionResponse: {exc}"
            raise TranscodeError(msg, error_type="DecodeError") from None
        context = EventContext(Source.DROP_COPY, "", None, received_ns, self._connector)
        records = tuple(self.execution(execution, context) for execution in response.executions)
        return DropCopyBatch(response.resume_token, records, len(records))

    def _dead_letter(
        self, letter: DeadLetter, source: str, session_id: str, sent_ns: int | None
    ) -> OutRecord:
        event_type = DEAD_LETTER_TYPES[letter.event_type]
        execution_id = execution_id_of(letter.value) if event_type is EventType.EXECUTION else ""
        _LOG.warning(
            "%s sent to the dead-letter topic (order_id=%r, execution_id=%r): %s",
            event_type.value,
            letter.key.decode(errors="replace"),
            execution_id,
            letter.reason,
        )
        return dead_letter(
            self._topics.dlq,
            event_type,
            letter.value,
            letter.key,
            source=source,
            session_id=session_id,
            timestamp_ns=sent_ns,
            reason=letter.error_type,
            error=letter.reason,
            execution_id=execution_id,
        )

    def unreadable(
        self, data: bytes, error: TranscodeError, received_ns: int, source: Source = Source.STREAM
    ) -> OutRecord:
        """The dead letter of a whole response that is not valid protobuf (its raw bytes)."""
        _LOG.error(
            "an unreadable venue response (%d bytes) sent to the dead-letter topic: %s", len(data), error
        )
        return dead_letter(
            self._topics.dlq,
            "response",
            data,
            b"",
            source=source.value.lower(),
            session_id="",
            timestamp_ns=received_ns,
            reason=error.error_type,
            error=error.reason,
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


def execution_id_of(raw: bytes) -> str:
    """The ID of a dead-lettered execution (its bytes parse: only a mapping failed)."""
    return str(trading_pb2.Execution.FromString(raw).id)
