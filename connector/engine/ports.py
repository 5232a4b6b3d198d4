"""The engine's ports: every seam between the service and the world, as Protocols and plain values.

The engine (reconnect loop, recovery sessions, frontier) is written against these only, so it runs
single-threaded on a virtual clock under a simulation test, against a fake venue and a fake Kafka,
exactly as it runs in production against gRPC, REST and librdkafka. Nothing here blocks: a port
either answers now or says "nothing yet" (and, in production, rings the driver's doorbell when it
has something).

- :class:`Clock` — monotonic seconds for timers, wall nanoseconds for venue-time decisions;
- :class:`VenueStream` / :class:`StreamOpener` — one open order stream: take the next response;
- :class:`DropCopyOpener` — opens a Drop Copy stream (a :class:`VenueStream` too) from a
  :class:`DropCopyResume`;
- :class:`ExecutionSearch` — the REST execution search, one page request at a time;
- :class:`RecordSink` — the Kafka producer: publish without blocking, serve acknowledgements;
- :class:`Transactions` — that producer's Kafka transactions: begin, and commit without blocking;
- :class:`CheckpointStore` (a :class:`Checkpoint`), :class:`RecentIdSeeder` — what a start reads back
  from Kafka;
- :class:`Observer`, :class:`DropCopyObserver` — metrics (no effect on delivery).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from connector.core.backfill_plan import Window
from connector.core.dedup import RecentExecutionIds
from connector.core.records import Headers, OutRecord
from connector.core.watermark import Position


class Clock(Protocol):
    """The engine's only source of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (timers, pacing)."""

    def time_ns(self) -> int:
        """Wall time, epoch nanoseconds (venue-time decisions, record fields)."""


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def time_ns(self) -> int:
        """``time.time_ns()``."""
        return time.time_ns()


# --------------------------------------------------------------------------------------- the stream


class Disposition(StrEnum):
    """What the connector should do after the stream ended (the failure matrix)."""

    RECONNECT = "reconnect"  # ended, UNAVAILABLE, reset, internal errors: back off and reconnect
    REAUTHENTICATE = "reauthenticate"  # UNAUTHENTICATED: fresh token, reconnect at once
    BACK_OFF_LONG = "back_off_long"  # RESOURCE_EXHAUSTED: too many streams for the firm
    FATAL = "fatal"  # PERMISSION_DENIED, INVALID_ARGUMENT: configuration must change


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """How a stream ended: a gRPC status name (or ``EOF``), the venue's words, and what to do."""

    status: str
    details: str
    disposition: Disposition

    def __str__(self) -> str:
        return f"order stream ended: {self.status}: {self.details}" if self.details else self.status


class VenueStream(Protocol):
    """One open ``CreateOrderSubscription`` call."""

    def take(self) -> Any | StreamEnd | None:
        """The next response (a ``CreateOrderSubscriptionResponse``), how the stream ended, or None.

        None means nothing has arrived yet; after a :class:`StreamEnd` nothing more comes.
        """

    def cancel(self) -> None:
        """End the call (idempotent)."""


class StreamOpener(Protocol):
    """Opens a new venue stream (a fresh call with a current token)."""

    def __call__(self) -> VenueStream:
        """Open the stream.

        Raises:
            TokenEndpointUnavailable: no token now (retried with backoff).
            CredentialsRefused: the token endpoint refused the client (fatal).
        """


@dataclass(frozen=True, slots=True)
class DropCopyResume:
    """Where a Drop Copy stream starts: just after ``token``; else at ``time_ns``; else live."""

    token: bytes = b""
    time_ns: int | None = None

    @property
    def mode(self) -> str:
        """``token``, ``time`` or ``live`` (the ``resume`` of ``/status`` and the refusal metric)."""
        if self.token:
            return "token"
        return "time" if self.time_ns is not None else "live"


class DropCopyOpener(Protocol):
    """Opens a ``CreateDropCopySubscription`` call (a fresh call with a current token)."""

    def __call__(self, resume: DropCopyResume, /) -> VenueStream:
        """Open the stream; its responses are ``CreateDropCopySubscriptionResponse`` wire bytes.

        Raises:
            TokenEndpointUnavailable: no token now (retried with backoff).
            CredentialsRefused: the token endpoint refused the client (fatal).
        """


# --------------------------------------------------------------------------------------- the search


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One page of ``SearchExecutions`` over a window (an empty token asks for the first page)."""

    window: Window
    page_token: str


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of results: the executions of the subscription, and where to go on."""

    executions: Sequence[Any]
    next_page_token: str
    eof: bool


@dataclass(frozen=True, slots=True)
class SearchFailure:
    """A failed search request: the HTTP status (0: no answer), ``Retry-After``, and why."""

    status: int
    retry_after_s: float | None
    detail: str

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.detail}" if self.status else self.detail


class ExecutionSearch(Protocol):
    """The REST execution search, one request in flight at a time."""

    def submit(self, request: SearchRequest) -> None:
        """Send the request (its answer comes from :meth:`poll`)."""

    def poll(self) -> SearchPage | SearchFailure | None:
        """The answer to the request in flight, or None while it is outstanding (or none is)."""

    def cancel(self) -> None:
        """Forget the request in flight (its answer, if it comes, is dropped)."""


# --------------------------------------------------------------------------------------- Kafka


