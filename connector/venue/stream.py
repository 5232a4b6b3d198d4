"""The venue's order stream over gRPC: channel, call, reader thread, and the translation of gRPC errors.

``CreateOrderSubscription`` is one server-streaming call with no deadline (venue-api.md §3.4): TLS
by default, keepalive 60 s / 20 s as the venue recommends, a raised receive size for large
snapshots, and metadata ``authorization: Bearer <token>`` plus ``x-participant-id``. Messages are
read by documented field name only (``heartbeat``, ``snapshot``, ``update``; DESIGN.md §3).

A :class:`GrpcVenueStream` is the engine's :class:`~connector.engine.ports.VenueStream`: a reader
thread moves responses, as their wire bytes (the transcoder reads them; no Python protobuf object is
built), into a bounded queue and rings the engine's doorbell. When the queue is full
the reader waits, gRPC stops granting flow-control credit and the venue holds its messages.

``grpc.RpcError`` is translated here, and only here, into a
:class:`~connector.engine.ports.StreamEnd` saying what the failure matrix should do with it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol

import grpc

from connector._pb.polymarket.v1 import trading_pb2, trading_pb2_grpc
from connector.config import VenueSettings
from connector.engine.ports import Disposition, StreamEnd

_LOG: Final = logging.getLogger(__name__)

SUBSCRIBE_METHOD: Final = "/polymarket.v1.OrderEntryAPI/CreateOrderSubscription"
KEEPALIVE_TIME_MS: Final = 60_000
KEEPALIVE_TIMEOUT_MS: Final = 20_000
QUEUE_CAPACITY: Final = 1024
PUT_RETRY_S: Final = 0.1

_DISPOSITIONS: Final[dict[grpc.StatusCode, Disposition]] = {
    grpc.StatusCode.UNAUTHENTICATED: Disposition.REAUTHENTICATE,
    grpc.StatusCode.PERMISSION_DENIED: Disposition.FATAL,
    grpc.StatusCode.INVALID_ARGUMENT: Disposition.FATAL,
    grpc.StatusCode.UNIMPLEMENTED: Disposition.FATAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Disposition.BACK_OFF_LONG,
}


class Call(Protocol):
    """An open gRPC server-streaming call: iterate its responses; ``cancel`` ends it."""

    def __iter__(self) -> Iterator[trading_pb2.CreateOrderSubscriptionResponse]:
        """Yield the venue's responses."""

    def cancel(self) -> bool:
        """End the call."""


class RawCall(Protocol):
    """The same call with each response as its wire bytes."""

    def __iter__(self) -> Iterator[bytes]:
        """Yield the venue's responses as bytes."""

    def cancel(self) -> bool:
        """End the call."""


def channel_options(settings: VenueSettings) -> list[tuple[str, Any]]:
    """The channel options the venue recommends (keepalive) plus a raised receive size."""
    return [
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
        # Reconnect pacing is ours (full-jitter backoff); keep gRPC's own short.
        ("grpc.initial_reconnect_backoff_ms", 1000),
        ("grpc.max_reconnect_backoff_ms", 5000),
    ]


def open_channel(settings: VenueSettings) -> grpc.Channel:
    """Open the gRPC channel: TLS unless ``venue.insecure`` (which config allows only for loopback).

    The server certificate is checked against ``venue.tls_ca_file`` when set, else the system's CAs.
    """
    options = channel_options(settings)
    if settings.insecure:
        return grpc.insecure_channel(settings.grpc_target, options=options)
    roots = settings.tls_ca_file.read_bytes() if settings.tls_ca_file is not None else None
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return grpc.secure_channel(settings.grpc_target, credentials, options=options)


