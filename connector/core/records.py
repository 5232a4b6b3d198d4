"""The shapes that flow through the engine: a decoded venue message and the records it becomes (pure).

A venue response is decoded once, when it arrives, into a :class:`VenueMessage`: its kind, session,
send time and the :class:`OutRecord` values ready to publish (encoded, keyed, with the venue time each
one proves). Holding a message back, releasing it, dropping a duplicate and numbering an arrival all
work on these values, so the engine never touches protobuf or Avro itself.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, NamedTuple


class MessageKind(StrEnum):
    """Which member of the response's ``event`` oneof was set (``none``: none the connector knows)."""

    HEARTBEAT = "heartbeat"
    SNAPSHOT = "snapshot"
    UPDATE = "update"
    NONE = "none"


class EventType(StrEnum):
    """The ``event_type`` header of a record (the connector's own records use their schema names)."""

    EXECUTION = "execution"
    ORDER_SNAPSHOT = "order_snapshot"
    CANCEL_REJECT = "cancel_reject"
    CONNECTOR_HEARTBEAT = "ConnectorHeartbeat"
    GAP_DETECTED = "GapDetected"
    CHECKPOINT = "Checkpoint"


class OutRecord(NamedTuple):
    """One record ready to publish (a named tuple: one is made per venue event, and it builds fast).

    Attributes:
        topic: destination topic.
        key: record key (the order ID's UTF-8 bytes; the connector's own records: its name).
        value: the encoded value (Avro with its framing; a dead letter: the raw protobuf bytes).
        event_type: the ``event_type`` header.
        source: the ``source`` header (``stream``, ``snapshot``, ``backfill``, ``drop_copy``).
        session_id: the venue stream session the event came with.
        timestamp_ns: the record's Kafka timestamp (venue time), or None to let Kafka stamp it.
        proof_ns: the venue time the record proves once acknowledged (see ``core.watermark``).
        execution_id: the execution's ID (executions and dead-lettered executions), else "".
        extra_headers: headers beyond the standard ones (a dead letter's ``error``, ``error_type``).
    """

    topic: str
    key: bytes
    value: bytes
    event_type: str
    source: str
    session_id: str
    timestamp_ns: int | None
    proof_ns: int | None
    execution_id: str
    extra_headers: tuple[tuple[str, bytes], ...] = ()


class VenueMessage(NamedTuple):
    """One venue response, decoded: what it was and the records it becomes (a named tuple, as records).

    Attributes:
        kind: the member of the ``event`` oneof.
        session_id: the response's ``session_id``.
        sent_ns: ``processed_sent_time`` (the venue's send time), or None when absent or unreadable.
        received_ns: the connector's wall time when it arrived.
        records: the records, in wire order (executions, then the cancel reject; or snapshot orders).
        size_bytes: the response's serialized size (hold-back accounting).
    """

    kind: MessageKind
    session_id: str
    sent_ns: int | None
    received_ns: int
    records: tuple[OutRecord, ...]
    size_bytes: int


Headers = list[tuple[str, bytes]]
RELAXED_ORDERING: Final = ("ordering", b"relaxed")


def base_headers(record: OutRecord, connector: str) -> Headers:
    """The headers every record of this kind, source and session shares (worth building once)."""
    return [
        ("event_type", record.event_type.encode()),
        ("source", record.source.encode()),
        ("session_id", record.session_id.encode()),
        ("connector", connector.encode()),
    ]


def record_headers(base: Headers, record: OutRecord, *, relaxed: bool) -> Headers:
    """A record's headers: the shared ones, its extras, its ``execution_id``, and the ordering mark.

    ``ordering: relaxed`` says the record was published while live updates and a backfill
    interleaved: per order, it may not be in venue order with its neighbours.
    """
    extra = record.extra_headers
    headers = [*base, *extra] if extra else base[:]
    execution_id = record.execution_id
    if execution_id:
        headers.append(("execution_id", execution_id.encode()))
    if relaxed:
        headers.append(RELAXED_ORDERING)
    return headers
