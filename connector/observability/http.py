"""The connector's one HTTP port: ``/metrics``, ``/healthz``, ``/readyz`` and ``/status``.

- ``/healthz``: the process is alive and its main loop is not wedged (it ticked recently);
- ``/readyz``: the stream is connected, the producer is taking records and the loop is alive; 503
  with the reasons otherwise;
- ``/status``: JSON with the phase, the venue session, the completeness frontier, the last
  checkpoint, the running recovery, the gaps detected (and the last one) and the last error;
- ``/metrics``: Prometheus text format from the connector's own registry.

The engine writes :class:`~connector.engine.status.ServiceStatus`; the HTTP thread only reads it.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from connector.engine.status import ServiceStatus

_LOG: Final = logging.getLogger(__name__)


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
