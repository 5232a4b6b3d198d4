"""The connector's one HTTP port: ``/metrics``, ``/healthz``, ``/readyz`` and ``/status``.

- ``/healthz``: the process is alive and its main loop is not wedged (it ticked recently);
- ``/readyz``: the stream is connected, the producer is healthy (no frozen watermark, no fatal
  error) and the loop is alive; 503 with the reasons otherwise;
- ``/status``: JSON with the phase, the venue session, the watermark, the last checkpoint, the
  running backfill, the gaps detected (and the last one) and the last error;
- ``/metrics``: Prometheus text format from the connector's own registry.

The main loop writes :class:`ServiceStatus`; the HTTP thread only reads it. Nothing secret is in it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

_LOG: Final = logging.getLogger(__name__)

LOOP_STALL_LIMIT_S: Final = 60.0


@dataclass(slots=True)
class ServiceStatus:
    """What the service reports about itself (written by the main loop, read by HTTP)."""

    connector: str
    subscription: str
    phase: str = "starting"
    session_id: str = ""
    connected: bool = False
    watermark: str | None = None
    last_venue_heartbeat: str | None = None
    last_error: str | None = None
    producer_healthy: bool = True
    reconnects: int = 0
    backfill: dict[str, Any] | None = None
    gaps_detected: int = 0
    last_gap: dict[str, Any] | None = None
    last_checkpoint: str | None = None
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    loop_tick_monotonic: float = field(default_factory=time.monotonic)

    def tick(self) -> None:
        """Record that the main loop is alive."""
        self.loop_tick_monotonic = time.monotonic()

    def loop_alive(self) -> bool:
        """Whether the main loop ticked recently."""
        return time.monotonic() - self.loop_tick_monotonic < LOOP_STALL_LIMIT_S

    def not_ready_reasons(self) -> list[str]:
        """Why the service is not ready (empty when it is)."""
        reasons = []
        if not self.connected:
            reasons.append("venue stream not connected")
        if not self.producer_healthy:
            reasons.append("producer unhealthy")
        if not self.loop_alive():
            reasons.append("main loop not ticking")
        return reasons

    def to_json(self) -> dict[str, Any]:
        """The ``/status`` document."""
        document = asdict(self)
        document.pop("loop_tick_monotonic")
        document["ready"] = not self.not_ready_reasons()
        return document


def iso_from_ns(nanos: int | None) -> str | None:
    """Render epoch nanoseconds as an RFC 3339 UTC time (microsecond precision)."""
    if nanos is None:
        return None
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")


class HealthServer:
    """Serves the four endpoints from a daemon thread."""

    def __init__(self, listen: str, status: ServiceStatus, registry: CollectorRegistry) -> None:
        """Remember what to serve; :meth:`start` binds the port."""
        host, _, port = listen.rpartition(":")
        self._address = (host.strip("[]"), int(port))
        self._status = status
        self._registry = registry
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            msg = "the HTTP server is not started"
            raise RuntimeError(msg)
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and serve in the background."""
        status, registry = self._status, self._registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    alive = status.loop_alive()
                    self._json(200 if alive else 503, {"alive": alive})
                elif path == "/readyz":
                    reasons = status.not_ready_reasons()
                    self._json(503 if reasons else 200, {"ready": not reasons, "reasons": reasons})
                elif path == "/status":
                    self._json(200, status.to_json())
                else:
                    self._json(404, {"error": f"no such endpoint: {path}"})

            def _json(self, code: int, document: dict[str, Any]) -> None:
                self._send(code, json.dumps(document).encode(), "application/json")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                _LOG.debug("http: " + format, *args)

        self._server = ThreadingHTTPServer(self._address, Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()
        _LOG.info("HTTP endpoints on %s:%d (/metrics /healthz /readyz /status)", self._address[0], self.port)

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
