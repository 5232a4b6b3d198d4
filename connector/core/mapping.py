"""Pure mapping from venue protobuf messages to Avro-ready record dicts (no I/O).

This is the one module that knows both field sets. The mapping is driven by the Avro schema: for
every field of a record schema it compiles, once, an extractor that reads the protobuf field of the
same name. So every venue field the schema names reaches the record, and:

- enums become the Avro enum symbol of the same name plus ``<field>_number`` with the raw number;
  a number the schema does not know becomes ``UNKNOWN`` and keeps its number (nothing is lost);
- ``google.protobuf.Timestamp`` becomes integer nanoseconds since the epoch (``timestamp-nanos``),
  or null when the venue did not set it; a time outside 1677..2262 sends the event to the DLQ, except
  a deadline (``good_till_time``), which is clamped to the nearest representable instant, because a
  far-future "never" (e.g. 9999-12-31) must not cost the fill its record and clamping keeps every
  comparison with a representable time;
- ``price_to_quantity_filled`` (a protobuf map) becomes a list of ``{price, quantity}`` sorted by price;
- fixed-point integers stay raw beside their scale fields (lossless).

Messages are read by field name only (DESIGN.md §3), so the official proto bundle can replace the
reconstruction: a schema field the bundle lacks is filled with its Avro default (and reported by
:meth:`RecordMapper.missing_venue_fields`), and fields the schema does not name are ignored.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from connector.core.record_schemas import RecordType, schema_dict
from connector.core.venue_time import NANOS_PER_SECOND
from connector.errors import MappingError

UNKNOWN_SYMBOL: Final = "UNKNOWN"
NUMBER_SUFFIX: Final = "_number"
TIMESTAMP_TYPE: Final = "google.protobuf.Timestamp"
# timestamp-nanos is a signed 64-bit count: 1677-09-21 .. 2262-04-11.
MIN_TIMESTAMP_NS: Final = -(2**63)
MAX_TIMESTAMP_NS: Final = 2**63 - 1

# Deadlines, not clock readings: clamped into range instead of failing the event (see above).
CLAMPED_TIMESTAMP_FIELDS: Final = frozenset({"good_till_time"})

ENVELOPE_FIELDS: Final = frozenset(
    {"source", "session_id", "processed_sent_time", "received_time", "connector"}
)


class Source(StrEnum):
    """How the connector obtained an event (the ``source`` header and field)."""

    STREAM = "STREAM"
    SNAPSHOT = "SNAPSHOT"
    BACKFILL = "BACKFILL"


@dataclass(frozen=True, slots=True)
class EventContext:
    """What the connector knows about an event beyond the venue message itself."""

    source: Source
    session_id: str
    processed_sent_time_ns: int | None
    received_time_ns: int
    connector: str

    def envelope(self) -> dict[str, Any]:
        """The envelope fields every event record carries."""
        return {
            "source": self.source.value,
            "session_id": self.session_id,
            "processed_sent_time": self.processed_sent_time_ns,
            "received_time": self.received_time_ns,
            "connector": self.connector,
        }


def timestamp_ns(message: Message, field: str) -> int | None:
    """Return a Timestamp field as nanoseconds since the epoch, or None when unset.

    Raises:
        MappingError: the time lies outside what 64-bit nanoseconds can hold (1677..2262).
    """
    if not message.HasField(field):
        return None
    return _timestamp_value(getattr(message, field), field)


def clamped_timestamp_ns(message: Message, field: str) -> int | None:
    """Return a Timestamp field as nanoseconds since the epoch, clamped to 1677..2262; None when unset."""
    if not message.HasField(field):
        return None
    stamp = getattr(message, field)
    nanos = int(stamp.seconds) * NANOS_PER_SECOND + int(stamp.nanos)
    return min(max(nanos, MIN_TIMESTAMP_NS), MAX_TIMESTAMP_NS)


class _RecordPlan:
    """The mapping of one Avro record schema from one protobuf descriptor, compiled to one function.

    The plan is Python source generated once from the schema and the descriptor: a single dict
    display with one entry per schema field (``"price": message.price``,
    ``"side": _enum3.get(message.side, "UNKNOWN")``, ...), so mapping a message costs one attribute
    read and at most one call per field. ``source`` keeps the generated code for whoever debugs it.
    """

    __slots__ = ("apply", "missing", "source")

    def __init__(
        self,
        avro_record: Mapping[str, Any],
        descriptor: Descriptor,
        named: dict[str, Mapping[str, Any]],
        skip: frozenset[str] = frozenset(),
    ) -> None:
        self.missing: list[str] = []
        namespace: dict[str, Any] = {
            "_timestamp": _timestamp_or_none,
            "_clamped_timestamp": clamped_timestamp_ns,
            "UNKNOWN": UNKNOWN_SYMBOL,
        }
        entries = []
        proto_fields = descriptor.fields_by_name
        for avro_field in avro_record["fields"]:
            name: str = avro_field["name"]
            if name in skip:
                continue
            avro_type = _resolve(avro_field["type"], named)
            if name.endswith(NUMBER_SUFFIX) and name.removesuffix(NUMBER_SUFFIX) in proto_fields:
                expression = _read(proto_fields[name.removesuffix(NUMBER_SUFFIX)].name)
            elif name in proto_fields:
                expression = self._expression(proto_fields[name], avro_type, named, namespace)
            else:
                self.missing.append(f"{descriptor.name}.{name}")
                expression = _constant(namespace, avro_field.get("default"))
            entries.append(f"        {name!r}: {expression},")
        self.source = "def apply(message):\n    return {\n" + "\n".join(entries) + "\n    }\n"
        exec(compile(self.source, f"<mapping of {descriptor.full_name}>", "exec"), namespace)  # noqa: S102 - generated above from the schema and the descriptor
        self.apply: Callable[[Message], dict[str, Any]] = namespace["apply"]

    def _expression(
        self,
        field: FieldDescriptor,
        avro_type: Any,
        named: dict[str, Mapping[str, Any]],
        namespace: dict[str, Any],
    ) -> str:
        """The Python expression that reads one protobuf field as its Avro value."""
        name = field.name
        read = _read(name)
        target = _non_null(avro_type)
        if field.enum_type is not None:
            symbols = set(target["symbols"])
            by_number = {
                value.number: value.name for value in field.enum_type.values if value.name in symbols
            }
            return f"{_constant(namespace, by_number)}.get({read}, UNKNOWN)"
        message_type = field.message_type
        if message_type is None:
            return read
        if message_type.GetOptions().map_entry:
            return f"[{{'price': price, 'quantity': quantity}} for price, quantity in sorted({read}.items())]"
        if message_type.full_name == TIMESTAMP_TYPE:
            clamped = name in CLAMPED_TIMESTAMP_FIELDS  # a deadline: clamped into range, not refused
            return (
                f"_clamped_timestamp(message, {name!r})"
                if clamped
                else f"_timestamp({read}, message, {name!r})"
            )
        if field.is_repeated:
            item_plan = _RecordPlan(_resolve(target["items"], named), message_type, named)
            self.missing.extend(item_plan.missing)
            return f"[{_constant(namespace, item_plan.apply)}(item) for item in {read}]"
        plan = _RecordPlan(target, message_type, named)
        self.missing.extend(plan.missing)
        return f"({_constant(namespace, plan.apply)}({read}) if message.HasField({name!r}) else None)"


def _read(name: str) -> str:
    """The expression reading a protobuf field (a keyword as a field name needs getattr)."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"message.{name}"
    return f"getattr(message, {name!r})"


