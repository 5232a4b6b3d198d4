"""The compiled hot path: venue protobuf bytes to framed Avro records, a whole response in one call.

:class:`Transcoder` wraps the native module ``connector._native`` (Rust, ``native/``). It takes the
raw bytes of a ``CreateOrderSubscriptionResponse`` (what a gRPC stub with an identity response
deserializer yields) or of one ``Execution`` (the REST backfill), and returns for every event the
framed Avro value (the record type's prefix, then the Avro binary body) with its key and the fields
the engine needs, byte for byte what the reference mapping and fastavro produce
(``tests/reference_mapping.py``; the tests hold them equal).

Nothing venue- or schema-specific is compiled in. At construction this module builds a *plan*
from the protobuf descriptors (``connector._pb`` by default) and the committed ``.avsc`` files,
with the reference mapping's rules (DESIGN.md §5):

- a schema field reads the protobuf field of the same name; ``<field>_number`` its raw enum number;
- an enum number becomes the Avro symbol of the same name, or ``UNKNOWN``;
- a ``google.protobuf.Timestamp`` becomes ``timestamp-nanos`` or null when unset; a time outside
  1677..2262 sends the event to the dead-letter topic, except ``good_till_time``, which is clamped;
- ``price_to_quantity_filled`` becomes ``{price, quantity}`` records sorted by price;
- a schema field the venue lacks is written as its Avro default (:meth:`missing_venue_fields`);
- field numbers come from the descriptors only, so the official proto bundle needs ``make protos``
  and nothing else.

A combination the plan cannot express (a proto type the schema does not match, an enum without
``UNKNOWN``) is refused at construction with :class:`UnsupportedMapping` naming the field, so a
proto or schema change can never silently diverge from the reference.

Errors, all :class:`TranscodeError` (a :class:`~connector.core.mapping.MappingError`):
bytes that are not valid protobuf (exactly those ``FromString`` rejects) raise it for the whole
input; an event that is valid protobuf but cannot be mapped (no key, a time out of range) is a
:class:`DeadLetter` of the response, or raises for a single backfilled execution. Any other
exception is a bug of the connector, never venue data.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, NamedTuple, NoReturn, cast

import fastavro
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

try:
    from connector import _native
except ImportError as exc:  # a source tree whose extension was never built
    msg = (
        "connector._native (the compiled transcoder, native/) is not built: install the package "
        "(pip install -e . or make venv; needs cargo, Rust >= 1.85, and a C compiler)"
    )
    raise ImportError(msg) from exc
from connector.core.mapping import (
    CLAMPED_TIMESTAMP_FIELDS,
    ENVELOPE_FIELDS,
    NUMBER_SUFFIX,
    TIMESTAMP_TYPE,
    UNKNOWN_SYMBOL,
    MappingError,
    Source,
)
from connector.core.record_schemas import RecordType, schema_dict

PLAN_VERSION: Final = 2
TRANSCODED_TYPES: Final = (RecordType.EXECUTION, RecordType.ORDER_SNAPSHOT, RecordType.CANCEL_REJECT)
# Enum numbers below this are looked up in a table, others in a short list.
DENSE_ENUM_LIMIT: Final = 256

# What the engine gets per event (tuples: one object per record, not one per field).
EncodedExecution = tuple[str, bytes, int | None, bytes]
"""(execution_id, key = order id in UTF-8, transact_time_ns or None, framed value)."""
EncodedSnapshotOrder = tuple[bytes, bytes]
"""(key = order id in UTF-8, framed value)."""
EncodedCancelReject = tuple[bytes, int | None, bytes]
"""(key = order id in UTF-8, transact_time_ns or None, framed value)."""


class ResponseKind(StrEnum):
    """Which member of the response's ``event`` oneof the venue set."""

    NONE = "none"
    HEARTBEAT = "heartbeat"
    SNAPSHOT = "snapshot"
    UPDATE = "update"


class TranscodeError(MappingError):
    """Venue bytes that cannot become records; the engine sends them to the dead-letter topic.

    Attributes:
        reason: why, in words (the dead-letter ``error`` header).
        error_type: ``DecodeError`` for bytes that are not valid protobuf, ``MappingError`` for an
            event that is valid but cannot be mapped (the dead-letter ``error_type`` header).
        key: the order id in UTF-8 when known (the dead-letter key), else empty.
    """

    def __init__(self, reason: str, *, error_type: str, key: bytes = b"") -> None:
        super().__init__(reason)
        self.reason: Final = reason
        self.error_type: Final = error_type
        self.key: Final = key


