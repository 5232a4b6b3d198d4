"""The readable reference of what the connector makes of a venue response: the transcoder's oracle.

Plain Python, no generated code: protobuf parses the bytes (``FromString``), each record is mapped
field by field by walking its Avro schema at run time (the rules of ``connector.core.mapping``,
DESIGN.md §5), and fastavro encodes it. :func:`reference_response` then does what the pipeline
does with a response (``connector/engine/pipeline.py``: which events, which source, which snapshot
id, what goes to the dead-letter topic and why) and returns it in the transcoder's shape, so a test
compares the two with ``==``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import fastavro
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.mapping import (
    CLAMPED_TIMESTAMP_FIELDS,
    ENVELOPE_FIELDS,
    MAX_TIMESTAMP_NS,
    MIN_TIMESTAMP_NS,
    NUMBER_SUFFIX,
    TIMESTAMP_TYPE,
    UNKNOWN_SYMBOL,
    EventContext,
    MappingError,
    Source,
)
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.transcoder import DeadLetter, DecodedResponse, ResponseKind
from connector.core.venue_time import NANOS_PER_SECOND

SCHEMAS = {record_type: schema_dict(record_type) for record_type in RecordType}
PARSED = {record_type: fastavro.parse_schema(schema_dict(record_type)) for record_type in RecordType}


def _resolve(avro_type: Any, named: dict[str, Any]) -> Any:
    if isinstance(avro_type, str):
        return named.get(avro_type, avro_type)
    if isinstance(avro_type, list):
        return [_resolve(branch, named) for branch in avro_type]
    if isinstance(avro_type, dict) and avro_type.get("type") in {"record", "enum"}:
        named[avro_type["name"]] = avro_type
        if avro_type.get("namespace"):
            named[f"{avro_type['namespace']}.{avro_type['name']}"] = avro_type
    return avro_type


def _non_null(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        return next(branch for branch in avro_type if branch != "null")
    return avro_type


def timestamp(message: Message, name: str) -> int | None:
    """A Timestamp field as nanoseconds; None when unset; a deadline clamped, another time checked."""
    if not message.HasField(name):
        return None
    stamp = getattr(message, name)
    nanos = stamp.seconds * NANOS_PER_SECOND + stamp.nanos
    if name in CLAMPED_TIMESTAMP_FIELDS:
        return min(max(nanos, MIN_TIMESTAMP_NS), MAX_TIMESTAMP_NS)
    if not MIN_TIMESTAMP_NS <= nanos <= MAX_TIMESTAMP_NS:
        msg = f"{name} {stamp.seconds}s is outside the range of timestamp-nanos (years 1677..2262)"
        raise MappingError(msg)
    return nanos


def map_value(message: Message, field: FieldDescriptor, avro_type: Any, named: dict[str, Any]) -> Any:
    """One protobuf field as its Avro value."""
    value = getattr(message, field.name)
    target = _non_null(avro_type)
    if field.enum_type is not None:
        member = field.enum_type.values_by_number.get(value)
        return member.name if member is not None and member.name in target["symbols"] else UNKNOWN_SYMBOL
    nested = field.message_type
    if nested is None:
        return value
    if nested.GetOptions().map_entry:
        return [{"price": price, "quantity": quantity} for price, quantity in sorted(value.items())]
    if nested.full_name == TIMESTAMP_TYPE:
        return timestamp(message, field.name)
    if field.is_repeated:
        items = _resolve(target["items"], named)
        return [map_record(items, item, named) for item in value]
    return map_record(target, value, named) if message.HasField(field.name) else None


def map_record(
    avro_record: Mapping[str, Any],
    message: Message,
    named: dict[str, Any],
    skip: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A venue message as the Avro record of the same field names."""
    fields = message.DESCRIPTOR.fields_by_name
    record: dict[str, Any] = {}
    for avro_field in avro_record["fields"]:
        name = avro_field["name"]
        if name in skip:
            continue
        avro_type = _resolve(avro_field["type"], named)
        base = name.removesuffix(NUMBER_SUFFIX)
        if name.endswith(NUMBER_SUFFIX) and base in fields:
            record[name] = getattr(message, base)
        elif name in fields:
            record[name] = map_value(message, fields[name], avro_type, named)
        else:
            record[name] = avro_field.get("default")
    return record


def _nested(record_type: RecordType, field: str) -> Mapping[str, Any]:
    return next(f["type"] for f in SCHEMAS[record_type]["fields"] if f["name"] == field)


def execution_record(execution: Message, context: EventContext) -> dict[str, Any]:
    """An ExecutionEvent (as ``RecordMapper.execution``)."""
    body = map_record(_nested(RecordType.EXECUTION, "execution"), execution, {})
    execution_id, order = body["id"], body["order"]
    order_id = order["id"] if order is not None else ""
    if not execution_id:
        msg = f"execution without an id (order_id={order_id!r})"
        raise MappingError(msg)
    if not order_id:
        msg = f"execution {execution_id!r} has no order id"
        raise MappingError(msg)
    return {
        "execution_id": execution_id,
        "order_id": order_id,
        "transact_time": body["transact_time"],
        **context.envelope(),
        "execution": body,
    }


