"""The fake venue of the simulation: the simulator's own pure components on the virtual clock.

The order flow, the exchange and journal, each stream's ``VenueStream`` (openings, bounded send
queue, heartbeats stamped at send that jump or queue, sessions and snapshots mid-stream,
duplicates) and the ``ReportApi`` (per-client rate limit across connections, result order, indexing
delay, ``eof`` without a token, page size cap) are the ones ``pmx-connector simulator`` serves over
gRPC and HTTP; here they are driven directly, with no thread. Adapters to the engine's ports:

- :class:`SimStream`: a ``VenueStream`` port; a stall sends nothing, a drop ends the call;
- :class:`SimDropCopyStream`: a ``VenueStream`` port too, the Drop Copy stream (venue-api.md §6) of
  the simulator's own :class:`~connector.simulator.dropcopy.DropCopyStream` over the firm's
  :class:`~connector.simulator.dropcopy.FirmLog` (the configured user's executions and, when
  :class:`DropCopySetup` says so, other users' of the firm): batches with opaque resume tokens, a
  replay from a token (less ``dropcopy_resend_on_resume`` positions: at least once) or a time, else
  live; stalls and drops as the order stream's; a token refused (expired or unknown, one of the
  refusal statuses) and, in a window, a refused resume time, each before any response;
- :class:`SimSearch`: an ``ExecutionSearch`` port whose requests are built and whose answers are
  parsed by the connector's real REST client (``venue/search.py``), with a latency and outages.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.backfill_plan import SubscriptionFilter
from connector.core.venue_time import ns_from_timestamp
from connector.engine.ports import DropCopyResume, SearchFailure, SearchPage, SearchRequest, StreamEnd
from connector.simulator.dropcopy import (
    DropCopyStream,
    FirmLog,
    ResumeTokens,
    TokenRefusedError,
)
from connector.simulator.exchange import Exchange, FirmFlow, FirmSubscription, OrderFilter, Subscription
from connector.simulator.faults import TOKEN_REFUSAL_STATUSES, FaultSettings
from connector.simulator.journal import Journal, JournaledExecution
from connector.simulator.order_flow import FlowParams, OrderFlow
from connector.simulator.report_api import ReportApi
from connector.simulator.stream_behaviour import VenueStream
from connector.simulator.venue import DEFAULT_ACCOUNTS, DEFAULT_SYMBOLS
from connector.venue.search import ExecutionSearchClient, parse_retry_after
from connector.venue.stream import translate
from tests.simulation.clock import SimClock

CLIENT_ID = "pmx-sim-client"
NO_TOKEN = -1  # the status recorded for an answer with eof=false and no next page token


@dataclass(frozen=True, slots=True)
class DropCopySetup:
    """How this schedule's venue serves Drop Copy (its ``dropcopy_*`` behaviour is in the FaultSettings).

    ``firm_users`` other users of the firm trade beside the configured one, ``firm_flow_ratio``
    updates each per update of the configured user; Drop Copy carries theirs too.
    """

    firm_users: int
    firm_flow_ratio: float


@dataclass(frozen=True, slots=True)
class VenueSetup:
    """How this schedule's venue behaves (``dropcopy`` None: the venue serves no Drop Copy stream)."""

    seed: int
    updates_per_s: float
    heartbeat_interval_s: float
    behaviour: FaultSettings
    search_latency_s: tuple[float, float]
    subscription: SubscriptionFilter
    dropcopy: DropCopySetup | None = None


class _RpcError(Exception):
    """What grpc raises when a call ends: the real translation turns it into a StreamEnd."""

    def __init__(self, status: str, details: str) -> None:
        super().__init__(details)
        self._status = status
        self._details = details

    def code(self) -> Any:
        import grpc

        return grpc.StatusCode[self._status]

    def details(self) -> str:
        return self._details