class UnsupportedMapping(ValueError):
    """The descriptors and the schemas ask for a mapping the transcoder cannot express."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event of a valid response that cannot become a record.

    Attributes:
        event_type: ``execution``, ``snapshot_order`` or ``cancel_reject``.
        position: its index among the response's events of that type, in wire order.
        value: its protobuf bytes as the venue sent them.
        key: its order id in UTF-8 (empty when the venue sent none).
        error_type: ``MappingError``.
        reason: why, as the reference mapping words it.
    """

    event_type: str
    position: int
    value: bytes
    key: bytes
    error_type: str
    reason: str


class DecodedResponse(NamedTuple):
    """One transcoded ``CreateOrderSubscriptionResponse`` (records in wire order per type).

    ``snapshot_id`` is ``<session_id>@<processed_sent_time or received_time>`` and set only for a
    snapshot; ``processed_sent_time_ns`` is None when absent or outside timestamp-nanos. Updates'
    events carry the source given to :meth:`Transcoder.response` (STREAM), snapshot orders SNAPSHOT.
    """

    kind: ResponseKind
    session_id: str
    processed_sent_time_ns: int | None
    executions: list[EncodedExecution]
    snapshot_id: str | None
    snapshot_size: int
    snapshot_orders: list[EncodedSnapshotOrder]
    cancel_reject: EncodedCancelReject | None
    dead_letters: list[DeadLetter]


class Transcoder:
    """Venue protobuf bytes -> framed Avro values, through the native module."""

    def __init__(
        self,
        prefixes: Mapping[RecordType, bytes],
        connector: str,
        *,
        response_descriptor: Descriptor | None = None,
    ) -> None:
        """Build the plan and the native transcoder.

        Args:
            prefixes: the framing header of each record type's values: single-object
                (``C3 01`` + fingerprint) or Schema Registry (``00`` + 4-byte ID).
            connector: the connector instance name (the ``connector`` field).
            response_descriptor: the ``CreateOrderSubscriptionResponse`` descriptor;
                ``connector._pb``'s by default.

        Raises:
            UnsupportedMapping: the descriptors and schemas cannot be transcoded (names the field).
            KeyError: a prefix is missing.
        """
        if response_descriptor is None:
            from connector._pb.polymarket.v1 import trading_pb2  # noqa: PLC0415 - keeps the module import-light

            response_descriptor = cast(Descriptor, trading_pb2.CreateOrderSubscriptionResponse.DESCRIPTOR)
        builder = _PlanBuilder(response_descriptor)
        self.plan_json: Final = json.dumps(builder.plan, separators=(",", ":"))
        self._missing: Final = sorted(set(builder.missing))
        self._native = _native.Transcoder(
            self.plan_json,
            (
                prefixes[RecordType.EXECUTION],
                prefixes[RecordType.ORDER_SNAPSHOT],
                prefixes[RecordType.CANCEL_REJECT],
            ),
            connector,
            (ResponseKind.NONE, ResponseKind.HEARTBEAT, ResponseKind.SNAPSHOT, ResponseKind.UPDATE),
            (Source.STREAM, Source.SNAPSHOT, Source.BACKFILL, Source.DROP_COPY),
            DecodedResponse,
            DeadLetter,
        )

    def missing_venue_fields(self) -> Sequence[str]:
        """Schema fields the venue messages do not have (written as their Avro defaults)."""
        return self._missing

    def response(self, data: bytes, received_time_ns: int, source: Source = Source.STREAM) -> DecodedResponse:
        """Transcode one ``CreateOrderSubscriptionResponse`` from its wire bytes.

        Args:
            data: the response's protobuf bytes.
            received_time_ns: when the connector received it (the ``received_time`` field).
            source: the source of the update's events (snapshot orders are always SNAPSHOT).

        Raises:
            TranscodeError: the bytes are not a valid response (``error_type`` ``DecodeError``).
        """
        try:
            decoded: DecodedResponse = self._native.response(data, received_time_ns, source)
        except _native.DecodeError as exc:
            raise TranscodeError(str(exc), error_type="DecodeError") from None
        return decoded

    def execution(
        self,
        data: bytes,
        *,
        source: Source,
        session_id: str,
        processed_sent_time_ns: int | None,
        received_time_ns: int,
    ) -> EncodedExecution:
        """Transcode one ``Execution`` (a backfilled one) from its wire bytes.

        Raises:
            TranscodeError: invalid bytes (``DecodeError``) or an execution that cannot be mapped
                (``MappingError``, with its order id as ``key``).
        """
        try:
            result = self._native.execution(
                data, source, session_id, processed_sent_time_ns, received_time_ns
            )
        except _native.DecodeError as exc:
            raise TranscodeError(str(exc), error_type="DecodeError") from None
        if isinstance(result, DeadLetter):
            raise TranscodeError(result.reason, error_type=result.error_type, key=result.key)
        encoded: EncodedExecution = result
        return encoded


