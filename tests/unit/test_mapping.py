"""Mapping venue messages to records: lossless, schema-valid, tolerant of unknown enum numbers."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector._pb.polymarket.v1 import enums_pb2, trading_pb2
from connector.core.mapping import EventContext, MappingError, RecordMapper, Source
from connector.core.record_schemas import RecordType, schema_dict

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
ENUM_NUMBER = st.integers(min_value=0, max_value=200)  # beyond every known member, too
TEXT = st.text(max_size=20)
MAX_NANOS_SECONDS = (2**63 - 1) // 1_000_000_000 - 1  # 2262-04-11, the end of timestamp-nanos
TIMESTAMP = st.none() | st.tuples(
    st.integers(min_value=-MAX_NANOS_SECONDS, max_value=MAX_NANOS_SECONDS),
    st.integers(min_value=0, max_value=999_999_999),
)

CONTEXT = EventContext(
    source=Source.STREAM,
    session_id="s-1",
    processed_sent_time_ns=1_700_000_000_123_456_789,
    received_time_ns=1_700_000_000_223_456_789,
    connector="test",
)


@pytest.fixture(scope="module")
def mapper() -> RecordMapper:
    return RecordMapper.for_venue()


@st.composite
def messages(draw: st.DrawFn, message_class: type[Message], depth: int = 0) -> Message:
    """Any message of the class: every field drawn, enums anywhere in 0..200."""
    message = message_class()
    for field in message.DESCRIPTOR.fields:
        name = field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            getattr(message, name).update(draw(st.dictionaries(INT64, INT64, max_size=4)))
        elif field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp":
            stamp = draw(TIMESTAMP)
            if stamp is not None:
                getattr(message, name).seconds, getattr(message, name).nanos = stamp
        elif field.message_type is not None:
            nested_class = type(getattr(message_class(), name)) if not field.is_repeated else None
            if field.is_repeated:
                item_class = getattr(trading_pb2, field.message_type.name)
                for item in draw(st.lists(messages(item_class, depth + 1), max_size=2)):
                    getattr(message, name).add().CopyFrom(item)
            elif depth < 2 and draw(st.booleans()):
                assert nested_class is not None
                getattr(message, name).CopyFrom(draw(messages(nested_class, depth + 1)))
        elif field.enum_type is not None:
            setattr(message, name, draw(ENUM_NUMBER))
        else:
            strategy = {
                field.TYPE_STRING: TEXT,
                field.TYPE_INT64: INT64,
                field.TYPE_INT32: INT32,
                field.TYPE_BOOL: st.booleans(),
            }[field.type]
            setattr(message, name, draw(strategy))
    return message


def rebuild(message_class: type[Message], record: dict[str, Any]) -> Message:
    """Independent inverse of the mapping: a record back to the protobuf message."""
    message = message_class()
    for field in message.DESCRIPTOR.fields:
        value = record[field.name]
        if field.enum_type is not None:
            setattr(message, field.name, record[f"{field.name}_number"])
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            getattr(message, field.name).update({e["price"]: e["quantity"] for e in value})
        elif field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp":
            if value is not None:
                getattr(message, field.name).seconds, getattr(message, field.name).nanos = divmod(
                    value, 1_000_000_000
                )
        elif field.message_type is not None and field.is_repeated:
            item_class = getattr(trading_pb2, field.message_type.name)
            for item in value:
                getattr(message, field.name).add().CopyFrom(rebuild(item_class, item))
        elif field.message_type is not None:
            if value is not None:
                getattr(message, field.name).CopyFrom(rebuild(type(getattr(message, field.name)), value))
        else:
            setattr(message, field.name, value)
    return message


def avro_round_trip(record_type: RecordType, record: dict[str, Any]) -> dict[str, Any]:
    schema = fastavro.parse_schema(schema_dict(record_type))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    buffer.seek(0)
    decoded: dict[str, Any] = fastavro.schemaless_reader(buffer, schema, schema)
    return decoded


def test_every_venue_field_has_a_place_in_the_schemas(mapper: RecordMapper) -> None:
    assert mapper.missing_venue_fields() == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(execution=messages(trading_pb2.Execution))
def test_execution_mapping_is_lossless_through_avro(mapper: RecordMapper, execution: Message) -> None:
    execution.id = execution.id or "E"  # type: ignore[attr-defined]
    execution.order.id = execution.order.id or "O"  # type: ignore[attr-defined]
    record = mapper.execution(execution, CONTEXT)
    decoded = avro_round_trip(RecordType.EXECUTION, record)
    assert decoded == record
    assert rebuild(trading_pb2.Execution, decoded["execution"]) == execution
    assert decoded["execution_id"] == execution.id  # type: ignore[attr-defined]
    assert decoded["order_id"] == execution.order.id  # type: ignore[attr-defined]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=messages(trading_pb2.Order))
def test_snapshot_mapping_is_lossless_through_avro(mapper: RecordMapper, order: Message) -> None:
    order.id = order.id or "O"  # type: ignore[attr-defined]
    record = mapper.snapshot_order(order, "s-1@1", 3, 10, CONTEXT)
    decoded = avro_round_trip(RecordType.ORDER_SNAPSHOT, record)
    assert decoded == record
    assert rebuild(trading_pb2.Order, decoded["order"]) == order
    assert (decoded["snapshot_position"], decoded["snapshot_size"]) == (3, 10)


@settings(max_examples=40, deadline=None)
@given(cancel_reject=messages(trading_pb2.CancelReject))
def test_cancel_reject_mapping_is_lossless_through_avro(mapper: RecordMapper, cancel_reject: Message) -> None:
    cancel_reject.order_id = cancel_reject.order_id or "O"  # type: ignore[attr-defined]
    record = mapper.cancel_reject(cancel_reject, CONTEXT)
    decoded = avro_round_trip(RecordType.CANCEL_REJECT, record)
    assert decoded == record
    assert rebuild(trading_pb2.CancelReject, decoded) == cancel_reject
    assert decoded["source"] == "STREAM"


def test_known_and_unknown_enum_numbers(mapper: RecordMapper) -> None:
    execution = trading_pb2.Execution(id="E1", type=enums_pb2.EXECUTION_TYPE_PARTIAL_FILL)
    execution.order.id = "O1"
    execution.order.state = 99  # a state this schema does not know
    record = mapper.execution(execution, CONTEXT)["execution"]
    assert (record["type"], record["type_number"]) == ("EXECUTION_TYPE_PARTIAL_FILL", 1)
    assert (record["order"]["state"], record["order"]["state_number"]) == ("UNKNOWN", 99)


def test_fixed_point_and_map_fields_stay_raw(mapper: RecordMapper) -> None:
    execution = trading_pb2.Execution(id="E1", last_px=97, last_shares=312)
    execution.order.id = "O1"
    execution.order.price_scale = 100
    execution.order.fractional_quantity_scale = 100
    execution.order.price_to_quantity_filled[98] = 5
    execution.order.price_to_quantity_filled[97] = 312
    record = mapper.execution(execution, CONTEXT)["execution"]
    assert (record["last_px"], record["last_shares"]) == (97, 312)
    assert record["order"]["price_to_quantity_filled"] == [
        {"price": 97, "quantity": 312},
        {"price": 98, "quantity": 5},
    ]


def test_unset_timestamps_are_null_and_set_ones_are_exact(mapper: RecordMapper) -> None:
    execution = trading_pb2.Execution(id="E1")
    execution.order.id = "O1"
    execution.transact_time.seconds = 1_763_800_000
    execution.transact_time.nanos = 123_456_789
    record = mapper.execution(execution, CONTEXT)
    assert record["transact_time"] == 1_763_800_000_123_456_789
    assert record["execution"]["order"]["insert_time"] is None


def test_a_venue_time_beyond_timestamp_nanos_is_a_mapping_error(mapper: RecordMapper) -> None:
    execution = trading_pb2.Execution(id="E1")
    execution.order.id = "O1"
    execution.transact_time.seconds = 253402300799  # 9999-12-31T23:59:59Z: a corrupt clock reading
    with pytest.raises(MappingError, match="transact_time 253402300799s is outside the range"):
        mapper.execution(execution, CONTEXT)


@pytest.mark.parametrize(
    ("seconds", "expected_ns"),
    [
        (253402300799, 2**63 - 1),  # 9999-12-31T23:59:59Z, a "never" deadline: the last representable ns
        (-62135596800, -(2**63)),  # 0001-01-01: long past, the first representable ns
        (1_900_000_000, 1_900_000_000 * 10**9),  # in range: exact
    ],
)
def test_a_deadline_beyond_timestamp_nanos_is_clamped_not_dead_lettered(
    mapper: RecordMapper, seconds: int, expected_ns: int
) -> None:
    execution = trading_pb2.Execution(id="E1")
    execution.order.id = "O1"
    execution.order.good_till_time.seconds = seconds
    record = mapper.execution(execution, CONTEXT)
    assert record["execution"]["order"]["good_till_time"] == expected_ns
    assert avro_round_trip(RecordType.EXECUTION, record) == record


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda m: m.execution(trading_pb2.Execution(), CONTEXT), "execution without an id"),
        (lambda m: m.execution(trading_pb2.Execution(id="E9"), CONTEXT), "execution 'E9' has no order id"),
        (lambda m: m.snapshot_order(trading_pb2.Order(), "s", 4, 5, CONTEXT), "position 4 has no id"),
        (lambda m: m.cancel_reject(trading_pb2.CancelReject(clord_id="c"), CONTEXT), "without an order id"),
    ],
)
def test_events_that_cannot_be_keyed_are_mapping_errors(
    mapper: RecordMapper, build: Any, message: str
) -> None:
    with pytest.raises(MappingError, match=message):
        build(mapper)


def test_a_schema_field_the_venue_lacks_gets_its_default() -> None:
    """With an official bundle that lacks a field, the record still validates (default filled)."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    file_proto = descriptor_pb2.FileDescriptorProto(name="slim.proto", package="slim", syntax="proto3")
    slim = file_proto.message_type.add(name="CancelReject")
    slim.field.add(name="order_id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    pool.Add(file_proto)
    mapper = RecordMapper(
        trading_pb2.Execution.DESCRIPTOR,
        trading_pb2.Order.DESCRIPTOR,
        pool.FindMessageTypeByName("slim.CancelReject"),
    )
    assert "CancelReject.text" in mapper.missing_venue_fields()
    from google.protobuf import message_factory

    slim_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("slim.CancelReject"))
    record = mapper.cancel_reject(slim_class(order_id="O1"), CONTEXT)
    assert record["text"] == "" and record["reject_reason"] == "CXL_REJ_REASON_TOO_LATE_TO_CANCEL"
    assert avro_round_trip(RecordType.CANCEL_REJECT, record)["order_id"] == "O1"