class RecordSink(Protocol):
    """The Kafka producer, as the engine sees it: non-blocking, acknowledgements by arrival sequence."""

    @property
    def in_flight(self) -> int:
        """Records handed over and not yet acknowledged."""

    def try_publish(self, record: OutRecord, headers: Headers, sequence: int | None) -> bool:
        """Hand one record over; False when the producer's queue is full (try again later).

        ``sequence`` is the record's arrival sequence: its acknowledgement is reported to the
        watermark the sink was built with; None for records that do not count (heartbeats,
        checkpoints).

        Raises:
            RecordRefused: Kafka refuses this record for itself (too large): it goes to the DLQ.
            FatalProducerError: the producer cannot go on.
        """

    def poll(self) -> None:
        """Serve acknowledgements (and delivery failures) now.

        Raises:
            FatalProducerError: a delivery failed (the connector never skips a record) or the
                producer hit a fatal error.
        """


class Transactions(Protocol):
    """The Kafka transactions of the producer behind a :class:`RecordSink` (its ``transactional.id``).

    One transaction is open or committing at a time; nothing is produced while one commits.
    """

    def begin(self) -> None:
        """Begin a transaction (local: it never waits for Kafka).

        Raises:
            FatalProducerError: the producer cannot go on (fenced by a newer instance, for one).
        """

    def start_commit(self) -> None:
        """Start committing the open transaction; returns at once (the commit goes on elsewhere)."""

    def commit_finished(self) -> bool:
        """Whether the commit :meth:`start_commit` started has completed (True once, then it is over).

        Raises:
            FatalProducerError: the commit failed (fenced, a record failed, the transaction timed out).
        """


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a checkpoint holds: F, and the Drop Copy position confirmed with it.

    ``dropcopy_token`` is the resume token of the newest Drop Copy batch Kafka has acknowledged in
    full (empty: none yet), and ``dropcopy_time_ns`` the newest ``transact_time`` among the
    executions up to it: every Drop Copy execution before the token is in Kafka, so a resume by time
    (when the venue refuses the token) starts there.
    """

    frontier: Position | None
    dropcopy_token: bytes = b""
    dropcopy_time_ns: int | None = None


class CheckpointStore(Protocol):
    """The compacted checkpoint topic: the last checkpoint of this connector and subscription."""

    def read(self) -> Checkpoint | None:
        """The last checkpoint, or None when there is none.

        Raises:
            KafkaUnavailable: Kafka does not answer (retried).
            RuntimeFailure: the checkpoint cannot be read or decoded.
        """

    def record(self, checkpoint: Checkpoint, written_ns: int) -> OutRecord:
        """The checkpoint record, ready to publish."""


class RecentIdSeeder(Protocol):
    """Fills the recent-ID set from the executions topic."""

    def seed(self, recent_ids: RecentExecutionIds, since_ns: int | None) -> int:
        """Replace the set with the IDs of every execution record stamped at or after ``since_ns``.

        ``since_ns`` None means the newest records up to the set's capacity. Returns how many.

        Raises:
            KafkaUnavailable: Kafka does not answer (retried).
        """


@dataclass(frozen=True, slots=True)
class StartupStep:
    """Something that must succeed before the stream opens (topics, schema IDs), with its phase."""

    phase: str
    run: Callable[[], None]


# --------------------------------------------------------------------------------------- metrics


class Observer(Protocol):
    """What the engine tells the metrics; no effect on delivery."""

    def event_received(self, event_type: str, received_ns: int, sent_ns: int | None, count: int = 1) -> None:
        """Venue events of one type arrived (heartbeat, snapshot_order, execution, cancel_reject)."""

    def venue_heartbeat(self, sent_ns: int | None) -> None:
        """A venue heartbeat arrived."""

    def duplicate_dropped(self) -> None:
        """An execution already published was dropped."""

    def dead_lettered(self, event_type: str, reason: str) -> None:
        """An event went to the dead-letter topic."""

    def stream_connected(self, connected: bool) -> None:
        """The stream opened or closed."""

    def reconnect(self, reason: str) -> None:
        """A stream ended and will be reopened (reason: eof, unavailable, stall, ...)."""

    def stream_stalled(self) -> None:
        """The heartbeat watchdog cancelled a silent stream."""

    def backfill_request(self, result: str) -> None:
        """A search request ended: ok, throttled (429) or error."""

    def backfill_executions(self, count: int) -> None:
        """Executions found by a backfill (in the subscription)."""

    def holdback_overflow(self) -> None:
        """A backfill outlasted the hold-back bound: live updates flow beside it."""

    def gap_detected(self, reason: str) -> None:
        """A GapDetected record was published."""

    def frontier(self, venue_time_ns: int | None) -> None:
        """The completeness frontier F moved (or was first known)."""

    def in_flight(self, records: int) -> None:
        """Records produced and not yet acknowledged."""


class DropCopyObserver(Protocol):
    """What the Drop Copy feed tells the metrics; no effect on delivery."""

    def connected(self, connected: bool) -> None:
        """The Drop Copy stream opened (its first response came) or closed."""

    def reconnect(self, reason: str) -> None:
        """The stream ended and will be reopened (reason: eof, unavailable, stall, ...)."""

    def executions(self, count: int) -> None:
        """Drop Copy executions arrived (before deduplication)."""

    def resume_refused(self, resume: str) -> None:
        """The venue refused where the stream asked to start (``token`` or ``time``)."""

    def token_confirmed(self) -> None:
        """A newer resume token's batch is acknowledged (the next checkpoint holds it)."""