def _constant(namespace: dict[str, Any], value: Any) -> str:
    """Make a value available to the generated code; return its name there."""
    constant = f"_c{len(namespace)}"
    namespace[constant] = value
    return constant


def _timestamp_value(stamp: Any, field: str) -> int:
    nanos: int = stamp.seconds * NANOS_PER_SECOND + stamp.nanos
    if not MIN_TIMESTAMP_NS <= nanos <= MAX_TIMESTAMP_NS:
        msg = f"{field} {stamp.seconds}s is outside the range of timestamp-nanos (years 1677..2262)"
        raise MappingError(msg)
    return nanos


def _timestamp_or_none(stamp: Any, message: Message, field: str) -> int | None:
    """A Timestamp field's nanoseconds, or None when unset (``HasField`` asked only of a zero time)."""
    nanos: int = stamp.seconds * NANOS_PER_SECOND + stamp.nanos
    if not MIN_TIMESTAMP_NS <= nanos <= MAX_TIMESTAMP_NS:
        msg = f"{field} {stamp.seconds}s is outside the range of timestamp-nanos (years 1677..2262)"
        raise MappingError(msg)
    if nanos == 0 and not message.HasField(field):
        return None
    return nanos


def _resolve(avro_type: Any, named: dict[str, Mapping[str, Any]]) -> Any:
    """Register named types as they are defined and replace references by their definitions."""
    if isinstance(avro_type, str):
        return named.get(avro_type, avro_type)
    if isinstance(avro_type, list):
        return [_resolve(branch, named) for branch in avro_type]
    if isinstance(avro_type, dict):
        if avro_type.get("type") in {"record", "enum"}:
            named[avro_type["name"]] = avro_type
            if avro_type.get("namespace"):
                named[f"{avro_type['namespace']}.{avro_type['name']}"] = avro_type
        if avro_type.get("type") == "array":
            return {**avro_type, "items": _resolve(avro_type["items"], named)}
    return avro_type


