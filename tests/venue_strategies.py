"""Hypothesis strategies for hostile venue responses, and the decoder they are fed to (test helper).

``responses()`` builds ``CreateOrderSubscriptionResponse`` messages the reconstruction allows and some
it does not expect: unknown enum numbers, unknown fields (at the top and inside executions and orders),
missing or empty fields, extreme integers, huge strings, empty snapshots, updates with zero or hundreds
of executions, cancel rejects for orders nobody knows, times anywhere in protobuf's range (0001..9999,
beyond what ``timestamp-nanos`` holds). They go through the wire format (serialize, append unknown
fields, parse), as the venue's bytes would arrive.
"""

from __future__ import annotations

import fastavro
from google.protobuf.message import Message
from hypothesis import strategies as st

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.mapping import MAX_TIMESTAMP_NS
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.transcoder import Transcoder
from connector.engine.pipeline import Topics, VenueDecoder
from connector.kafka.encoding import SingleObjectEncoder

TOPICS = Topics("fz.executions", "fz.snapshots", "fz.cancel-rejects", "fz.heartbeats", "fz.dlq")
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


# --------------------------------------------------------------------------- the decoder's world


KIND_OF = {"execution": "execution", "order_snapshot": "snapshot_order", "cancel_reject": "cancel_reject"}
DECODER = VenueDecoder(
    transcoder=Transcoder({record_type: encoder.header for record_type, encoder in ENCODERS.items()}, "fuzz"),
    encoders=ENCODERS,
    topics=TOPICS,
    connector_name="fuzz",
    subscription="symbols=*;accounts=*",
)
