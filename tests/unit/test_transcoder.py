"""The native transcoder equals the readable reference (protobuf + schema-walking mapping + fastavro).

Byte for byte, in both framings, on the hostile corpus of ``test_fuzz_venue`` (unknown fields and
enum numbers, absent sub-messages, extreme integers, out-of-range times, empty and huge strings,
hundreds of executions) and on raw-byte mutations of it, where the property is: the transcoder
raises :class:`TranscodeError` exactly when protobuf's ``FromString`` rejects the bytes, and equals
the reference otherwise. Plus the wire-format corners one by one, the backfill entry point, a
venue contract with other field numbers (the official bundle's case) and real gRPC bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.mapping import EventContext, Source
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.transcoder import (
    DecodedResponse,
    ResponseKind,
    TranscodeError,
    Transcoder,
    UnsupportedMapping,
)
from connector.kafka.encoding import SingleObjectEncoder
from tests.records import decode
from tests.reference_mapping import reference_execution, reference_response
from tests.unit.test_fuzz_venue import responses

CONNECTOR = "pmx-test"
RECEIVED = 1_700_000_000_123_456_789
SINGLE_OBJECT = {rt: SingleObjectEncoder(schema_dict(rt)).header for rt in RecordType}
REGISTRY = {rt: b"\x00" + (100 + index).to_bytes(4, "big") for index, rt in enumerate(RecordType)}
FRAMINGS = {"single_object": SINGLE_OBJECT, "registry": REGISTRY}
TRANSCODERS = {name: Transcoder(prefixes, CONNECTOR) for name, prefixes in FRAMINGS.items()}
SLOW = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

Response = trading_pb2.CreateOrderSubscriptionResponse


def event_classes(response_class: Any) -> dict[str, type[Message]]:
    """The generated classes of the three event messages of a response class."""
    update = response_class.DESCRIPTOR.fields_by_name["update"].message_type
    snapshot = response_class.DESCRIPTOR.fields_by_name["snapshot"].message_type
    return {
        "execution": message_factory.GetMessageClass(update.fields_by_name["executions"].message_type),
        "snapshot_order": message_factory.GetMessageClass(snapshot.fields_by_name["orders"].message_type),
        "cancel_reject": message_factory.GetMessageClass(update.fields_by_name["cancel_reject"].message_type),
    }


VENUE_CLASSES = event_classes(Response)


def normalized(
    decoded: DecodedResponse, classes: dict[str, type[Message]] = VENUE_CLASSES
) -> DecodedResponse:
    """Dead letters' bytes as protobuf re-serializes them (the transcoder keeps the venue's bytes)."""
    letters = []
    for letter in decoded.dead_letters:
        canonical = classes[letter.event_type].FromString(letter.value).SerializeToString(deterministic=True)
        letters.append(type(letter)(**{**_fields(letter), "value": canonical}))
    return decoded._replace(dead_letters=letters)


def _fields(letter: Any) -> dict[str, Any]:
    return {name: getattr(letter, name) for name in letter.__dataclass_fields__}


def assert_same_as_reference(data: bytes, framing: str = "single_object") -> DecodedResponse | None:
    """Transcode ``data``; it must fail exactly when protobuf fails, else equal the reference."""
    transcoder = TRANSCODERS[framing]
    try:
        expected = reference_response(data, RECEIVED, FRAMINGS[framing], CONNECTOR)
    except DecodeError:
        with pytest.raises(TranscodeError) as failure:
            transcoder.response(data, RECEIVED)
        assert failure.value.error_type == "DecodeError"
        return None
    actual = transcoder.response(data, RECEIVED)
    assert normalized(actual) == normalized(expected)
    return actual


# --------------------------------------------------------------------------- the hypothesis corpus


@SLOW
@given(response=responses(), framing=st.sampled_from(sorted(FRAMINGS)))
def test_equal_to_the_reference_on_the_hostile_corpus(response: Message, framing: str) -> None:
    assert_same_as_reference(response.SerializeToString(), framing)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid response's bytes, then cut, flipped, spliced or with fields repeated (merges)."""
    data = bytearray(draw(responses()).SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "delete"]))
        if action == "flip" and data:
            index = draw(st.integers(0, len(data) - 1))
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif action == "insert":
            index = draw(st.integers(0, len(data)))
            data[index:index] = draw(st.binary(min_size=1, max_size=6))
        elif action == "repeat" and data:  # a second copy of a span: repeated and merged fields
            start = draw(st.integers(0, len(data) - 1))
            end = draw(st.integers(start, min(len(data), start + 200)))
            data += data[start:end]
        elif action == "delete" and len(data) > 1:
            start = draw(st.integers(0, len(data) - 1))
            del data[start : start + draw(st.integers(1, 8))]
    return bytes(data)


