"""The simulated ``polymarket.v1.OrderEntryAPI/CreateOrderSubscription`` gRPC stream, faults included.

A call is checked in this order, each failure ending it with the venue's status (venue-api.md §3.1):

1. the ``refuse_streams_status`` fault, when set → that status;
2. ``authorization: Bearer <token>``: missing, malformed, badly signed, expired or revoked →
   UNAUTHENTICATED; a token without scope ``read:orders`` → PERMISSION_DENIED
   (``permission denied: missing required scope read:orders``);
3. ``x-participant-id`` missing or not the registered participant → PERMISSION_DENIED;
4. the filter: an empty symbol, or an account not shaped ``firms/<firm>/accounts/<id>`` →
   INVALID_ARGUMENT;
5. more open streams than the limit → RESOURCE_EXHAUSTED.

Then the stream sends one ``snapshot`` of the matching open orders (possibly empty), ends with OK when
``snapshot_only`` is set, and otherwise sends ``update`` messages as the venue produces them and a
``heartbeat`` every heartbeat interval. Each message carries the stream's ``session_id`` and
``processed_sent_time``. When the venue stops, open streams end with UNAVAILABLE.
"""

from __future__ import annotations

import itertools
import logging
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, cast

import grpc

from connector._pb.polymarket.v1 import enums_pb2, trading_pb2
from connector.simulator.clock import Clock, to_timestamp, utc_now
from connector.simulator.exchange import Exchange, OrderFilter
from connector.simulator.faults import FaultBoard, FaultSettings, status_code
from connector.simulator.order_flow import VenueUpdate
from connector.simulator.tokens import TokenAuthority, TokenInvalidError

__all__ = ["SERVICE_NAME", "UNKNOWN_FIELD_NUMBER", "OrderStreamService", "StreamCounters"]

_LOG: Final = logging.getLogger(__name__)

SERVICE_NAME: Final = "polymarket.v1.OrderEntryAPI"
REQUIRED_SCOPE: Final = "read:orders"
UNKNOWN_FIELD_NUMBER: Final = 9999
"""Field number of the unknown varint field the ``unknown_field_rate`` fault appends."""
_POLL_S: Final = 0.05
_RECENT_EXECUTIONS: Final = 256
_ACCOUNT_SHAPE: Final = re.compile(r"^firms/[^/\s]+/accounts/[^/\s]+$")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_UNKNOWN_FIELD_BYTES: Final = _varint(UNKNOWN_FIELD_NUMBER << 3) + _varint(42)


@dataclass(slots=True)
class StreamCounters:
    """Counters of the gRPC side, read by ``GET /control/stats``."""

    streams_open: int = 0
    streams_opened_total: int = 0
    streams_refused_total: int = 0
    streams_ended_by_fault_total: int = 0
    messages_sent_total: int = 0
    snapshots_sent_total: int = 0
    updates_sent_total: int = 0
    heartbeats_sent_total: int = 0
    duplicates_sent_total: int = 0
    stalls_total: int = 0