# --------------------------------------------------------------------------- the plan


def _refuse(what: str) -> NoReturn:
    """Refuse a plan the transcoder cannot express (raises UnsupportedMapping)."""
    msg = f"the transcoder cannot map {what}"
    raise UnsupportedMapping(msg)


_SCALAR_KINDS: Final = {
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_ENUM: "enum",
    FieldDescriptor.TYPE_STRING: "string",
}
_INT_KINDS: Final = frozenset({"int32", "sint32", "sfixed32", "enum"})
_LONG_KINDS: Final = frozenset(_SCALAR_KINDS.values()) - {"string", "bool"}
_ENVELOPE_TYPES: Final = {
    "execution_id": "string",
    "order_id": "string",
    "transact_time": "optional_nanos",
    "source": "source",
    "session_id": "string",
    "processed_sent_time": "optional_nanos",
    "received_time": "nanos",
    "connector": "string",
    "snapshot_id": "string",
    "snapshot_position": "int",
    "snapshot_size": "int",
}
_EVENT_ENVELOPES: Final = {
    RecordType.EXECUTION: frozenset(
        {
            "execution_id",
            "order_id",
            "transact_time",
            "source",
            "session_id",
            "processed_sent_time",
            "received_time",
            "connector",
        }
    ),
    RecordType.ORDER_SNAPSHOT: frozenset(
        {
            "order_id",
            "snapshot_id",
            "snapshot_position",
            "snapshot_size",
            "source",
            "session_id",
            "processed_sent_time",
            "received_time",
            "connector",
        }
    ),
    RecordType.CANCEL_REJECT: ENVELOPE_FIELDS,
}


def _field_kind(field: FieldDescriptor) -> str:
    message = field.message_type
    if message is not None:
        if message.GetOptions().map_entry:
            key, value = message.fields_by_name["key"], message.fields_by_name["value"]
            if key.type == value.type == FieldDescriptor.TYPE_INT64:
                return "map_int64_int64"
            _refuse(f"map field {field.full_name} (only map<int64, int64>)")
        return "repeated_message" if field.is_repeated else "message"
    kind = _SCALAR_KINDS.get(field.type)
    if kind is None or field.is_repeated:
        _refuse(f"field {field.full_name} (type {field.type}, repeated={field.is_repeated})")
    if kind == "enum" and cast(EnumDescriptor, field.enum_type).is_closed:
        _refuse(f"closed (proto2) enum field {field.full_name}")
    return kind


def _non_null(avro_type: Any) -> tuple[Any, bool | None]:
    """The non-null branch of ``[null, T]`` / ``[T, null]`` and whether null is first (None: no union)."""
    if isinstance(avro_type, list):
        others = [branch for branch in avro_type if branch != "null"]
        if len(avro_type) != 2 or len(others) != 1:
            _refuse(f"union {json.dumps(avro_type)} (only null plus one type)")
        return others[0], avro_type[0] == "null"
    return avro_type, None


def _type_name(avro_type: Any) -> Any:
    return avro_type.get("type") if isinstance(avro_type, dict) else avro_type


def _is_nanos(avro_type: Any) -> bool:
    return (
        isinstance(avro_type, dict)
        and avro_type.get("type") == "long"
        and avro_type.get("logicalType") == "timestamp-nanos"
    )