@SLOW
@given(data=mutated())
def test_invalid_bytes_fail_exactly_when_protobuf_fails(data: bytes) -> None:
    assert_same_as_reference(data)


@given(data=st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_random_bytes_fail_exactly_when_protobuf_fails(data: bytes) -> None:
    assert_same_as_reference(data)


# --------------------------------------------------------------------------- cases one by one


def _rich_update() -> Any:
    response = Response(session_id="sess-1")
    response.processed_sent_time.seconds, response.processed_sent_time.nanos = 5, 7
    execution = response.update.executions.add(id="EX-1", last_shares=300, last_px=9700, text="é€😀")
    execution.type = 1
    execution.transact_time.seconds = 1_700_000_000
    execution.order.id = "OR-1"
    execution.order.side = 2
    execution.order.price_to_quantity_filled.update({9700: 300, -5: 2**63 - 1, 0: -(2**63)})
    execution.order.good_till_time.seconds = 253_402_300_799  # 9999-12-31: clamped
    execution.leg_prices.add(symbol="A", px=-1, qty=2**62)
    execution.transact_trade_date.year = 2026
    response.update.cancel_reject.order_id = "OR-2"
    response.update.cancel_reject.reject_reason = 77  # unknown to the schema
    return response


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_a_rich_update_in_both_framings(framing: str) -> None:
    decoded = assert_same_as_reference(_rich_update().SerializeToString(), framing)
    assert decoded is not None
    assert decoded.kind is ResponseKind.UPDATE
    execution_id, key, transact_time, value = decoded.executions[0]
    assert (execution_id, key, transact_time) == ("EX-1", b"OR-1", 1_700_000_000 * 10**9)
    assert value.startswith(FRAMINGS[framing][RecordType.EXECUTION])
    assert decoded.cancel_reject is not None and decoded.cancel_reject[0] == b"OR-2"


def test_the_framings_differ_only_in_the_prefix() -> None:
    data = _rich_update().SerializeToString()
    single = TRANSCODERS["single_object"].response(data, RECEIVED).executions[0][3]
    registry = TRANSCODERS["registry"].response(data, RECEIVED).executions[0][3]
    assert single[len(SINGLE_OBJECT[RecordType.EXECUTION]) :] == registry[5:]
    assert single[:2] == b"\xc3\x01" and registry[:5] == REGISTRY[RecordType.EXECUTION]


def test_hundreds_of_executions_and_huge_strings() -> None:
    response = Response(session_id="s")
    for index in range(400):
        execution = response.update.executions.add(id=f"E{index}", text="x" * (70_000 if index == 7 else 0))
        execution.order.id = f"O{index % 13}"
    decoded = assert_same_as_reference(response.SerializeToString())
    assert decoded is not None and [e[0] for e in decoded.executions] == [f"E{i}" for i in range(400)]


def test_heartbeat_snapshot_and_empty_responses() -> None:
    heartbeat = Response(session_id="s")
    heartbeat.heartbeat.SetInParent()
    heartbeat.processed_sent_time.seconds = 10
    decoded = assert_same_as_reference(heartbeat.SerializeToString())
    assert decoded is not None and decoded.kind is ResponseKind.HEARTBEAT
    assert decoded.processed_sent_time_ns == 10 * 10**9
    snapshot = Response(session_id="s")
    snapshot.snapshot.orders.add(id="A")
    snapshot.snapshot.orders.add()  # no id: dead letter
    snapshot.snapshot.orders.add(id="C")
    decoded = assert_same_as_reference(snapshot.SerializeToString())
    assert decoded is not None and decoded.kind is ResponseKind.SNAPSHOT
    assert decoded.snapshot_id == f"s@{RECEIVED}" and decoded.snapshot_size == 3
    assert [key for key, _ in decoded.snapshot_orders] == [b"A", b"C"]
    assert [(d.event_type, d.position) for d in decoded.dead_letters] == [("snapshot_order", 1)]
    nothing = assert_same_as_reference(b"")
    assert nothing is not None and nothing.kind is ResponseKind.NONE


def test_dead_letters_are_keyed_by_the_order_id_and_say_why() -> None:
    response = Response(session_id="s")
    late = response.update.executions.add(id="EX-late")
    late.order.id = "OR-late"
    late.transact_time.seconds = 10**11  # year 5138: beyond timestamp-nanos, not a deadline
    response.update.executions.add(id="EX-orphan")
    fine = response.update.executions.add(id="EX-fine")
    fine.order.id = "OR-fine"
    decoded = assert_same_as_reference(response.SerializeToString())
    assert decoded is not None
    assert [e[0] for e in decoded.executions] == ["EX-fine"]
    letters = decoded.dead_letters
    assert [(d.position, d.key, d.error_type) for d in letters] == [
        (0, b"OR-late", "MappingError"),
        (1, b"", "MappingError"),
    ]
    assert (
        letters[0].reason
        == "transact_time 100000000000s is outside the range of timestamp-nanos (years 1677..2262)"
    )
    assert letters[1].reason == "execution 'EX-orphan' has no order id"
    assert trading_pb2.Execution.FromString(letters[0].value) == response.update.executions[0]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    if wire == 2:
        payload = _varint(len(payload)) + payload
    return _varint(number << 3 | wire) + payload


def _execution_bytes(execution_id: str, order_id: str) -> bytes:
    execution = trading_pb2.Execution(id=execution_id)
    execution.order.id = order_id
    return execution.SerializeToString()


WIRE_CASES: dict[str, bytes] = {
    # The update field twice: the two merge (executions append, the cancel reject merges).
    "merged updates": _field(3, 2, _field(1, 2, _execution_bytes("E1", "O1")))
    + _field(3, 2, _field(1, 2, _execution_bytes("E2", "O2")) + _field(2, 2, _field(1, 2, b"OR")))
    + _field(3, 2, _field(2, 2, _field(2, 2, b"CL"))),
    # A oneof member after another clears it; the last one set wins.
    "update then heartbeat": _field(3, 2, _field(1, 2, _execution_bytes("E1", "O1"))) + _field(1, 2, b""),
    "heartbeat then update": _field(1, 2, b"") + _field(3, 2, _field(1, 2, _execution_bytes("E1", "O1"))),
    # An execution's order twice: merged, the second id wins.
    "merged order": _field(
        3, 2, _field(1, 2, _execution_bytes("E1", "O1") + _field(2, 2, _field(1, 2, b"O9")))
    ),
    # A known field with another wire type is an unknown field.
    "session_id as a varint": _field(4, 0, _varint(5)),
    "executions as fixed32": _field(3, 2, _field(1, 5, b"\x01\x02\x03\x04")),
    # Unknown groups, well formed and not.
    "unknown group": _field(99, 3, b"") + _field(7, 0, b"\x01") + _varint(99 << 3 | 4),
    "mismatched end group": _field(99, 3, b"") + _varint(98 << 3 | 4),
    "stray end group": _varint(99 << 3 | 4),
    "unterminated group": _field(99, 3, b"") + _field(7, 0, b"\x01"),
    "field number 0": _field(0, 0, b"\x01"),
    # upb skips field number 0 in a message without fields and inside unknown groups (a fuzzer's find).
    "field number 0 in the heartbeat": _field(1, 2, _field(0, 5, b"IIII") + _field(0, 3, b"") + _varint(4)),
    "field number 0 in an unknown group": _field(99, 3, _field(0, 0, b"\x01")) + _varint(99 << 3 | 4),
    "field number 0 in an update": _field(3, 2, _field(0, 0, b"\x01")),
    "field number 0 in a map entry": _field(
        3, 2, _field(1, 2, _field(1, 2, b"E") + _field(2, 2, _field(41, 2, _field(0, 0, b"\x01"))))
    ),
    "field number 0 in a group in a map entry": _field(
        3,
        2,
        _field(
            1, 2, _field(2, 2, _field(41, 2, _field(77, 3, _field(0, 0, b"\x01")) + _varint(77 << 3 | 4)))
        ),
    ),
    "wire type 6": _varint(5 << 3 | 6),
    "wire type 7": _varint(5 << 3 | 7),
    "tag of 6 bytes": b"\x88\x80\x80\x80\x80\x00\x01",
    "tag beyond 32 bits": b"\x80\x80\x80\x80\x10\x01",
    "varint of 10 bytes": _field(4000, 0, b"\xff" * 9 + b"\x7f"),
    "varint of 11 bytes": _field(4000, 0, b"\xff" * 10 + b"\x01"),
    "truncated length": _field(4, 2, b"abc")[:-1],
    "length beyond the end": b"\x22\x7f",
    "invalid UTF-8 session": _field(4, 2, b"\xc3\x28"),
    "surrogate in UTF-8": _field(4, 2, b"\xed\xa0\x80"),
    "overlong UTF-8": _field(4, 2, b"\xc0\xaf"),
    "invalid UTF-8 in an unknown field": _field(4000, 2, b"\xff\xfe"),
    "invalid UTF-8 deep in an order": _field(
        3, 2, _field(1, 2, _field(1, 2, b"E") + _field(2, 2, _field(5, 2, b"\xff")))
    ),
    "int32 as ten bytes": _field(
        3, 2, _field(1, 2, _field(1, 2, b"E") + _field(16, 2, _field(1, 0, _varint(2**64 - 5))))
    ),
    "enum beyond 32 bits": _field(3, 2, _field(2, 2, _field(1, 2, b"O") + _field(3, 0, _varint(2**40 + 3)))),
    "negative enum": _field(3, 2, _field(2, 2, _field(1, 2, b"O") + _field(3, 0, _varint(2**64 - 1)))),
    "bool as 2": _field(3, 2, _field(2, 2, _field(1, 2, b"O") + _field(5, 0, b"\x02"))),
    "map entries out of order, repeated keys, missing value": _field(
        3,
        2,
        _field(
            1,
            2,
            _field(1, 2, b"E")
            + _field(
                2,
                2,
                _field(1, 2, b"O")
                + _field(41, 2, _field(1, 0, _varint(9)) + _field(2, 0, _varint(1)))
                + _field(41, 2, _field(1, 0, _varint(2)))
                + _field(41, 2, _field(1, 0, _varint(9)) + _field(2, 0, _varint(3)) + _field(7, 5, b"abcd"))
                + _field(41, 2, _field(2, 0, _varint(4)) + _field(1, 0, _varint(2**64 - 1))),
            ),
        ),
    ),
    # Every entry holds an unknown field, so none is in the map: an empty array (a fuzzer's find).
    "map of entries with unknown fields only": _field(
        3,
        2,
        _field(
            1, 2, _field(1, 2, b"E") + _field(2, 2, _field(1, 2, b"O") + _field(41, 2, _field(41, 2, b"")))
        ),
    ),
    "map entry with a bad field": _field(
        3, 2, _field(1, 2, _field(2, 2, _field(41, 2, _varint(1 << 3 | 7))))
    ),
    "timestamp nanos negative and huge": _field(
        3,
        2,
        _field(
            1,
            2,
            _field(1, 2, b"E")
            + _field(2, 2, _field(1, 2, b"O"))
            + _field(8, 2, _field(2, 0, _varint(2**64 - 7))),
        ),
    ),
    "timestamp at the last nanosecond": _field(
        3,
        2,
        _field(
            1,
            2,
            _field(1, 2, b"E")
            + _field(2, 2, _field(1, 2, b"O"))
            + _field(8, 2, _field(1, 0, _varint(9_223_372_036)) + _field(2, 0, _varint(854_775_807))),
        ),
    ),
    "timestamp one nanosecond beyond": _field(
        3,
        2,
        _field(
            1,
            2,
            _field(1, 2, b"E")
            + _field(2, 2, _field(1, 2, b"O"))
            + _field(8, 2, _field(1, 0, _varint(9_223_372_036)) + _field(2, 0, _varint(854_775_808))),
        ),
    ),
    "deadline far in the past is clamped": _field(
        3,
        2,
        _field(
            1,
            2,
            _field(1, 2, b"E")
            + _field(2, 2, _field(1, 2, b"O") + _field(30, 2, _field(1, 0, _varint(2**64 - 10**12)))),
        ),
    ),
    "processed_sent_time out of range is None": _field(5, 2, _field(1, 0, _varint(10**12)))
    + _field(1, 2, b""),
    "snapshot at processed time 0 uses received time": _field(5, 2, b"")
    + _field(2, 2, _field(1, 2, _field(1, 2, b"O"))),
    "merged cancel reject dead letter": _field(3, 2, _field(2, 2, _field(2, 2, b"C1")))
    + _field(3, 2, _field(2, 2, _field(4, 2, b"text"))),
    "sfixed-looking unknown fields": _field(5000, 1, b"\x00" * 8) + _field(5001, 5, b"\x00" * 4),
    "truncated fixed64": _field(5000, 1, b"\x00" * 7),
}


@pytest.mark.parametrize("case", sorted(WIRE_CASES))
def test_wire_format_corners(case: str) -> None:
    assert_same_as_reference(WIRE_CASES[case])


def _nested_groups(depth: int) -> bytes:
    return _varint(99 << 3 | 3) * depth + _varint(99 << 3 | 4) * depth


def _nested_messages(depth: int) -> bytes:
    """Unknown field 99 holding itself, ``depth`` times (length-delimited: skipped, never entered)."""
    data = b""
    for _ in range(depth):
        data = _field(99, 2, data)
    return data


@pytest.mark.parametrize("depth", [1, 98, 99, 100, 101, 150])
def test_nesting_limit_is_protobufs(depth: int) -> None:
    assert_same_as_reference(_nested_groups(depth))
    # Groups inside an execution's order count the message levels above them too.
    inner = _field(1, 2, b"E") + _field(2, 2, _field(1, 2, b"O") + _nested_groups(depth))
    assert_same_as_reference(_field(3, 2, _field(1, 2, inner)))
    assert_same_as_reference(_nested_messages(depth))


def test_extreme_integers_round_trip() -> None:
    response = Response()
    execution = response.update.executions.add(id="E", last_shares=-(2**63), last_px=2**63 - 1)
    execution.order.id = "O"
    execution.order.min_qty = -1
    execution.transact_trade_date.year = -(2**31)
    execution.transact_trade_date.month = 2**31 - 1
    execution.order.type = -(2**31)
    assert_same_as_reference(response.SerializeToString())


def test_no_record_escapes_after_invalid_bytes() -> None:
    good = _rich_update().SerializeToString()
    with pytest.raises(TranscodeError, match="malformed protobuf"):
        TRANSCODERS["single_object"].response(good + b"\x07", RECEIVED)
    # and the transcoder is unharmed
    assert_same_as_reference(good)


def test_threads_transcoding_at_once_get_their_own_results() -> None:
    """Each thread has its own scratch buffers: concurrent calls do not mix their records."""
    frames = []
    for index in range(8):
        response = Response(session_id=f"s{index}")
        for number in range(50):
            execution = response.update.executions.add(id=f"E{index}-{number}", text="t" * index)
            execution.order.id = f"O{index}"
        frames.append(response.SerializeToString())
    transcoder = TRANSCODERS["registry"]
    expected = [transcoder.response(frame, RECEIVED) for frame in frames]
    with futures.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(5):
            assert list(pool.map(lambda frame: transcoder.response(frame, RECEIVED), frames)) == expected


def test_wrong_argument_types_are_not_reported_as_venue_data() -> None:
    transcoder = TRANSCODERS["single_object"]
    with pytest.raises(TypeError):
        transcoder.response("not bytes", RECEIVED)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        transcoder.response(b"", 2**64)
    with pytest.raises(KeyError):
        Transcoder({RecordType.EXECUTION: b""}, CONNECTOR)


# --------------------------------------------------------------------------- backfill


@SLOW
@given(response=responses(), source=st.sampled_from(list(Source)))
def test_one_execution_equals_the_reference(response: Message, source: Source) -> None:
    for execution in list(response.update.executions)[:3]:
        context = EventContext(source, "sess", 12, RECEIVED, CONNECTOR)
        data = execution.SerializeToString()
        got: Callable[[], Any] = lambda data=data: TRANSCODERS["registry"].execution(  # noqa: E731
            data, source=source, session_id="sess", processed_sent_time_ns=12, received_time_ns=RECEIVED
        )
        try:
            expected = reference_execution(REGISTRY, execution, context)
        except ValueError as exc:
            with pytest.raises(TranscodeError) as failure:
                got()
            assert failure.value.reason == str(exc)
            assert failure.value.error_type == "MappingError"
            assert failure.value.key == (execution.order.id.encode() if execution.HasField("order") else b"")
            continue
        assert got() == expected


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
@pytest.mark.parametrize("source", list(Source))
def test_every_source_reaches_the_execution_record(source: Source, framing: str) -> None:
    execution = _rich_update().update.executions[0]
    context = EventContext(source, "sess", 12, RECEIVED, CONNECTOR)
    got = TRANSCODERS[framing].execution(
        execution.SerializeToString(),
        source=source,
        session_id="sess",
        processed_sent_time_ns=12,
        received_time_ns=RECEIVED,
    )
    assert got == reference_execution(FRAMINGS[framing], execution, context)
    assert decode(got[3], RecordType.EXECUTION)["source"] == source.value


def test_one_invalid_execution_raises_a_decode_error() -> None:
    with pytest.raises(TranscodeError) as failure:
        TRANSCODERS["registry"].execution(
            b"\x0a\x05ab",
            source=Source.BACKFILL,
            session_id="",
            processed_sent_time_ns=None,
            received_time_ns=1,
        )
    assert failure.value.error_type == "DecodeError"


# --------------------------------------------------------------------------- another venue contract


def _renumbered_pool() -> tuple[Any, Any]:
    """trading.proto with every field number moved (as the official bundle's may be), in a new pool."""
    pool = descriptor_pool.DescriptorPool()
    for module in (trading_pb2.DESCRIPTOR.dependencies[0], trading_pb2.DESCRIPTOR.dependencies[1]):
        proto = descriptor_pb2.FileDescriptorProto()
        module.CopyToProto(proto)
        pool.Add(proto)
    proto = descriptor_pb2.FileDescriptorProto()
    trading_pb2.DESCRIPTOR.CopyToProto(proto)
    for message in proto.message_type:
        del message.reserved_range[:]
        for index, field in enumerate(reversed(message.field)):
            field.number = 200 + 3 * index
    pool.Add(proto)
    response_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("polymarket.v1.CreateOrderSubscriptionResponse")
    )
    return pool, response_class