class SimVenue:
    """The venue: order flow, journal, open streams and the report API, on the virtual clock."""

    def __init__(self, setup: VenueSetup, clock: SimClock) -> None:
        self.setup = setup
        self.clock = clock
        self.rng = random.Random(f"{setup.seed}:venue")
        params = FlowParams(accounts=DEFAULT_ACCOUNTS, symbols=DEFAULT_SYMBOLS, id_prefix=f"S{setup.seed}")
        self.journal = Journal()
        self.exchange = Exchange(
            OrderFlow(params, setup.seed), self.journal, rate=0.0, clock=clock, firm_flows=_firm_flows(setup)
        )
        self.behaviour = setup.behaviour
        self.report = ReportApi(
            executions=self.exchange.executions,
            orders=self.exchange.orders_with_last_execution,
            settings=lambda: self.behaviour,
            seed=setup.seed,
        )
        self.filter = OrderFilter(setup.subscription.symbols, setup.subscription.accounts)
        self.streams: list[SimStream] = []
        self.producing = True
        self.next_update_at = self._gap()
        self.stalled_until = 0.0
        self.unreachable_until = 0.0  # a network partition: new streams fail at once
        self.rest_outages: list[tuple[float, float]] = []
        self.resent_ids: set[str] = set()
        self.streams_opened = 0
        # Drop Copy
        self.dropcopy_streams: list[SimDropCopyStream] = []
        self.token_history = 1  # a new one (the venue lost its Drop Copy history) makes old tokens unknown
        self.tokens = ResumeTokens(secret=f"sim-{setup.seed}".encode(), epoch=self.token_history)
        self.dropcopy_rng = random.Random(f"{setup.seed}:dropcopy")
        self.dropcopy_opened = 0
        self.time_refused_until = 0.0  # a resume time opened before then is refused
        self.token_refusals = 0
        self.time_refusals = 0

    # --------------------------------------------------------------------- the flow

    def _gap(self) -> float:
        return self.clock.monotonic() + self.rng.expovariate(self.setup.updates_per_s)

    def tick(self) -> None:
        """Produce every update due now, and run each stream's timers (read or not)."""
        while self.producing and self.next_update_at <= self.clock.monotonic():
            self.exchange.advance(1)
            self.next_update_at = self._gap()
        now = self.clock()
        for stream in self.streams:
            if stream.behaviour.snapshot_due(now):  # also moves the stream's timers to now
                self.exchange.insert_snapshot(stream.subscription)

    def next_event(self) -> float | None:
        """When the venue has something to do (an update, a stream timer, the end of a stall)."""
        now = self.clock.monotonic()
        times = [self.next_update_at] if self.producing else []
        for stream in self.streams:
            wakeup = max(self.stalled_until, self.clock.monotonic_of(stream.behaviour.next_wakeup()))
            if wakeup > now:  # a timer already due waits for the engine to read
                times.append(wakeup)
        for dropcopy in self.dropcopy_streams:  # a paced replay's next batch
            wakeup = max(
                self.stalled_until, self.clock.monotonic_of(dropcopy.stream.next_wakeup(self.clock()))
            )
            if wakeup > now:
                times.append(wakeup)
        return min(times) if times else None

    def executions(self) -> Sequence[JournaledExecution]:
        """Every execution the venue produced."""
        return self.exchange.executions()

    def in_subscription(self, execution: trading_pb2.Execution) -> bool:
        """Whether the connector's subscription covers an execution."""
        return self.setup.subscription.matches(execution.order.symbol, execution.order.account)

    # --------------------------------------------------------------------- streams

    def open_stream(self) -> SimStream:
        """The engine's stream opener."""
        self.streams_opened += 1
        seed = self.rng.randrange(2**32)

        def sink(book: list[trading_pb2.Order], now: Any) -> VenueStream:
            return VenueStream(
                self.behaviour,
                session_id=f"sim-{self.setup.seed}-{self.streams_opened}",
                opened_at=now,
                book=book,
                rng=random.Random(seed),
                heartbeat_interval_s=self.setup.heartbeat_interval_s,
            )

        subscription = self.exchange.subscribe(self.filter, sink)
        stream = SimStream(self, subscription)
        self.streams.append(stream)
        if self.clock.monotonic() < self.unreachable_until:
            stream.behaviour.end("UNAVAILABLE", "failed to connect to all addresses (simulated partition)")
        return stream

    def close(self, stream: SimStream) -> None:
        """A stream is over (the client cancelled it, or the venue ended it)."""
        self.exchange.unsubscribe(stream.subscription)
        if stream in self.streams:
            self.streams.remove(stream)

    def drop_streams(self, status: str = "UNAVAILABLE") -> None:
        """End every open stream, Drop Copy's too (a network drop, a venue restart)."""
        for stream in list(self.streams):
            stream.behaviour.end(status, "simulated drop")
        for dropcopy in self.dropcopy_streams:
            dropcopy.stream.end(status, "simulated drop")

    # --------------------------------------------------------------------- Drop Copy

    def firm_log(self) -> FirmLog:
        """Every execution of the firm (Drop Copy's history), at its position."""
        return self.exchange.firm_log

    def in_dropcopy(self, execution: trading_pb2.Execution) -> bool:
        """Whether the connector's Drop Copy subscription covers an execution (symbols only: firm-wide)."""
        symbols = self.setup.subscription.symbols
        return not symbols or execution.order.symbol in symbols

    def open_dropcopy(self, resume: DropCopyResume) -> SimDropCopyStream:
        """The engine's Drop Copy opener: from just after a token, else from a time, else live."""
        self.dropcopy_opened += 1
        behaviour = self.behaviour
        log = self.exchange.firm_log
        now = self.clock()
        resumed_at: int | None = None
        refusal: tuple[str, str] | None = None
        if resume.token:
            try:
                resumed_at = self.tokens.decode(resume.token, now, head=log.head, lifetime_s=None)
            except TokenRefusedError as refused:
                self.token_refusals += 1
                refusal = (self.dropcopy_rng.choice(TOKEN_REFUSAL_STATUSES), refused.details)
        elif resume.time_ns is not None and self.clock.monotonic() < self.time_refused_until:
            self.time_refusals += 1
            refusal = (
                self.dropcopy_rng.choice(TOKEN_REFUSAL_STATUSES),
                "resume_time is out of the replay window",
            )
        dice = random.Random(self.dropcopy_rng.randrange(2**32))

        def open_sink(firm_log: FirmLog, opened_at: Any) -> DropCopyStream:
            head = firm_log.head
            if resumed_at is not None:
                first = max(0, resumed_at - behaviour.dropcopy_resend_on_resume)
            elif resume.time_ns is not None:
                first = bisect.bisect_left(_transact_times(firm_log), resume.time_ns)
            else:
                first = head
            return DropCopyStream(
                behaviour,
                log=firm_log,
                start=first,
                joined_at=head,
                opened_at=opened_at,
                token_for=self.tokens.encode,
                rng=dice,
                symbols=self.setup.subscription.symbols,
                resumed_at=resumed_at,
            )

        subscription = self.exchange.subscribe_firm(open_sink)
        stream = SimDropCopyStream(self, subscription)
        self.dropcopy_streams.append(stream)
        if refusal is not None:  # the call ends before its first response
            stream.stream.end(*refusal)
        elif self.clock.monotonic() < self.unreachable_until:
            stream.stream.end("UNAVAILABLE", "failed to connect to all addresses (simulated partition)")
        return stream

    def close_dropcopy(self, stream: SimDropCopyStream) -> None:
        """A Drop Copy stream is over."""
        self.exchange.unsubscribe_firm(stream.subscription)
        if stream in self.dropcopy_streams:
            self.dropcopy_streams.remove(stream)

    def lose_dropcopy_tokens(self, *, unknown: bool) -> None:
        """Every resume token issued so far is refused from now on: expired, or unknown (a new history)."""
        if unknown:
            self.token_history += 1
            self.tokens = ResumeTokens(secret=f"sim-{self.setup.seed}".encode(), epoch=self.token_history)
        else:
            self.tokens.expire_all()

    def rest_down(self) -> bool:
        """Whether the REST API is down (or out of reach) now."""
        now = self.clock.monotonic()
        return any(start <= now < end for start, end in self.rest_outages)


