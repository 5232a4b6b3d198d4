"""A loopback HTTP control endpoint for an :class:`~connector.embedded.EmbeddedKafka`.

It lets another process (a test, a demo script, ``curl``) inject faults into a running ``dev-kafka``::

    GET  /health                   -> {"status": "ok", "bootstrap_servers": "..."}
    POST /brokers/{id}/down        take one broker down
    POST /brokers/{id}/up          bring it back
    POST /brokers/down             take every broker down
    POST /brokers/up               bring every broker up
    POST /brokers/{id}/rtt         {"rtt_ms": 250}
    POST /topics                   {"name": "orders", "partitions": 6, "replication_factor": 3}
    POST /request-errors           {"api_key": 0, "errors": [6, 6]}

Answers are JSON. Bad input gives 400 with ``{"error": "..."}``, unknown paths 404, a wrong method 405.
The server binds 127.0.0.1 only and has no authentication: it is a development tool.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from connector.embedded.cluster import EmbeddedKafka
from connector.errors import EmbeddedKafkaError

__all__ = ["ControlServer"]

_LOG: Final = logging.getLogger(__name__)

LOOPBACK: Final = "127.0.0.1"
_MAX_BODY_BYTES: Final = 64 * 1024
_BROKER_ACTION: Final = re.compile(r"^/brokers/(?P<id>[^/]+)/(?P<action>down|up|rtt)$")


class _BadRequest(Exception):
    """The request is malformed; the message is returned to the client."""


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the cluster; the server attribute is a :class:`_ControlHTTPServer`."""

    server: _ControlHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "pmx-dev-kafka-control"

    # ---------------------------------------------------------------- dispatch
    def do_GET(self) -> None:
        """Serve ``GET /health``."""
        path = self._path()
        if path == "/health":
            kafka = self.server.kafka
            status = "ok" if kafka.running else "stopped"
            bootstrap = kafka.bootstrap_servers if kafka.running else ""
            self._reply(HTTPStatus.OK, {"status": status, "bootstrap_servers": bootstrap})
        elif self._is_post_route(path):
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"use POST for {path}"})
        else:
            self._not_found(path)

    def do_POST(self) -> None:
        """Serve the fault-injection routes."""
        path = self._path()
        try:
            action = self._route(path)
            if action is None:
                self._drain()
                if path == "/health":
                    self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET for /health"})
                else:
                    self._not_found(path)
                return
            result = action(self._body())
        except (_BadRequest, EmbeddedKafkaError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self._reply(HTTPStatus.OK, {"status": "ok", **result})

    def _route(self, path: str) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
        fixed: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/brokers/down": self._all_down,
            "/brokers/up": self._all_up,
            "/topics": self._create_topic,
            "/request-errors": self._push_errors,
        }
        if path in fixed:
            return fixed[path]
        match = _BROKER_ACTION.match(path)
        if match is None:
            return None
        broker_id = _parse_broker_id(match["id"])
        per_broker = {"down": self._broker_down, "up": self._broker_up, "rtt": self._broker_rtt}
        handler = per_broker[match["action"]]
        return lambda body: handler(broker_id, body)

    def _all_down(self, _body: dict[str, Any]) -> dict[str, Any]:
        self.server.kafka.set_all_brokers_down()
        return {"brokers": "all", "state": "down"}

    def _all_up(self, _body: dict[str, Any]) -> dict[str, Any]:
        self.server.kafka.set_all_brokers_up()
        return {"brokers": "all", "state": "up"}

    def _broker_down(self, broker_id: int, _body: dict[str, Any]) -> dict[str, Any]:
        self.server.kafka.set_broker_down(broker_id)
        return {"broker": broker_id, "state": "down"}

    def _broker_up(self, broker_id: int, _body: dict[str, Any]) -> dict[str, Any]:
        self.server.kafka.set_broker_up(broker_id)
        return {"broker": broker_id, "state": "up"}

    def _broker_rtt(self, broker_id: int, body: dict[str, Any]) -> dict[str, Any]:
        rtt_ms = _field(body, "rtt_ms", int)
        self.server.kafka.set_broker_rtt(broker_id, rtt_ms)
        return {"broker": broker_id, "rtt_ms": rtt_ms}

    def _create_topic(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _field(body, "name", str)
        partitions = _field(body, "partitions", int, default=1)
        replication_factor = _field(body, "replication_factor", int, default=1)
        self.server.kafka.create_topic(name, partitions=partitions, replication_factor=replication_factor)
        return {"topic": name, "partitions": partitions, "replication_factor": replication_factor}

    def _push_errors(self, body: dict[str, Any]) -> dict[str, Any]:
        api_key = _field(body, "api_key", int)
        errors = _field(body, "errors", list)
        if not all(isinstance(code, int) and not isinstance(code, bool) for code in errors):
            msg = "'errors' must be a list of integer Kafka error codes"
            raise _BadRequest(msg)
        self.server.kafka.push_request_errors(api_key, errors)
        return {"api_key": api_key, "errors": errors}

    # ---------------------------------------------------------------- plumbing
    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    @staticmethod
    def _is_post_route(path: str) -> bool:
        return path in {"/brokers/down", "/brokers/up", "/topics", "/request-errors"} or bool(
            _BROKER_ACTION.match(path)
        )

    def _content_length(self) -> int:
        raw = self.headers.get("Content-Length", "0")
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY_BYTES:
            self.close_connection = True
            msg = f"Content-Length must be between 0 and {_MAX_BODY_BYTES}, got {raw!r}"
            raise _BadRequest(msg)
        return length

    def _drain(self) -> None:
        try:
            length = self._content_length()
        except _BadRequest:
            return
        if length:
            self.rfile.read(length)

    def _body(self) -> dict[str, Any]:
        length = self._content_length()
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            msg = f"body is not valid JSON: {exc}"
            raise _BadRequest(msg) from exc
        if not isinstance(body, dict):
            msg = "body must be a JSON object"
            raise _BadRequest(msg)
        return body

    def _not_found(self, path: str) -> None:
        self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {path}"})

    def _reply(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Send the access log to :mod:`logging` instead of stderr."""
        _LOG.info("%s %s", self.address_string(), format % args)


def _parse_broker_id(raw: str) -> int:
    if not raw.isdigit():
        msg = f"broker id must be a positive integer, got {raw!r}"
        raise _BadRequest(msg)
    return int(raw)


_MISSING: Final = object()
_T = TypeVar("_T")


def _field(body: dict[str, Any], name: str, kind: type[_T], default: object = _MISSING) -> _T:
    value = body.get(name, default)
    if value is _MISSING:
        msg = f"missing field {name!r}"
        raise _BadRequest(msg)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        msg = f"field {name!r} must be a {kind.__name__}, got {value!r}"
        raise _BadRequest(msg)
    return value


class _ControlHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows the cluster it controls."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], kafka: EmbeddedKafka) -> None:
        self.kafka = kafka
        super().__init__(address, _Handler)


class ControlServer:
    """Serves the control endpoint for ``kafka`` on 127.0.0.1 from a daemon thread.

    Args:
        kafka: The started cluster to control.
        port: TCP port; 0 picks a free one (see :attr:`url`).
    """

    def __init__(self, kafka: EmbeddedKafka, port: int = 0) -> None:
        self._kafka = kafka
        self._port = port
        self._server: _ControlHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Bind the port and start serving.

        Raises:
            EmbeddedKafkaError: Already started, or the port cannot be bound.
        """
        if self._server is not None:
            msg = "the control server is already started"
            raise EmbeddedKafkaError(msg)
        try:
            server = _ControlHTTPServer((LOOPBACK, self._port), self._kafka)
        except OSError as exc:
            msg = f"cannot bind the control server to {LOOPBACK}:{self._port}: {exc}"
            raise EmbeddedKafkaError(msg) from exc
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="dev-kafka-control", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        _LOG.info("control server listening on %s", self.url)

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT``.

        Raises:
            EmbeddedKafkaError: The server is not started.
        """
        if self._server is None:
            msg = "the control server is not started"
            raise EmbeddedKafkaError(msg)
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        """Stop serving and release the port. Safe to call more than once."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        _LOG.info("control server stopped")