def test_a_renumbered_venue_contract_needs_no_code_change() -> None:
    _pool, renumbered_class = _renumbered_pool()
    transcoder = Transcoder(SINGLE_OBJECT, CONNECTOR, response_descriptor=renumbered_class.DESCRIPTOR)
    original = _rich_update()
    renumbered = renumbered_class()
    json_format.ParseDict(json_format.MessageToDict(original), renumbered)
    assert renumbered.SerializeToString() != original.SerializeToString()
    expected = TRANSCODERS["single_object"].response(original.SerializeToString(), RECEIVED)
    assert transcoder.response(renumbered.SerializeToString(), RECEIVED) == expected


def test_a_venue_type_the_schema_cannot_hold_is_refused_at_construction() -> None:
    pool = descriptor_pool.DescriptorPool()
    for module in trading_pb2.DESCRIPTOR.dependencies:
        proto = descriptor_pb2.FileDescriptorProto()
        module.CopyToProto(proto)
        pool.Add(proto)
    proto = descriptor_pb2.FileDescriptorProto()
    trading_pb2.DESCRIPTOR.CopyToProto(proto)
    order = next(m for m in proto.message_type if m.name == "Order")
    next(f for f in order.field if f.name == "price").type = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    pool.Add(proto)
    response = pool.FindMessageTypeByName("polymarket.v1.CreateOrderSubscriptionResponse")
    with pytest.raises(UnsupportedMapping, match=r"polymarket\.v1\.Order\.price"):
        Transcoder(SINGLE_OBJECT, CONNECTOR, response_descriptor=response)


