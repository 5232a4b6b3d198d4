"""The service: keep one venue stream open and its events flowing into Kafka, until told to stop.

Everything happens in :meth:`ConnectorService.step`, on one thread, against the ports of
:mod:`connector.engine.ports` and an injectable clock, so a simulation test drives the real engine
on a virtual clock exactly as :meth:`ConnectorService.run` drives it in production. ``step`` never
blocks: it does what can be done now and returns how long it may sleep (the production driver
sleeps on a doorbell that the stream reader, the search thread and the signal handler ring).

Lifecycle:

1. **start-up**: the start-up steps (topics, schema IDs), then the last checkpoint and the
   recent-ID seed (every execution ID the executions topic holds from the resume point minus the
   backfill margin on). Kafka or the registry down: retried with backoff, not ready, the reason in
   ``/status``; never a crash loop.
2. **streams**, each with a :class:`~connector.engine.recovery.RecoverySession`. Reconnects follow
   the failure matrix: full-jitter backoff 1 s → 30 s (reset after 60 s healthy), a fresh token at
   once after UNAUTHENTICATED (once), up to 5 minutes after RESOURCE_EXHAUSTED, one clear fatal line
   for PERMISSION_DENIED/INVALID_ARGUMENT.
   A stream silent for ``heartbeat_timeout_s`` while the connector reads is cancelled (a stall).
3. **stop** (SIGTERM/SIGINT): stop reading, wait for Kafka's acknowledgements up to
   ``flush_timeout_s``, write the checkpoint and a last ConnectorHeartbeat, exit 0.

Publishing: every record is deduplicated (executions), numbered in the watermark and handed to the
producer, through the *outbox* whenever records already wait there (the producer's queue was full,
or a record was refused); the outbox goes to the producer as fast as it takes it, in order. While
the producer is full the engine stops taking input (the reader then stops pulling: HTTP/2 flow
control pushes back on the venue) but keeps ticking: SIGTERM, ``/healthz`` and the timers stay alive.

A venue heartbeat proves nothing about the past: it is stamped when it is *sent*, and may jump
ahead of fills the venue still queues (behind a stall or backpressure), so it keeps the stream alive
and moves no frontier. F moves with acknowledged executions, and with each completed recovery's
REST window (DESIGN.md §4).
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from connector.core.backfill_plan import Gap, GapReason, RecoveryMargins
from connector.core.dedup import RecentExecutionIds
from connector.core.mapping import EventContext, Source
from connector.core.pacing import RequestPacer
from connector.core.records import (
    RELAXED_ORDERING,
    Headers,
    MessageKind,
    OutRecord,
    VenueMessage,
    base_headers,
    record_headers,
)
from connector.core.transcoder import TranscodeError
from connector.core.venue_time import iso_from_ns, seconds_to_ns
from connector.core.watermark import Position, Watermark
from connector.engine.backfill import BackfillTuning
from connector.engine.dropcopy import DropCopyFeed, DropCopyPorts
from connector.engine.frontier import Frontier
from connector.engine.pipeline import VenueDecoder, refused_dead_letter
from connector.engine.ports import (
    Checkpoint,
    CheckpointStore,
    Clock,
    Disposition,
    ExecutionSearch,
    Observer,
    RecentIdSeeder,
    RecordSink,
    StartupStep,
    StreamEnd,
    StreamOpener,
    VenueStream,
)
from connector.engine.reconnect import ReconnectPolicy, reconnect_reason
from connector.engine.recovery import HoldBackLimits, RecoverySession
from connector.engine.status import DropCopyStatus, Phase, ServiceStatus
from connector.errors import (
    FatalProducerError,
    LeadershipLost,
    RecordRefused,
    RuntimeFailure,
    StreamRefused,
    TokenEndpointUnavailable,
    TransientFailure,
)

_LOG: Final = logging.getLogger(__name__)

MAX_MESSAGES_PER_STEP: Final = 256
ACK_POLL_S: Final = 0.005  # while records are in flight, serve acknowledgements this often
MAX_IDLE_S: Final = 1.0
STATUS_REFRESH_S: Final = 0.25
PRODUCER_STALL_S: Final = 5.0
FINAL_FLUSH_S: Final = 5.0
SEED_SLACK_S: Final = 1.0
HEADER_CACHE_SIZE: Final = 64


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The engine's own settings (the composition root maps the configuration onto them)."""

    connector: str
    subscription: str
    executions_topic: str
    dlq_topic: str
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    checkpoint_interval_s: float
    flush_timeout_s: float
    start_from_ns: int | None
    margins: RecoveryMargins
    tuning: BackfillTuning
    holdback: HoldBackLimits
    requests_per_minute: int
    max_record_bytes: int
    ack_poll_s: float = ACK_POLL_S  # while records are in flight, serve acknowledgements this often
    dropcopy_resend_s: float = 0.0  # how far before a resume token Drop Copy may re-send (dedup seed)


