"""Raw garbage frames from a bare gRPC server: the stream client and the pipeline never crash.

A real gRPC server on loopback serves ``CreateOrderSubscription`` with a generic handler and
identity serializers, so each response message is whatever bytes the test chooses: random bytes,
valid responses, valid responses with trailing junk, empty frames, one frame over the receive limit.
The connector's own stream adapter reads them (``OrderStreamClient`` + ``GrpcVenueStream``, its
reader thread and queue) and the real decoder decodes them.

The stream hands the engine raw bytes (identity response deserializer); the compiled transcoder
decodes them. The property: every frame protobuf itself parses as a ``CreateOrderSubscriptionResponse``
is decoded and accounted for (one record or dead letter per event); the first frame that does not
parse raises :class:`TranscodeError` (the engine then dead-letters its raw bytes and reconnects), and
otherwise the stream ends with a :class:`StreamEnd` (``EOF`` after the last frame,
``RESOURCE_EXHAUSTED`` for an oversize one) whose disposition is a reconnect: never a crash.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector._pb.polymarket.v1 import trading_pb2
from connector.config import VenueSettings
from connector.core.records import MessageKind, VenueMessage
from connector.core.transcoder import TranscodeError
from connector.engine.ports import Disposition, StreamEnd
from connector.venue.stream import GrpcVenueStream, OrderStreamClient, open_channel
from tests.venue_strategies import DECODER, responses

RECEIVED_NS = 1_700_000_000_000_000_000
RECEIVE_LIMIT = 4 * 1024 * 1024  # the smallest venue.max_receive_message_bytes the settings allow


class GarbageVenue:
    """A bare gRPC server whose order stream sends the frames it was last given, as raw bytes."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.metadata: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_stream_rpc_method_handler(
            self._stream, request_deserializer=None, response_serializer=None
        )
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "polymarket.v1.OrderEntryAPI", {"CreateOrderSubscription": handler}
                ),
            )
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self.metadata = [(key, value) for key, value in context.invocation_metadata()]  # type: ignore[misc]
        with self._lock:
            frames = list(self.frames)
        yield from frames


@pytest.fixture(scope="module")
def garbage_venue() -> Iterator[GarbageVenue]:
    venue = GarbageVenue()
    venue.server.start()
    try:
        yield venue
    finally:
        venue.server.stop(grace=None)


@pytest.fixture(scope="module")
def client(garbage_venue: GarbageVenue) -> Iterator[OrderStreamClient]:
    settings_ = VenueSettings(
        grpc_target=f"127.0.0.1:{garbage_venue.port}",
        rest_url="http://127.0.0.1:1",
        insecure=True,
        participant_id="firms/F/users/u",
        max_receive_message_bytes=RECEIVE_LIMIT,
    )
    channel = open_channel(settings_)
    try:
        yield OrderStreamClient(channel, settings_, lambda: "token")
    finally:
        channel.close()


def parses(frame: bytes) -> bool:
    try:
        trading_pb2.CreateOrderSubscriptionResponse.FromString(frame)
    except DecodeError:
        return False
    return True


FRAME = st.one_of(
    st.binary(max_size=200),  # random bytes: most do not parse, some do (protobuf is lenient)
    responses().map(lambda response: response.SerializeToString()),
    st.tuples(responses(), st.binary(min_size=1, max_size=20)).map(
        lambda pair: pair[0].SerializeToString() + pair[1]
    ),
    st.just(b""),  # an empty frame is a valid, empty response
    st.just(b"\xff" * 10),  # a truncated varint
)


def run_stream(client: OrderStreamClient) -> tuple[list[VenueMessage], StreamEnd | TranscodeError]:
    """Read the stream through the real adapter, decoding every response, to its end or a bad frame."""
    stream = GrpcVenueStream(client.raw_call(), doorbell=lambda: None)
    decoded: list[VenueMessage] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        item = stream.take()
        if item is None:
            time.sleep(0.005)
        elif isinstance(item, StreamEnd):
            return decoded, item
        else:
            try:
                decoded.append(DECODER.response(item, received_ns=RECEIVED_NS))
            except TranscodeError as exc:
                stream.cancel()
                return decoded, exc
    raise AssertionError("the stream did not end")


SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW_OK)
@given(frames=st.lists(FRAME, max_size=5))
def test_any_frames_end_the_stream_cleanly(
    garbage_venue: GarbageVenue, client: OrderStreamClient, frames: list[bytes]
) -> None:
    garbage_venue.frames = frames
    decoded, ended = run_stream(client)
    good_prefix = next((index for index, frame in enumerate(frames) if not parses(frame)), len(frames))
    assert len(decoded) == good_prefix
    if good_prefix == len(frames):
        assert isinstance(ended, StreamEnd)
        assert ended.status == "EOF"
        assert ended.disposition is Disposition.RECONNECT
    else:
        assert isinstance(ended, TranscodeError), ended
        assert ended.error_type == "DecodeError"
        kept = DECODER.unreadable(frames[good_prefix], ended, RECEIVED_NS)
        assert kept.value == frames[good_prefix], "the dead letter keeps the frame's raw bytes"
    for frame, message in zip(frames, decoded, strict=False):
        response = trading_pb2.CreateOrderSubscriptionResponse.FromString(frame)
        events = len(response.snapshot.orders) + len(response.update.executions)
        events += 1 if response.update.HasField("cancel_reject") else 0
        expected = 0 if message.kind is MessageKind.HEARTBEAT else events
        assert len(message.records) == expected, "one record or dead letter per event"


def test_an_oversize_frame_ends_the_stream_without_a_crash(
    garbage_venue: GarbageVenue, client: OrderStreamClient
) -> None:
    big = trading_pb2.CreateOrderSubscriptionResponse(session_id="x" * (RECEIVE_LIMIT + 1))
    garbage_venue.frames = [trading_pb2.CreateOrderSubscriptionResponse(session_id="s").SerializeToString(),
                            big.SerializeToString()]  # fmt: skip
    decoded, ended = run_stream(client)
    assert len(decoded) == 1
    assert isinstance(ended, StreamEnd)
    assert ended.status == "RESOURCE_EXHAUSTED"
    assert ("authorization", "Bearer token") in garbage_venue.metadata
