"""The fake venue of the simulation: the simulator's own pure components on the virtual clock.

The order flow, the exchange and journal, each stream's ``VenueStream`` (openings, bounded send
queue, heartbeats stamped at send that jump or queue, sessions and snapshots mid-stream,
duplicates) and the ``ReportApi`` (per-client rate limit across connections, result order, indexing
delay, ``eof`` without a token, page size cap) are the ones ``pmx-connector simulator`` serves over
gRPC and HTTP; here they are driven directly, with no thread. Adapters to the engine's ports:

- :class:`SimStream`: a ``VenueStream`` port; a stall sends nothing, a drop ends the call;
- :class:`SimSearch`: an ``ExecutionSearch`` port whose requests are built and whose answers are
  parsed by the connector's real REST client (``venue/search.py``), with a latency and outages.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.backfill_plan import SubscriptionFilter
from connector.engine.ports import SearchFailure, SearchPage, SearchRequest, StreamEnd
from connector.simulator.exchange import Exchange, OrderFilter, Subscription
from connector.simulator.faults import FaultSettings
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
class VenueSetup:
    """How this schedule's venue behaves."""

    seed: int
    updates_per_s: float
    heartbeat_interval_s: float
    behaviour: FaultSettings
    search_latency_s: tuple[float, float]
    subscription: SubscriptionFilter


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
        self.exchange = Exchange(OrderFlow(params, setup.seed), self.journal, rate=0.0, clock=clock)
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
        """End every open stream (a network drop, a venue restart)."""
        for stream in list(self.streams):
            stream.behaviour.end(status, "simulated drop")

    def rest_down(self) -> bool:
        """Whether the REST API is down (or out of reach) now."""
        now = self.clock.monotonic()
        return any(start <= now < end for start, end in self.rest_outages)


class SimStream:
    """One stream, as the engine's ``VenueStream`` port sees it."""

    def __init__(self, venue: SimVenue, subscription: Subscription) -> None:
        self.venue = venue
        self.subscription = subscription
        behaviour = subscription.sink
        assert isinstance(behaviour, VenueStream)
        self.behaviour = behaviour
        self._done = False

    def take(self) -> Any | StreamEnd | None:
        venue = self.venue
        if self._done:
            return None
        now = venue.clock()
        if self.behaviour.snapshot_due(now):
            venue.exchange.insert_snapshot(self.subscription)
        if venue.clock.monotonic() < venue.stalled_until and self.behaviour.ended is None:
            return None  # a stall: the venue sends nothing, heartbeats included
        sent = self.behaviour.next_message(now)
        if sent is None:
            ended = self.behaviour.ended
            if ended is None:
                return None
            self._done = True
            venue.close(self)
            status = ended.status if ended.status != "OK" else "UNAVAILABLE"
            return translate(_RpcError(status, ended.details))  # type: ignore[arg-type]
        if sent.kind == "duplicate":
            venue.resent_ids.update(sent.execution_ids)
        return sent.response.SerializeToString()

    def cancel(self) -> None:
        if not self._done:
            self._done = True
            self.venue.close(self)


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
