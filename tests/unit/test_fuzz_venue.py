"""Fuzzing the venue side: whatever the venue sends, decoding never crashes and nothing vanishes.

Hypothesis builds ``CreateOrderSubscriptionResponse`` messages the reconstruction allows and some
it does not expect: unknown enum numbers, unknown fields (at the top and inside executions and
orders), missing or empty fields, extreme integers, huge strings, empty snapshots, updates with
zero or hundreds of executions, cancel rejects for orders nobody knows, times anywhere in
protobuf's range (0001..9999, so beyond what ``timestamp-nanos`` holds). The messages go through
the wire format (serialize, append unknown fields, parse) and then the real decoder with the real
mapper and Avro encoder (dropping duplicates is the engine's, tested in tests/simulation).

The property: ``response`` returns; every event becomes exactly one record: published (it decodes
with the committed schema, keyed by its order ID) or a dead letter with an ``error`` reason and its
exact protobuf bytes, keyed by its order ID; and which events become dead letters is predicted by an
independent rule (no ID to key it by, or a venue clock reading outside 1677..2262; a
``good_till_time`` deadline is clamped instead).
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

import fastavro
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.mapping import CLAMPED_TIMESTAMP_FIELDS, MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS
from connector.core.record_schemas import RecordType
from connector.core.records import OutRecord
from tests.venue_strategies import DECODER, ENCODERS, KIND_OF, PARSED, TOPICS, responses


@dataclass
class Published:
    topic: str
    key: bytes
    value: bytes
    headers: dict[str, bytes]

    @classmethod
    def of(cls, record: OutRecord) -> Published:
        assert isinstance(record.key, bytes) and isinstance(record.value, bytes)
        headers = {"event_type": record.event_type.encode(), **dict(record.extra_headers)}
        if record.execution_id:
            headers["execution_id"] = record.execution_id.encode()
        return cls(record.topic, record.key, record.value, headers)


def out_of_range_clock_reading(message: Message) -> bool:
    """Whether a set Timestamp (other than a clamped deadline) lies outside timestamp-nanos, anywhere."""
    for descriptor, value in message.ListFields():
        nested = descriptor.message_type
        if nested is None or nested.GetOptions().map_entry:
            continue
        if nested.full_name == "google.protobuf.Timestamp":
            nanos = value.seconds * 10**9 + value.nanos
            if (
                descriptor.name not in CLAMPED_TIMESTAMP_FIELDS
                and not MIN_TIMESTAMP_NS <= nanos <= MAX_TIMESTAMP_NS
            ):
                return True
        elif descriptor.is_repeated:
            if any(out_of_range_clock_reading(item) for item in value):
                return True
        elif out_of_range_clock_reading(value):
            return True
    return False


def expect_dead_letter(kind: str, message: Any) -> bool:
    if kind == "execution":
        unkeyed = not message.id or not message.HasField("order") or not message.order.id
    elif kind == "snapshot_order":
        unkeyed = not message.id
    else:
        unkeyed = not message.order_id
    return unkeyed or out_of_range_clock_reading(message)


def decode(value: bytes, record_type: RecordType) -> dict[str, Any]:
    assert value[:2] == b"\xc3\x01" and value[2:10] == ENCODERS[record_type].header[2:]
    decoded: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(value[10:]), PARSED[record_type], None)
    return decoded


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(response=responses())
def test_decoding_survives_any_response_and_accounts_for_every_event(
    response: trading_pb2.CreateOrderSubscriptionResponse,
) -> None:
    message = DECODER.response(response.SerializeToString(), received_ns=1_700_000_000_000_000_000)
    records = [Published.of(record) for record in message.records]
    for record in records:
        event(f"{record.topic} {record.headers.get('error_type', b'').decode()}")
    event(f"{len(response.update.executions) // 100 * 100}+ executions")

    events: list[tuple[str, Any]] = []
    if response.HasField("snapshot"):
        events += [("snapshot_order", order) for order in response.snapshot.orders]
    if response.HasField("update"):
        events += [("execution", execution) for execution in response.update.executions]
        if response.update.HasField("cancel_reject"):
            events.append(("cancel_reject", response.update.cancel_reject))
    if response.HasField("heartbeat") or not events:
        assert records == []
        return

    by_topic = Counter(record.topic for record in records)
    dead = [record for record in records if record.topic == TOPICS.dlq]
    dead_by_type = Counter(KIND_OF[record.headers["event_type"].decode()] for record in dead)
    kinds = Counter(kind for kind, _ in events)
    assert len(records) == len(events)
    assert by_topic[TOPICS.snapshots] + dead_by_type["snapshot_order"] == kinds["snapshot_order"]
    assert by_topic[TOPICS.cancel_rejects] + dead_by_type["cancel_reject"] == kinds["cancel_reject"]
    assert by_topic[TOPICS.executions] + dead_by_type["execution"] == kinds["execution"]
    assert dead_by_type == Counter(kind for kind, message in events if expect_dead_letter(kind, message))

    classes = {"execution": trading_pb2.Execution, "snapshot_order": trading_pb2.Order,
               "cancel_reject": trading_pb2.CancelReject}  # fmt: skip
    originals = {kind: [m.SerializeToString() for k, m in events if k == kind] for kind in classes}
    for record in dead:
        kind = KIND_OF[record.headers["event_type"].decode()]
        assert record.headers["error"] and record.headers["error_type"]
        assert record.value in originals[kind], "the DLQ holds the event's exact bytes"
        parsed = classes[kind].FromString(record.value)
        order_id = (
            parsed.order.id
            if kind == "execution"
            else (parsed.id if kind == "snapshot_order" else parsed.order_id)
        )
        assert record.key == order_id.encode(), "a dead letter is keyed by its order ID"

    assert_published_records_decode(records)


def assert_published_records_decode(records: list[Published]) -> None:
    for record in records:
        if record.topic == TOPICS.executions:
            decoded = decode(record.value, RecordType.EXECUTION)
            assert record.headers["execution_id"].decode() == decoded["execution_id"]
            order = decoded["execution"]["order"]
            assert order is not None and record.key == order["id"].encode() == decoded["order_id"].encode()
            deadline = order["good_till_time"]
            assert deadline is None or MIN_TIMESTAMP_NS <= deadline <= MAX_TIMESTAMP_NS
        elif record.topic == TOPICS.snapshots:
            decoded = decode(record.value, RecordType.ORDER_SNAPSHOT)
            assert record.key == decoded["order_id"].encode() == decoded["order"]["id"].encode()
        elif record.topic == TOPICS.cancel_rejects:
            decoded = decode(record.value, RecordType.CANCEL_REJECT)
            assert record.key == decoded["order_id"].encode()


def test_garbage_bytes_never_parse_into_something_the_decoder_cannot_take() -> None:
    """Random bytes either fail to parse (the gRPC layer ends the stream) or decode as above."""

    @settings(max_examples=300, deadline=None)
    @given(data=st.binary(max_size=300))
    def check(data: bytes) -> None:
        try:
            response = trading_pb2.CreateOrderSubscriptionResponse.FromString(data)
        except DecodeError:
            return
        test_decoding_survives_any_response_and_accounts_for_every_event.hypothesis.inner_test(response)  # type: ignore[attr-defined]

    check()
