"""The long-running service: keep one venue stream open and feed the pipeline, until told to stop.

Threads (DESIGN.md §2): a *reader* thread pulls responses from the gRPC stream into a bounded
queue; the *main* thread takes them off, maps, encodes and produces them, serves the producer's
delivery callbacks, emits the connector's own heartbeat records, and watches for a silent stream.
When the producer is full the main thread blocks, the queue fills, and the reader stops pulling
(HTTP/2 flow control then pushes back on the venue): memory stays bounded.

Reconnects follow the failure matrix: full-jitter exponential backoff from 1 s to 30 s (reset after
60 s healthy); a fresh token at once after UNAUTHENTICATED (once, then backoff); up to 5 minutes
after RESOURCE_EXHAUSTED; a clear fatal error for PERMISSION_DENIED / INVALID_ARGUMENT.

Every stream starts with the recovery sequence of DESIGN.md §4: publish the snapshot, plan the
backfill from the *resume point* (the checkpoint, then the watermark), declare what cannot be
recovered (GapDetected), hold live updates back while a :class:`~connector.engine.recovery.BackfillWorker`
searches the window, then release them. The resume point only moves forward once a stream's
recovery completed, so an interrupted backfill is searched again from the same point. Checkpoints
(the watermark, every few seconds and at shutdown) pause while live updates were released before a
backfill ended, since the watermark could then pass a hole.

A failed delivery freezes the watermark: the service drops the stream, waits for the producer to
drain, re-seeds the recent-ID set from the executions topic (which proves Kafka is back), restarts
the watermark and reconnects; the recovery sequence re-reads everything after the frozen point.

Shutdown (SIGTERM/SIGINT): stop reading, flush with a deadline, write the checkpoint, exit 0.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from connector import __version__
from connector.config import BackfillSettings
from connector.core.backfill_plan import Gap, GapReason, Window, plan_backfill
from connector.core.mapping import EventContext, Source
from connector.core.record_schemas import RecordType
from connector.core.watermark import DeliveryFailure, Watermark
from connector.engine.pipeline import Encoder, Pipeline
from connector.engine.recovery import (
    BackfillFailed,
    BackfillFinished,
    BackfillWorker,
    HoldBack,
    describe_window,
    gap_record,
)
from connector.errors import RuntimeFailure
from connector.kafka.publisher import FatalProducerError, Publisher
from connector.observability.http import ServiceStatus, iso_from_ns
from connector.observability.metrics import Metrics
from connector.venue.auth import TokenEndpointUnavailable
from connector.venue.stream import CancellableStream, Disposition, StreamEnded, read

_LOG: Final = logging.getLogger(__name__)

BACKOFF_BASE_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
BACKOFF_RESOURCE_EXHAUSTED_MAX_S: Final = 300.0
HEALTHY_RESET_S: Final = 60.0
QUEUE_CAPACITY: Final = 1024
LOOP_TICK_S: Final = 0.1
FINAL_HEARTBEAT_FLUSH_S: Final = 5.0


class StreamOpener(Protocol):
    """Opens a new venue stream (a fresh call with a current token)."""

    def __call__(self) -> CancellableStream:
        """Open the stream."""


class BackfillStarter(Protocol):
    """Starts a backfill of one window (the composition root binds the REST search and pacer)."""

    def __call__(self, window: Window) -> BackfillWorker:
        """Start searching the window."""


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """The service loop's own settings."""

    connector: str
    subscription: str
    heartbeat_topic: str
    checkpoint_topic: str
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    checkpoint_interval_s: float = 5.0
    flush_timeout_s: float = 20.0
    backfill: BackfillSettings = field(default_factory=BackfillSettings)

    @property
    def checkpoint_key(self) -> bytes:
        """The checkpoint's key: connector name and subscription filter."""
        return f"{self.connector}|{self.subscription}".encode()


@dataclass(slots=True)
class _Session:
    """One stream's recovery state (main thread only)."""

    hold_back: HoldBack
    stream_start_ns: int | None = None  # venue time of its first message
    backfill: BackfillWorker | None = None
    recovered: bool = False  # the backfill (if any) finished or was declared a gap
    overflowed: bool = False  # live updates were released before the backfill finished