def _pool_with_order_changed() -> Any:
    """trading.proto with Order.symbol gone and a field Order.venue_flag (string, 500) the schemas lack."""
    pool = descriptor_pool.DescriptorPool()
    for module in trading_pb2.DESCRIPTOR.dependencies:
        proto = descriptor_pb2.FileDescriptorProto()
        module.CopyToProto(proto)
        pool.Add(proto)
    proto = descriptor_pb2.FileDescriptorProto()
    trading_pb2.DESCRIPTOR.CopyToProto(proto)
    order = next(m for m in proto.message_type if m.name == "Order")
    symbol = next(index for index, f in enumerate(order.field) if f.name == "symbol")
    del order.field[symbol]
    order.field.add(
        name="venue_flag",
        number=500,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("polymarket.v1.CreateOrderSubscriptionResponse")
    )


CHANGED_RESPONSE = _pool_with_order_changed()
CHANGED_TRANSCODER = Transcoder(SINGLE_OBJECT, CONNECTOR, response_descriptor=CHANGED_RESPONSE.DESCRIPTOR)


@SLOW
@given(response=responses(), flag=st.text(max_size=5))
def test_a_venue_contract_with_a_field_less_and_one_more_equals_the_reference(
    response: Message, flag: str
) -> None:
    """The schema field the venue lacks gets its default; the venue field the schemas lack is ignored
    (but still checked: it must be valid UTF-8)."""
    assert CHANGED_TRANSCODER.missing_venue_fields() == ["Order.symbol"]
    data = response.SerializeToString()  # symbol (number 5) is now an unknown field
    if response.HasField("update") and response.update.executions:
        data += _field(3, 2, _field(1, 2, _field(1, 2, b"E") + _field(2, 2, _field(500, 2, flag.encode()))))
    expected = reference_response(data, RECEIVED, SINGLE_OBJECT, CONNECTOR, CHANGED_RESPONSE)
    classes = event_classes(CHANGED_RESPONSE)
    assert normalized(CHANGED_TRANSCODER.response(data, RECEIVED), classes) == normalized(expected, classes)
    invalid = data + _field(3, 2, _field(1, 2, _field(2, 2, _field(500, 2, b"\xff"))))
    with pytest.raises(DecodeError):
        CHANGED_RESPONSE.FromString(invalid)
    with pytest.raises(TranscodeError):
        CHANGED_TRANSCODER.response(invalid, RECEIVED)


