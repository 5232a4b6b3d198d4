"""The simulated ``polymarket.v1.OrderEntryAPI/CreateOrderSubscription`` gRPC stream, faults included.

A call is checked in this order, each failure ending it with the venue's status (venue-api.md §3.1):

1. the ``refuse_streams_status`` fault, when set → that status;
2. ``authorization: Bearer <token>``: missing, malformed, badly signed, expired or revoked →
   UNAUTHENTICATED; a token without scope ``read:orders`` → PERMISSION_DENIED
   (``permission denied: missing required scope read:orders``);
3. ``x-participant-id`` missing or not the registered participant → PERMISSION_DENIED;
4. the filter: an empty symbol, or an account not shaped ``firms/<firm>/accounts/<id>`` →
   INVALID_ARGUMENT;
5. more open streams than the limit → RESOURCE_EXHAUSTED. The limit is the firm's, shared with the
   drop-copy streams (:class:`StreamSlots`; venue-api.md §3.6: 20 per firm, pooled across types).

Then the stream joins the venue's feed and sends what its
:class:`~connector.simulator.stream_behaviour.VenueStream` says, whenever gRPC can take a message: the
opening (snapshot, heartbeat or updates first), updates as the venue produces them, heartbeats, new
session ids and mid-stream snapshots. While the client does not read, gRPC's flow control blocks the
send, the venue keeps trading into the stream's bounded send queue, and a full queue ends the stream.
``snapshot_only`` ends it with OK after the first snapshot. The drop, stall and token-expiry faults
are applied here (the settings seen are ``for_stream("orders")``: ``stream_faults_apply_to`` may aim
them at the drop-copy stream only). When the venue stops, open streams end with UNAVAILABLE.
:mod:`connector.simulator.dropcopy_service` reuses :class:`StreamSlots`, :class:`FaultGate`,
:func:`bearer_claims` and :func:`fault_ending`.
"""

from __future__ import annotations

import itertools
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import grpc

from connector._pb.polymarket.v1 import trading_pb2
from connector.simulator.clock import Clock, utc_now
from connector.simulator.exchange import Exchange, OrderFilter, Subscription
from connector.simulator.faults import FaultBoard, FaultSettings, status_code
from connector.simulator.order_flow import VenueUpdate
from connector.simulator.stream_behaviour import BookReader, SentMessage, StreamEnd, VenueStream
from connector.simulator.tokens import AccessTokenClaims, TokenAuthority, TokenInvalidError

__all__ = [
    "SERVICE_NAME",
    "FaultGate",
    "OrderStreamService",
    "StreamCounters",
    "StreamEnded",
    "StreamSlots",
    "bearer_claims",
    "ensure_open",
    "fault_ending",
    "stall",
]

_LOG: Final = logging.getLogger(__name__)

SERVICE_NAME: Final = "polymarket.v1.OrderEntryAPI"
REQUIRED_SCOPE: Final = "read:orders"
_POLL_S: Final = 0.05
_ACCOUNT_SHAPE: Final = re.compile(r"^firms/[^/\s]+/accounts/[^/\s]+$")


@dataclass(slots=True)
class StreamCounters:
    """Counters of the gRPC side, read by ``GET /control/stats``."""

    streams_open: int = 0
    streams_opened_total: int = 0
    streams_refused_total: int = 0
    streams_ended_by_fault_total: int = 0
    streams_overflowed_total: int = 0
    messages_sent_total: int = 0
    snapshots_sent_total: int = 0
    mid_stream_snapshots_total: int = 0
    updates_sent_total: int = 0
    heartbeats_sent_total: int = 0
    heartbeats_jumped_total: int = 0
    duplicates_sent_total: int = 0
    sessions_changed_total: int = 0
    stalls_total: int = 0
    openings_snapshot_total: int = 0
    openings_heartbeat_total: int = 0
    openings_updates_total: int = 0
    send_queue_max: int = 0


class StreamEnded(Exception):
    """Raised inside a stream to end it with a status (turned into ``context.abort``)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class StreamSlots:
    """The firm's concurrent-stream budget, pooled across stream kinds; thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, kind: str) -> None:
        """Take a slot for a stream of ``kind``.

        Raises:
            StreamEnded: RESOURCE_EXHAUSTED, the firm already has ``limit`` open streams.
        """
        with self._lock:
            if sum(self._open.values()) >= self.limit:
                raise StreamEnded(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too many concurrent streams: the limit is {self.limit}",
                )
            self._open[kind] = self._open.get(kind, 0) + 1

    def release(self, kind: str) -> None:
        """Give back a slot taken with :meth:`take`."""
        with self._lock:
            self._open[kind] -= 1

    @property
    def open_total(self) -> int:
        """Open streams of every kind."""
        with self._lock:
            return sum(self._open.values())


