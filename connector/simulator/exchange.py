"""The simulated exchange: runs the order flow on its own thread, journals it, and feeds the subscribers.

The venue trades whether or not anyone watches: from :meth:`Exchange.start` a thread steps the
:class:`~connector.simulator.order_flow.OrderFlow` at the configured rate, journals each update and
hands it to every open subscription's :class:`FeedSink`. That flow is the configured user's (the
order stream is user-scoped: it is fed by this flow only). The other users of the firm trade too:
each :class:`FirmFlow` steps ``ratio`` times per step of the user's flow on average (at the same
time, right after it), never touching the user's flow or its dice, so adding them changes nothing
the order stream, the journal's ``execution`` lines or the REST searches show. Every execution of
the firm, the user's first, goes into the :class:`~connector.simulator.dropcopy.FirmLog` and to every
drop-copy subscription's :class:`FirmSink`, joined atomically like the order stream's.

An order-stream subscription takes the snapshot of the open orders and joins the feed under the
same lock the flow holds while it produces, so no update is lost or doubled between the snapshot and
the first update; later snapshots are read under that lock too, so each one is the book at one
point of the feed. The exchange runs single-threaded as well: without
:meth:`Exchange.start`, :meth:`Exchange.advance` produces on the caller's thread, stamped by the
injected clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol, TypeVar

from connector._pb.polymarket.v1 import trading_pb2
from connector.simulator.clock import Clock, utc_now
from connector.simulator.dropcopy import FirmExecution, FirmLog
from connector.simulator.journal import Journal, JournaledExecution
from connector.simulator.order_flow import OrderFlow, VenueUpdate, is_open
from connector.simulator.stream_behaviour import BookReader

__all__ = ["Exchange", "FeedSink", "FirmFlow", "FirmSink", "FirmSubscription", "OrderFilter", "Subscription"]

_LOG: Final = logging.getLogger(__name__)
_TICK_S: Final = 0.01
_MAX_BATCH: Final = 10_000

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """A stream's filter: empty tuples mean "all"."""

    symbols: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()

    def matches(self, account: str, symbol: str) -> bool:
        """Tell whether an event of this account and symbol passes the filter."""
        return (not self.symbols or symbol in self.symbols) and (
            not self.accounts or account in self.accounts
        )

    def select(self, update: VenueUpdate) -> VenueUpdate | None:
        """Keep the parts of an update that pass the filter; None when nothing does."""
        if not self.symbols and not self.accounts:
            return update
        executions = tuple(e for e in update.executions if self.matches(e.order.account, e.order.symbol))
        reject = update.cancel_reject
        if reject is not None and not self.matches(reject.account, reject.symbol):
            reject = None
        if not executions and reject is None:
            return None
        return VenueUpdate(executions=executions, cancel_reject=reject)


class FeedSink(Protocol):
    """What a subscription feeds: a stream's send side (e.g. a :class:`VenueStream`).

    Both methods are called with the exchange's lock held, so ``book`` and ``orders`` are the book at
    exactly this point of the feed; they must not call back into the exchange.
    """

    def deliver(self, update: VenueUpdate, now: datetime, book: BookReader) -> None:
        """Take the next update of the feed (already filtered for the subscription)."""

    def insert_snapshot(self, orders: Sequence[trading_pb2.Order], now: datetime) -> None:
        """Take a snapshot of the book at this point of the feed (see :meth:`Exchange.insert_snapshot`)."""


class Subscription:
    """One observer of the feed: a filter and the sink the exchange delivers to."""

    def __init__(self, order_filter: OrderFilter, sink: FeedSink) -> None:
        self.order_filter = order_filter
        self.sink = sink


class FirmSink(Protocol):
    """What a drop-copy subscription feeds (e.g. a :class:`~connector.simulator.dropcopy.DropCopyStream`).

    Called with the exchange's lock held; it must not call back into the exchange.
    """

    def deliver(self, entries: Sequence[FirmExecution], now: datetime) -> None:
        """Take the firm's next executions, at their positions."""