class _PlanBuilder:
    """Builds the plan (JSON-ready) from the response descriptor and the committed schemas."""

    def __init__(self, response: Descriptor) -> None:
        self.messages: list[dict[str, Any]] = []
        self.message_index: dict[str, int] = {}
        self.writers: list[dict[str, Any]] = []
        self.writer_index: dict[tuple[str, str], int] = {}
        self.missing: list[str] = []
        self.named: dict[str, Any] = {}
        self._add_message(response)
        update = self._child(response, "update")
        snapshot = self._child(response, "snapshot")
        execution = self._child(update, "executions")
        order = self._child(snapshot, "orders")
        cancel_reject = self._child(update, "cancel_reject")
        timestamp = response.fields_by_name["processed_sent_time"].message_type
        if timestamp is None or timestamp.full_name != TIMESTAMP_TYPE:
            _refuse("processed_sent_time that is not a google.protobuf.Timestamp")
        execution_order = self._child(execution, "order")
        schemas = {record_type: schema_dict(record_type) for record_type in TRANSCODED_TYPES}
        self.plan: dict[str, Any] = {
            "version": PLAN_VERSION,
            "messages": self.messages,
            "writers": self.writers,
            "timestamp": {
                "message": self.message_index[TIMESTAMP_TYPE],
                "seconds": self._slot(timestamp, "seconds"),
                "nanos": self._slot(timestamp, "nanos"),
            },
            "response": {
                "message": self.message_index[response.full_name],
                **{
                    name: self._slot(response, name)
                    for name in ("heartbeat", "snapshot", "update", "session_id", "processed_sent_time")
                },
                "orders": self._slot(snapshot, "orders"),
                "executions": self._slot(update, "executions"),
                "cancel_reject": self._slot(update, "cancel_reject"),
            },
            "execution": {
                "message": self.message_index[execution.full_name],
                "id": self._slot(execution, "id"),
                "order": self._slot(execution, "order"),
                "order_id": self._slot(execution_order, "id"),
                "transact_time": self._slot(execution, "transact_time"),
                "writer": self._event_writer(RecordType.EXECUTION, schemas, execution, "execution"),
            },
            "snapshot_order": {
                "message": self.message_index[order.full_name],
                "id": self._slot(order, "id"),
                "writer": self._event_writer(RecordType.ORDER_SNAPSHOT, schemas, order, "order"),
            },
            "cancel_reject": {
                "message": self.message_index[cancel_reject.full_name],
                "order_id": self._slot(cancel_reject, "order_id"),
                "clord_id": self._slot(cancel_reject, "clord_id"),
                "transact_time": self._slot(cancel_reject, "transact_time"),
                "writer": self._event_writer(RecordType.CANCEL_REJECT, schemas, cancel_reject, None),
            },
            "source_symbols": self._source_symbols(schemas),
        }

    # ----------------------------------------------------------------- protobuf side

    def _add_message(self, descriptor: Descriptor) -> int:
        """Register a message and every message it reaches (all are decoded, as protobuf does)."""
        if descriptor.full_name in self.message_index:
            return self.message_index[descriptor.full_name]
        index = len(self.messages)
        self.message_index[descriptor.full_name] = index
        entry: dict[str, Any] = {"name": descriptor.full_name, "fields": []}
        self.messages.append(entry)
        oneofs = {oneof.full_name: number for number, oneof in enumerate(descriptor.oneofs)}
        for field in descriptor.fields:
            kind = _field_kind(field)
            plan: dict[str, Any] = {"name": field.name, "number": field.number, "kind": kind}
            if kind in {"message", "repeated_message"}:
                plan["message"] = self._add_message(cast(Descriptor, field.message_type))
            if field.containing_oneof is not None:
                plan["oneof"] = oneofs[field.containing_oneof.full_name]
            entry["fields"].append(plan)
        return index

    @staticmethod
    def _slot(descriptor: Descriptor | None, name: str) -> int | None:
        if descriptor is None or name not in descriptor.fields_by_name:
            return None
        return [field.name for field in descriptor.fields].index(name)

    @staticmethod
    def _child(descriptor: Descriptor | None, name: str) -> Descriptor:
        field = descriptor.fields_by_name.get(name) if descriptor is not None else None
        if field is None or field.message_type is None:
            parent = descriptor.full_name if descriptor is not None else "?"
            _refuse(f"a venue contract without the message field {parent}.{name}")
        message: Descriptor = field.message_type
        return message

    # ----------------------------------------------------------------- Avro side

    def _resolve(self, avro_type: Any) -> Any:
        """Register named types as they are defined; replace references by their definitions."""
        if isinstance(avro_type, str):
            return self.named.get(avro_type, avro_type)
        if isinstance(avro_type, list):
            return [self._resolve(branch) for branch in avro_type]
        if isinstance(avro_type, dict):
            if avro_type.get("type") in {"record", "enum", "fixed"}:
                self.named[avro_type["name"]] = avro_type
                if avro_type.get("namespace"):
                    self.named[f"{avro_type['namespace']}.{avro_type['name']}"] = avro_type
            if avro_type.get("type") == "array":
                return {**avro_type, "items": self._resolve(avro_type["items"])}
        return avro_type

    def _event_writer(
        self,
        record_type: RecordType,
        schemas: Mapping[RecordType, dict[str, Any]],
        message: Descriptor,
        body_field: str | None,
    ) -> int:
        """The writer of a whole event record: envelope fields, and the venue message."""
        self.named = {}
        schema = schemas[record_type]
        envelope = _EVENT_ENVELOPES[record_type]
        ops: list[dict[str, Any]] = []
        body_ops: Iterator[dict[str, Any]] | None = None
        if body_field is None:  # the venue message's fields are the record's own (CancelRejectEvent)
            body_ops = iter(self._field_ops(schema, message, skip=envelope))
        for avro_field in schema["fields"]:
            name = avro_field["name"]
            avro_type = self._resolve(avro_field["type"])
            if name in envelope:
                ops.append(self._envelope_op(schema["name"], name, avro_type))
            elif name == body_field:
                target, nullable = _non_null(avro_type)
                if nullable is not None or _type_name(target) != "record":
                    _refuse(f"{schema['name']}.{name}: not a record")
                ops.append({"op": "body", "writer": self._writer(target, message)})
            elif body_ops is not None:
                ops.append(next(body_ops))
            else:
                _refuse(f"{schema['name']}.{name}: a field the connector does not know")
        index = len(self.writers)
        self.writers.append({"message": self.message_index[message.full_name], "ops": ops})
        return index

    def _envelope_op(self, record: str, name: str, avro_type: Any) -> dict[str, Any]:
        expected = _ENVELOPE_TYPES[name]
        target, null_first = _non_null(avro_type)
        matches = {
            "string": target == "string" and null_first is None,
            "int": target == "int" and null_first is None,
            "nanos": _is_nanos(target) and null_first is None,
            "optional_nanos": _is_nanos(target) and null_first is not None,
            "source": _type_name(target) == "enum" and null_first is None,
        }[expected]
        if not matches:
            _refuse(f"{record}.{name} of type {json.dumps(avro_type)} (expected {expected})")
        op: dict[str, Any] = {"op": "envelope", "field": name}
        if expected == "optional_nanos":
            op["null_first"] = null_first
        return op

    def _source_symbols(self, schemas: Mapping[RecordType, dict[str, Any]]) -> dict[str, int]:
        symbol_lists = set()
        for schema in schemas.values():
            field = next(f for f in schema["fields"] if f["name"] == "source")
            symbol_lists.add(tuple(field["type"]["symbols"]))
        if len(symbol_lists) != 1:
            _refuse("Source enums that differ between the event schemas")
        symbols = list(symbol_lists.pop())
        try:
            return {source.value.lower(): symbols.index(source.value) for source in Source}
        except ValueError:
            _refuse(f"a Source enum without every source: {symbols}")

    def _writer(self, record: Mapping[str, Any], message: Descriptor) -> int:
        """The writer of an Avro record from a venue message (shared by equal pairs)."""
        key = (str(record["name"]), message.full_name)
        if key in self.writer_index:
            return self.writer_index[key]
        index = len(self.writers)
        self.writer_index[key] = index
        self.writers.append({"message": self.message_index[message.full_name], "ops": []})
        self.writers[index]["ops"] = self._field_ops(record, message)
        return index

    def _field_ops(
        self, record: Mapping[str, Any], message: Descriptor, skip: frozenset[str] = frozenset()
    ) -> list[dict[str, Any]]:
        ops = []
        proto_fields = message.fields_by_name
        for avro_field in record["fields"]:
            name: str = avro_field["name"]
            if name in skip:
                continue
            avro_type = self._resolve(avro_field["type"])
            base = name.removesuffix(NUMBER_SUFFIX)
            if name.endswith(NUMBER_SUFFIX) and base in proto_fields:
                ops.append(self._integer_op(message, proto_fields[base], avro_type, name))
            elif name in proto_fields:
                ops.append(self._op(message, proto_fields[name], avro_type))
            else:
                self.missing.append(f"{message.name}.{name}")
                ops.append({"op": "constant", "hex": _encoded_default(avro_field, avro_type).hex()})
        return ops

    def _integer_op(
        self, message: Descriptor, field: FieldDescriptor, avro_type: Any, name: str
    ) -> dict[str, Any]:
        kind = _field_kind(field)
        slot = self._slot(message, field.name)
        if avro_type == "int" and kind in _INT_KINDS:
            return {"op": "int", "slot": slot}
        if avro_type == "long" and kind in _LONG_KINDS:
            return {"op": "long", "slot": slot}
        _refuse(f"{message.full_name}.{name}: {kind} as Avro {json.dumps(avro_type)}")

    def _op(self, message: Descriptor, field: FieldDescriptor, avro_type: Any) -> dict[str, Any]:  # noqa: PLR0911 - one branch per kind
        kind = _field_kind(field)
        slot = self._slot(message, field.name)
        target, null_first = _non_null(avro_type)
        nested = cast(Descriptor, field.message_type)  # for the message kinds
        where = f"{message.full_name}.{field.name} ({kind}) as Avro {json.dumps(avro_type)}"
        if kind == "enum" and _type_name(target) == "enum" and null_first is None:
            return self._enum_op(field, target, slot, where)
        if kind == "string" and avro_type == "string":
            return {"op": "string", "slot": slot}
        if kind == "bool" and avro_type == "boolean":
            return {"op": "boolean", "slot": slot}
        if kind in _LONG_KINDS - {"enum"} and avro_type in {"int", "long"}:
            return self._integer_op(message, field, avro_type, field.name)
        if kind == "map_int64_int64" and _type_name(target) == "array" and null_first is None:
            items = self._resolve(target["items"])
            names = [f["name"] for f in items.get("fields", [])] if isinstance(items, dict) else []
            types = [f["type"] for f in items.get("fields", [])] if isinstance(items, dict) else []
            if sorted(names) != ["price", "quantity"] or types != ["long", "long"]:
                _refuse(f"{where}: items must be a record of long price and quantity")
            return {"op": "pairs", "slot": slot, "key_first": names[0] == "price"}
        if kind == "message" and nested.full_name == TIMESTAMP_TYPE:
            if not _is_nanos(target) or null_first is None:
                _refuse(f"{where}: a Timestamp maps to [null, timestamp-nanos]")
            clamp = field.name in CLAMPED_TIMESTAMP_FIELDS
            return {
                "op": "timestamp",
                "slot": slot,
                "field": field.name,
                "clamp": clamp,
                "null_first": null_first,
            }
        if kind == "message" and _type_name(target) == "record" and null_first is not None:
            return {
                "op": "record",
                "slot": slot,
                "writer": self._writer(target, nested),
                "null_first": null_first,
            }
        if kind == "repeated_message" and _type_name(target) == "array" and null_first is None:
            items = self._resolve(target["items"])
            if _type_name(items) != "record":
                _refuse(f"{where}: array items must be records")
            return {"op": "array", "slot": slot, "writer": self._writer(items, nested)}
        _refuse(where)

    @staticmethod
    def _enum_op(
        field: FieldDescriptor, target: Mapping[str, Any], slot: int | None, where: str
    ) -> dict[str, Any]:
        symbols: list[str] = list(target["symbols"])
        if UNKNOWN_SYMBOL not in symbols:
            _refuse(f"{where}: the Avro enum has no {UNKNOWN_SYMBOL} symbol")
        by_number = {
            value.number: symbols.index(value.name)
            for value in cast(EnumDescriptor, field.enum_type).values
            if value.name in symbols
        }
        unknown = symbols.index(UNKNOWN_SYMBOL)
        small = [number for number in by_number if 0 <= number < DENSE_ENUM_LIMIT]
        dense = [by_number.get(number, unknown) for number in range(max(small, default=-1) + 1)]
        sparse = sorted((number, index) for number, index in by_number.items() if number not in small)
        return {"op": "enum", "slot": slot, "dense": dense, "sparse": sparse, "unknown": unknown}


def _encoded_default(avro_field: Mapping[str, Any], avro_type: Any) -> bytes:
    """The Avro encoding of a field's default value (fastavro writes it, once, at construction)."""
    if "default" not in avro_field:
        _refuse(f"schema field {avro_field['name']} that the venue lacks and has no default")
    schema = {"type": "record", "name": "Default", "fields": [{"name": "value", "type": avro_type}]}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), {"value": avro_field["default"]})
    return buffer.getvalue()