def snapshot_record(
    order: Message, snapshot_id: str, position: int, size: int, context: EventContext
) -> dict[str, Any]:
    """An OrderSnapshotEvent (as ``RecordMapper.snapshot_order``)."""
    if not order.id:
        msg = f"snapshot order at position {position} has no id"
        raise MappingError(msg)
    return {
        "order_id": order.id,
        "snapshot_id": snapshot_id,
        "snapshot_position": position,
        "snapshot_size": size,
        **context.envelope(),
        "order": map_record(_nested(RecordType.ORDER_SNAPSHOT, "order"), order, {}),
    }


def cancel_reject_record(cancel_reject: Message, context: EventContext) -> dict[str, Any]:
    """A CancelRejectEvent (as ``RecordMapper.cancel_reject``)."""
    record = map_record(SCHEMAS[RecordType.CANCEL_REJECT], cancel_reject, {}, skip=ENVELOPE_FIELDS)
    if not record["order_id"]:
        msg = f"cancel reject without an order id (clord_id={record['clord_id']!r})"
        raise MappingError(msg)
    record.update(context.envelope())
    return record


def encode(record_type: RecordType, prefix: bytes, record: Mapping[str, Any]) -> bytes:
    """Prefix + fastavro's Avro binary body."""
    buffer = io.BytesIO()
    buffer.write(prefix)
    fastavro.schemaless_writer(buffer, PARSED[record_type], dict(record))
    return buffer.getvalue()


def _order_key(message: Message, event_type: str) -> bytes:
    if event_type == "execution":
        return message.order.id.encode() if message.HasField("order") else b""
    if event_type == "snapshot_order":
        return str(message.id).encode()
    return str(message.order_id).encode()


def _dead_letter(event_type: str, position: int, message: Message, error: Exception) -> DeadLetter:
    key = _order_key(message, event_type)
    return DeadLetter(
        event_type, position, message.SerializeToString(), key, type(error).__name__, str(error)
    )


def reference_execution(
    prefixes: Mapping[RecordType, bytes], execution: Message, context: EventContext
) -> tuple[str, bytes, int | None, bytes]:
    """One execution as the transcoder's tuple (raises MappingError as the reference does)."""
    record = execution_record(execution, context)
    value = encode(RecordType.EXECUTION, prefixes[RecordType.EXECUTION], record)
    return record["execution_id"], record["order_id"].encode(), record["transact_time"], value


def reference_response(
    data: bytes,
    received_time_ns: int,
    prefixes: Mapping[RecordType, bytes],
    connector: str,
    response_class: Any = trading_pb2.CreateOrderSubscriptionResponse,
) -> DecodedResponse:
    """What the pipeline makes of one response's bytes (raises ``DecodeError`` as protobuf does).

    ``response_class``: the generated class of another venue contract (another descriptor pool).
    """
    response = response_class.FromString(data)
    try:
        sent = timestamp(response, "processed_sent_time")
    except MappingError:
        sent = None
    context = EventContext(Source.STREAM, response.session_id, sent, received_time_ns, connector)
    executions, orders, dead_letters = [], [], []
    cancel_reject = None
    snapshot_id, size = None, 0
    kind = ResponseKind.NONE
    if response.HasField("heartbeat"):
        kind = ResponseKind.HEARTBEAT
    elif response.HasField("snapshot"):
        kind = ResponseKind.SNAPSHOT
        snapshot_context = EventContext(
            Source.SNAPSHOT, response.session_id, sent, received_time_ns, connector
        )
        snapshot_id = f"{response.session_id}@{sent or received_time_ns}"
        size = len(response.snapshot.orders)
        for position, order in enumerate(response.snapshot.orders):
            try:
                record = snapshot_record(order, snapshot_id, position, size, snapshot_context)
            except MappingError as exc:
                dead_letters.append(_dead_letter("snapshot_order", position, order, exc))
                continue
            value = encode(RecordType.ORDER_SNAPSHOT, prefixes[RecordType.ORDER_SNAPSHOT], record)
            orders.append((record["order_id"].encode(), value))
    elif response.HasField("update"):
        kind = ResponseKind.UPDATE
        for position, execution in enumerate(response.update.executions):
            try:
                executions.append(reference_execution(prefixes, execution, context))
            except MappingError as exc:
                dead_letters.append(_dead_letter("execution", position, execution, exc))
        if response.update.HasField("cancel_reject"):
            reject = response.update.cancel_reject
            try:
                record = cancel_reject_record(reject, context)
            except MappingError as exc:
                dead_letters.append(_dead_letter("cancel_reject", 0, reject, exc))
            else:
                value = encode(RecordType.CANCEL_REJECT, prefixes[RecordType.CANCEL_REJECT], record)
                cancel_reject = (record["order_id"].encode(), record["transact_time"], value)
    return DecodedResponse(
        kind, response.session_id, sent, executions, snapshot_id, size, orders, cancel_reject, dead_letters
    )