def bearer_claims(
    metadata: dict[str, str], authority: TokenAuthority, scope: str
) -> tuple[str, AccessTokenClaims]:
    """Check the bearer token of a call and its scope; return the token and its claims.

    Raises:
        StreamEnded: UNAUTHENTICATED (missing, malformed, expired or revoked token) or
            PERMISSION_DENIED (``permission denied: missing required scope <scope>``).
    """
    authorization = str(metadata.get("authorization", ""))
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise StreamEnded(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token in 'authorization'")
    try:
        claims = authority.verify(token.strip())
    except TokenInvalidError as exc:
        raise StreamEnded(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from exc
    if scope not in claims.scopes:
        raise StreamEnded(
            grpc.StatusCode.PERMISSION_DENIED, f"permission denied: missing required scope {scope}"
        )
    return token.strip(), claims


def ensure_open(stopping: threading.Event, context: grpc.ServicerContext) -> None:
    """End a stream (any kind) whose venue is shutting down or whose client went away.

    Raises:
        StreamEnded: UNAVAILABLE (shutting down) or CANCELLED (the client went away).
    """
    if stopping.is_set():
        raise StreamEnded(grpc.StatusCode.UNAVAILABLE, "venue simulator is shutting down")
    if not context.is_active():
        raise StreamEnded(grpc.StatusCode.CANCELLED, "client went away")


def stall(seconds: float, context: grpc.ServicerContext, stopping: threading.Event) -> None:
    """Send nothing for ``seconds`` (a stall fault), unless the client or the venue goes first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and context.is_active() and not stopping.is_set():
        stopping.wait(min(_POLL_S, max(0.0, deadline - time.monotonic())))


def fault_ending(
    sent: int, gate: FaultGate, faults: FaultSettings, token: str, authority: TokenAuthority
) -> StreamEnded | None:
    """The end the stream faults give a stream that sent ``sent`` messages, if one is due now."""
    reason = None
    if faults.end_stream_after_messages is not None and sent >= faults.end_stream_after_messages:
        reason = f"simulated fault: stream ended after {sent} messages"
    elif faults.end_stream_every_s is not None and gate.age_s() >= faults.end_stream_every_s:
        reason = f"simulated fault: stream ended after {faults.end_stream_every_s:g} s"
    if reason is not None:
        return StreamEnded(status_code(faults.end_stream_status), reason)
    if faults.end_streams_on_token_expiry and authority.is_revoked(token):
        return StreamEnded(grpc.StatusCode.UNAUTHENTICATED, "access token expired")
    return None


class _LiveStream:
    """One :class:`VenueStream` shared by the exchange thread (deliveries) and its RPC thread (sends).

    It is the subscription's :class:`~connector.simulator.exchange.FeedSink`; the exchange calls it with
    its own lock held, so the lock order is always exchange, then this stream.
    """

    def __init__(self, stream: VenueStream) -> None:
        self.stream = stream
        self._ready = threading.Condition()

    def deliver(self, update: VenueUpdate, now: datetime, book: BookReader) -> None:
        """Queue an update (the exchange thread)."""
        with self._ready:
            self.stream.deliver(update, now, book)
            self._ready.notify_all()

    def insert_snapshot(self, orders: Sequence[trading_pb2.Order], now: datetime) -> None:
        """Queue a snapshot read at the current feed point (under the exchange's lock)."""
        with self._ready:
            self.stream.insert_snapshot(orders, now)
            self._ready.notify_all()

    def apply(self, settings: FaultSettings, now: datetime) -> None:
        """Put new settings in force."""
        with self._ready:
            self.stream.apply(settings, now)
            self._ready.notify_all()

    def new_session(self) -> None:
        """Switch to a new session id now."""
        with self._ready:
            self.stream.new_session()

    def request_snapshot(self) -> None:
        """Make a mid-stream snapshot due now."""
        with self._ready:
            self.stream.request_snapshot()
            self._ready.notify_all()

    def snapshot_due(self, now: datetime) -> bool:
        """Tell whether a snapshot must be read from the exchange now."""
        with self._ready:
            return self.stream.snapshot_due(now)

    def take(self, now: datetime, wait_limit_s: float) -> SentMessage | StreamEnd | None:
        """Send the next due message, or wait (at most ``wait_limit_s``) for one to become due.

        Returns:
            The message, how the venue ended the stream, or None after waiting.
        """
        with self._ready:
            sent = self.stream.next_message(now)
            if sent is not None:
                return sent
            if self.stream.ended is not None:
                return self.stream.ended
            until_due_s = (self.stream.next_wakeup() - now).total_seconds()
            self._ready.wait(max(0.0, min(wait_limit_s, until_due_s)))
            return None


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
        slots: StreamSlots,
        seed: int,
        clock: Clock = utc_now,
    ) -> None:
        self._exchange = exchange
        self._authority = authority
        self._faults = faults
        self._participant_id = participant_id
        self._heartbeat_interval_s = heartbeat_interval_s
        self._slots = slots
        self._seed = seed
        self._clock = clock
        self._lock = threading.Lock()
        self._stream_numbers = itertools.count(1)
        self._stopping = threading.Event()
        self._live: set[_LiveStream] = set()
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

    def new_sessions(self) -> None:
        """Give every open stream a new session id now (the ``new_session`` action)."""
        with self._lock:
            live = list(self._live)
        for stream in live:
            stream.new_session()

    def request_snapshots(self) -> None:
        """Make every open stream send a snapshot now (the ``send_snapshot`` action)."""
        with self._lock:
            live = list(self._live)
        for stream in live:
            stream.request_snapshot()

    # ------------------------------------------------------------------ the RPC

    def create_order_subscription(
        self, request: trading_pb2.CreateOrderSubscriptionRequest, context: grpc.ServicerContext
    ) -> Iterator[trading_pb2.CreateOrderSubscriptionResponse]:
        """Serve one order stream (the RPC method)."""
        try:
            token = self._admit(request, context)
        except StreamEnded as ended:
            self._count_refused()
            context.abort(ended.code, ended.details)
        try:
            yield from self._serve(request, context, token)
        except StreamEnded as ended:
            context.abort(ended.code, ended.details)
        finally:
            self._slots.release("orders")
            with self._lock:
                self.counters.streams_open -= 1

    def _count_refused(self) -> None:
        with self._lock:
            self.counters.streams_refused_total += 1

    def _admit(
        self, request: trading_pb2.CreateOrderSubscriptionRequest, context: grpc.ServicerContext
    ) -> str:
        """Run checks 1-5 of the module docstring; return the bearer token and take a stream slot."""
        faults = self._faults.current.for_stream("orders")
        if self._stopping.is_set():
            raise StreamEnded(grpc.StatusCode.UNAVAILABLE, "venue simulator is shutting down")
        if faults.refuse_streams_status is not None:
            raise StreamEnded(
                status_code(faults.refuse_streams_status), "simulated fault: new streams are refused"
            )
        metadata = {key.lower(): str(value) for key, value in context.invocation_metadata()}
        token, _claims = bearer_claims(metadata, self._authority, REQUIRED_SCOPE)
        participant = str(metadata.get("x-participant-id", ""))
        if participant != self._participant_id:
            detail = "missing" if not participant else f"{participant!r} is not this user's participant id"
            raise StreamEnded(
                grpc.StatusCode.PERMISSION_DENIED, f"permission denied: x-participant-id {detail}"
            )
        for symbol in request.symbols:
            if not symbol.strip():
                raise StreamEnded(grpc.StatusCode.INVALID_ARGUMENT, "invalid symbol filter: empty symbol")
        for account in request.accounts:
            if not _ACCOUNT_SHAPE.match(account):
                raise StreamEnded(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"invalid account filter {account!r}: expected firms/<firm>/accounts/<account>",
                )
        self._slots.take("orders")
        with self._lock:
            self.counters.streams_open += 1
            self.counters.streams_opened_total += 1
        return token

    def _open(self, request: trading_pb2.CreateOrderSubscriptionRequest) -> tuple[_LiveStream, Subscription]:
        """Join the feed: build the stream around the snapshot taken atomically with joining."""
        number = next(self._stream_numbers)
        faults = self._faults.current.for_stream("orders")
        dice_seed = self._seed if faults.fault_seed is None else faults.fault_seed
        made: list[_LiveStream] = []

        def open_sink(book: list[trading_pb2.Order], now: datetime) -> _LiveStream:
            stream = VenueStream(
                faults,
                session_id=f"sim-{uuid.uuid4()}",
                opened_at=now,
                book=book,
                rng=random.Random(f"{dice_seed}:{number}"),  # noqa: S311 - fault dice, not security
                heartbeat_interval_s=self._heartbeat_interval_s,
                snapshot_only=request.snapshot_only,
            )
            made.append(_LiveStream(stream))
            return made[0]

        order_filter = OrderFilter(symbols=frozenset(request.symbols), accounts=frozenset(request.accounts))
        subscription = self._exchange.subscribe(order_filter, open_sink)
        live = made[0]
        with self._lock:
            self._live.add(live)
            opening = live.stream.opening
            if opening == "snapshot":
                self.counters.openings_snapshot_total += 1
            elif opening == "heartbeat":
                self.counters.openings_heartbeat_total += 1
            else:
                self.counters.openings_updates_total += 1
        return live, subscription

    def _serve(
        self, request: trading_pb2.CreateOrderSubscriptionRequest, context: grpc.ServicerContext, token: str
    ) -> Iterator[trading_pb2.CreateOrderSubscriptionResponse]:
        live, subscription = self._open(request)
        stream = live.stream
        gate = FaultGate(self._faults.generation, stream.session_id)
        _LOG.info("stream %s opened (%s first)", stream.session_id, stream.opening)
        try:
            while True:
                faults = self._faults.current.for_stream("orders")
                if gate.settings_changed(self._faults.generation):
                    live.apply(faults, self._clock())
                self._check_end(stream, gate, faults, token, context)
                if gate.should_stall(stream.sent, faults, self._faults.generation):
                    self._stall(faults.stall_s, context, stream.session_id)
                    continue
                now = self._clock()
                if live.snapshot_due(now):
                    self._exchange.insert_snapshot(subscription)
                outcome = live.take(now, _POLL_S)
                if isinstance(outcome, StreamEnd):
                    if outcome.status == "OK":
                        return
                    self._count_overflow(stream.session_id, outcome)
                    raise StreamEnded(status_code(outcome.status), outcome.details)
                if outcome is not None:
                    self._record_sent(outcome, stream, gate)
                    yield outcome.response
        finally:
            self._exchange.unsubscribe(subscription)
            with self._lock:
                self._live.discard(live)
                self.counters.send_queue_max = max(self.counters.send_queue_max, stream.counts.max_queued)
            _LOG.info("stream %s closed after %d messages", stream.session_id, stream.sent)

    def _check_end(
        self,
        stream: VenueStream,
        gate: FaultGate,
        faults: FaultSettings,
        token: str,
        context: grpc.ServicerContext,
    ) -> None:
        ensure_open(self._stopping, context)
        ending = fault_ending(stream.sent, gate, faults, token, self._authority)
        if ending is not None:
            with self._lock:
                self.counters.streams_ended_by_fault_total += 1
            raise ending

    def _stall(self, seconds: float, context: grpc.ServicerContext, session_id: str) -> None:
        _LOG.info("stream %s stalls for %.3g s (fault)", session_id, seconds)
        with self._lock:
            self.counters.stalls_total += 1
        stall(seconds, context, self._stopping)

    def _count_overflow(self, session_id: str, end: StreamEnd) -> None:
        _LOG.info("stream %s ended by the venue: %s (%s)", session_id, end.status, end.details)
        with self._lock:
            self.counters.streams_overflowed_total += 1

    def _record_sent(self, sent: SentMessage, stream: VenueStream, gate: FaultGate) -> None:
        """Count one message sent and note it in the journal."""
        counters = self.counters
        with self._lock:
            counters.messages_sent_total += 1
            if sent.kind == "snapshot":
                counters.snapshots_sent_total += 1
                if stream.counts.snapshots > 1:
                    counters.mid_stream_snapshots_total += 1
            elif sent.kind == "heartbeat":
                counters.heartbeats_sent_total += 1
                counters.heartbeats_jumped_total += sent.jumped
            else:
                counters.updates_sent_total += 1
                if sent.kind == "duplicate":
                    counters.duplicates_sent_total += 1
            if gate.session_changed(sent.response.session_id):
                counters.sessions_changed_total += 1
        self._exchange.journal.record_stream_send(
            session_id=sent.response.session_id,
            message=sent.kind,
            execution_ids=sent.execution_ids,
            sent_at=sent.response.processed_sent_time.ToDatetime(tzinfo=UTC),
            queued_behind=sent.queued_behind,
            jumped=sent.jumped,
        )

    @property
    def clock(self) -> Clock:
        """The clock stamping ``processed_sent_time``."""
        return self._clock


class FaultGate:
    """Per-stream bookkeeping of the wrapper: settings generation, stall, age, last session id sent."""

    def __init__(self, generation: int, session_id: str) -> None:
        self._generation = generation
        self._stalled_generation = -1
        self._opened = time.monotonic()
        self._session_id = session_id

    def settings_changed(self, generation: int) -> bool:
        """Tell (once) that the settings changed since the last call."""
        changed = generation != self._generation
        self._generation = generation
        return changed

    def session_changed(self, session_id: str) -> bool:
        """Tell whether a sent message carries another session id than the one before."""
        changed = session_id != self._session_id
        self._session_id = session_id
        return changed

    def age_s(self) -> float:
        """Seconds since the stream opened."""
        return time.monotonic() - self._opened

    def should_stall(self, sent: int, faults: FaultSettings, generation: int) -> bool:
        """Tell whether the stall fault applies now (once per fault-settings generation)."""
        if faults.stall_s <= 0 or sent < faults.stall_after_messages:
            return False
        if self._stalled_generation == generation:
            return False
        self._stalled_generation = generation
        return True
