"""The venue's order stream over gRPC: channel, call, and the translation of gRPC errors.

``CreateOrderSubscription`` is one server-streaming call with no deadline (venue-api.md §3.4): TLS
by default, keepalive 60 s / 20 s as the venue recommends, a raised receive size for large
snapshots, and metadata ``authorization: Bearer <token>`` plus ``x-participant-id``. Messages are
read by documented field name only (``heartbeat``, ``snapshot``, ``update``; DESIGN.md §3).

``grpc.RpcError`` is translated here, and only here, into :class:`StreamEnded`, which says what the
failure matrix (DESIGN.md §4) should do with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any, Final, Protocol

import grpc

from connector._pb.polymarket.v1 import trading_pb2, trading_pb2_grpc
from connector.config import VenueSettings

_LOG: Final = logging.getLogger(__name__)

KEEPALIVE_TIME_MS: Final = 60_000
KEEPALIVE_TIMEOUT_MS: Final = 20_000


class Disposition(StrEnum):
    """What the connector should do after the stream ended (the failure matrix)."""

    RECONNECT = "reconnect"  # ended, UNAVAILABLE, reset, internal errors: back off and reconnect
    REAUTHENTICATE = "reauthenticate"  # UNAUTHENTICATED: fresh token, reconnect at once
    BACK_OFF_LONG = "back_off_long"  # RESOURCE_EXHAUSTED: too many streams for the firm
    FATAL = "fatal"  # PERMISSION_DENIED, INVALID_ARGUMENT: configuration must change


_DISPOSITIONS: Final[dict[grpc.StatusCode, Disposition]] = {
    grpc.StatusCode.UNAUTHENTICATED: Disposition.REAUTHENTICATE,
    grpc.StatusCode.PERMISSION_DENIED: Disposition.FATAL,
    grpc.StatusCode.INVALID_ARGUMENT: Disposition.FATAL,
    grpc.StatusCode.UNIMPLEMENTED: Disposition.FATAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Disposition.BACK_OFF_LONG,
}


class StreamEnded(Exception):
    """The stream ended: how (a gRPC status name, or ``EOF``), the venue's words, and what to do."""

    def __init__(self, status: str, details: str, disposition: Disposition) -> None:
        super().__init__(status, details, disposition)
        self.status = status
        self.details = details
        self.disposition = disposition

    def __str__(self) -> str:
        return f"order stream ended: {self.status}: {self.details}" if self.details else self.status


class CancellableStream(Protocol):
    """An open stream: iterate its responses; ``cancel`` ends it from another thread."""

    def __iter__(self) -> Iterator[trading_pb2.CreateOrderSubscriptionResponse]:
        """Yield the venue's responses."""

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
        self._settings = settings
        self._token = token

    def open(self, *, snapshot_only: bool = False) -> CancellableStream:
        """Start a subscription with the configured filter; responses arrive by iterating it."""
        request = trading_pb2.CreateOrderSubscriptionRequest(
            symbols=list(self._settings.symbols),
            accounts=list(self._settings.accounts),
            snapshot_only=snapshot_only,
        )
        metadata = (
            ("authorization", f"Bearer {self._token()}"),
            ("x-participant-id", self._settings.participant_id),
        )
        call: CancellableStream = self._stub.CreateOrderSubscription(request, metadata=metadata)
        return call


def read(stream: CancellableStream) -> Iterator[trading_pb2.CreateOrderSubscriptionResponse]:
    """Yield the stream's responses; end with :class:`StreamEnded` describing how it ended.

    Raises:
        StreamEnded: always, once the stream is over (``EOF`` when the venue closed it with OK).
    """
    try:
        yield from stream
    except grpc.RpcError as exc:
        raise translate(exc) from None
    ended_cleanly = "EOF"
    raise StreamEnded(ended_cleanly, "the venue ended the stream", Disposition.RECONNECT)


def translate(error: grpc.RpcError) -> StreamEnded:
    """Translate a gRPC error into a :class:`StreamEnded` with its disposition."""
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details = details_of() if callable(details_of) else ""
    return StreamEnded(code.name, details or "", _DISPOSITIONS.get(code, Disposition.RECONNECT))
