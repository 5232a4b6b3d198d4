"""The long-running service: keep one venue stream open and feed the pipeline, until told to stop.

Threads (DESIGN.md §2): a *reader* thread pulls responses from the gRPC stream into a bounded
queue; the *main* thread takes them off, maps, encodes and produces them, serves the producer's
delivery callbacks, emits the connector's own heartbeat records, and watches for a silent stream.
When the producer is full the main thread blocks, the queue fills, and the reader stops pulling
(HTTP/2 flow control then pushes back on the venue): memory stays bounded.

Reconnects follow the failure matrix: full-jitter exponential backoff from 1 s to 30 s (reset after
60 s healthy); a fresh token at once after UNAUTHENTICATED (once, then backoff); up to 5 minutes
after RESOURCE_EXHAUSTED; a clear fatal error for PERMISSION_DENIED / INVALID_ARGUMENT.

Shutdown (SIGTERM/SIGINT): stop reading, flush with a deadline, exit 0.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from connector import __version__
from connector.errors import RuntimeFailure
from connector.kafka.publisher import FatalProducerError, Publisher
from connector.observability.http import ServiceStatus, iso_from_ns
from connector.observability.metrics import Metrics
from connector.pipeline import Pipeline
from connector.record_schemas import RecordType
from connector.venue.auth import TokenEndpointUnavailable
from connector.venue.stream import CancellableStream, Disposition, StreamEnded, read
from connector.watermark import Watermark

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


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """The service loop's own settings."""

    connector: str
    subscription: str
    heartbeat_topic: str
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    flush_timeout_s: float = 20.0


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
        encode_heartbeat: Callable[[dict[str, Any]], bytes],
        invalidate_token: Callable[[], None],
    ) -> None:
        """Wire the service (the composition root builds every collaborator)."""
        self._settings = settings
        self._open_stream = open_stream
        self._pipeline = pipeline
        self._publisher = publisher
        self._watermark = watermark
        self._metrics = metrics
        self._status = status
        self._encode_heartbeat = encode_heartbeat
        self._invalidate_token = invalidate_token
        self._stop = threading.Event()
        self._backoff = FullJitterBackoff(BACKOFF_BASE_S, BACKOFF_MAX_S)
        self._next_heartbeat_record = 0.0
        self._last_venue_heartbeat_ns: int | None = None
        self._reauthenticated = False

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
        opened = time.monotonic()
        last_message = opened
        ended: StreamEnded | None = None
        try:
            while True:
                self._tick()
                if self._stop.is_set():
                    stream.cancel()
                    return 0.0
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
            self._set_connected(connected=False)
            if time.monotonic() - opened >= HEALTHY_RESET_S:
                self._backoff.reset()
        return self._after_end(ended)

    def _on_response(self, response: Any) -> None:
        if not self._status.connected:
            self._set_connected(connected=True, session_id=response.session_id)
            self._reauthenticated = False
        received = time.time_ns()
        self._pipeline.on_response(response, received)
        if response.HasField("heartbeat") and response.HasField("processed_sent_time"):
            self._last_venue_heartbeat_ns = response.processed_sent_time.ToNanoseconds()
            self._status.last_venue_heartbeat = iso_from_ns(self._last_venue_heartbeat_ns)

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
        self._publisher.publish(
            self._settings.heartbeat_topic,
            self._settings.connector.encode(),
            self._encode_heartbeat(record),
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
        # A last heartbeat record tells consumers the connector stopped on purpose, and where.
        self._status.phase = "stopped"
        try:
            self._emit_heartbeat_record()
        except FatalProducerError:
            return  # the original error is already on its way out
        self._publisher.flush(FINAL_HEARTBEAT_FLUSH_S)
        _LOG.info("all records acknowledged; stopping")


class StreamRefused(RuntimeFailure):
    """The venue refused the subscription for a reason that retrying cannot fix."""


def _pump(stream: CancellableStream, responses: queue.Queue[Any]) -> None:
    """Reader thread: move responses into the queue; end with the StreamEnded outcome."""
    try:
        for response in read(stream):
            responses.put(response)
    except StreamEnded as ended:
        responses.put(ended)