class _SimCall:
    """What the fake order stream and Drop Copy stream share: stalls, the end, re-sends, cancel."""

    def __init__(self, venue: SimVenue) -> None:
        self.venue = venue
        self._done = False

    def take(self) -> Any | StreamEnd | None:
        venue = self.venue
        if self._done:
            return None
        now = venue.clock()
        self._before(now)
        if venue.clock.monotonic() < venue.stalled_until and self._ended() is None:
            return None  # a stall: the venue sends nothing, heartbeats included
        sent = self._next(now)
        if sent is None:
            ended = self._ended()
            if ended is None:
                return None
            self._done = True
            self._close()
            status = ended.status if ended.status != "OK" else "UNAVAILABLE"
            return translate(_RpcError(status, ended.details))  # type: ignore[arg-type]
        if sent.kind == "duplicate":
            venue.resent_ids.update(sent.execution_ids)
        return sent.response.SerializeToString()

    def cancel(self) -> None:
        if not self._done:
            self._done = True
            self._close()

    def _before(self, now: datetime) -> None:
        """What happens before each take (nothing by default)."""

    def _next(self, now: datetime) -> Any:
        raise NotImplementedError

    def _ended(self) -> Any:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class SimStream(_SimCall):
    """One stream, as the engine's ``VenueStream`` port sees it."""

    def __init__(self, venue: SimVenue, subscription: Subscription) -> None:
        super().__init__(venue)
        self.subscription = subscription
        behaviour = subscription.sink
        assert isinstance(behaviour, VenueStream)
        self.behaviour = behaviour

    def _before(self, now: datetime) -> None:
        if self.behaviour.snapshot_due(now):
            self.venue.exchange.insert_snapshot(self.subscription)

    def _next(self, now: datetime) -> Any:
        return self.behaviour.next_message(now)

    def _ended(self) -> Any:
        return self.behaviour.ended

    def _close(self) -> None:
        self.venue.close(self)