def test_the_plan_covers_every_venue_field_and_every_schema_field() -> None:
    """Checked against the same descriptors and .avsc: every field of every message the response
    reaches is decoded (numbers and kinds from the descriptor), and every event schema field has
    exactly one step, in schema order."""
    plan = json.loads(TRANSCODERS["single_object"].plan_json)
    messages = {message["name"]: message for message in plan["messages"]}
    pending, seen = [Response.DESCRIPTOR], set()
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name in seen:
            continue
        seen.add(descriptor.full_name)
        fields = {(f["name"], f["number"]) for f in messages[descriptor.full_name]["fields"]}
        assert fields == {(f.name, f.number) for f in descriptor.fields}, descriptor.full_name
        pending.extend(
            f.message_type
            for f in descriptor.fields
            if f.message_type and not f.message_type.GetOptions().map_entry
        )
    assert seen == set(messages)
    writers = plan["writers"]
    for event, record_type in (
        ("execution", RecordType.EXECUTION),
        ("snapshot_order", RecordType.ORDER_SNAPSHOT),
        ("cancel_reject", RecordType.CANCEL_REJECT),
    ):
        assert len(writers[plan[event]["writer"]]["ops"]) == len(schema_dict(record_type)["fields"])


def test_every_schema_field_the_venue_lacks_is_reported() -> None:
    """Schema fields with no protobuf field of the same name (written as their defaults), found directly."""
    expected = set()
    for record_type, nested, descriptor in (
        (RecordType.EXECUTION, "execution", trading_pb2.Execution.DESCRIPTOR),
        (RecordType.ORDER_SNAPSHOT, "order", trading_pb2.Order.DESCRIPTOR),
    ):
        (field,) = [f for f in schema_dict(record_type)["fields"] if f["name"] == nested]
        for avro_field in field["type"]["fields"]:
            name = avro_field["name"].removesuffix("_number")
            if name not in descriptor.fields_by_name:
                expected.add(f"{descriptor.name}.{avro_field['name']}")
    missing = set(TRANSCODERS["single_object"].missing_venue_fields())
    assert expected <= missing