class _Lifecycle(Enum):
    STARTING = "starting"  # start-up steps and reads, retried while Kafka is down
    RUNNING = "running"  # streams
    STOPPING = "stopping"  # waiting for Kafka to acknowledge what was published
    CLOSING = "closing"  # the final checkpoint and heartbeat are on their way
    FINISHED = "finished"


class ConnectorService:
    """Runs the stream -> records -> Kafka loop with recovery and reconnects, until stopped."""

    def __init__(
        self,
        *,
        settings: EngineSettings,
        clock: Clock,
        open_stream: StreamOpener | None,
        search: ExecutionSearch,
        sink: RecordSink,
        watermark: Watermark,
        checkpoints: CheckpointStore,
        seeder: RecentIdSeeder,
        startup: Sequence[StartupStep],
        make_decoder: Callable[[], VenueDecoder],
        recent_ids: RecentExecutionIds,
        observer: Observer,
        status: ServiceStatus,
        invalidate_token: Callable[[], None],
        rng: random.Random | None = None,
        leads: Callable[[], bool] = lambda: True,
        dropcopy: DropCopyPorts | None = None,
    ) -> None:
        """Wire the service (the composition root builds every collaborator; no I/O here).

        ``watermark`` is the one the sink reports acknowledgements to; ``make_decoder`` is called once
        the start-up steps succeeded (the registry's schema IDs frame the records). ``leads`` says
        whether this instance still leads (``connector.leader_election``); once it says no, the
        service stops reading at once and stops with :class:`~connector.errors.LeadershipLost`.
        ``open_stream`` None: the order stream is not a source (``venue.sources``); ``dropcopy``: Drop
        Copy is a source (:mod:`connector.engine.dropcopy`): how to open its stream, and its metrics.
        """
        self._leads = leads
        self._dropcopy_ports = dropcopy
        self._dropcopy: DropCopyFeed | None = None
        self._invalidate_token = invalidate_token
        self._rng = rng
        status.sources = [
            *(["order_stream"] if open_stream is not None else []),
            *(["drop_copy"] if dropcopy else []),
        ]
        status.drop_copy = DropCopyStatus() if dropcopy is not None else None
        self._settings = settings
        self._executions_topic = settings.executions_topic
        self._dlq_topic = settings.dlq_topic
        self._clock = clock
        self._open_stream = open_stream
        self._search = search
        self._sink = sink
        self._watermark = watermark
        self._checkpoints = checkpoints
        self._seeder = seeder
        self._startup = list(startup)
        self._make_decoder = make_decoder
        self._decoder: VenueDecoder | None = None
        self._recent_ids = recent_ids
        self._observer = observer
        self._status = status
        now = clock.monotonic()
        self._backoff = ReconnectPolicy(invalidate_token, rng)
        self._pacer = RequestPacer(settings.requests_per_minute, now)
        self._lifecycle = _Lifecycle.STARTING
        self._retry_at = now
        self._stop_requested = False
        self._fatal: RuntimeFailure | None = None
        self._frontier = Frontier(watermark, None)
        self._outbox: deque[tuple[OutRecord, Headers, int | None]] = deque()
        self._outbox_blocked_since: float | None = None
        self._headers: dict[tuple[str, str, str], Headers] = {}
        # the current stream
        self._stream: VenueStream | None = None
        self._session: RecoverySession | None = None
        self._session_id = ""
        self._stream_opened_at = now
        self._last_item_at = now
        self._reconnect_at = now
        # timers
        self._next_heartbeat_record = now
        self._next_checkpoint = now + settings.checkpoint_interval_s
        self._next_status = now
        self._stop_deadline = math.inf
        self._checkpoint_written = False
        self._queued_checkpoint: OutRecord | None = None  # waiting in the outbox behind a backlog
        self._last_venue_heartbeat_ns: int | None = None
        self._reported_frontier: int | None = None

    # ----------------------------------------------------------------------------- driving

    @property
    def finished(self) -> bool:
        """Whether the service has stopped (after :meth:`request_stop`, or a fatal error)."""
        return self._lifecycle is _Lifecycle.FINISHED

    @property
    def failure(self) -> RuntimeFailure | None:
        """The fatal condition the service stopped on, if it did."""
        return self._fatal

    @property
    def frontier(self) -> Position | None:
        """The completeness frontier F now."""
        return self._frontier.value()

    @property
    def in_flight(self) -> int:
        """Records published and not yet delivered (the outbox, the producer, an open transaction)."""
        return len(self._outbox) + self._sink.in_flight

    def request_stop(self) -> None:
        """Ask the service to stop (safe from a signal handler: it only sets a flag)."""
        self._stop_requested = True

    def run(self, wait: Callable[[float], None]) -> int:
        """Step until finished, sleeping with ``wait`` in between; return the exit code (0).

        Raises:
            RuntimeFailure: a fatal condition (refused credentials, subscription or search; a fatal
                producer error), after flushing what can be flushed.
        """
        while True:
            delay = self.step()
            if self.finished:
                break
            if delay > 0:
                wait(min(delay, MAX_IDLE_S))
        if self._fatal is not None:
            raise self._fatal
        return 0

    def step(self) -> float:
        """Do everything that can be done now; return how long the caller may wait before the next step.

        Raises:
            FatalProducerError: the producer cannot go on (nothing more can be delivered).
        """
        now = self._clock.monotonic()
        self._status.tick(now)
        if self._lifecycle is _Lifecycle.FINISHED:
            return math.inf
        self._sink.poll()
        self._drain_outbox(now)
        if self._lifecycle is _Lifecycle.STARTING:
            return self._start_up(now)
        if self._stop_requested and self._lifecycle is _Lifecycle.RUNNING:
            self._begin_stop(now)
        if self._lifecycle is _Lifecycle.STOPPING:
            return self._stopping(now)
        if self._lifecycle is _Lifecycle.CLOSING:
            return self._closing(now)
        try:
            wake = self._run_stream(now)
        except FatalProducerError:
            raise  # nothing more can be delivered (records are handed over in there too): as above
        except RuntimeFailure as exc:
            self._fatal = exc
            self._begin_stop(now)
            return 0.0
        wake = min(wake, self._timers(now))
        if self._outbox or self._sink.in_flight:
            wake = min(wake, now + self._settings.ack_poll_s)
        return max(0.0, min(wake, now + MAX_IDLE_S) - now)

    def _check_leadership(self) -> None:
        """Raise :class:`LeadershipLost` once this instance no longer leads."""
        if not self._leads():
            msg = (
                "this instance no longer leads (another instance with the same connector.name and "
                "subscription was elected, or this process was paused past the election's session "
                "timeout): it stops; the restart stands by"
            )
            raise LeadershipLost(msg)

    # ----------------------------------------------------------------------------- start-up

    def _start_up(self, now: float) -> float:
        if self._stop_requested:
            self._finish("stopped during start-up")
            return math.inf
        try:
            self._check_leadership()
        except LeadershipLost as exc:
            self._fatal = exc
            self._finish("lost the leadership during start-up")
            return math.inf
        if now < self._retry_at:
            return self._retry_at - now
        try:
            while self._startup:
                self._status.phase = self._startup[0].phase
                self._startup[0].run()
                self._startup.pop(0)
            self._decoder = self._decoder or self._make_decoder()
            self._status.phase = Phase.WAITING_FOR_KAFKA.value
            checkpoint = self._checkpoints.read()
            resume = self._resume_point(checkpoint)
            self._seeder.seed(self._recent_ids, self._seed_since(resume, checkpoint))
        except TransientFailure as exc:
            delay = self._backoff.next_delay()
            self._status.last_error = f"{exc} (retrying in {delay:.1f} s)"
            _LOG.warning("%s", self._status.last_error)
            self._retry_at = now + delay
            return delay
        if checkpoint is not None and checkpoint.frontier is not None:
            _LOG.info("resuming from the checkpoint at %s", iso_from_ns(checkpoint.frontier.venue_time_ns))
        elif resume is not None:
            _LOG.info(
                "no checkpoint: starting from connector.start_from %s", iso_from_ns(resume.venue_time_ns)
            )
        else:
            _LOG.info("no checkpoint: starting from now")
        self._frontier = Frontier(self._watermark, resume)
        if self._dropcopy_ports is not None:
            self._dropcopy = self._dropcopy_feed(self._dropcopy_ports, checkpoint, resume)
        self._status.last_error = None
        self._status.phase = Phase.CONNECTING.value
        self._backoff.reset()
        self._lifecycle = _Lifecycle.RUNNING
        self._reconnect_at = now
        self._next_heartbeat_record = now
        self._next_checkpoint = now + self._settings.checkpoint_interval_s
        self._report(now)
        return 0.0

    def _resume_point(self, checkpoint: Checkpoint | None) -> Position | None:
        """R: the checkpoint's F (else ``start_from``); with Drop Copy alone, at least its position.

        With Drop Copy the only source, every execution before the confirmed token is in Kafka (or
        in a declared gap), and F may lag that position (F moves with acknowledged proofs, the
        position with confirmed batches): a silent firm would otherwise keep F behind for good.
        (As for the watermark, an execution after the token sharing its ``transact_time`` would be
        claimed too: the venue's order is taken to be its time order.)
        """
        resume = (checkpoint.frontier if checkpoint is not None else None) or self._start_from()
        position_ns = checkpoint.dropcopy_time_ns if checkpoint is not None else None
        if self._open_stream is not None or position_ns is None:
            return resume
        if resume is None or position_ns > resume.venue_time_ns:
            resume = Position(position_ns, resume.last_execution_id if resume else "", "")
        return resume

    def _seed_since(self, resume: Position | None, checkpoint: Checkpoint | None) -> int | None:
        """From where the recent-ID set must cover what may come again (None: the newest records).

        A resume re-reads from its point less the backfill margin; Drop Copy replays from its
        confirmed token, which may be older than F when the order stream leads F, and the venue may
        re-send executions from before the token (``dropcopy_resend_s``).
        """
        times = [resume.venue_time_ns] if resume is not None else []
        if checkpoint is not None and checkpoint.dropcopy_time_ns is not None and self._dropcopy_ports:
            times.append(checkpoint.dropcopy_time_ns - seconds_to_ns(self._settings.dropcopy_resend_s))
        if not times:
            return None
        return min(times) - seconds_to_ns(self._settings.margins.before_s + SEED_SLACK_S)

    def _dropcopy_feed(
        self, ports: DropCopyPorts, checkpoint: Checkpoint | None, resume: Position | None
    ) -> DropCopyFeed:
        status = self._status.drop_copy
        assert status is not None  # noqa: S101 - set with the ports
        settings = self._settings
        return DropCopyFeed(
            host=self,
            open_stream=ports.open_stream,
            decoder=self.decoder,
            watermark=self._watermark,
            clock=self._clock,
            observer=ports.observer,
            status=status,
            checkpoint=checkpoint,
            start_ns=resume.venue_time_ns if resume is not None else None,
            margin_s=settings.margins.before_s,
            after_s=settings.margins.after_s,
            silence_s=settings.heartbeat_timeout_s,
            owns_frontier=self._open_stream is None,
            invalidate_token=self._invalidate_token,
            rng=self._rng,
        )

    def _start_from(self) -> Position | None:
        start = self._settings.start_from_ns
        return None if start is None else Position(start, "", "")

    # ----------------------------------------------------------------------------- the stream

    def _run_stream(self, now: float) -> float:
        self._check_leadership()  # before anything more is read (a thawed process stops here)
        wake = math.inf
        if self._dropcopy is not None:
            wake = self._dropcopy.step(now)
        if self._open_stream is None:
            return wake
        return min(wake, self._run_order_stream(now, self._open_stream))

    def _run_order_stream(self, now: float, open_stream: StreamOpener) -> float:
        if self._stream is None:
            if now < self._reconnect_at:
                self._status.phase = Phase.RECONNECTING.value
                return self._reconnect_at
            self._open(now, open_stream)
        stream = self._stream
        if stream is None:
            return self._reconnect_at
        wake = self._intake(stream, now)
        if self._stream is None:
            return self._reconnect_at  # it ended
        if self._outbox:
            self._last_item_at = now  # not reading is not silence: the watchdog waits
        elif now >= self._last_item_at + self._settings.heartbeat_timeout_s:
            _LOG.warning("no message for %.0f s: cancelling the stream", self._settings.heartbeat_timeout_s)
            self._observer.stream_stalled()
            stream.cancel()
            self._end_stream(StreamEnd("STALL", "heartbeat timeout", Disposition.RECONNECT), now)
            return self._reconnect_at
        wake = min(wake, self._last_item_at + self._settings.heartbeat_timeout_s)
        session = self._session
        if session is not None:
            session_wake = session.step(now, self._clock.time_ns())
            if session_wake is not None:
                wake = min(wake, session_wake)
        return wake

    def _intake(self, stream: VenueStream, now: float) -> float:
        """Take what the stream has, while the outbox is empty; return when to look again."""
        for _ in range(MAX_MESSAGES_PER_STEP):
            if self._outbox:
                self._drain_outbox(now)  # what the last response became
                if self._outbox:
                    return math.inf  # the producer is full: stop reading (the stream pushes back)
            item = stream.take()
            if item is None:
                return math.inf  # the doorbell rings when something comes
            self._last_item_at = now
            if isinstance(item, StreamEnd):
                self._end_stream(item, now)
                return math.inf
            self._on_response(item, now)
            if self._stream is not stream:
                return math.inf  # the response ended the stream
        return now  # more may be waiting: step again at once

    def _open(self, now: float, open_stream: StreamOpener) -> None:
        self._status.phase = Phase.CONNECTING.value
        try:
            self._stream = open_stream()
        except TokenEndpointUnavailable as exc:
            delay = self._backoff.next_delay()
            self._status.last_error = f"{exc} (retrying in {delay:.1f} s)"
            _LOG.warning("%s", self._status.last_error)
            self._reconnect_at = now + delay
            return
        self._stream_opened_at = now
        self._last_item_at = now
        self._session_id = ""
        self._new_session()

    def _new_session(self) -> None:
        self._frontier.begin_recovery()
        resume = self._frontier.resume
        self._session = RecoverySession(
            resume_ns=resume.venue_time_ns if resume is not None else None,
            margins=self._settings.margins,
            tuning=self._settings.tuning,
            limits=self._settings.holdback,
            search=self._search,
            pacer=self._pacer,
            output=_Output(self),
        )

    def _on_response(self, response: bytes, now: float) -> None:
        now_ns = self._clock.time_ns()
        try:
            message = self.decoder.response(response, now_ns)
        except TranscodeError as exc:
            # Not a response at all: kept in the DLQ, and the stream is dropped, so the recovery of
            # the next one re-reads whatever it carried from the venue's REST search.
            self.emit(self.decoder.unreadable(response, exc, now_ns))
            if self._stream is not None:
                self._stream.cancel()
            self._end_stream(
                StreamEnd("INTERNAL", f"an unreadable response: {exc}", Disposition.RECONNECT), now
            )
            return
        self._count(message)
        if not self._status.connected:
            self._set_connected(message.session_id)
        elif message.session_id != self._session_id:
            # Messages on one stream arrive in order (venue-api.md §2.3): a new session id on the
            # same open stream skips nothing, so it is recorded, not recovered from.
            _LOG.info("the venue session changed mid-stream: %s -> %s", self._session_id, message.session_id)
            self._session_id = message.session_id
            self._status.session_id = message.session_id
        if message.kind is MessageKind.HEARTBEAT:
            self._last_venue_heartbeat_ns = message.sent_ns
            self._status.last_venue_heartbeat = iso_from_ns(message.sent_ns)
        session = self._session
        assert session is not None  # noqa: S101 - a stream always has a session
        session.on_message(message, now, now_ns)

    def _count(self, message: VenueMessage) -> None:
        observer = self._observer
        kind = message.kind
        if kind is MessageKind.UPDATE:
            # one call per event type of the message (its events share its receive and send times)
            counts: dict[str, int] = {}
            for record in message.records:
                event_type = record.event_type
                counts[event_type] = counts.get(event_type, 0) + 1
            for event_type, count in counts.items():
                observer.event_received(event_type, message.received_ns, message.sent_ns, count)
        elif kind is MessageKind.HEARTBEAT:
            observer.event_received("heartbeat", message.received_ns, message.sent_ns)
            observer.venue_heartbeat(message.sent_ns)
        elif kind is MessageKind.SNAPSHOT:
            observer.event_received(
                "snapshot_order", message.received_ns, message.sent_ns, len(message.records)
            )

    def _set_connected(self, session_id: str) -> None:
        self._status.connected = True
        self._status.session_id = session_id
        self._status.phase = Phase.RECOVERING.value
        self._session_id = session_id
        self._backoff.answered()
        self._observer.stream_connected(True)
        _LOG.info("order stream connected (session %s)", session_id)

    def _end_stream(self, ended: StreamEnd, now: float) -> None:
        if self._session is not None:
            self._session.abandon()
        self._session = None
        self._stream = None
        if self._status.connected:
            self._observer.stream_connected(False)
        self._status.connected = False
        self._status.last_error = str(ended)
        self._status.reconnects += 1
        self._observer.reconnect(reconnect_reason(ended))
        _LOG.warning("%s", ended)
        if ended.disposition is Disposition.FATAL:
            msg = f"the venue refused the subscription: {ended.status}: {ended.details}"
            raise StreamRefused(msg)
        delay = self._backoff.after(ended, now - self._stream_opened_at)
        self._reconnect_at = now + delay
        if delay > 0:
            _LOG.info("reconnecting in %.1f s", delay)

    # ----------------------------------------------------------------------------- publishing

    @property
    def backlogged(self) -> bool:
        """Whether records wait for the producer (then no stream is read: the venue is pushed back)."""
        return bool(self._outbox)

    def emit(self, record: OutRecord, *, relaxed: bool = False) -> None:
        """Deduplicate, number and publish one record (behind any the outbox holds: in order)."""
        execution_id = record.execution_id
        topic = record.topic
        if execution_id and topic == self._executions_topic:
            if not self._recent_ids.add(execution_id):
                self._observer.duplicate_dropped()
                if record.proof_ns is not None:
                    # Its copy is published already (Drop Copy's, a backfill's): what this one proves
                    # still holds, once everything that arrived before it is acknowledged.
                    watermark = self._watermark
                    watermark.acknowledge(watermark.arrive(record.proof_ns, execution_id, record.session_id))
                return
        elif topic == self._dlq_topic:
            self._observer.dead_lettered(record.event_type, _error_type(record))
        sequence = self._watermark.arrive(record.proof_ns, execution_id, record.session_id)
        headers = self._headers_for(record, relaxed)
        outbox = self._outbox
        if not outbox:  # nothing waits: straight to the producer
            try:
                if self._sink.try_publish(record, headers, sequence):
                    return
            except RecordRefused:
                pass  # the outbox's hand-over puts the record's dead letter in its place
        outbox.append((record, headers, sequence))

    def _headers_for(self, record: OutRecord, relaxed: bool) -> Headers:
        key = (record.event_type, record.source, record.session_id)
        base = self._headers.get(key)
        if base is None:
            if len(self._headers) > HEADER_CACHE_SIZE:
                self._headers.clear()  # sessions come and go
            base = self._headers[key] = base_headers(record, self._settings.connector)
        return record_headers(base, record, relaxed=relaxed)

    def _drain_outbox(self, now: float) -> None:
        outbox = self._outbox
        sink = self._sink
        while outbox:
            record, headers, sequence = outbox[0]
            try:
                if not sink.try_publish(record, headers, sequence):
                    break
            except RecordRefused as exc:
                letter = self._refused(record, exc)
                relaxed = RELAXED_ORDERING in headers
                outbox[0] = (letter, self._headers_for(letter, relaxed), sequence)
                continue
            outbox.popleft()
            if record is self._queued_checkpoint:
                self._queued_checkpoint = None
        if outbox:
            if self._outbox_blocked_since is None:
                self._outbox_blocked_since = now
            elif now - self._outbox_blocked_since >= PRODUCER_STALL_S and self._status.producer_healthy:
                self._status.producer_healthy = False
                self._status.last_error = (
                    "Kafka is not taking records: the producer's queue has been full for "
                    f"{PRODUCER_STALL_S:.0f} s (the venue stream is paused)"
                )
                _LOG.warning("%s", self._status.last_error)
        elif self._outbox_blocked_since is not None:
            self._outbox_blocked_since = None
            if not self._status.producer_healthy:
                self._status.producer_healthy = True
                _LOG.info("Kafka is taking records again")

    def _refused(self, record: OutRecord, error: RecordRefused) -> OutRecord:
        """The dead letter that takes a refused record's place (and its arrival sequence)."""
        _LOG.error("%s (key %r, execution_id=%r): sent to the DLQ", error, record.key, record.execution_id)
        self._observer.dead_lettered(record.event_type, type(error).__name__)
        return refused_dead_letter(record, error, self._settings.dlq_topic, self._settings.max_record_bytes)

    # ----------------------------------------------------------------------------- timers

    def _timers(self, now: float) -> float:
        if now >= self._next_heartbeat_record:
            self._next_heartbeat_record = now + self._settings.heartbeat_interval_s
            self._publish_own(self._heartbeat_record())
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + self._settings.checkpoint_interval_s
            self._write_checkpoint()
        if now >= self._next_status:
            self._next_status = now + STATUS_REFRESH_S
            self._report(now)
        return min(self._next_heartbeat_record, self._next_checkpoint, self._next_status)

    def _publish_own(self, record: OutRecord | None) -> bool:
        """Publish one of the connector's own records now, unless Kafka is backed up (then skip it)."""
        if record is None or self._outbox:
            return False
        return self._hand_over_own(record) is True

    def _hand_over_own(self, record: OutRecord) -> bool | None:
        """True: handed over; False: the producer is full; None: refused (logged; never retried)."""
        try:
            return self._sink.try_publish(record, self._headers_for(record, relaxed=False), None)
        except RecordRefused:
            _LOG.exception("the connector's own %s record was refused", record.event_type)
            return None

    def _write_checkpoint(self) -> bool:
        """Hand the checkpoint (F now) to Kafka ahead of any backlog (or first, once there is room).

        If the producer is full, it waits at the head of the outbox (one at most). A checkpoint
        skipped while records wait for room would never be written under sustained backpressure,
        and a crash would then resume from an old checkpoint or none at all. F only covers
        acknowledged records, so the checkpoint is true in any order with the data records.
        """
        frontier = self._frontier.value()
        token, token_time_ns = self._dropcopy.confirmed if self._dropcopy is not None else (b"", None)
        if (frontier is None and not token) or self._queued_checkpoint is not None:
            return False
        checkpoint = Checkpoint(frontier, token, token_time_ns)
        record = self._checkpoints.record(checkpoint, self._clock.time_ns())
        handed_over = self._hand_over_own(record)
        if handed_over is not False:
            return bool(handed_over)
        self._queued_checkpoint = record
        self._outbox.appendleft((record, self._headers_for(record, relaxed=False), None))
        return False

    def _heartbeat_record(self) -> OutRecord:
        frontier = self._frontier.value()
        fields = {
            "instance": self._status.instance,
            "phase": self._status.phase,
            "session_id": self._status.session_id,
            "last_venue_heartbeat_time": self._last_venue_heartbeat_ns,
            "watermark": frontier.venue_time_ns if frontier is not None else None,
        }
        return self.decoder.connector_heartbeat(fields, self._clock.time_ns())

    def _report(self, now: float) -> None:
        del now
        frontier = self._frontier.value()
        frontier_ns = frontier.venue_time_ns if frontier is not None else None
        if frontier_ns != self._reported_frontier:
            self._reported_frontier = frontier_ns
            self._observer.frontier(frontier_ns)
            self._status.completeness_frontier = iso_from_ns(frontier_ns)
        self._observer.in_flight(self._sink.in_flight + len(self._outbox))
        session = self._session
        self._status.recovery = session.describe() if session is not None and not session.complete else None

    # ----------------------------------------------------------------------------- gaps

    def declare_gap(self, gap: Gap) -> None:
        """Publish a GapDetected record (at least once: F cannot pass it before it is acknowledged)."""
        log = _LOG.info if gap.reason is GapReason.CANCEL_REJECTS_UNRECOVERABLE else _LOG.error
        log(
            "gap detected (%s) [%s, %s]: %s",
            gap.reason.value,
            iso_from_ns(gap.window.start_ns),
            iso_from_ns(gap.window.end_ns),
            gap.detail,
        )
        self._observer.gap_detected(gap.reason.value)
        self._status.gaps_detected += 1
        self._status.last_gap = {
            "reason": gap.reason.value,
            "window_start": iso_from_ns(gap.window.start_ns),
            "window_end": iso_from_ns(gap.window.end_ns),
            "detail": gap.detail,
        }
        self.emit(self.decoder.gap_detected(gap, self._session_id, self._clock.time_ns()))

    def overflowed(self) -> None:
        """A session's backfill outlasted the hold-back bound."""
        self._observer.holdback_overflow()
        self._status.holdback_overflows += 1

    def begin_recovery(self) -> None:
        """Drop Copy alone, its start's stream opened: F waits for the stream's first batch."""
        self._frontier.begin_recovery()
        self._status.phase = Phase.RECOVERING.value

    def recovered(self, barrier: int, proven_ns: int | None) -> None:
        """The current session published its recovery; F moves on once ``barrier`` is acknowledged."""
        self._frontier.recovery_published(barrier, proven_ns)
        self._status.phase = Phase.STREAMING.value

    def backfilled_through(self, barrier: int, proven_ns: int) -> None:
        """A backfill slice is published: F may reach its end once ``barrier`` is acknowledged."""
        self._frontier.proven(barrier, proven_ns)

    def backfill_context(self) -> EventContext:
        """The context of executions a backfill found now."""
        return EventContext(
            Source.BACKFILL, self._session_id, None, self._clock.time_ns(), self._settings.connector
        )

    @property
    def decoder(self) -> VenueDecoder:
        """The decoder (built once the start-up steps succeeded)."""
        assert self._decoder is not None  # noqa: S101 - nothing decodes before start-up
        return self._decoder

    @property
    def watermark(self) -> Watermark:
        """The watermark (the recovery output numbers venue heartbeats in it)."""
        return self._watermark

    @property
    def observer(self) -> Observer:
        """The metrics."""
        return self._observer

    # ----------------------------------------------------------------------------- stop

    def _begin_stop(self, now: float) -> None:
        self._lifecycle = _Lifecycle.STOPPING
        self._status.phase = Phase.STOPPING.value
        self._stop_deadline = now + self._settings.flush_timeout_s
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None
        if self._dropcopy is not None:
            self._dropcopy.cancel()
        if self._session is not None:
            self._session.abandon()
            self._session = None
        if self._status.connected:
            self._observer.stream_connected(False)
        self._status.connected = False

    def _stopping(self, now: float) -> float:
        pending = len(self._outbox) + self._sink.in_flight
        if pending and now < self._stop_deadline:
            return self._settings.ack_poll_s
        if pending:
            _LOG.error(
                "%d records were not acknowledged within connector.flush_timeout_s (%.0f s): no final "
                "checkpoint; the next start recovers from the last one",
                pending,
                self._settings.flush_timeout_s,
            )
            self._finish("stopped with unacknowledged records")
            return math.inf
        # Everything is acknowledged: the checkpoint, then a last heartbeat record that tells
        # consumers the connector stopped on purpose, and where.
        self._status.phase = Phase.STOPPED.value
        self._checkpoint_written = self._write_checkpoint()
        self._publish_own(self._heartbeat_record())
        self._lifecycle = _Lifecycle.CLOSING
        self._stop_deadline = now + FINAL_FLUSH_S
        return 0.0

    def _closing(self, now: float) -> float:
        if self._sink.in_flight and now < self._stop_deadline:
            return self._settings.ack_poll_s
        if self._sink.in_flight:
            _LOG.error("the final checkpoint was not acknowledged within %.0f s", FINAL_FLUSH_S)
        elif self._checkpoint_written:
            _LOG.info("all records acknowledged, checkpoint written; stopping")
        else:
            _LOG.info("all records acknowledged (nothing to checkpoint yet); stopping")
        self._finish("stopped")
        return math.inf

    def _finish(self, why: str) -> None:
        _LOG.debug("service finished: %s", why)
        self._report(self._clock.monotonic())
        self._status.phase = Phase.STOPPED.value
        self._lifecycle = _Lifecycle.FINISHED


