"""One order stream as the venue runs it: a pure state machine, driven by explicit ``now`` arguments.

:class:`VenueStream` is what the venue keeps per ``CreateOrderSubscription`` call: the send queue
between the venue's feed and a client that may not read, the heartbeat timer, the session id, the
snapshots and the fault dice. It has no thread, reads no clock (every method takes ``now``) and draws
every random choice from the ``random.Random`` it is given, so the same inputs give the same messages.
The process simulator wraps one per RPC (:mod:`connector.simulator.grpc_service`, which adds a lock);
a single-threaded simulation can drive it directly::

    stream = VenueStream(settings, session_id="s-1", opened_at=t0, book=open_orders, rng=Random(7),
                         heartbeat_interval_s=5.0)
    stream.deliver(update, t1, book=lambda: open_orders_now)   # the venue produced an update
    if stream.snapshot_due(t2):                                 # a time-driven snapshot is due
        stream.insert_snapshot(open_orders_now, t2)
    sent = stream.next_message(t2)      # the client reads: the message sent now, or None
    stream.ended                        # StreamEnd(status, details) once the venue ended it

What it does (venue-api.md §2 allows each; docs/simulator.md has the same list):

* **Opening** (``stream_opening``; the venue documents no order): ``snapshot`` first (the snapshot of
  the book taken when the stream joined the feed); ``heartbeat`` first, then that snapshot; or
  ``updates`` first: the first ``opening_updates`` updates go out before the snapshot, which then shows
  the book *at that point of the feed* (so it covers exactly the updates before it). If those updates
  do not come within ``opening_wait_s``, the snapshot goes anyway. ``random`` picks one per stream
  (and 1..``opening_updates`` updates).
* **Send queue**: every update, snapshot and (when queued) heartbeat waits in a FIFO until the client
  reads. A client that stops reading (backpressure, HTTP/2 flow control) makes it grow while the
  venue keeps trading; past ``send_queue_capacity`` messages the venue ends the stream with
  ``queue_overflow_status`` (RESOURCE_EXHAUSTED by default) and drops what was queued.
* **Heartbeats** are due every ``heartbeat_interval_s`` from the stream's start and stamped at *send*
  time, like every message (``processed_sent_time`` is the send time). ``jump``: a due heartbeat goes
  ahead of every queued message (at most one pending; never ahead of a ``snapshot``-first opening);
  ``queue``: it takes its place at the tail, so a backlog delays it. ``random`` picks per stream.
* **Session**: with ``new_session_every_s``, the stream switches to a new ``session_id`` at random
  intervals of 0.5 to 1.5 times that; :meth:`new_session` does it at once. Messages sent afterwards
  carry the new id (queued ones included).
* **Snapshots mid-stream**: with ``snapshot_every_s`` (same jitter), or after
  :meth:`request_snapshot`, :meth:`snapshot_due` turns true; the owner then reads the book at the
  current feed point and calls :meth:`insert_snapshot`, which queues a full snapshot that replaces
  the state for the filter (venue-api.md §2.2).
* **Dice** (from ``settings``): ``duplicate_rate`` re-queues one recently queued execution after an
  update, as its own update; ``unknown_enum_rate`` and ``unknown_field_rate`` alter sent copies;
  ``extra_snapshot_orders`` appends synthetic orders to every snapshot.

Settings changes reach an open stream through :meth:`apply`; ``stream_opening`` affects new streams only.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, cast

from connector._pb.polymarket.v1 import enums_pb2, trading_pb2
from connector.simulator.clock import from_timestamp, to_timestamp
from connector.simulator.faults import FaultSettings
from connector.simulator.order_flow import VenueUpdate

__all__ = [
    "UNKNOWN_FIELD_BYTES",
    "UNKNOWN_FIELD_NUMBER",
    "BookReader",
    "SentMessage",
    "StreamCounts",
    "StreamEnd",
    "VenueStream",
    "synthetic_orders",
]

BookReader = Callable[[], Sequence[trading_pb2.Order]]
"""Return copies of the open orders the stream's filter matches, as they stand at this point of the feed."""

UNKNOWN_FIELD_NUMBER: Final = 9999
"""Field number of the unknown varint field the ``unknown_field_rate`` fault appends."""
_RECENT_EXECUTIONS: Final = 256
_JITTER_LOW: Final = 0.5
_JITTER_HIGH: Final = 1.5
_SNAPSHOT: Final = "snapshot"
_UPDATE: Final = "update"
_DUPLICATE: Final = "duplicate"
_HEARTBEAT: Final = "heartbeat"


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