# --------------------------------------------------------------------------- real gRPC bytes


class _Stream(grpc.GenericRpcHandler):
    def __init__(self, frames: list[bytes]) -> None:
        self._frames = frames

    def service(self, handler_call_details: Any) -> Any:
        def stream(_request: bytes, _context: Any) -> Iterator[bytes]:
            yield from self._frames

        return grpc.unary_stream_rpc_method_handler(
            stream, request_deserializer=None, response_serializer=None
        )


def test_raw_grpc_bytes_through_an_identity_deserializer() -> None:
    frames = [_rich_update().SerializeToString(), Response(session_id="s", heartbeat={}).SerializeToString()]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers((_Stream(frames),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_stream(
                "/polymarket.v1.OrderEntryAPI/CreateOrderSubscription",
                request_serializer=trading_pb2.CreateOrderSubscriptionRequest.SerializeToString,
                response_deserializer=None,  # the bytes as they came off the wire
            )
            received = list(call(trading_pb2.CreateOrderSubscriptionRequest(), timeout=10))
    finally:
        server.stop(None)
    assert received == frames
    kinds = [TRANSCODERS["single_object"].response(frame, RECEIVED).kind for frame in received]
    assert kinds == [ResponseKind.UPDATE, ResponseKind.HEARTBEAT]


def test_struct_layout_of_the_registry_prefix() -> None:
    assert struct.unpack(">bI", REGISTRY[RecordType.EXECUTION]) == (0, 100)