class FullJitterBackoff:
    """Full-jitter exponential backoff: a random wait in [0, min(cap, base * 2^attempt)]."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        """Start at attempt 0."""
        self._base_s = base_s
        self._cap_s = cap_s
        self._attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def next_delay(self, cap_s: float | None = None) -> float:
        """The next wait; each call doubles the bound up to the cap."""
        bound = min(cap_s or self._cap_s, self._base_s * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 30)
        return self._rng.uniform(0, bound)

    def reset(self) -> None:
        """Back to the first attempt (after a healthy stream)."""
        self._attempt = 0


_END = object()


class ConnectorService:
    """Runs the stream -> pipeline -> Kafka loop with reconnects, until stopped."""

    def __init__(
        self,
        *,
        settings: ServiceSettings,
        open_stream: StreamOpener,
        pipeline: Pipeline,
        publisher: Publisher,
        watermark: Watermark,
        metrics: Metrics,
        status: ServiceStatus,
        encoders: Mapping[RecordType, Encoder],
        invalidate_token: Callable[[], None],
        start_backfill: BackfillStarter,
        reseed_recent_ids: Callable[[], None],
        resume_ns: int | None,
    ) -> None:
        """Wire the service (the composition root builds every collaborator).

        Args:
            settings: the loop's settings.
            open_stream: opens a venue stream.
            pipeline: maps and publishes venue events.
            publisher: the Kafka producer.
            watermark: the acknowledged-prefix tracker (started from the checkpoint, if any).
            metrics: the Prometheus metrics.
            status: what ``/status`` and ``/readyz`` report.
            encoders: one encoder per record type (for the connector's own records).
            invalidate_token: forget the cached access token.
            start_backfill: starts a REST backfill of a window.
            reseed_recent_ids: refills the recent-ID set from the executions topic.
            resume_ns: venue time from which the first stream must recover (the checkpoint or
                ``start_from``), or None to start from the first stream's snapshot.
        """
        self._settings = settings
        self._open_stream = open_stream
        self._pipeline = pipeline
        self._publisher = publisher
        self._watermark = watermark
        self._metrics = metrics
        self._status = status
        self._encoders = encoders
        self._invalidate_token = invalidate_token
        self._start_backfill = start_backfill
        self._reseed_recent_ids = reseed_recent_ids
        self._resume_ns = resume_ns
        self._stop = threading.Event()
        self._backoff = FullJitterBackoff(BACKOFF_BASE_S, BACKOFF_MAX_S)
        self._next_heartbeat_record = 0.0
        self._next_checkpoint = time.monotonic() + settings.checkpoint_interval_s
        self._checkpoints_paused = False
        self._last_venue_heartbeat_ns: int | None = None
        self._reauthenticated = False
        self._session = self._new_session()

    def stop(self) -> None:
        """Ask the service to stop (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> int:
        """Run until stopped; return the exit code (0 after a clean shutdown).

        Raises:
            RuntimeFailure: a fatal condition (credentials refused, permission denied, bad filter,
                fatal producer error), after flushing what can be flushed.
        """
        try:
            while not self._stop.is_set():
                self._status.phase = "connecting"
                delay = self._one_stream()
                failure = self._watermark.failure
                if failure is not None and not self._stop.is_set():
                    self._restart_pipeline(failure)
                    delay = max(delay, self._backoff.next_delay())
                if delay > 0 and not self._stop.is_set():
                    self._status.phase = "reconnecting"
                    _LOG.info("reconnecting in %.1f s", delay)
                    self._idle(delay)
        finally:
            self._shutdown()
        return 0

    def _one_stream(self) -> float:
        """Open a stream and pump it until it ends; return how long to wait before the next one."""
        try:
            stream = self._open_stream()  # CredentialsRefused (not retryable) propagates: exit 1
        except TokenEndpointUnavailable as exc:
            self._status.last_error = str(exc)
            return self._backoff.next_delay()
        responses: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_CAPACITY)
        reader = threading.Thread(target=_pump, args=(stream, responses), name="stream-reader", daemon=True)
        reader.start()
        self._session = self._new_session()
        opened = time.monotonic()
        last_message = opened
        ended: StreamEnded | None = None
        try:
            while True:
                self._tick()
                if self._stop.is_set() or self._watermark.failure is not None:
                    stream.cancel()
                    return 0.0
                self._collect_backfill()
                try:
                    item = responses.get(timeout=LOOP_TICK_S)
                except queue.Empty:
                    if time.monotonic() - last_message > self._settings.heartbeat_timeout_s:
                        _LOG.warning(
                            "no message for %.0f s: cancelling the stream", self._settings.heartbeat_timeout_s
                        )
                        self._metrics.stream_stalls.inc()
                        stream.cancel()
                        ended = StreamEnded("STALL", "heartbeat timeout", Disposition.RECONNECT)
                        break
                    continue
                if isinstance(item, StreamEnded):
                    ended = item
                    break
                last_message = time.monotonic()
                self._on_response(item)
        finally:
            self._end_session()
            self._set_connected(connected=False)
            if time.monotonic() - opened >= HEALTHY_RESET_S:
                self._backoff.reset()
        return self._after_end(ended)

    def _new_session(self) -> _Session:
        limits = self._settings.backfill
        return _Session(HoldBack(limits.holdback_max_records, limits.holdback_max_bytes))

    def _on_response(self, response: Any) -> None:
        received = time.time_ns()
        session = self._session
        if not self._status.connected:
            self._set_connected(connected=True, session_id=response.session_id)
            self._reauthenticated = False
        if session.stream_start_ns is None:
            sent = (
                response.processed_sent_time.ToNanoseconds()
                if response.HasField("processed_sent_time")
                else 0
            )
            session.stream_start_ns = sent or received
            self._publish_live(response, received)  # the snapshot comes first
            self._begin_recovery(session.stream_start_ns, response.session_id)
            return
        if session.backfill is not None and not session.overflowed:
            if session.hold_back.offer(response, received):
                return
            self._overflow()
        self._publish_live(response, received)

    def _publish_live(self, response: Any, received_time_ns: int) -> None:
        self._pipeline.on_response(response, received_time_ns)
        if response.HasField("heartbeat") and response.HasField("processed_sent_time"):
            self._last_venue_heartbeat_ns = response.processed_sent_time.ToNanoseconds()
            self._status.last_venue_heartbeat = iso_from_ns(self._last_venue_heartbeat_ns)

    # ------------------------------------------------------------------------------- recovery

    def _begin_recovery(self, stream_start_ns: int, session_id: str) -> None:
        """After the snapshot: declare the unrecoverable, then search what was missed."""
        session = self._session
        plan = plan_backfill(
            resume_ns=self._resume_ns,
            stream_start_ns=stream_start_ns,
            now_ns=time.time_ns(),
            margin_s=self._settings.backfill.margin_s,
            retention_s=self._settings.backfill.retention_days * 86_400,
        )
        for gap in plan.gaps:
            self._declare_gap(gap, session_id)
        if self._resume_ns is None:
            self._resume_ns = stream_start_ns  # from now on, the stream itself is the history
        if plan.search is None:
            session.recovered = True
            return
        self._status.phase = "backfill"
        session.backfill = self._start_backfill(plan.search)
        self._status.backfill = {"window": describe_window(plan.search), "pages": 0, "executions": 0}

    def _collect_backfill(self) -> None:
        session = self._session
        if session.backfill is None:
            return
        for item in session.backfill.collect():
            if isinstance(item, BackfillFinished):
                self._finish_backfill()
            elif isinstance(item, BackfillFailed):
                self._declare_gap(
                    Gap(GapReason.REST_EXHAUSTED, item.window, item.detail), self._status.session_id
                )
                self._finish_backfill()
            else:
                context = EventContext(
                    Source.BACKFILL, self._status.session_id, None, time.time_ns(), self._settings.connector
                )
                for execution in item:
                    self._pipeline.on_execution(execution, context)
                self._metrics.backfill_executions.inc(len(item))
        if session.backfill is not None:
            progress = session.backfill.progress
            self._status.backfill = {
                "window": describe_window(progress.window),
                "pages": progress.pages,
                "executions": progress.executions,
            }

    def _finish_backfill(self) -> None:
        session = self._session
        session.backfill = None
        session.recovered = True
        self._checkpoints_paused = False
        self._status.backfill = None
        self._status.phase = "streaming"
        released = session.hold_back.release()
        if released:
            _LOG.info("backfill done: releasing %d held live updates", len(released))
        for response, received in released:
            self._publish_live(response, received)

    def _overflow(self) -> None:
        """The hold-back buffer is full: stream on beside the backfill, and say so."""
        session = self._session
        session.overflowed = True
        self._checkpoints_paused = True
        self._metrics.holdback_overflows.inc()
        self._status.last_error = (
            "hold-back buffer full: live updates are published while the backfill continues "
            "(per-order ordering between backfilled and live records is not guaranteed)"
        )
        _LOG.warning("%s", self._status.last_error)
        for response, received in session.hold_back.release():
            self._publish_live(response, received)

    def _end_session(self) -> None:
        """The stream ended: stop its backfill, and move the resume point if recovery completed."""
        session = self._session
        if session.backfill is not None:
            session.backfill.cancel()
            session.backfill = None
            self._status.backfill = None
        position = self._watermark.position
        if (
            session.recovered
            and position is not None
            and (self._resume_ns is None or position.venue_time_ns > self._resume_ns)
        ):
            self._resume_ns = position.venue_time_ns

    def _declare_gap(self, gap: Gap, session_id: str) -> None:
        """Publish a GapDetected record, count it, and show it in ``/status``: never silent."""
        record = gap_record(self._settings.connector, self._settings.subscription, gap, session_id)
        log = _LOG.info if gap.reason is GapReason.CANCEL_REJECTS_UNRECOVERABLE else _LOG.error
        log("gap detected (%s) %s: %s", gap.reason.value, describe_window(gap.window), gap.detail)
        self._metrics.gaps_detected.labels(gap.reason.value).inc()
        self._status.gaps_detected += 1
        self._status.last_gap = {
            "reason": gap.reason.value,
            "window_start": iso_from_ns(gap.window.start_ns),
            "window_end": iso_from_ns(gap.window.end_ns),
            "detail": gap.detail,
        }
        topic = self._settings.heartbeat_topic
        self._publisher.publish(
            topic,
            self._settings.connector.encode(),
            self._encoders[RecordType.GAP_DETECTED](record, topic),
            headers=[("event_type", RecordType.GAP_DETECTED.value.encode())],
        )

    def _restart_pipeline(self, failure: DeliveryFailure) -> None:
        """After a failed delivery: drain, prove Kafka is back, and re-read from the frozen watermark."""
        self._status.phase = "recovering"
        _LOG.error("a delivery failed (%s): restarting the pipeline from the watermark", failure.reason)
        self._publisher.purge_queued()
        while not self._stop.is_set():
            if self._publisher.flush(LOOP_TICK_S * 10):
                self._tick()
                continue
            try:
                self._reseed_recent_ids()
            except RuntimeFailure as exc:
                self._status.last_error = f"waiting for Kafka: {exc}"
                self._idle(self._backoff.next_delay())
                continue
            break
        self._watermark.restart()
        position = self._watermark.position
        if position is not None and (self._resume_ns is None or position.venue_time_ns < self._resume_ns):
            self._resume_ns = position.venue_time_ns
        self._status.producer_healthy = True
        self._status.last_error = f"delivery failed ({failure.reason}); pipeline restarted from the watermark"

    def _after_end(self, ended: StreamEnded | None) -> float:
        if ended is None or self._stop.is_set():
            return 0.0
        self._status.last_error = str(ended)
        self._status.reconnects += 1
        reason = {
            "EOF": "eof",
            "UNAVAILABLE": "unavailable",
            "STALL": "stall",
            "UNAUTHENTICATED": "unauthenticated",
            "RESOURCE_EXHAUSTED": "resource_exhausted",
        }.get(ended.status, "other")
        self._metrics.reconnects.labels(reason).inc()
        _LOG.warning("%s", ended)
        if ended.disposition is Disposition.FATAL:
            msg = f"the venue refused the subscription: {ended.status}: {ended.details}"
            raise StreamRefused(msg)
        if ended.disposition is Disposition.REAUTHENTICATE:
            self._invalidate_token()
            if not self._reauthenticated:
                self._reauthenticated = True
                return 0.0
        if ended.disposition is Disposition.BACK_OFF_LONG:
            return self._backoff.next_delay(BACKOFF_RESOURCE_EXHAUSTED_MAX_S)
        return self._backoff.next_delay()

    def _idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self._tick()
            self._stop.wait(min(left, LOOP_TICK_S))

    def _tick(self) -> None:
        """Serve delivery callbacks, refresh gauges, emit the connector heartbeat when due."""
        self._publisher.poll(0.0)
        self._status.tick()
        position = self._watermark.position
        if position is not None:
            self._metrics.watermark.set(position.venue_time_ns / 1e9)
            self._status.watermark = iso_from_ns(position.venue_time_ns)
        self._metrics.inflight_records.set(self._publisher.in_flight)
        failure = self._watermark.failure
        if failure is not None and self._status.producer_healthy:
            self._status.producer_healthy = False
            self._status.last_error = f"delivery failed ({failure.reason}); watermark frozen"
        now = time.monotonic()
        if now >= self._next_heartbeat_record:
            self._next_heartbeat_record = now + self._settings.heartbeat_interval_s
            self._emit_heartbeat_record()
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + self._settings.checkpoint_interval_s
            self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        """Write the watermark to the checkpoint topic, if it may be trusted now."""
        position = self._watermark.position
        if position is None or self._checkpoints_paused or self._watermark.failure is not None:
            return
        record = {
            "connector": self._settings.connector,
            "subscription": self._settings.subscription,
            "watermark": position.venue_time_ns,
            "last_execution_id": position.last_execution_id,
            "session_id": position.session_id,
            "written_time": time.time_ns(),
        }
        topic = self._settings.checkpoint_topic
        self._publisher.publish(
            topic,
            self._settings.checkpoint_key,
            self._encoders[RecordType.CHECKPOINT](record, topic),
            headers=[("event_type", RecordType.CHECKPOINT.value.encode())],
        )

    def _emit_heartbeat_record(self) -> None:
        position = self._watermark.position
        record = {
            "connector": self._settings.connector,
            "subscription": self._settings.subscription,
            "emitted_time": time.time_ns(),
            "phase": self._status.phase,
            "session_id": self._status.session_id,
            "last_venue_heartbeat_time": self._last_venue_heartbeat_ns,
            "watermark": position.venue_time_ns if position else None,
            "version": __version__,
        }
        topic = self._settings.heartbeat_topic
        self._publisher.publish(
            topic,
            self._settings.connector.encode(),
            self._encoders[RecordType.CONNECTOR_HEARTBEAT](record, topic),
            headers=[("event_type", RecordType.CONNECTOR_HEARTBEAT.value.encode())],
        )

    def _set_connected(self, *, connected: bool, session_id: str = "") -> None:
        self._status.connected = connected
        self._metrics.stream_connected.set(1 if connected else 0)
        if connected:
            self._status.session_id = session_id
            self._status.phase = "streaming"
            _LOG.info("order stream connected (session %s)", session_id)

    def _shutdown(self) -> None:
        self._status.phase = "stopping"
        self._status.connected = False
        remaining = self._publisher.flush(self._settings.flush_timeout_s)
        if remaining:
            _LOG.error("%d records were not acknowledged before the flush deadline", remaining)
            return
        # The checkpoint, then a last heartbeat record that tells consumers the connector stopped
        # on purpose, and where.
        self._status.phase = "stopped"
        try:
            self._write_checkpoint()
            self._emit_heartbeat_record()
        except FatalProducerError:
            return  # the original error is already on its way out
        self._publisher.flush(FINAL_HEARTBEAT_FLUSH_S)
        _LOG.info("all records acknowledged, checkpoint written; stopping")


class StreamRefused(RuntimeFailure):
    """The venue refused the subscription for a reason that retrying cannot fix."""


def _pump(stream: CancellableStream, responses: queue.Queue[Any]) -> None:
    """Reader thread: move responses into the queue; end with the StreamEnded outcome."""
    try:
        for response in read(stream):
            responses.put(response)
    except StreamEnded as ended:
        responses.put(ended)
