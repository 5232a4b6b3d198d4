"""The generated Avro writer against fastavro, byte for byte, on hypothesis-generated records.

Two corpora: records the mapper makes from any venue message (the connector's real inputs), and any
record a schema admits, drawn from the schema itself (every record type, edge values included).
"""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.mapping import RecordMapper
from connector.core.record_schemas import RecordType, schema_dict
from connector.kafka.avro_writer import (
    LONG_MAX,
    LONG_MIN,
    UnsupportedSchema,
    compile_writer,
    encode_long,
)
from tests.unit.test_mapping import CONTEXT, messages

INT64 = st.integers(min_value=LONG_MIN, max_value=LONG_MAX)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
WRITERS = {record_type: compile_writer(schema_dict(record_type)) for record_type in RecordType}
PARSED = {record_type: fastavro.parse_schema(schema_dict(record_type)) for record_type in RecordType}
MAPPER = RecordMapper.for_venue()


def fastavro_bytes(record_type: RecordType, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, PARSED[record_type], record)
    return buffer.getvalue()


def values(avro_type: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any value of an Avro type (named types are registered as they are met)."""
    if isinstance(avro_type, list):
        return st.one_of([values(branch, named) for branch in avro_type])
    if isinstance(avro_type, str) and avro_type in named:
        return values(named[avro_type], named)
    kind = avro_type["type"] if isinstance(avro_type, dict) else avro_type
    simple = {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": INT32,
        "long": INT64,
        "string": st.text(max_size=300),
    }
    if kind in simple:
        return simple[kind]
    if kind == "enum":
        named[avro_type["name"]] = avro_type
        return st.sampled_from(avro_type["symbols"])
    if kind == "array":
        return st.lists(values(avro_type["items"], named), max_size=3)
    if kind == "record":
        named[avro_type["name"]] = avro_type
        fields = {field["name"]: values(field["type"], named) for field in avro_type["fields"]}
        return st.fixed_dictionaries(fields)
    raise AssertionError(kind)


@pytest.mark.parametrize("record_type", list(RecordType))
def test_any_record_of_any_schema_is_written_as_fastavro_writes_it(record_type: RecordType) -> None:
    strategy = values(PARSED[record_type], {})

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(record=strategy)
    def check(record: dict[str, Any]) -> None:
        assert WRITERS[record_type](record) == fastavro_bytes(record_type, record)

    check()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(execution=messages(trading_pb2.Execution), order=messages(trading_pb2.Order))
def test_mapped_venue_messages_are_written_as_fastavro_writes_them(
    execution: trading_pb2.Execution, order: trading_pb2.Order
) -> None:
    execution.id = execution.id or "E1"
    execution.order.id = execution.order.id or "O1"
    record = MAPPER.execution(execution, CONTEXT)
    assert WRITERS[RecordType.EXECUTION](record) == fastavro_bytes(RecordType.EXECUTION, record)
    order.id = order.id or "O2"
    snapshot = MAPPER.snapshot_order(order, "s-1@1", 0, 1, CONTEXT)
    assert WRITERS[RecordType.ORDER_SNAPSHOT](snapshot) == fastavro_bytes(RecordType.ORDER_SNAPSHOT, snapshot)


@given(value=INT64)
def test_a_long_is_a_zigzag_varint(value: int) -> None:
    unsigned = (value << 1) ^ (value >> 63)
    expected = bytearray()
    while True:
        expected.append((unsigned & 0x7F) | (0x80 if unsigned > 0x7F else 0))
        unsigned >>= 7
        if not unsigned:
            break
    assert encode_long(value) == bytes(expected)


def test_a_record_missing_a_defaulted_field_gets_the_default_as_fastavro_does() -> None:
    record = {"connector": "c", "subscription": "s", "emitted_time": 1, "phase": "p", "session_id": "x"}
    written = WRITERS[RecordType.CONNECTOR_HEARTBEAT](record)
    assert written == fastavro_bytes(RecordType.CONNECTOR_HEARTBEAT, record)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("received_time", 2**63, OverflowError),
        ("received_time", "soon", TypeError),
        ("received_time", 1.5, TypeError),
        ("source", "NOT_A_SOURCE", ValueError),
        ("session_id", 7, TypeError),
    ],
)
def test_bad_values_raise_what_the_pipeline_dead_letters(
    field: str, value: Any, error: type[Exception]
) -> None:
    record = MAPPER.execution(trading_pb2.Execution(id="E1", order=trading_pb2.Order(id="O1")), CONTEXT)
    record[field] = value
    with pytest.raises(error):
        WRITERS[RecordType.EXECUTION](record)


def test_an_int_beyond_32_bits_is_refused() -> None:
    record = MAPPER.execution(trading_pb2.Execution(id="E1", order=trading_pb2.Order(id="O1")), CONTEXT)
    record["execution"]["type_number"] = 2**31
    with pytest.raises(OverflowError):
        WRITERS[RecordType.EXECUTION](record)


def test_a_union_of_two_non_null_types_is_left_to_fastavro() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": ["int", "string"]}]}
    with pytest.raises(UnsupportedSchema):
        compile_writer(schema)