def _non_null(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        branches = [branch for branch in avro_type if branch != "null"]
        return branches[0]
    return avro_type


def _nested_record(schema: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    for avro_field in schema["fields"]:
        if avro_field["name"] == field:
            record: Mapping[str, Any] = avro_field["type"]
            return record
    msg = f"schema {schema['name']} has no field {field!r}"
    raise KeyError(msg)


class RecordMapper:
    """Turns venue messages into record dicts matching the committed Avro schemas."""

    def __init__(self, execution: Descriptor, order: Descriptor, cancel_reject: Descriptor) -> None:
        """Compile the plans for the given protobuf descriptors.

        Args:
            execution: descriptor of ``polymarket.v1.Execution``.
            order: descriptor of ``polymarket.v1.Order``.
            cancel_reject: descriptor of ``polymarket.v1.CancelReject``.
        """
        execution_schema = schema_dict(RecordType.EXECUTION)
        snapshot_schema = schema_dict(RecordType.ORDER_SNAPSHOT)
        cancel_schema = schema_dict(RecordType.CANCEL_REJECT)
        self._execution = _RecordPlan(_nested_record(execution_schema, "execution"), execution, {})
        self._order = _RecordPlan(_nested_record(snapshot_schema, "order"), order, {})
        self._cancel_reject = _RecordPlan(cancel_schema, cancel_reject, {}, skip=ENVELOPE_FIELDS)

    @classmethod
    def for_venue(cls) -> RecordMapper:
        """A mapper for the venue messages of the generated code in ``connector._pb``."""
        from connector._pb.polymarket.v1 import trading_pb2  # noqa: PLC0415 - keeps the module import-light

        return cls(
            cast(Descriptor, trading_pb2.Execution.DESCRIPTOR),
            cast(Descriptor, trading_pb2.Order.DESCRIPTOR),
            cast(Descriptor, trading_pb2.CancelReject.DESCRIPTOR),
        )

    def missing_venue_fields(self) -> Sequence[str]:
        """Schema fields the venue messages do not have (filled with their Avro defaults)."""
        return sorted({*self._execution.missing, *self._order.missing, *self._cancel_reject.missing})

    def execution(self, execution: Message, context: EventContext) -> dict[str, Any]:
        """Map one ``Execution`` to an ExecutionEvent record.

        Raises:
            MappingError: the execution has no id or its order has no id (it cannot be keyed).
        """
        body = self._execution.apply(execution)
        execution_id: str = body["id"]
        order = body["order"]
        order_id: str = order["id"] if order is not None else ""
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
            "source": context.source.value,
            "session_id": context.session_id,
            "processed_sent_time": context.processed_sent_time_ns,
            "received_time": context.received_time_ns,
            "connector": context.connector,
            "execution": body,
        }

    def snapshot_order(
        self, order: Message, snapshot_id: str, position: int, size: int, context: EventContext
    ) -> dict[str, Any]:
        """Map one ``Order`` of a snapshot to an OrderSnapshotEvent record.

        Raises:
            MappingError: the order has no id.
        """
        order_id: str = getattr(order, "id", "")
        if not order_id:
            msg = f"snapshot order at position {position} has no id"
            raise MappingError(msg)
        return {
            "order_id": order_id,
            "snapshot_id": snapshot_id,
            "snapshot_position": position,
            "snapshot_size": size,
            "source": context.source.value,
            "session_id": context.session_id,
            "processed_sent_time": context.processed_sent_time_ns,
            "received_time": context.received_time_ns,
            "connector": context.connector,
            "order": self._order.apply(order),
        }

    def cancel_reject(self, cancel_reject: Message, context: EventContext) -> dict[str, Any]:
        """Map one ``CancelReject`` to a CancelRejectEvent record.

        Raises:
            MappingError: the cancel reject names no order.
        """
        record = self._cancel_reject.apply(cancel_reject)
        if not record.get("order_id"):
            msg = f"cancel reject without an order id (clord_id={record.get('clord_id')!r})"
            raise MappingError(msg)
        record.update(context.envelope())
        return record