class _StreamEnded(Exception):
    """Raised inside a stream to end it with a status (turned into ``context.abort``)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class OrderStreamService:
    """Serves ``CreateOrderSubscription``; see the module docstring for the checks and the flow."""

    def __init__(
        self,
        *,
        exchange: Exchange,
        authority: TokenAuthority,
        faults: FaultBoard,
        participant_id: str,
        heartbeat_interval_s: float,
        stream_limit: int,
        seed: int,
        clock: Clock = utc_now,
    ) -> None:
        self._exchange = exchange
        self._authority = authority
        self._faults = faults
        self._participant_id = participant_id
        self._heartbeat_interval_s = heartbeat_interval_s
        self._stream_limit = stream_limit
        self._seed = seed
        self._clock = clock
        self._lock = threading.Lock()
        self._stream_numbers = itertools.count(1)
        self._stopping = threading.Event()
        self.counters = StreamCounters()

    def rpc_handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """Build the generic handler to add to a ``grpc.Server``."""
        method = grpc.unary_stream_rpc_method_handler(
            self.create_order_subscription,
            request_deserializer=trading_pb2.CreateOrderSubscriptionRequest.FromString,
            response_serializer=trading_pb2.CreateOrderSubscriptionResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {"CreateOrderSubscription": method})

    def shut_down(self) -> None:
        """Make every open stream end (UNAVAILABLE) and refuse new ones."""
        self._stopping.set()

    # ------------------------------------------------------------------ the RPC

    def create_order_subscription(
        self, request: trading_pb2.CreateOrderSubscriptionRequest, context: grpc.ServicerContext
    ) -> Iterator[trading_pb2.CreateOrderSubscriptionResponse]:
        """Serve one order stream (the RPC method)."""
        try:
            token = self._admit(request, context)
        except _StreamEnded as ended:
            self._count_refused()
            context.abort(ended.code, ended.details)
        try:
            yield from self._serve(request, context, token)
        except _StreamEnded as ended:
            context.abort(ended.code, ended.details)
        finally:
            with self._lock:
                self.counters.streams_open -= 1

    def _count_refused(self) -> None:
        with self._lock:
            self.counters.streams_refused_total += 1

    def _admit(
        self, request: trading_pb2.CreateOrderSubscriptionRequest, context: grpc.ServicerContext
    ) -> str:
        """Run checks 1-5 of the module docstring; return the bearer token and take a stream slot."""
        faults = self._faults.current
        if self._stopping.is_set():
            raise _StreamEnded(grpc.StatusCode.UNAVAILABLE, "venue simulator is shutting down")
        if faults.refuse_streams_status is not None:
            raise _StreamEnded(
                status_code(faults.refuse_streams_status), "simulated fault: new streams are refused"
            )
        metadata = {key.lower(): value for key, value in context.invocation_metadata()}
        authorization = str(metadata.get("authorization", ""))
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _StreamEnded(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token in 'authorization'")
        try:
            claims = self._authority.verify(token.strip())
        except TokenInvalidError as exc:
            raise _StreamEnded(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from exc
        if REQUIRED_SCOPE not in claims.scopes:
            raise _StreamEnded(
                grpc.StatusCode.PERMISSION_DENIED,
                f"permission denied: missing required scope {REQUIRED_SCOPE}",
            )
        participant = str(metadata.get("x-participant-id", ""))
        if participant != self._participant_id:
            detail = "missing" if not participant else f"{participant!r} is not this user's participant id"
            raise _StreamEnded(
                grpc.StatusCode.PERMISSION_DENIED, f"permission denied: x-participant-id {detail}"
            )
        for symbol in request.symbols:
            if not symbol.strip():
                raise _StreamEnded(grpc.StatusCode.INVALID_ARGUMENT, "invalid symbol filter: empty symbol")
        for account in request.accounts:
            if not _ACCOUNT_SHAPE.match(account):
                raise _StreamEnded(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"invalid account filter {account!r}: expected firms/<firm>/accounts/<account>",
                )
        with self._lock:
            if self.counters.streams_open >= self._stream_limit:
                raise _StreamEnded(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too many concurrent streams: the limit is {self._stream_limit}",
                )
            self.counters.streams_open += 1
            self.counters.streams_opened_total += 1
        return token.strip()

    def _serve(
        self, request: trading_pb2.CreateOrderSubscriptionRequest, context: grpc.ServicerContext, token: str
    ) -> Iterator[trading_pb2.CreateOrderSubscriptionResponse]:
        stream = _Stream(
            service=self,
            session_id=f"sim-{uuid.uuid4()}",
            rng=random.Random(f"{self._seed}:{next(self._stream_numbers)}"),  # noqa: S311 - fault dice
        )
        order_filter = OrderFilter(symbols=frozenset(request.symbols), accounts=frozenset(request.accounts))
        orders, subscription = self._exchange.subscribe(order_filter)
        _LOG.info("stream %s opened (%d open orders in its snapshot)", stream.session_id, len(orders))
        try:
            yield stream.snapshot(orders, self._faults.current)
            if request.snapshot_only:
                return
            next_heartbeat = time.monotonic() + self._heartbeat_interval_s
            while True:
                faults = self._faults.current
                self._check_end(stream, faults, token, context)
                if stream.should_stall(faults, self._faults.generation):
                    self._stall(faults.stall_s, context, stream)
                    continue
                timeout = min(_POLL_S, next_heartbeat - time.monotonic())
                update = subscription.next(timeout)
                if update is not None:
                    yield stream.update(update, faults)
                    duplicate = stream.maybe_duplicate(faults)
                    if duplicate is not None:
                        yield duplicate
                if time.monotonic() >= next_heartbeat:
                    yield stream.heartbeat(faults)
                    next_heartbeat = time.monotonic() + self._heartbeat_interval_s
        finally:
            self._exchange.unsubscribe(subscription)
            _LOG.info("stream %s closed after %d messages", stream.session_id, stream.sent)

    def _check_end(
        self, stream: _Stream, faults: FaultSettings, token: str, context: grpc.ServicerContext
    ) -> None:
        if self._stopping.is_set():
            raise _StreamEnded(grpc.StatusCode.UNAVAILABLE, "venue simulator is shutting down")
        if not context.is_active():
            raise _StreamEnded(grpc.StatusCode.CANCELLED, "client went away")
        reason = None
        if faults.end_stream_after_messages is not None and stream.sent >= faults.end_stream_after_messages:
            reason = f"simulated fault: stream ended after {stream.sent} messages"
        elif faults.end_stream_every_s is not None and stream.age_s() >= faults.end_stream_every_s:
            reason = f"simulated fault: stream ended after {faults.end_stream_every_s:g} s"
        if reason is not None:
            with self._lock:
                self.counters.streams_ended_by_fault_total += 1
            raise _StreamEnded(status_code(faults.end_stream_status), reason)
        if faults.end_streams_on_token_expiry and self._authority.is_revoked(token):
            with self._lock:
                self.counters.streams_ended_by_fault_total += 1
            raise _StreamEnded(grpc.StatusCode.UNAUTHENTICATED, "access token expired")

    def _stall(self, seconds: float, context: grpc.ServicerContext, stream: _Stream) -> None:
        _LOG.info("stream %s stalls for %.3g s (fault)", stream.session_id, seconds)
        with self._lock:
            self.counters.stalls_total += 1
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and context.is_active() and not self._stopping.is_set():
            self._stopping.wait(min(_POLL_S, max(0.0, deadline - time.monotonic())))

    def record_sent(self, kind: str) -> None:
        """Count one message sent by a stream."""
        with self._lock:
            self.counters.messages_sent_total += 1
            if kind == "snapshot":
                self.counters.snapshots_sent_total += 1
            elif kind == "update":
                self.counters.updates_sent_total += 1
            elif kind == "heartbeat":
                self.counters.heartbeats_sent_total += 1
            else:
                self.counters.updates_sent_total += 1
                self.counters.duplicates_sent_total += 1

    @property
    def clock(self) -> Clock:
        """The clock stamping ``processed_sent_time``."""
        return self._clock


class _Stream:
    """The per-stream state: session id, message count, fault dice and what it sent recently."""

    def __init__(self, *, service: OrderStreamService, session_id: str, rng: random.Random) -> None:
        self._service = service
        self.session_id = session_id
        self._rng = rng
        self.sent = 0
        self._opened = time.monotonic()
        self._recent: deque[trading_pb2.Execution] = deque(maxlen=_RECENT_EXECUTIONS)
        self._stalled_generation = -1

    def age_s(self) -> float:
        """Seconds since the stream opened."""
        return time.monotonic() - self._opened

    def should_stall(self, faults: FaultSettings, generation: int) -> bool:
        """Tell whether the stall fault applies now (once per fault-settings generation)."""
        if faults.stall_s <= 0 or self.sent < faults.stall_after_messages:
            return False
        if self._stalled_generation == generation:
            return False
        self._stalled_generation = generation
        return True

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def _finish(
        self, response: trading_pb2.CreateOrderSubscriptionResponse, faults: FaultSettings, kind: str
    ) -> trading_pb2.CreateOrderSubscriptionResponse:
        response.session_id = self.session_id
        if self._roll(faults.unknown_field_rate):
            response.MergeFromString(_UNKNOWN_FIELD_BYTES)
            if response.HasField("update") and response.update.executions:
                response.update.executions[0].MergeFromString(_UNKNOWN_FIELD_BYTES)
            elif response.HasField("snapshot") and response.snapshot.orders:
                response.snapshot.orders[0].MergeFromString(_UNKNOWN_FIELD_BYTES)
        response.processed_sent_time.CopyFrom(to_timestamp(self._service.clock()))
        self.sent += 1
        self._service.record_sent(kind)
        return response

    def snapshot(
        self, orders: list[trading_pb2.Order], faults: FaultSettings
    ) -> trading_pb2.CreateOrderSubscriptionResponse:
        """Build the snapshot message, with the synthetic extra orders of the fault, if any."""
        response = trading_pb2.CreateOrderSubscriptionResponse()
        response.snapshot.orders.extend(orders)
        if faults.extra_snapshot_orders:
            response.snapshot.orders.extend(
                _synthetic_orders(self.session_id, faults.extra_snapshot_orders, self._service.clock)
            )
        response.snapshot.SetInParent()  # an empty snapshot is still a snapshot
        return self._finish(response, faults, "snapshot")

    def update(
        self, update: VenueUpdate, faults: FaultSettings
    ) -> trading_pb2.CreateOrderSubscriptionResponse:
        """Build an update message from a venue update (copies; the shared protos stay untouched)."""
        response = trading_pb2.CreateOrderSubscriptionResponse()
        response.update.executions.extend(update.executions)
        if update.cancel_reject is not None:
            response.update.cancel_reject.CopyFrom(update.cancel_reject.reject)
        response.update.SetInParent()
        self._recent.extend(update.executions)
        for execution in response.update.executions:
            if self._roll(faults.unknown_enum_rate):
                execution.type = cast(enums_pb2.ExecutionType, faults.unknown_enum_value)
        return self._finish(response, faults, "update")

    def maybe_duplicate(self, faults: FaultSettings) -> trading_pb2.CreateOrderSubscriptionResponse | None:
        """Roll the duplicate fault: an update re-sending one already sent execution, or None."""
        if not self._recent or not self._roll(faults.duplicate_rate):
            return None
        response = trading_pb2.CreateOrderSubscriptionResponse()
        response.update.executions.append(self._rng.choice(self._recent))
        return self._finish(response, faults, "duplicate")

    def heartbeat(self, faults: FaultSettings) -> trading_pb2.CreateOrderSubscriptionResponse:
        """Build a heartbeat message."""
        response = trading_pb2.CreateOrderSubscriptionResponse()
        response.heartbeat.SetInParent()
        return self._finish(response, faults, "heartbeat")


def _synthetic_orders(session_id: str, count: int, clock: Clock) -> list[trading_pb2.Order]:
    """Open orders that exist only in one snapshot (the oversize-snapshot fault)."""
    stamp = to_timestamp(clock())
    template = trading_pb2.Order(
        type=enums_pb2.ORDER_TYPE_LIMIT,
        side=enums_pb2.SIDE_BUY,
        order_qty=100,
        leaves_qty=100,
        symbol="SIM-SYNTHETIC",
        account="firms/SIM/accounts/SYNTHETIC",
        state=enums_pb2.ORDER_STATE_NEW,
        price=500,
        price_scale=1000,
        fractional_quantity_scale=1,
        time_in_force=enums_pb2.TIME_IN_FORCE_GOOD_TILL_CANCEL,
    )
    template.create_time.CopyFrom(stamp)
    template.insert_time.CopyFrom(stamp)
    template.last_transact_time.CopyFrom(stamp)
    orders = []
    for index in range(count):
        order = trading_pb2.Order()
        order.CopyFrom(template)
        order.id = f"SYNTH-{session_id[-8:]}-{index:07d}"
        order.clord_id = f"SYNTH-C{index:07d}"
        orders.append(order)
    return orders
