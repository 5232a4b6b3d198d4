"""Raw garbage frames from a bare gRPC server: the stream client and the pipeline never crash.

A real gRPC server on loopback serves ``CreateOrderSubscription`` with a generic handler and
identity serializers, so each response message is whatever bytes the test chooses: random bytes,
valid responses, valid responses with trailing junk, empty frames, one frame over the receive limit.
The connector's own client reads them (``OrderStreamClient`` + ``read``) and feeds the real pipeline.

The property: every frame before the first one that is not a ``CreateOrderSubscriptionResponse``
reaches the pipeline and is accounted for (published or dead-lettered), and the stream then ends
with :class:`StreamEnded` (``EOF`` after the last frame, ``INTERNAL`` at an undecodable one,
``RESOURCE_EXHAUSTED`` for an oversize one), which the service turns into a reconnect: never an
exception of another kind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector._pb.polymarket.v1 import trading_pb2
from connector.config import VenueSettings
from connector.core.dedup import RecentExecutionIds
from connector.core.watermark import Watermark
from connector.engine.pipeline import Pipeline
from connector.venue.stream import Disposition, OrderStreamClient, StreamEnded, open_channel, read
from tests.unit.test_fuzz_venue import (
    ENCODERS,
    MAPPER,
    TOPICS,
    CountingObserver,
    RecordingSink,
    responses,
)

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


def run_stream(client: OrderStreamClient) -> tuple[int, StreamEnded, RecordingSink, CountingObserver]:
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
    handled = 0
    with pytest.raises(StreamEnded) as ended:  # the only way read() ends
        for response in read(client.open()):
            pipeline.on_response(response, received_time_ns=1_700_000_000_000_000_000)
            handled += 1
    return handled, ended.value, sink, observer


SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW_OK)
@given(frames=st.lists(FRAME, max_size=5))
def test_any_frames_end_the_stream_cleanly(
    garbage_venue: GarbageVenue, client: OrderStreamClient, frames: list[bytes]
) -> None:
    garbage_venue.frames = frames
    handled, ended, sink, observer = run_stream(client)
    good_prefix = next((index for index, frame in enumerate(frames) if not parses(frame)), len(frames))
    assert handled == good_prefix
    if good_prefix == len(frames):
        assert ended.status == "EOF"
    else:
        assert ended.status == "INTERNAL", ended  # grpc: "Exception deserializing response!"
    assert ended.disposition is Disposition.RECONNECT
    received = sum(observer.received.values())
    dead = sum(observer.dead_letters.values())
    published = len(sink.records) - dead
    heartbeats = observer.received["heartbeat"]
    assert published + dead + observer.duplicates == received - heartbeats


def test_an_oversize_frame_ends_the_stream_without_a_crash(
    garbage_venue: GarbageVenue, client: OrderStreamClient
) -> None:
    big = trading_pb2.CreateOrderSubscriptionResponse(session_id="x" * (RECEIVE_LIMIT + 1))
    garbage_venue.frames = [trading_pb2.CreateOrderSubscriptionResponse(session_id="s").SerializeToString(),
                            big.SerializeToString()]  # fmt: skip
    handled, ended, _sink, _observer = run_stream(client)
    assert handled == 1
    assert ended.status == "RESOURCE_EXHAUSTED"
    assert ("authorization", "Bearer token") in garbage_venue.metadata