UNKNOWN_FIELD_BYTES: Final = _varint(UNKNOWN_FIELD_NUMBER << 3) + _varint(42)
"""The unknown field (number :data:`UNKNOWN_FIELD_NUMBER`, varint 42) ``unknown_field_rate`` appends."""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """How the venue ended a stream: a gRPC status name (``OK`` for a normal end) and its details."""

    status: str
    details: str


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message the venue sent.

    Attributes:
        response: The message, stamped with the session id and ``processed_sent_time`` (= send time).
        kind: ``snapshot``, ``update``, ``duplicate`` (an update re-sending a sent execution) or
            ``heartbeat``.
        execution_ids: The executions it carries, in order.
        queued_behind: Messages still queued behind it when it was sent.
        jumped: A heartbeat sent ahead of queued messages (``jump`` queueing).
        oldest_queued: For a heartbeat, the ``transact_time`` of the oldest execution still queued
            behind it (None when none is): a time its ``processed_sent_time`` says nothing about.
    """

    response: trading_pb2.CreateOrderSubscriptionResponse
    kind: str
    execution_ids: tuple[str, ...]
    queued_behind: int
    jumped: bool = False
    oldest_queued: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Queued:
    kind: str
    update: VenueUpdate | None = None
    orders: tuple[trading_pb2.Order, ...] = ()


@dataclass(slots=True)
class StreamCounts:
    """What one stream did, for counters and tests."""

    sent: int = 0
    snapshots: int = 0
    heartbeats: int = 0
    heartbeats_jumped: int = 0
    duplicates: int = 0
    sessions: int = 1
    max_queued: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class VenueStream:
    """One stream's send queue, timers, session and dice; see the module docstring."""

    def __init__(
        self,
        settings: FaultSettings,
        *,
        session_id: str,
        opened_at: datetime,
        book: Sequence[trading_pb2.Order],
        rng: random.Random,
        heartbeat_interval_s: float,
        snapshot_only: bool = False,
    ) -> None:
        """Open the stream.

        Args:
            settings: The behaviour settings in force.
            session_id: The first session id (later ones derive from it).
            opened_at: When the stream joined the venue's feed.
            book: Copies of the open orders the filter matches at that moment (taken atomically
                with joining the feed).
            rng: The stream's dice.
            heartbeat_interval_s: Seconds between heartbeats.
            snapshot_only: End the stream (OK) once the first snapshot is sent.
        """
        if heartbeat_interval_s <= 0:
            msg = f"heartbeat_interval_s must be positive, got {heartbeat_interval_s!r}"
            raise ValueError(msg)
        self._settings = settings
        self._rng = rng
        self._session_root = session_id
        self._session_id = session_id
        self._interval = timedelta(seconds=heartbeat_interval_s)
        self._snapshot_only = snapshot_only
        self._now = opened_at
        self._queue: deque[_Queued] = deque()
        self._recent: deque[trading_pb2.Execution] = deque(maxlen=_RECENT_EXECUTIONS)
        self._ended: StreamEnd | None = None
        self.counts = StreamCounts()
        self.opening = self._resolve_opening(settings.stream_opening)
        self._opening_updates_left = settings.opening_updates
        if settings.stream_opening == "random" and self.opening == "updates":
            self._opening_updates_left = rng.randint(1, settings.opening_updates)
        self._opening_deadline = opened_at + timedelta(seconds=settings.opening_wait_s)
        self._opening_queued = False
        self._opening_sent = False
        self.heartbeat_queueing = self._resolve_queueing(settings.heartbeat_queueing)
        self._heartbeat_pending = False
        self._next_heartbeat = opened_at + self._interval
        self._next_session = self._schedule(opened_at, settings.new_session_every_s)
        self._next_snapshot = self._schedule(opened_at, settings.snapshot_every_s)
        self._snapshot_wanted = False
        if self.opening == "heartbeat":
            self._enqueue(_Queued(_HEARTBEAT))
        if self.opening != "updates":
            self._queue_snapshot(book)

    # ------------------------------------------------------------------ state

    @property
    def session_id(self) -> str:
        """The session id the next message will carry."""
        return self._session_id

    @property
    def ended(self) -> StreamEnd | None:
        """How the venue ended the stream, once it did."""
        return self._ended

    @property
    def queued(self) -> int:
        """Messages waiting in the send queue (a pending jumping heartbeat not included)."""
        return len(self._queue)

    @property
    def sent(self) -> int:
        """Messages sent so far."""
        return self.counts.sent

    def next_wakeup(self) -> datetime:
        """The earliest time at which something becomes due without a delivery (a timer fires)."""
        moments = [self._next_heartbeat]
        if self._next_session is not None:
            moments.append(self._next_session)
        if self._next_snapshot is not None:
            moments.append(self._next_snapshot)
        if not self._opening_queued:
            moments.append(self._opening_deadline)
        return min(moments)

    # ------------------------------------------------------------------ inputs

    def apply(self, settings: FaultSettings, now: datetime) -> None:
        """Put new settings in force for this stream (its opening stays as it was)."""
        old, self._settings = self._settings, settings
        self._advance(now)
        if settings.heartbeat_queueing != old.heartbeat_queueing:
            self.heartbeat_queueing = self._resolve_queueing(settings.heartbeat_queueing)
        if settings.new_session_every_s != old.new_session_every_s:
            self._next_session = self._schedule(self._now, settings.new_session_every_s)
        if settings.snapshot_every_s != old.snapshot_every_s:
            self._next_snapshot = self._schedule(self._now, settings.snapshot_every_s)

    def deliver(self, update: VenueUpdate, now: datetime, book: BookReader) -> None:
        """Queue an update the venue produced (in feed order), with its dice.

        Args:
            update: The update, already filtered for this stream.
            now: The time of the update.
            book: Reads the book at this point of the feed (used when an ``updates``-first opening
                has sent its updates and the snapshot is due).
        """
        self._advance(now)
        if self._ended is not None:
            return
        self._enqueue(_Queued(_UPDATE, update=update))
        self._recent.extend(update.executions)
        if self._roll(self._settings.duplicate_rate) and self._recent:
            again = VenueUpdate(executions=(self._rng.choice(self._recent),))
            self._enqueue(_Queued(_DUPLICATE, update=again))
        if not self._opening_queued:
            self._opening_updates_left -= 1
            if self._opening_updates_left <= 0:
                self._queue_snapshot(book())

    def snapshot_due(self, now: datetime) -> bool:
        """Tell whether a snapshot is due that only the owner can take (call :meth:`insert_snapshot`)."""
        self._advance(now)
        return self._ended is None and self._snapshot_wanted

    def insert_snapshot(self, orders: Sequence[trading_pb2.Order], now: datetime) -> None:
        """Queue a snapshot of ``orders`` (copies of the book at the current point of the feed)."""
        self._advance(now)
        if self._ended is None:
            self._queue_snapshot(orders)

    def request_snapshot(self) -> None:
        """Make a mid-stream snapshot due now (one-shot)."""
        self._snapshot_wanted = True

    def new_session(self) -> str:
        """Switch to a new session id now; return it."""
        self.counts.sessions += 1
        self._session_id = f"{self._session_root}.{self.counts.sessions}"
        return self._session_id

    def end(self, status: str, details: str) -> None:
        """End the stream (a fault decided by the owner); nothing more is sent."""
        if self._ended is None:
            self._ended = StreamEnd(status, details)
            self._queue.clear()
            self._heartbeat_pending = False

    # ------------------------------------------------------------------ output

    def next_message(self, now: datetime) -> SentMessage | None:
        """Send the next message, if one is due: the client is ready to read at ``now``.

        Returns:
            The message sent, stamped with ``now`` (or the latest time the stream has seen, if that is
            later: nothing is sent before it happened), or None when nothing is due (or the stream
            has ended).
        """
        self._advance(now)
        if self._ended is not None:
            return None
        if self._heartbeat_pending and (self._opening_sent or self.opening != "snapshot"):
            self._heartbeat_pending = False
            jumped = bool(self._queue)
            self.counts.heartbeats_jumped += jumped
            return self._send(_Queued(_HEARTBEAT), self._now, jumped=jumped)
        if not self._queue:
            return None
        item = self._queue.popleft()
        sent = self._send(item, self._now)
        if item.kind == _SNAPSHOT and not self._opening_sent:
            self._opening_sent = True
            if self._snapshot_only:
                self.end("OK", "snapshot_only: the snapshot was sent")
        return sent

    # ------------------------------------------------------------------ internals

    def _resolve_opening(self, configured: str) -> str:
        if configured == "random":
            return self._rng.choice(("snapshot", "heartbeat", "updates"))
        return configured

    def _resolve_queueing(self, configured: str) -> str:
        if configured == "random":
            return self._rng.choice(("jump", "queue"))
        return configured

    def _schedule(self, now: datetime, every_s: float | None) -> datetime | None:
        if every_s is None:
            return None
        return now + timedelta(seconds=every_s * self._rng.uniform(_JITTER_LOW, _JITTER_HIGH))

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def _advance(self, now: datetime) -> None:
        """Fire the timers due by ``now`` (the stream's time never goes backwards)."""
        now = max(now, self._now)
        self._now = now
        if self._ended is not None:
            return
        if now >= self._next_heartbeat:
            if self.heartbeat_queueing == "queue":
                while now >= self._next_heartbeat and self._ended is None:
                    self._enqueue(_Queued(_HEARTBEAT))
                    self._next_heartbeat += self._interval
            else:
                self._heartbeat_pending = True
                missed = (now - self._next_heartbeat) // self._interval
                self._next_heartbeat += self._interval * (missed + 1)
        if self._next_session is not None and now >= self._next_session:
            self.new_session()
            self._next_session = self._schedule(now, self._settings.new_session_every_s)
        if self._next_snapshot is not None and now >= self._next_snapshot:
            self._snapshot_wanted = True
            self._next_snapshot = None
        if not self._opening_queued and now >= self._opening_deadline:
            self._snapshot_wanted = True

    def _queue_snapshot(self, orders: Sequence[trading_pb2.Order]) -> None:
        self._opening_queued = True
        self._snapshot_wanted = False
        if self._next_snapshot is None:
            self._next_snapshot = self._schedule(self._now, self._settings.snapshot_every_s)
        self._enqueue(_Queued(_SNAPSHOT, orders=tuple(orders)))

    def _enqueue(self, item: _Queued) -> None:
        capacity = self._settings.send_queue_capacity
        if capacity is not None and len(self._queue) >= capacity:
            self.end(
                self._settings.queue_overflow_status,
                f"slow consumer: the stream's send queue of {capacity} messages is full",
            )
            return
        self._queue.append(item)
        self.counts.max_queued = max(self.counts.max_queued, len(self._queue))

    def _send(self, item: _Queued, now: datetime, *, jumped: bool = False) -> SentMessage:
        settings = self._settings
        response = trading_pb2.CreateOrderSubscriptionResponse()
        execution_ids: tuple[str, ...] = ()
        if item.kind == _SNAPSHOT:
            response.snapshot.orders.extend(item.orders)
            if settings.extra_snapshot_orders:
                response.snapshot.orders.extend(
                    synthetic_orders(self._session_root, settings.extra_snapshot_orders, now)
                )
            response.snapshot.SetInParent()  # an empty snapshot is still a snapshot
            self.counts.snapshots += 1
        elif item.kind == _HEARTBEAT:
            response.heartbeat.SetInParent()
            self.counts.heartbeats += 1
        else:
            update = cast(VenueUpdate, item.update)
            response.update.executions.extend(update.executions)  # copies: the shared protos stay untouched
            if update.cancel_reject is not None:
                response.update.cancel_reject.CopyFrom(update.cancel_reject.reject)
            response.update.SetInParent()
            for execution in response.update.executions:
                if self._roll(settings.unknown_enum_rate):
                    execution.type = cast(enums_pb2.ExecutionType, settings.unknown_enum_value)
            execution_ids = tuple(execution.id for execution in update.executions)
            if item.kind == _DUPLICATE:
                self.counts.duplicates += 1
        if self._roll(settings.unknown_field_rate):
            response.MergeFromString(UNKNOWN_FIELD_BYTES)
            if response.HasField("update") and response.update.executions:
                response.update.executions[0].MergeFromString(UNKNOWN_FIELD_BYTES)
            elif response.HasField("snapshot") and response.snapshot.orders:
                response.snapshot.orders[0].MergeFromString(UNKNOWN_FIELD_BYTES)
        response.session_id = self._session_id
        response.processed_sent_time.CopyFrom(to_timestamp(now))
        self.counts.sent += 1
        self.counts.by_kind[item.kind] = self.counts.by_kind.get(item.kind, 0) + 1
        return SentMessage(
            response=response,
            kind=item.kind,
            execution_ids=execution_ids,
            queued_behind=len(self._queue),
            jumped=jumped,
            oldest_queued=self._oldest_queued() if item.kind == _HEARTBEAT else None,
        )

    def _oldest_queued(self) -> datetime | None:
        """The transact time of the first queued update's first execution (feed order is time order)."""
        for queued in self._queue:
            if queued.kind == _UPDATE and queued.update is not None and queued.update.executions:
                return from_timestamp(queued.update.executions[0].transact_time)
        return None


def synthetic_orders(tag: str, count: int, now: datetime) -> list[trading_pb2.Order]:
    """Open orders that exist only in one snapshot (the oversize-snapshot fault), ids ``SYNTH-<tag>-N``."""
    stamp = to_timestamp(now)
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
        order.id = f"SYNTH-{tag[-8:]}-{index:07d}"
        order.clord_id = f"SYNTH-C{index:07d}"
        orders.append(order)
    return orders