class SimDropCopyStream(_SimCall):
    """One Drop Copy stream, as the engine's ``VenueStream`` port sees it (responses as wire bytes)."""

    def __init__(self, venue: SimVenue, subscription: FirmSubscription) -> None:
        super().__init__(venue)
        self.subscription = subscription
        stream = subscription.sink
        assert isinstance(stream, DropCopyStream)
        self.stream = stream

    def _next(self, now: datetime) -> Any:
        return self.stream.next_message(now)

    def _ended(self) -> Any:
        return self.stream.ended

    def _close(self) -> None:
        self.venue.close_dropcopy(self)


def _transact_times(log: FirmLog) -> list[int]:
    """The firm's transact times (ns) in position order (never decreasing, as the venue stamps them)."""
    return [ns_from_timestamp(entry.execution.transact_time) for entry in log.entries()]


def _firm_flows(setup: VenueSetup) -> list[FirmFlow]:
    """The firm's other users (none without Drop Copy: the order stream sees only the configured user)."""
    if setup.dropcopy is None:
        return []
    flows = []
    for number in range(2, setup.dropcopy.firm_users + 2):
        params = FlowParams(
            accounts=(f"firms/SIM/accounts/D{number}-1", f"firms/SIM/accounts/D{number}-2"),
            symbols=DEFAULT_SYMBOLS,
            participant=f"firms/SIM/users/desk-{number}",
            id_prefix=f"S{setup.seed}D{number}",
        )
        flows.append(FirmFlow(OrderFlow(params, setup.seed * 1009 + number), setup.dropcopy.firm_flow_ratio))
    return flows


@dataclass(slots=True)
class _Answer:
    ready_at: float
    answer: SearchPage | SearchFailure


class SimSearch:
    """The engine's search port: the connector's real REST client, answered by the venue's ReportApi."""

    def __init__(self, venue: SimVenue, client: ExecutionSearchClient, rng: random.Random) -> None:
        self._venue = venue
        self._client = client
        self._rng = rng
        self._pending: _Answer | None = None
        self.requests = 0
        self.answers: list[tuple[float, int]] = []  # (when the engine got it, HTTP status; 0: none)

    def submit(self, request: SearchRequest) -> None:
        venue = self._venue
        self.requests += 1
        latency = self._rng.uniform(*venue.setup.search_latency_s)
        if venue.rest_down():
            answer = self._client.answer(503, {"code": 14, "message": "unavailable"}, None)
        else:
            response = venue.report.search_executions(CLIENT_ID, self._client.body(request), venue.clock())
            retry_after = parse_retry_after(dict(response.headers).get("Retry-After"))
            answer = self._client.answer(int(response.status), response.payload, retry_after)
        self._pending = _Answer(venue.clock.monotonic() + latency, answer)

    def poll(self) -> SearchPage | SearchFailure | None:
        pending = self._pending
        if pending is None or pending.ready_at > self._venue.clock.monotonic():
            return None
        self._pending = None
        answer = pending.answer
        if isinstance(answer, SearchFailure):
            status = answer.status
        else:  # eof=false without a next page token tells the connector nothing: it retries
            status = 200 if answer.eof or answer.next_page_token else NO_TOKEN
        self.answers.append((pending.ready_at, status))
        return pending.answer

    def cancel(self) -> None:
        self._pending = None

    def next_event(self) -> float | None:
        return None if self._pending is None else self._pending.ready_at


def search_client(subscription: SubscriptionFilter, page_size: int) -> ExecutionSearchClient:
    """The connector's REST client, for its request bodies and answer parsing (no HTTP is done)."""
    return ExecutionSearchClient(
        rest_url="http://sim",
        participant_id="firms/SIM/users/connector",
        token=lambda: "sim-token",
        invalidate_token=lambda: None,
        subscription=subscription,
        page_size=page_size,
        timeout_s=30,
    )