class _Output:
    """The recovery session's side of the service: publish live, backfilled and gap records."""

    __slots__ = ("_service",)

    def __init__(self, service: ConnectorService) -> None:
        self._service = service

    def live(self, message: VenueMessage, *, relaxed: bool) -> None:
        emit = self._service.emit
        for record in message.records:
            emit(record, relaxed=relaxed)

    def backfilled(self, executions: Sequence[Any], *, relaxed: bool) -> None:
        service = self._service
        context = service.backfill_context()
        decode = service.decoder.execution
        for execution in executions:
            service.emit(decode(execution, context), relaxed=relaxed)
        service.observer.backfill_executions(len(executions))

    def gap(self, gap: Gap) -> None:
        self._service.declare_gap(gap)

    def last_sequence(self) -> int:
        return self._service.watermark.last_sequence

    def searched(self, result: str) -> None:
        self._service.observer.backfill_request(result)

    def overflowed(self) -> None:
        self._service.overflowed()

    def recovered(self, barrier: int, proven_ns: int | None) -> None:
        self._service.recovered(barrier, proven_ns)

    def backfilled_through(self, barrier: int, proven_ns: int) -> None:
        self._service.backfilled_through(barrier, proven_ns)


def _error_type(record: OutRecord) -> str:
    for name, value in record.extra_headers:
        if name == "error_type":
            return value.decode(errors="replace")
    return "unknown"
