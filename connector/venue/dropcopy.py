"""The venue's Drop Copy stream over gRPC: ``DropCopyAPI.CreateDropCopySubscription`` (venue-api.md §6).

One server-streaming call per :class:`~connector.engine.ports.DropCopyResume`: ``resume_token`` when
the engine has a confirmed one, else ``resume_time``, else neither (live); the configured symbols
and ``venue.drop_copy_firms`` (empty: the caller's firm). The channel, keepalive, reader thread and
error translation are the order stream's (:mod:`connector.venue.stream`); responses reach the engine
as their wire bytes. The call needs the ``read:dropcopy`` scope and counts toward the firm's 20
streams.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from connector._pb.polymarket.v1 import dropcopy_pb2
from connector.config import VenueSettings
from connector.engine.ports import DropCopyResume
from connector.venue.stream import GrpcVenueStream, RawCall, call_metadata

SUBSCRIBE_METHOD: Final = "/polymarket.v1.DropCopyAPI/CreateDropCopySubscription"


class DropCopyClient:
    """Opens ``CreateDropCopySubscription`` calls on one channel."""

    def __init__(self, channel: grpc.Channel, settings: VenueSettings, token: Callable[[], str]) -> None:
        """Use ``channel``; ``token`` returns a current access token for each new call."""
        self._raw = channel.unary_stream(
            SUBSCRIBE_METHOD,
            request_serializer=dropcopy_pb2.CreateDropCopySubscriptionRequest.SerializeToString,
            response_deserializer=None,
        )
        self._settings = settings
        self._token = token

    def raw_call(self, resume: DropCopyResume) -> RawCall:
        """Start a subscription from ``resume``; its responses arrive as their wire bytes.

        Raises:
            TokenEndpointUnavailable: no token now.
            CredentialsRefused: the token endpoint refused the client.
        """
        metadata = call_metadata(self._settings, self._token)
        call: RawCall = self._raw(request(self._settings, resume), metadata=metadata)
        return call

    def opener(self, doorbell: Callable[[], None]) -> Callable[[DropCopyResume], GrpcVenueStream]:
        """The engine's Drop Copy opener: each call opens a stream read by its own thread."""

        def open_stream(resume: DropCopyResume) -> GrpcVenueStream:
            return GrpcVenueStream(self.raw_call(resume), doorbell)

        return open_stream


def request(
    settings: VenueSettings, resume: DropCopyResume
) -> dropcopy_pb2.CreateDropCopySubscriptionRequest:
    """The subscription request: where to start, and the filter."""
    message = dropcopy_pb2.CreateDropCopySubscriptionRequest(
        symbols=list(settings.symbols), firms=list(settings.drop_copy_firms)
    )
    if resume.token:
        message.resume_token = resume.token
    elif resume.time_ns is not None:
        stamp = Timestamp()
        stamp.FromNanoseconds(resume.time_ns)
        message.resume_time.CopyFrom(stamp)
    return message