class OrderStreamClient:
    """Opens ``CreateOrderSubscription`` calls on one channel."""

    def __init__(self, channel: grpc.Channel, settings: VenueSettings, token: Callable[[], str]) -> None:
        """Use ``channel``; ``token`` returns a current access token for each new call."""
        self._stub = trading_pb2_grpc.OrderEntryAPIStub(channel)  # type: ignore[no-untyped-call]
        # The same method with the responses left as their wire bytes: the transcoder reads them.
        self._raw = channel.unary_stream(
            SUBSCRIBE_METHOD,
            request_serializer=trading_pb2.CreateOrderSubscriptionRequest.SerializeToString,
            response_deserializer=None,
        )
        self._settings = settings
        self._token = token

    def call(self, *, snapshot_only: bool = False) -> Call:
        """Start a subscription with the configured filter; parsed responses arrive by iterating it.

        Raises:
            TokenEndpointUnavailable: no token now.
            CredentialsRefused: the token endpoint refused the client.
        """
        call: Call = self._stub.CreateOrderSubscription(
            self._request(snapshot_only), metadata=self._metadata()
        )
        return call

    def raw_call(self) -> RawCall:
        """Start a subscription whose responses arrive as their wire bytes (the engine's stream).

        Raises:
            TokenEndpointUnavailable: no token now.
            CredentialsRefused: the token endpoint refused the client.
        """
        call: RawCall = self._raw(self._request(snapshot_only=False), metadata=self._metadata())
        return call

    def opener(self, doorbell: Callable[[], None]) -> Callable[[], GrpcVenueStream]:
        """The engine's stream opener: each call opens a stream read by its own thread."""

        def open_stream() -> GrpcVenueStream:
            return GrpcVenueStream(self.raw_call(), doorbell)

        return open_stream

    def _request(self, snapshot_only: bool) -> trading_pb2.CreateOrderSubscriptionRequest:
        return trading_pb2.CreateOrderSubscriptionRequest(
            symbols=list(self._settings.symbols),
            accounts=list(self._settings.accounts),
            snapshot_only=snapshot_only,
        )

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return call_metadata(self._settings, self._token)


def call_metadata(settings: VenueSettings, token: Callable[[], str]) -> tuple[tuple[str, str], ...]:
    """The metadata of every venue stream call: a current bearer token and ``x-participant-id``.

    Raises:
        TokenEndpointUnavailable: no token now.
        CredentialsRefused: the token endpoint refused the client.
    """
    return (("authorization", f"Bearer {token()}"), ("x-participant-id", settings.participant_id))


class GrpcVenueStream:
    """One call, read by a daemon thread into a bounded queue (the engine's ``VenueStream``)."""

    def __init__(
        self, call: Call | RawCall, doorbell: Callable[[], None], capacity: int = QUEUE_CAPACITY
    ) -> None:
        """Start reading ``call``; ``doorbell`` is rung after each response and at the end."""
        self._call = call
        self._doorbell = doorbell
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="stream-reader", daemon=True)
        self._thread.start()

    def take(self) -> Any | StreamEnd | None:
        """The next response, how the stream ended, or None when nothing is ready."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def cancel(self) -> None:
        """End the call and the reader."""
        self._cancelled.set()
        self._call.cancel()

    def _pump(self) -> None:
        try:
            for response in read(self._call):
                self._put(response)
        except StreamEndedError as ended:
            self._put(ended.end)

    def _put(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            while not self._cancelled.is_set():
                try:
                    self._queue.put(item, timeout=PUT_RETRY_S)
                    break
                except queue.Full:
                    continue
        self._doorbell()


class StreamEndedError(Exception):
    """Raised by :func:`read` when the stream is over; carries the :class:`StreamEnd`."""

    def __init__(self, end: StreamEnd) -> None:
        super().__init__(str(end))
        self.end = end


def read(call: Call | RawCall) -> Iterator[Any]:
    """Yield the call's responses; end with :class:`StreamEndedError` describing how it ended.

    Raises:
        StreamEndedError: always, once the stream is over (``EOF`` when the venue closed it with OK).
    """
    try:
        yield from call
    except grpc.RpcError as exc:
        raise StreamEndedError(translate(exc)) from None
    raise StreamEndedError(StreamEnd("EOF", "the venue ended the stream", Disposition.RECONNECT))


def translate(error: grpc.RpcError) -> StreamEnd:
    """Translate a gRPC error into a :class:`StreamEnd` with its disposition."""
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details = details_of() if callable(details_of) else ""
    return StreamEnd(code.name, details or "", _DISPOSITIONS.get(code, Disposition.RECONNECT))
