"""The simulated ``polymarket.v1.DropCopyAPI/CreateDropCopySubscription`` gRPC stream, faults included.

A call is checked in this order, each failure ending it with the venue's status (venue-api.md §3.1, §6):

1. the ``refuse_streams_status`` fault (when it applies to drop copy) → that status;
2. ``authorization: Bearer <token>``: missing, malformed, expired or revoked → UNAUTHENTICATED; a
   token without scope ``read:dropcopy`` → PERMISSION_DENIED
   (``permission denied: missing required scope read:dropcopy``);
3. ``x-participant-id`` is optional (Drop Copy is firm-level; the venue's example sends none), but one
   of another firm → PERMISSION_DENIED;
4. the filter: an empty symbol or firm → INVALID_ARGUMENT; a firm other than the caller's (given as
   ``<firm>`` or ``firms/<firm>``) → PERMISSION_DENIED;
5. ``resume_token``: unknown → ``dropcopy_unknown_token_status``, expired →
   ``dropcopy_expired_token_status`` (INVALID_ARGUMENT by default; ``random`` draws one of
   :data:`~connector.simulator.faults.TOKEN_REFUSAL_STATUSES` per refusal);
6. the firm already has as many open streams (order streams included) as the limit → RESOURCE_EXHAUSTED.

Then the stream joins the firm's executions (:meth:`Exchange.subscribe_firm`) and sends what its
:class:`~connector.simulator.dropcopy.DropCopyStream` says: with a token, the replay from just after
its position (less ``dropcopy_resend_on_resume``); else with ``resume_time``, from the first execution
at or after it; else live only. A token wins over a time when both are given. The drop, stall and
access-token-expiry faults are applied as on the order stream (the settings seen are
``for_stream("dropcopy")``); every response sent is journaled with its token position.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import grpc

from connector._pb.polymarket.v1 import dropcopy_pb2
from connector.simulator.clock import Clock, from_timestamp, utc_now
from connector.simulator.dropcopy import (
    EXPIRED_TOKEN,
    DropCopySent,
    DropCopyStream,
    FirmExecution,
    FirmLog,
    ResumeTokens,
    TokenRefusedError,
)
from connector.simulator.exchange import Exchange
from connector.simulator.faults import TOKEN_REFUSAL_STATUSES, FaultBoard, FaultSettings, status_code
from connector.simulator.grpc_service import (
    FaultGate,
    StreamEnded,
    StreamSlots,
    bearer_claims,
    ensure_open,
    fault_ending,
    stall,
)
from connector.simulator.journal import DropCopyDelivery
from connector.simulator.stream_behaviour import StreamEnd
from connector.simulator.tokens import TokenAuthority

__all__ = ["DROPCOPY_SERVICE_NAME", "DropCopyCounters", "DropCopyService"]

_LOG: Final = logging.getLogger(__name__)

DROPCOPY_SERVICE_NAME: Final = "polymarket.v1.DropCopyAPI"
REQUIRED_SCOPE: Final = "read:dropcopy"
_POLL_S: Final = 0.05


@dataclass(slots=True)
class DropCopyCounters:
    """Counters of the drop-copy side, read by ``GET /control/stats``."""

    dropcopy_streams_open: int = 0
    dropcopy_streams_opened_total: int = 0
    dropcopy_streams_refused_total: int = 0
    dropcopy_tokens_refused_total: int = 0
    dropcopy_streams_ended_by_fault_total: int = 0
    dropcopy_streams_overflowed_total: int = 0
    dropcopy_stalls_total: int = 0
    dropcopy_resumed_by_token_total: int = 0
    dropcopy_resumed_by_time_total: int = 0
    dropcopy_batches_sent_total: int = 0
    dropcopy_executions_sent_total: int = 0
    dropcopy_replayed_total: int = 0
    dropcopy_resent_total: int = 0
    dropcopy_duplicates_sent_total: int = 0


class _LiveDropCopy:
    """One :class:`DropCopyStream` shared by the exchange thread (deliveries) and its RPC thread (sends)."""

    def __init__(self, stream: DropCopyStream) -> None:
        self.stream = stream
        self._ready = threading.Condition()

    def deliver(self, entries: Sequence[FirmExecution], now: datetime) -> None:
        """Queue live executions (the exchange thread, its lock held)."""
        with self._ready:
            self.stream.deliver(entries, now)
            self._ready.notify_all()

    def apply(self, settings: FaultSettings, now: datetime) -> None:
        """Put new settings in force."""
        with self._ready:
            self.stream.apply(settings, now)
            self._ready.notify_all()

    def take(self, now: datetime, wait_limit_s: float) -> DropCopySent | StreamEnd | None:
        """Send the next due response, or wait (at most ``wait_limit_s``) for one."""
        with self._ready:
            sent = self.stream.next_message(now)
            if sent is not None:
                return sent
            if self.stream.ended is not None:
                return self.stream.ended
            until_due_s = (self.stream.next_wakeup(now) - now).total_seconds()
            self._ready.wait(max(0.0, min(wait_limit_s, until_due_s)))
            return None


@dataclass(frozen=True, slots=True)
class _Start:
    """Where an admitted stream starts: after a token's position, at a time, or live."""

    token_position: int | None
    resume_time: datetime | None