class FirmSubscription:
    """One observer of the firm's executions."""

    def __init__(self, sink: FirmSink) -> None:
        self.sink = sink


@dataclass(frozen=True, slots=True)
class FirmFlow:
    """Another user of the firm: its own order flow, stepped ``ratio`` times per user step on average."""

    flow: OrderFlow
    ratio: float


class Exchange:
    """The order flow, the journal and the subscribers, kept consistent by one lock."""

    def __init__(
        self,
        flow: OrderFlow,
        journal: Journal,
        *,
        rate: float,
        clock: Clock = utc_now,
        firm_flows: Sequence[FirmFlow] = (),
    ) -> None:
        self._flow = flow
        self._firm_flows = tuple(firm_flows)
        self._firm_due = [0.0] * len(self._firm_flows)
        self._firm_log = FirmLog()
        self._firm_subscriptions: set[FirmSubscription] = set()
        self._journal = journal
        self._rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._subscriptions: set[Subscription] = set()
        self._updates = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def journal(self) -> Journal:
        """The journal of everything produced."""
        return self._journal

    @property
    def firm_log(self) -> FirmLog:
        """Every execution of the firm, at its position (read it under :meth:`read_firm` for consistency)."""
        return self._firm_log

    @property
    def participants(self) -> tuple[str, ...]:
        """The firm's trading users: the configured one first, then the others."""
        return (self._flow.params.participant, *(f.flow.params.participant for f in self._firm_flows))

    @property
    def rate(self) -> float:
        """Updates per second produced by the flow thread."""
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the flow rate (0 pauses the flow: once this returns, no update is made any more)."""
        with self._lock:  # a batch under way finishes first; the flow thread checks the rate under it
            self._rate = rate

    def start(self) -> None:
        """Start the flow thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sim-order-flow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the flow thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _run(self) -> None:
        produced = 0.0
        last = time.monotonic()
        while not self._stop.wait(_TICK_S):
            now_mono = time.monotonic()
            produced += (now_mono - last) * self._rate
            last = now_mono
            due = min(int(produced), _MAX_BATCH)
            if due > 0:
                produced -= due
                self._advance(due, flowing_only=True)
            elif self._rate <= 0:
                produced = 0.0

    def advance(self, count: int) -> list[VenueUpdate]:
        """Produce ``count`` updates now: step the flow, journal, and deliver each.

        Args:
            count: How many updates.

        Returns:
            The updates, in order.
        """
        return self._advance(count, flowing_only=False)

    def _advance(self, count: int, *, flowing_only: bool) -> list[VenueUpdate]:
        """:meth:`advance`; with ``flowing_only``, nothing if the flow was paused meanwhile (the thread)."""
        produced: list[VenueUpdate] = []
        with self._lock:
            if flowing_only and self._rate <= 0:
                return produced
            for _ in range(count):
                now = self._clock()
                update = self._flow.step(now)
                self._journal.record(update)
                self._updates += 1
                for subscription in self._subscriptions:
                    selected = subscription.order_filter.select(update)
                    if selected is not None:
                        subscription.sink.deliver(selected, now, self._book_reader(subscription.order_filter))
                produced.append(update)
                self._firm_step(update, now)
        return produced

    def _firm_step(self, update: VenueUpdate, now: datetime) -> None:
        """Log the user's executions and the other users' steps for the firm; feed drop copy (lock held)."""
        entries = self._firm_log.append(update.executions, self._flow.params.participant)
        for index, firm_flow in enumerate(self._firm_flows):
            self._firm_due[index] += firm_flow.ratio
            while self._firm_due[index] >= 1.0:
                self._firm_due[index] -= 1.0
                other = firm_flow.flow.step(now)
                entries.extend(self._firm_log.append(other.executions, firm_flow.flow.params.participant))
        if entries:
            self._journal.record_firm(entries)
            for subscription in self._firm_subscriptions:
                subscription.sink.deliver(entries, now)

    def _book(self, order_filter: OrderFilter) -> list[trading_pb2.Order]:
        """Copies of the matching open orders, oldest first (call with the lock held)."""
        snapshot = []
        for order in self._flow.open_orders():
            if order_filter.matches(order.account, order.symbol):
                copy = trading_pb2.Order()
                copy.CopyFrom(order)
                snapshot.append(copy)
        return snapshot

    def _book_reader(self, order_filter: OrderFilter) -> BookReader:
        return lambda: self._book(order_filter)

    def subscribe(
        self, order_filter: OrderFilter, open_sink: Callable[[list[trading_pb2.Order], datetime], FeedSink]
    ) -> Subscription:
        """Take the snapshot of matching open orders and join the feed, atomically.

        Args:
            order_filter: The stream's filter.
            open_sink: Builds the sink from copies of the matching open orders (oldest first) and the
                time; called with the lock held.

        Returns:
            The subscription.
        """
        with self._lock:
            subscription = Subscription(order_filter, open_sink(self._book(order_filter), self._clock()))
            self._subscriptions.add(subscription)
        return subscription

    def insert_snapshot(self, subscription: Subscription) -> None:
        """Hand the subscription's sink a snapshot of the book at the current point of the feed."""
        with self._lock:
            subscription.sink.insert_snapshot(self._book(subscription.order_filter), self._clock())

    def unsubscribe(self, subscription: Subscription) -> None:
        """Leave the feed."""
        with self._lock:
            self._subscriptions.discard(subscription)

    def subscribe_firm(self, open_sink: Callable[[FirmLog, datetime], FirmSink]) -> FirmSubscription:
        """Join the firm's executions: ``open_sink`` sees the log at the join point (lock held).

        Every execution after ``firm_log.head`` at that moment is delivered to the sink; the ones up to
        it are in the log, so a replay that ends there and the live feed neither overlap nor leave a gap.
        """
        with self._lock:
            subscription = FirmSubscription(open_sink(self._firm_log, self._clock()))
            self._firm_subscriptions.add(subscription)
        return subscription

    def unsubscribe_firm(self, subscription: FirmSubscription) -> None:
        """Leave the firm's executions."""
        with self._lock:
            self._firm_subscriptions.discard(subscription)

    def firm_head(self) -> int:
        """The position of the firm's latest execution."""
        with self._lock:
            return self._firm_log.head

    def read(self, reader: Callable[[OrderFlow, Journal], _T]) -> _T:
        """Run ``reader`` on the flow and the journal under the lock (for consistent queries)."""
        with self._lock:
            return reader(self._flow, self._journal)

    def executions(self) -> Sequence[JournaledExecution]:
        """Every journaled execution so far, in sequence order."""
        with self._lock:
            return self._journal.executions()

    def orders_with_last_execution(self) -> list[tuple[trading_pb2.Order, trading_pb2.Execution | None]]:
        """Copies of every order, oldest first, each with its latest execution."""

        def collect(
            flow: OrderFlow, journal: Journal
        ) -> list[tuple[trading_pb2.Order, trading_pb2.Execution | None]]:
            result = []
            for order in flow.orders():
                copy = trading_pb2.Order()
                copy.CopyFrom(order)
                result.append((copy, journal.last_execution(order.id)))
            return result

        return self.read(collect)

    def stats(self) -> dict[str, int]:
        """Counters of what the exchange produced."""

        def collect(flow: OrderFlow, journal: Journal) -> dict[str, int]:
            counts = journal.counts
            return {
                "updates_produced": self._updates,
                "executions_produced": counts["execution"],
                "cancel_rejects_produced": counts["cancel_reject"],
                "journal_seq": journal.last_seq,
                "orders_total": sum(1 for _ in flow.orders()),
                "orders_open": sum(1 for order in flow.orders() if is_open(order)),
                "subscriptions": len(self._subscriptions),
                "firm_executions_produced": self._firm_log.head,
                "firm_subscriptions": len(self._firm_subscriptions),
            }

        return self.read(collect)
