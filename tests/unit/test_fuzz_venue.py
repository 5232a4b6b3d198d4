"""Fuzzing the venue side: whatever the venue sends, the pipeline never crashes and nothing vanishes.

Hypothesis builds ``CreateOrderSubscriptionResponse`` messages the reconstruction allows and some
it does not expect: unknown enum numbers, unknown fields (at the top and inside executions and
orders), missing or empty fields, extreme integers, huge strings, empty snapshots, updates with
zero or hundreds of executions, cancel rejects for orders nobody knows, times anywhere in
protobuf's range (0001..9999, so beyond what ``timestamp-nanos`` holds). The messages go through
the wire format (serialize, append unknown fields, parse) and then the real pipeline with the
real mapper and Avro encoder, into a recording sink.

The property: ``on_response`` returns; every event is either published (and decodes with the
committed schema, keyed by its order ID) or in the dead-letter topic with an ``error`` reason and its
exact protobuf bytes, or dropped as a duplicate of an execution ID; the counts add up per event
type; and which events go to the DLQ is predicted by an independent rule (no ID to key it by, or a
venue clock reading outside 1677..2262; a ``good_till_time`` deadline is clamped instead).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import fastavro
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.dedup import RecentExecutionIds
from connector.core.mapping import CLAMPED_TIMESTAMP_FIELDS, MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS, RecordMapper
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.watermark import Watermark
from connector.engine.pipeline import Pipeline, Topics
from connector.kafka.encoding import SingleObjectEncoder

TOPICS = Topics("fz.executions", "fz.snapshots", "fz.cancel-rejects", "fz.dlq")
MAPPER = RecordMapper.for_venue()
ENCODERS = {record_type: SingleObjectEncoder(schema_dict(record_type)) for record_type in RecordType}
PARSED = {record_type: fastavro.parse_schema(schema_dict(record_type)) for record_type in RecordType}

INT64 = st.one_of(
    st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**31, -(2**31) - 1]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
INT32 = st.one_of(st.sampled_from([0, -1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1))
ENUM_NUMBER = st.one_of(st.integers(0, 12), INT32)  # known members and numbers no schema knows
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)  # protobuf: valid UTF-8
HUGE_TEXT = st.builds(
    lambda char, size: char * size, st.sampled_from("xé€😀"), st.sampled_from([20_000, 70_000])
)
ID = st.one_of(st.just(""), *[st.from_regex(r"[A-Z]{2}-[0-9]{1,4}", fullmatch=True)] * 4, TEXT)
KEY = st.from_regex(r"(EX|OR)-[0-9]{1,3}", fullmatch=True)
KEY_FIELDS = frozenset({"id", "order_id"})
PROTOBUF_MIN_S, PROTOBUF_MAX_S = -62_135_596_800, 253_402_300_799  # 0001-01-01 .. 9999-12-31
NANOS_MAX_S = MAX_TIMESTAMP_NS // 10**9
REPRESENTABLE_S = st.integers(-(NANOS_MAX_S - 1), NANOS_MAX_S - 1)
SECONDS = st.one_of(  # mostly representable, so that most events can be published at all
    *[REPRESENTABLE_S] * 6,
    st.sampled_from([PROTOBUF_MIN_S, PROTOBUF_MAX_S, NANOS_MAX_S, NANOS_MAX_S + 1, -NANOS_MAX_S - 1]),
    st.integers(PROTOBUF_MIN_S, PROTOBUF_MAX_S),
)
TIMESTAMP = st.none() | st.tuples(SECONDS, st.integers(0, 999_999_999))


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def length_delimited(data: bytes) -> bytes:
    return varint(len(data)) + data


@st.composite
def unknown_fields(draw: st.DrawFn) -> bytes:
    """Wire-format fields with numbers the reconstruction does not use (1000+)."""
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        number = draw(st.integers(1000, 536_870_911))
        wire = draw(st.sampled_from([0, 1, 2, 5]))
        payload = {
            0: lambda: varint(draw(st.integers(0, 2**64 - 1))),
            1: lambda: draw(st.binary(min_size=8, max_size=8)),
            2: lambda: length_delimited(draw(st.binary(max_size=40))),
            5: lambda: draw(st.binary(min_size=4, max_size=4)),
        }[wire]()
        out += varint(number << 3 | wire) + payload
    return out


@st.composite
def filled(  # noqa: PLR0912 - one branch per protobuf field kind
    draw: st.DrawFn, message_class: type[Message], huge: bool, depth: int = 0
) -> Message:
    """A message of the class with any subset of its fields set to hostile values."""
    message = message_class()
    for descriptor in message.DESCRIPTOR.fields:
        name = descriptor.name
        if name in KEY_FIELDS:  # mostly set: an event without its key can only go to the DLQ
            setattr(message, name, draw(KEY) if draw(st.integers(0, 9)) else "")
            continue
        if not draw(st.integers(0, 9 if name == "order" else 3)):  # some fields stay unset (missing)
            continue
        nested = descriptor.message_type
        if nested is not None and nested.GetOptions().map_entry:
            getattr(message, name).update(draw(st.dictionaries(INT64, INT64, max_size=3)))
        elif nested is not None and nested.full_name == "google.protobuf.Timestamp":
            stamp = draw(TIMESTAMP)
            if stamp is not None:
                getattr(message, name).seconds, getattr(message, name).nanos = stamp
        elif nested is not None and descriptor.is_repeated:
            item_class = getattr(trading_pb2, nested.name)
            for item in draw(st.lists(filled(item_class, huge=False, depth=depth + 1), max_size=2)):
                getattr(message, name).add().CopyFrom(item)
        elif nested is not None:
            if depth < 2:
                child_class = type(getattr(message_class(), name))
                getattr(message, name).CopyFrom(draw(filled(child_class, huge=huge, depth=depth + 1)))
        elif descriptor.enum_type is not None:
            setattr(message, name, draw(ENUM_NUMBER))
        elif descriptor.type == descriptor.TYPE_STRING:
            text = draw(
                HUGE_TEXT if huge and draw(st.integers(0, 9)) == 0 else ID if name.endswith("id") else TEXT
            )
            setattr(message, name, text)
        elif descriptor.type == descriptor.TYPE_BOOL:
            setattr(message, name, draw(st.booleans()))
        elif descriptor.type == descriptor.TYPE_INT32:
            setattr(message, name, draw(INT32))
        else:
            setattr(message, name, draw(INT64))
    extra = draw(unknown_fields())
    if extra:
        message.MergeFromString(extra)  # kept as unknown fields, as the venue's newer fields would be
    return message


@st.composite
def many(draw: st.DrawFn, message_class: type[Message], id_field: str) -> list[Message]:
    """Zero, a few, or hundreds of messages (hundreds are copies of one, with distinct or equal IDs)."""
    size = draw(st.one_of(st.just(0), st.integers(1, 4), st.integers(1, 4), st.integers(100, 300)))
    if size <= 4:
        return [draw(filled(message_class, huge=True)) for _ in range(size)]
    template = draw(filled(message_class, huge=False))
    ids = draw(st.sampled_from(["distinct", "distinct", "distinct", "same", "empty"]))
    copies = []
    for index in range(size):
        copy = message_class()
        copy.CopyFrom(template)
        if ids != "same":
            setattr(copy, id_field, f"X-{index}" if ids == "distinct" else "")
        copies.append(copy)
    return copies


@st.composite
def responses(draw: st.DrawFn) -> trading_pb2.CreateOrderSubscriptionResponse:
    response = trading_pb2.CreateOrderSubscriptionResponse()
    if draw(st.booleans()):
        response.session_id = draw(TEXT)
    stamp = draw(TIMESTAMP)
    if stamp is not None:
        response.processed_sent_time.seconds, response.processed_sent_time.nanos = stamp
    kind = draw(
        st.sampled_from(["update", "update", "update", "snapshot", "snapshot", "heartbeat", "nothing"])
    )
    if kind == "heartbeat":
        response.heartbeat.SetInParent()
    elif kind == "snapshot":
        response.snapshot.SetInParent()  # possibly empty
        response.snapshot.orders.extend(draw(many(trading_pb2.Order, "id")))
    elif kind == "update":
        response.update.SetInParent()
        response.update.executions.extend(draw(many(trading_pb2.Execution, "id")))
        if draw(st.booleans()):
            reject = draw(filled(trading_pb2.CancelReject, huge=True))
            reject.order_id = draw(st.sampled_from(["", "OR-never-seen", reject.order_id]))
            response.update.cancel_reject.CopyFrom(reject)
    # Through the wire, with unknown top-level fields, as the venue's bytes would arrive.
    wire = response.SerializeToString() + draw(unknown_fields())
    return trading_pb2.CreateOrderSubscriptionResponse.FromString(wire)


# --------------------------------------------------------------------------- the pipeline's world


@dataclass
class Published:
    topic: str
    key: bytes
    value: bytes
    headers: dict[str, bytes]


@dataclass
class RecordingSink:
    records: list[Published] = field(default_factory=list)

    def publish(self, topic: str, key: bytes, value: bytes, *, headers: Sequence[tuple[str, bytes]] = (),
                **_metadata: Any) -> None:  # fmt: skip
        assert isinstance(key, bytes) and isinstance(value, bytes)
        self.records.append(Published(topic, key, value, dict(headers)))

    def poll(self, timeout_s: float = 0.0) -> None:
        pass


@dataclass
class CountingObserver:
    received: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)

    def event_received(
        self, event_type: str, received_time_ns: int, processed_sent_time_ns: int | None
    ) -> None:
        self.received[event_type] += 1

    def venue_heartbeat(self, processed_sent_time_ns: int | None, session_id: str) -> None:
        pass

    def duplicate_dropped(self) -> None:
        self.duplicates += 1

    def dead_lettered(self, event_type: str, reason: str) -> None:
        assert reason
        self.dead_letters[event_type] += 1


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
def test_the_pipeline_survives_any_response_and_accounts_for_every_event(
    response: trading_pb2.CreateOrderSubscriptionResponse,
) -> None:
    sink, observer = RecordingSink(), CountingObserver()
    pipeline = Pipeline(
        mapper=MAPPER,
        encoders=ENCODERS,
        sink=sink,
        watermark=Watermark(),
        topics=TOPICS,
        connector_name="fuzz",
        recent_ids=RecentExecutionIds(10_000),
        observer=observer,
    )
    pipeline.on_response(response, received_time_ns=1_700_000_000_000_000_000)
    for record in sink.records:
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
        assert sink.records == []
        return

    by_topic = Counter(record.topic for record in sink.records)
    dead = [record for record in sink.records if record.topic == TOPICS.dlq]
    dead_by_type = Counter(record.headers["event_type"].decode() for record in dead)
    kinds = Counter(kind for kind, _ in events)
    assert observer.received == kinds
    assert by_topic[TOPICS.snapshots] + dead_by_type["snapshot_order"] == kinds["snapshot_order"]
    assert by_topic[TOPICS.cancel_rejects] + dead_by_type["cancel_reject"] == kinds["cancel_reject"]
    assert by_topic[TOPICS.executions] + dead_by_type["execution"] + observer.duplicates == kinds["execution"]
    assert dead_by_type == observer.dead_letters

    expected_dead, expected_duplicates = expected_outcome(events)
    assert dead_by_type == expected_dead
    assert observer.duplicates == expected_duplicates

    classes = {"execution": trading_pb2.Execution, "snapshot_order": trading_pb2.Order,
               "cancel_reject": trading_pb2.CancelReject}  # fmt: skip
    originals = {kind: [m.SerializeToString() for k, m in events if k == kind] for kind in classes}
    for record in dead:
        kind = record.headers["event_type"].decode()
        assert record.headers["error"] and record.headers["error_type"]
        assert record.value in originals[kind], "the DLQ holds the event's exact bytes"
        classes[kind].FromString(record.value)

    assert_published_records_decode(sink.records)


def expected_outcome(events: list[tuple[str, Any]]) -> tuple[Counter[str], int]:
    """Dead letters per event type and duplicates, by the independent rule applied in arrival order.

    An execution whose ID was already published is a duplicate (dropped, whatever else it holds).
    """
    expected_dead: Counter[str] = Counter()
    published_ids: set[str] = set()
    duplicates = 0
    for kind, message in events:
        if kind == "execution" and message.id and message.id in published_ids:
            duplicates += 1
        elif expect_dead_letter(kind, message):
            expected_dead[kind] += 1
        elif kind == "execution":
            published_ids.add(message.id)
    return expected_dead, duplicates


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


def test_garbage_bytes_never_parse_into_something_the_pipeline_cannot_take() -> None:
    """Random bytes either fail to parse (the gRPC layer ends the stream) or run through the pipeline."""

    @settings(max_examples=300, deadline=None)
    @given(data=st.binary(max_size=300))
    def check(data: bytes) -> None:
        try:
            response = trading_pb2.CreateOrderSubscriptionResponse.FromString(data)
        except DecodeError:
            return
        test_the_pipeline_survives_any_response_and_accounts_for_every_event.hypothesis.inner_test(response)  # type: ignore[attr-defined]

    check()