class DropCopyService:
    """Serves ``CreateDropCopySubscription``; see the module docstring for the checks and the flow."""

    def __init__(
        self,
        *,
        exchange: Exchange,
        authority: TokenAuthority,
        faults: FaultBoard,
        participant_id: str,
        slots: StreamSlots,
        seed: int,
        tokens: ResumeTokens | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._exchange = exchange
        self._authority = authority
        self._faults = faults
        self._firm = firm_of(participant_id)
        self._slots = slots
        self._seed = seed
        self._clock = clock
        self.tokens = tokens or ResumeTokens()
        self._lock = threading.Lock()
        self._stream_numbers = itertools.count(1)
        self._refusal_dice = random.Random(f"{seed}:dropcopy-refusals")  # noqa: S311 - fault dice
        self._stopping = threading.Event()
        self.counters = DropCopyCounters()

    def rpc_handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """Build the generic handler to add to a ``grpc.Server``."""
        method = grpc.unary_stream_rpc_method_handler(
            self.create_drop_copy_subscription,
            request_deserializer=dropcopy_pb2.CreateDropCopySubscriptionRequest.FromString,
            response_serializer=dropcopy_pb2.CreateDropCopySubscriptionResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(
            DROPCOPY_SERVICE_NAME, {"CreateDropCopySubscription": method}
        )

    def shut_down(self) -> None:
        """Make every open stream end (UNAVAILABLE) and refuse new ones."""
        self._stopping.set()

    def expire_tokens(self) -> None:
        """Expire every resume token issued so far (the ``expire_dropcopy_tokens`` action)."""
        self.tokens.expire_all()

    # ------------------------------------------------------------------ the RPC

    def create_drop_copy_subscription(
        self, request: dropcopy_pb2.CreateDropCopySubscriptionRequest, context: grpc.ServicerContext
    ) -> Iterator[dropcopy_pb2.CreateDropCopySubscriptionResponse]:
        """Serve one drop-copy stream (the RPC method)."""
        try:
            token, start = self._admit(request, context)
        except StreamEnded as ended:
            with self._lock:
                self.counters.dropcopy_streams_refused_total += 1
            context.abort(ended.code, ended.details)
        try:
            yield from self._serve(request, context, token, start)
        except StreamEnded as ended:
            context.abort(ended.code, ended.details)
        finally:
            self._slots.release("dropcopy")
            with self._lock:
                self.counters.dropcopy_streams_open -= 1

    def _admit(
        self, request: dropcopy_pb2.CreateDropCopySubscriptionRequest, context: grpc.ServicerContext
    ) -> tuple[str, _Start]:
        """Run checks 1-6 of the module docstring; return the bearer token and the start, holding a slot."""
        faults = self._faults.current.for_stream("dropcopy")
        if self._stopping.is_set():
            raise StreamEnded(grpc.StatusCode.UNAVAILABLE, "venue simulator is shutting down")
        if faults.refuse_streams_status is not None:
            raise StreamEnded(
                status_code(faults.refuse_streams_status), "simulated fault: new streams are refused"
            )
        metadata = {key.lower(): str(value) for key, value in context.invocation_metadata()}
        token, _claims = bearer_claims(metadata, self._authority, REQUIRED_SCOPE)
        participant = metadata.get("x-participant-id", "")
        if participant and firm_of(participant) != self._firm:
            raise StreamEnded(
                grpc.StatusCode.PERMISSION_DENIED,
                f"permission denied: x-participant-id {participant!r} is not of firm {self._firm}",
            )
        self._check_filter(request)
        start = _Start(token_position=None, resume_time=None)
        if request.resume_token:
            start = _Start(token_position=self._check_token(request.resume_token, faults), resume_time=None)
        elif request.HasField("resume_time"):
            start = _Start(token_position=None, resume_time=from_timestamp(request.resume_time))
        self._slots.take("dropcopy")
        with self._lock:
            self.counters.dropcopy_streams_open += 1
            self.counters.dropcopy_streams_opened_total += 1
        return token, start

    def _check_filter(self, request: dropcopy_pb2.CreateDropCopySubscriptionRequest) -> None:
        for symbol in request.symbols:
            if not symbol.strip():
                raise StreamEnded(grpc.StatusCode.INVALID_ARGUMENT, "invalid symbol filter: empty symbol")
        for firm in request.firms:
            if not firm.strip():
                raise StreamEnded(grpc.StatusCode.INVALID_ARGUMENT, "invalid firm filter: empty firm")
            if firm.removeprefix("firms/") != self._firm:
                raise StreamEnded(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"permission denied: firm {firm!r} is not the caller's firm {self._firm}",
                )

    def _check_token(self, token: bytes, faults: FaultSettings) -> int:
        try:
            return self.tokens.decode(
                token,
                self._clock(),
                head=self._exchange.firm_head(),
                lifetime_s=faults.dropcopy_token_lifetime_s,
            )
        except TokenRefusedError as refused:
            with self._lock:
                self.counters.dropcopy_tokens_refused_total += 1
                configured = (
                    faults.dropcopy_expired_token_status
                    if refused.reason == EXPIRED_TOKEN
                    else faults.dropcopy_unknown_token_status
                ).upper()
                if configured == "RANDOM":
                    configured = self._refusal_dice.choice(TOKEN_REFUSAL_STATUSES)
            raise StreamEnded(status_code(configured), refused.details) from refused

    def _open(
        self, request: dropcopy_pb2.CreateDropCopySubscriptionRequest, start: _Start, stream_id: str
    ) -> tuple[_LiveDropCopy, Any]:
        number = next(self._stream_numbers)
        faults = self._faults.current.for_stream("dropcopy")
        dice_seed = self._seed if faults.fault_seed is None else faults.fault_seed
        made: list[_LiveDropCopy] = []

        def open_sink(log: FirmLog, now: datetime) -> _LiveDropCopy:
            head = log.head
            if start.token_position is not None:
                first = max(0, start.token_position - faults.dropcopy_resend_on_resume)
            elif start.resume_time is not None:
                first = log.position_before(start.resume_time)
            else:
                first = head
            stream = DropCopyStream(
                faults,
                log=log,
                start=first,
                joined_at=head,
                opened_at=now,
                token_for=self.tokens.encode,
                rng=random.Random(f"{dice_seed}:dropcopy:{number}"),  # noqa: S311 - fault dice
                symbols=frozenset(request.symbols),
                resumed_at=start.token_position,
            )
            made.append(_LiveDropCopy(stream))
            _LOG.info("drop-copy stream %s opened: replay %d..%d, then live", stream_id, first + 1, head)
            return made[0]

        subscription = self._exchange.subscribe_firm(open_sink)
        with self._lock:
            if start.token_position is not None:
                self.counters.dropcopy_resumed_by_token_total += 1
            elif start.resume_time is not None:
                self.counters.dropcopy_resumed_by_time_total += 1
        return made[0], subscription

    def _serve(
        self,
        request: dropcopy_pb2.CreateDropCopySubscriptionRequest,
        context: grpc.ServicerContext,
        token: str,
        start: _Start,
    ) -> Iterator[dropcopy_pb2.CreateDropCopySubscriptionResponse]:
        stream_id = f"dc-{uuid.uuid4()}"
        live, subscription = self._open(request, start, stream_id)
        stream = live.stream
        gate = FaultGate(self._faults.generation, stream_id)
        try:
            while True:
                faults = self._faults.current.for_stream("dropcopy")
                if gate.settings_changed(self._faults.generation):
                    live.apply(faults, self._clock())
                self._check_end(stream, gate, faults, token, context)
                if gate.should_stall(stream.sent, faults, self._faults.generation):
                    self._stall(faults.stall_s, context, stream_id)
                    continue
                outcome = live.take(self._clock(), _POLL_S)
                if isinstance(outcome, StreamEnd):
                    _LOG.info("drop-copy stream %s ended by the venue: %s", stream_id, outcome.details)
                    with self._lock:
                        self.counters.dropcopy_streams_overflowed_total += 1
                    raise StreamEnded(status_code(outcome.status), outcome.details)
                if outcome is not None:
                    self._record_sent(outcome, stream_id)
                    yield outcome.response
        finally:
            self._exchange.unsubscribe_firm(subscription)
            _LOG.info("drop-copy stream %s closed after %d responses", stream_id, stream.sent)

    def _check_end(
        self,
        stream: DropCopyStream,
        gate: FaultGate,
        faults: FaultSettings,
        token: str,
        context: grpc.ServicerContext,
    ) -> None:
        ensure_open(self._stopping, context)
        ending = fault_ending(stream.sent, gate, faults, token, self._authority)
        if ending is not None:
            with self._lock:
                self.counters.dropcopy_streams_ended_by_fault_total += 1
            raise ending

    def _stall(self, seconds: float, context: grpc.ServicerContext, stream_id: str) -> None:
        _LOG.info("drop-copy stream %s stalls for %.3g s (fault)", stream_id, seconds)
        with self._lock:
            self.counters.dropcopy_stalls_total += 1
        stall(seconds, context, self._stopping)

    def _record_sent(self, sent: DropCopySent, stream_id: str) -> None:
        with self._lock:
            counters = self.counters
            counters.dropcopy_batches_sent_total += 1
            counters.dropcopy_executions_sent_total += len(sent.response.executions)
            counters.dropcopy_resent_total += sent.resent
            if sent.kind == "replay":
                counters.dropcopy_replayed_total += len(sent.response.executions)
            elif sent.kind == "duplicate":
                counters.dropcopy_duplicates_sent_total += 1
        self._exchange.journal.record_dropcopy_send(
            DropCopyDelivery(
                stream=stream_id,
                batch=sent.kind,
                positions=sent.positions,
                token_position=sent.token_position,
                resent=sent.resent,
                execution_ids=sent.execution_ids,
                sent_at=self._clock().astimezone(UTC),
            )
        )


def firm_of(participant_or_account: str) -> str:
    """The firm segment of ``firms/<firm>/...`` (the whole string when it is not shaped so)."""
    parts = participant_or_account.split("/")
    if len(parts) >= 2 and parts[0] == "firms" and parts[1]:
        return parts[1]
    return participant_or_account
