"""The Drop Copy feed: the venue's firm-wide, resumable execution stream as a source (venue-api.md §6).

Drop Copy (``DropCopyAPI.CreateDropCopySubscription``) sends the firm's executions in batches, each
with a ``resume_token``; a stream opened with a token replays from just after it, at least once.
There is no heartbeat and no snapshot. The feed runs in the service's one thread, beside the order
stream or alone:

- each batch's executions become ExecutionEvent records (source ``DROP_COPY``) through the service's
  ``emit``, so they are deduplicated by execution ID against the order stream: one record per ID;
- a batch's token is *confirmed* only once Kafka has acknowledged every arrival up to the batch's
  last record (its barrier; in ``exactly_once`` mode, once that is committed). The checkpoint holds
  the newest confirmed token and the newest ``transact_time`` up to it;
- a (re)connect resumes from the confirmed token: no REST. A token the venue refuses (the call ends
  before its first response with one of :data:`RESUME_REFUSALS`; the venue documents that tokens
  expire, not the status it answers with) is forgotten, and the stream replays by ``resume_time``:
  the newest ``transact_time`` published (after a restart, the checkpoint's) minus the backfill
  margin. A time refused too opens the stream live, after a GapDetected record (reason
  ``dropcopy_resume_refused``) from that time to just after the stream opens; the gap's end is then
  the position, and every further live open before a stream answers declares its window too;
- reconnects follow the order stream's failure matrix: full-jitter backoff, a fresh token at once
  (once) after UNAUTHENTICATED, up to 5 minutes after RESOURCE_EXHAUSTED, PERMISSION_DENIED fatal
  (the token lacks ``read:dropcopy``). A stream silent for ``heartbeat_timeout_s`` is reopened from
  the confirmed token: with no heartbeat, a stalled stream and a firm without executions look
  alike, and a reopen costs one call and the replay of what is not confirmed yet.

What F means (DESIGN.md §4). With the order stream as a source, F is the order stream's: Drop Copy
records carry no proof time, and only add what the order stream does not carry (other users'
executions) or carries later. With Drop Copy alone, F follows it: the start's recovery completes
with the first response (the venue accepted the resume) or, after a refused time, with the gap
record; from then on F is the watermark, because Drop Copy executions prove their
``transact_time`` (the venue sends the firm's executions in its order) and every reconnect
continues the same sequence (from a position at or before the newest published, or after a
declared gap), so no reconnect has to hold F back.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from connector.core.backfill_plan import Gap, GapReason, Window
from connector.core.mapping import Source
from connector.core.records import OutRecord
from connector.core.transcoder import TranscodeError
from connector.core.venue_time import iso_from_ns, seconds_to_ns
from connector.core.watermark import Position, Watermark
from connector.engine.pipeline import VenueDecoder
from connector.engine.ports import (
    Checkpoint,
    Clock,
    Disposition,
    DropCopyObserver,
    DropCopyOpener,
    DropCopyResume,
    StreamEnd,
    VenueStream,
)
from connector.engine.reconnect import ReconnectPolicy, reconnect_reason
from connector.engine.status import DropCopyStatus
from connector.errors import StreamRefused, TokenEndpointUnavailable

_LOG: Final = logging.getLogger(__name__)

RESUME_REFUSALS: Final = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "OUT_OF_RANGE"})
"""The statuses that refuse a resume position when they end a call before its first response."""
MAX_BATCHES_PER_STEP: Final = 64


class DropCopyHost(Protocol):
    """What the feed needs from the service: publishing, gaps, and (Drop Copy alone) the frontier."""

    @property
    def backlogged(self) -> bool:
        """Whether records wait for the producer (then nothing is read)."""

    def emit(self, record: OutRecord, *, relaxed: bool = False) -> None:
        """Deduplicate, number and publish one record."""

    def declare_gap(self, gap: Gap) -> None:
        """Publish a GapDetected record."""

    def begin_recovery(self) -> None:
        """A new stream: F stays where it is until its recovery completes."""

    def recovered(self, barrier: int, proven_ns: int | None) -> None:
        """The recovery is published through arrival ``barrier`` (F moves once it is acknowledged)."""

    @property
    def frontier(self) -> Position | None:
        """F now."""


@dataclass(frozen=True, slots=True)
class DropCopyPorts:
    """What the composition root gives the service when Drop Copy is a source."""

    open_stream: DropCopyOpener
    observer: DropCopyObserver


class DropCopyFeed:
    """One Drop Copy subscription: its stream, its reconnects, and the confirmed resume token."""

    def __init__(
        self,
        *,
        host: DropCopyHost,
        open_stream: DropCopyOpener,
        decoder: VenueDecoder,
        watermark: Watermark,
        clock: Clock,
        observer: DropCopyObserver,
        status: DropCopyStatus,
        checkpoint: Checkpoint | None,
        start_ns: int | None,
        margin_s: float,
        after_s: float,
        silence_s: float,
        owns_frontier: bool,
        invalidate_token: Callable[[], None],
        rng: random.Random | None = None,
    ) -> None:
        """Resume from ``checkpoint``'s token (else its time, F, or ``start_ns``, each less ``margin_s``).

        ``owns_frontier``: Drop Copy is the only source, so its streams are F's recoveries and its
        executions prove their ``transact_time``; else its records prove nothing.
        """
        self._host = host
        self._open_stream = open_stream
        self._decoder = decoder
        self._watermark = watermark
        self._clock = clock
        self._observer = observer
        self._status = status
        self._margin_ns = seconds_to_ns(margin_s)
        self._after_ns = seconds_to_ns(after_s)
        self._silence_s = silence_s
        self._owns_frontier = owns_frontier
        self._reconnects = ReconnectPolicy(invalidate_token, rng)
        self._confirmed_token = checkpoint.dropcopy_token if checkpoint is not None else b""
        time_ns = checkpoint.dropcopy_time_ns if checkpoint is not None else None
        if time_ns is None and checkpoint is not None and checkpoint.frontier is not None:
            time_ns = checkpoint.frontier.venue_time_ns  # Drop Copy added to a running connector: from F
        self._confirmed_time_ns = time_ns if time_ns is not None else start_ns
        self._pending: deque[tuple[int, bytes, int | None]] = deque()  # (barrier, token, newest time)
        self._newest_time_ns = self._confirmed_time_ns  # of every batch taken so far
        self._stream: VenueStream | None = None
        self._resume = DropCopyResume()
        self._answered = False  # the current stream sent its first response
        self._recovered = False  # Drop Copy alone: the start's recovery is complete (F follows W)
        self._reconnect_at = clock.monotonic()
        self._opened_at = self._reconnect_at
        self._last_item_at = self._reconnect_at
        self._gap_end_ns: int | None = None  # a refused resume's gap: F may pass it once live
        # After a gap, what is published live may be followed by older executions of its orders: the
        # order stream's backfill (beside it, until F passes the gap's end), or a later resume from
        # before the gap (a restart from an older checkpoint, once the venue replays again).
        self._relaxed_until_ns: int | None = None
        self._refused: set[str] = set()  # what the venue refused since the last answered stream
        self._status.confirmed_token = bool(self._confirmed_token)
        self._status.position = iso_from_ns(self._confirmed_time_ns)

    @property
    def confirmed(self) -> tuple[bytes, int | None]:
        """The newest confirmed resume token and the newest ``transact_time`` up to it (the checkpoint's)."""
        self._confirm()
        return self._confirmed_token, self._confirmed_time_ns

    def step(self, now: float) -> float:
        """Open, read and confirm what can be now; return when to look again (monotonic seconds).

        Raises:
            StreamRefused: the venue refused the subscription for good (scope, filter).
        """
        self._confirm()
        if self._stream is None and now >= self._reconnect_at:
            self._open(now)
        stream = self._stream
        if stream is None:
            return self._reconnect_at
        if self._read(stream, now):
            return now  # more may be waiting
        if self._stream is None:
            return self._reconnect_at  # it ended
        if now >= self._last_item_at + self._silence_s:
            _LOG.info("drop copy: no batch for %.0f s: reopening from the confirmed token", self._silence_s)
            stream.cancel()
            self._end(
                StreamEnd("STALL", "no batch within venue.heartbeat_timeout_s", Disposition.RECONNECT), now
            )
            return self._reconnect_at
        return self._last_item_at + self._silence_s

    def _read(self, stream: VenueStream, now: float) -> bool:
        """Take what the stream has (up to a step's share); whether more may be waiting."""
        for _ in range(MAX_BATCHES_PER_STEP):
            if self._host.backlogged:
                self._last_item_at = now  # not reading is not silence: the watchdog waits
                return False  # the producer is full: the stream pushes back on the venue
            item = stream.take()
            if item is None:
                return False
            self._last_item_at = now
            if isinstance(item, StreamEnd):
                self._end(item, now)
                return False
            self._on_response(item, now)
            if self._stream is not stream:
                return False
        return True

    def cancel(self) -> None:
        """End the stream (the service stops)."""
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None
        self._set_connected(False)

    # ----------------------------------------------------------------------------- the stream

    def _open(self, now: float) -> None:
        resume = self._next_resume()
        if resume.mode == "live":
            if self._newest_time_ns is None:
                self._newest_time_ns = self._clock.time_ns()  # nothing promised before: from here on
            elif "time" in self._refused:
                self._declare_unreplayable()
        try:
            self._stream = self._open_stream(resume)
        except TokenEndpointUnavailable as exc:
            delay = self._reconnects.next_delay()
            self._status.last_error = f"{exc} (retrying in {delay:.1f} s)"
            self._reconnect_at = now + delay
            return
        self._resume = resume
        self._status.resume = resume.mode
        self._answered = False
        self._opened_at = self._last_item_at = now
        self._set_connected(True)
        if self._owns_frontier and not self._recovered:
            self._host.begin_recovery()
        _LOG.info("drop copy stream opened (%s)", self._describe(resume))

    def _next_resume(self) -> DropCopyResume:
        """From the confirmed token; else (refused, or none) by time; else (refused too) live.

        The time is the newest ``transact_time`` published (less the margin): within one process a
        published record is delivered or the process stops, so nothing before it needs replaying;
        at start it is the checkpoint's (``dropcopy_time``).
        """
        if self._confirmed_token and "token" not in self._refused:
            return DropCopyResume(token=self._confirmed_token)
        if self._newest_time_ns is not None and "time" not in self._refused:
            return DropCopyResume(time_ns=self._newest_time_ns - self._margin_ns)
        return DropCopyResume()

    def _describe(self, resume: DropCopyResume) -> str:
        if resume.mode == "token":
            return "resuming from the confirmed token"
        if resume.time_ns is not None:
            return f"replaying from {iso_from_ns(resume.time_ns)}"
        return "live"

    def _on_response(self, data: bytes, now: float) -> None:
        received_ns = self._clock.time_ns()
        try:
            batch = self._decoder.dropcopy_batch(data, received_ns)
        except TranscodeError as exc:  # not a response: kept in the DLQ, and re-read from the token
            self._host.emit(self._decoder.unreadable(data, exc, received_ns, Source.DROP_COPY))
            self._stream_failed(
                StreamEnd("INTERNAL", f"an unreadable drop copy response: {exc}", Disposition.RECONNECT), now
            )
            return
        if not self._answered:
            self._answered = True
            self._refused.clear()
            self._reconnects.answered()
            if self._owns_frontier and not self._recovered:  # once all before this batch is acknowledged
                self._host.recovered(self._watermark.last_sequence, self._gap_end_ns)
                self._recovered = True
            self._gap_end_ns = None
        self._observer.executions(batch.executions)
        self._status.batches += 1
        emit = self._host.emit
        newest = self._newest_time_ns
        relaxed = self._relaxed()
        for record in batch.records:
            time_ns = record.timestamp_ns
            if record.topic == self._decoder.executions_topic and time_ns is not None:
                newest = time_ns if newest is None or time_ns > newest else newest
            emit(record if self._owns_frontier else record._replace(proof_ns=None), relaxed=relaxed)
        self._newest_time_ns = newest
        if batch.resume_token:
            self._pending.append((self._watermark.last_sequence, batch.resume_token, newest))

    def _relaxed(self) -> bool:
        """Whether this batch's records may overtake the order stream's backfill (``ordering: relaxed``)."""
        until = self._relaxed_until_ns
        if until is None:
            return False
        frontier = self._host.frontier
        if self._owns_frontier:
            passed = self._confirmed_time_ns
        else:
            passed = frontier.venue_time_ns if frontier is not None else None
        if passed is not None and passed >= until:
            self._relaxed_until_ns = None
            return False
        return True

    def _confirm(self) -> None:
        """Confirm the tokens whose batches Kafka has acknowledged."""
        pending = self._pending
        confirmed = False
        while pending and self._watermark.acknowledged_through(pending[0][0]):
            _, self._confirmed_token, self._confirmed_time_ns = pending.popleft()  # a gap's: no token
            confirmed = True
        if confirmed:
            self._observer.token_confirmed()
            self._status.confirmed_token = bool(self._confirmed_token)
            self._status.confirmed_token_at = iso_from_ns(self._clock.time_ns())
            self._status.position = iso_from_ns(self._confirmed_time_ns)

    def _stream_failed(self, ended: StreamEnd, now: float) -> None:
        if self._stream is not None:
            self._stream.cancel()
        self._end(ended, now)

    def _end(self, ended: StreamEnd, now: float) -> None:
        """The stream ended (its published batches stay pending: they confirm once acknowledged)."""
        answered = self._answered
        self._stream = None
        self._set_connected(False)
        self._status.reconnects += 1
        self._status.last_error = f"drop copy stream ended: {ended.status}: {ended.details}"
        (_LOG.info if ended.status == "STALL" else _LOG.warning)("%s", self._status.last_error)  # quiet firm
        mode = self._resume.mode
        if not answered and ended.status in RESUME_REFUSALS and mode != "live":
            self._resume_refused(mode, ended, now)
            return
        if ended.disposition is Disposition.FATAL or ended.status in RESUME_REFUSALS:
            msg = f"the venue refused the drop copy subscription: {ended.status}: {ended.details}"
            if ended.status == "PERMISSION_DENIED":
                msg += " (the client needs the read:dropcopy scope)"
            raise StreamRefused(msg)
        self._observer.reconnect(reconnect_reason(ended))
        self._reconnect_at = now + self._reconnects.after(ended, now - self._opened_at)

    def _resume_refused(self, mode: str, ended: StreamEnd, now: float) -> None:
        """The venue refused the token (forget it: replay by time) or the time (go live, after a gap)."""
        self._observer.resume_refused(mode)
        self._status.refusals += 1
        self._refused.add(mode)
        self._reconnect_at = now  # at once: a refusal is an answer, not an outage
        if mode == "token":
            self._confirmed_token = b""  # dead: the checkpoint no longer offers it
            self._status.confirmed_token = False
            _LOG.warning(
                "drop copy: the venue refused the resume token (%s): replaying by time", ended.status
            )
        else:
            self._refused.add("token")
            _LOG.error("drop copy: the venue refused the resume time (%s): going live", ended.status)

    def _declare_unreplayable(self) -> None:
        """Before a live stream that follows a position: what it cannot replay is a gap.

        The window runs from the newest execution published (less the margin) to a moment after
        the stream opens; once its record is acknowledged, the gap's end is the position.
        """
        assert self._newest_time_ns is not None  # noqa: S101 - only called with a position
        start_ns = self._newest_time_ns - self._margin_ns
        end_ns = self._clock.time_ns() + self._after_ns
        self._host.declare_gap(
            Gap(
                GapReason.DROPCOPY_RESUME_REFUSED,
                Window(start_ns, end_ns),
                "the venue refused to replay Drop Copy from the resume token and from the resume time: "
                "the firm's executions of the window cannot be replayed; the stream goes live",
            )
        )
        self._gap_end_ns = end_ns
        self._relaxed_until_ns = end_ns
        self._newest_time_ns = end_ns
        self._pending.append((self._watermark.last_sequence, b"", end_ns))  # the gap record's barrier

    def _set_connected(self, connected: bool) -> None:
        if self._status.connected != connected:
            self._status.connected = connected
            self._observer.connected(connected)
