"""The simulator's HTTP side: OAuth token endpoint, report searches, health, and the loopback control API.

Routes (JSON in and out; the searches speak grpc-gateway JSON: camelCase, int64 as strings, enum
names, zero values omitted)::

    POST /oauth/token                     client assertion -> access token (venue-api.md §4)
    POST /v1/report/executions/search     SearchExecutionsRequest -> SearchExecutionsResponse
    POST /v1/report/orders/search         SearchOrdersRequest -> SearchOrdersResponse
    GET  /v1/health                       {"status": "ok"}, no auth
    GET  /control/faults                  the fault settings            (loopback clients only)
    POST /control/faults                  change some of them, answer all (loopback clients only)
    GET  /control/stats                   counters                      (loopback clients only)

The searches need ``Authorization: Bearer <token>`` (401, ``{"code": 16, ...}``), ``x-participant-id``
equal to the registered participant and scope ``read:reports`` (403, ``{"code": 7, ...}``). With the
rate limit on, each search path answers at most 12 requests per rolling minute; more get 429 with
``Retry-After`` (seconds) and ``{"code": 8, "message": "rate limit exceeded"}``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Protocol

from google.protobuf import json_format
from google.protobuf.message import Message

from connector._pb.polymarket.v1 import report_pb2
from connector.simulator.exchange import Exchange
from connector.simulator.faults import FaultBoard
from connector.simulator.search import SearchRequestError, search_executions, search_orders
from connector.simulator.tokens import (
    ASSERTION_TYPE,
    AssertionRejectedError,
    TokenAuthority,
    TokenInvalidError,
)

__all__ = ["ControlPlane", "HttpResponse", "RequestHandler", "RestApi", "RestServer"]

_LOG: Final = logging.getLogger(__name__)

TOKEN_PATH: Final = "/oauth/token"  # noqa: S105 - a URL path, not a secret
EXECUTIONS_PATH: Final = "/v1/report/executions/search"
ORDERS_PATH: Final = "/v1/report/orders/search"
HEALTH_PATH: Final = "/v1/health"
REQUIRED_SCOPE: Final = "read:reports"
RATE_LIMIT_PER_MINUTE: Final = 12
_WINDOW_S: Final = 60.0
_MAX_BODY_BYTES: Final = 1024 * 1024
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})

# gRPC status numbers used in grpc-gateway error bodies.
_INVALID_ARGUMENT: Final = 3
_PERMISSION_DENIED: Final = 7
_RESOURCE_EXHAUSTED: Final = 8
_INTERNAL: Final = 13
_UNAVAILABLE: Final = 14
_UNAUTHENTICATED: Final = 16
_NOT_FOUND: Final = 5


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """An answer: status, JSON payload and extra headers."""

    status: int
    payload: Mapping[str, Any]
    headers: tuple[tuple[str, str], ...] = field(default=())


class ControlPlane(Protocol):
    """What the control routes act on (implemented by the simulated venue)."""

    def fault_settings(self) -> dict[str, Any]:
        """Return the fault settings as JSON."""

    def change_faults(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply changes and one-shot actions; return the new settings as JSON.

        Raises:
            ValueError: Unknown or invalid setting.
        """

    def stats(self) -> dict[str, Any]:
        """Return the counters."""


def _gateway_error(status: HTTPStatus, code: int, message: str) -> HttpResponse:
    return HttpResponse(int(status), {"code": code, "message": message, "details": []})


def _oauth_error(status: int, error: str, description: str) -> HttpResponse:
    return HttpResponse(status, {"error": error, "error_description": description})


class _RateLimiter:
    """A rolling one-minute window per path."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after_s(self, path: str) -> int | None:
        """Record a hit; return None if allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(path, deque())
            while hits and hits[0] <= now - _WINDOW_S:
                hits.popleft()
            if len(hits) >= self._per_minute:
                return max(1, math.ceil(hits[0] + _WINDOW_S - now))
            hits.append(now)
            return None


class RestApi:
    """Routes one HTTP request to its answer; transport-free, so tests can call :meth:`handle`."""

    def __init__(
        self,
        *,
        exchange: Exchange,
        authority: TokenAuthority,
        faults: FaultBoard,
        control: ControlPlane,
        participant_id: str,
        audience: str,
        rate_limit: bool,
        seed: int,
    ) -> None:
        self._exchange = exchange
        self._authority = authority
        self._faults = faults
        self._control = control
        self._participant_id = participant_id
        self._audience = audience
        self._limiter = _RateLimiter(RATE_LIMIT_PER_MINUTE) if rate_limit else None
        self._rng = random.Random(f"{seed}:rest")  # noqa: S311 - fault dice, not security
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {
            "rest_requests_total": 0,
            "rest_rate_limited_total": 0,
            "rest_faults_total": 0,
            "tokens_refused_total": 0,
        }

    def _count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, client_host: str
    ) -> HttpResponse:
        """Answer one request.

        Args:
            method: ``GET`` or ``POST``.
            path: The request path (query string ignored).
            headers: Request headers, looked up lower-case.
            body: The raw body.
            client_host: The client's IP address (control routes are loopback only).

        Returns:
            The answer.
        """
        self._count("rest_requests_total")
        path = path.split("?", 1)[0]
        routes: dict[tuple[str, str], Callable[[Mapping[str, str], bytes], HttpResponse]] = {
            ("POST", TOKEN_PATH): self._token,
            ("POST", EXECUTIONS_PATH): self._search_executions,
            ("POST", ORDERS_PATH): self._search_orders,
            ("GET", HEALTH_PATH): lambda _h, _b: HttpResponse(200, {"status": "ok"}),
            ("GET", "/control/faults"): lambda _h, _b: HttpResponse(200, self._control.fault_settings()),
            ("POST", "/control/faults"): self._change_faults,
            ("GET", "/control/stats"): lambda _h, _b: HttpResponse(200, self._control.stats()),
        }
        route = routes.get((method, path))
        if route is None:
            if any(known_path == path for _, known_path in routes):
                return _gateway_error(
                    HTTPStatus.METHOD_NOT_ALLOWED, _NOT_FOUND, f"method {method} not allowed"
                )
            return _gateway_error(HTTPStatus.NOT_FOUND, _NOT_FOUND, f"no route for {path}")
        if path.startswith("/control/") and client_host not in _LOOPBACK:
            return _gateway_error(HTTPStatus.FORBIDDEN, _PERMISSION_DENIED, "control API is loopback only")
        return route(headers, body)

    # ------------------------------------------------------------------ OAuth

    def _token(self, _headers: Mapping[str, str], body: bytes) -> HttpResponse:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = None
        problem = self._token_request_problem(request)
        if problem is not None:
            self._count("tokens_refused_total")
            return problem
        try:
            token, claims = self._authority.exchange_assertion(
                request["client_id"], request["client_assertion"]
            )
        except AssertionRejectedError as exc:
            self._count("tokens_refused_total")
            return _oauth_error(exc.status, exc.error, exc.description)
        return HttpResponse(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": claims.expires_at - claims.issued_at,
                "scope": " ".join(sorted(claims.scopes)),
            },
        )

    def _token_request_problem(self, request: object) -> HttpResponse | None:
        """Check the token request's shape (not the assertion); return the error answer, if any."""
        if not isinstance(request, dict):
            return _oauth_error(400, "invalid_request", "the body must be a JSON object")
        problem: HttpResponse | None = None
        if request.get("grant_type") != "client_credentials":
            problem = _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        elif request.get("client_assertion_type") != ASSERTION_TYPE:
            problem = _oauth_error(400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        elif not isinstance(request.get("client_id"), str) or not isinstance(
            request.get("client_assertion"), str
        ):
            problem = _oauth_error(400, "invalid_request", "client_id and client_assertion are required")
        elif request.get("audience") != self._audience:
            problem = _oauth_error(403, "access_denied", f"Service not found: {request.get('audience')}")
        return problem

    # ------------------------------------------------------------------ searches

    def _guard_search(self, path: str, headers: Mapping[str, str]) -> HttpResponse | None:
        """Authenticate, authorise, rate-limit and roll the REST faults; return the refusal, if any."""
        return self._authorize(headers) or self._throttle(path)

    def _authorize(self, headers: Mapping[str, str]) -> HttpResponse | None:
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _gateway_error(HTTPStatus.UNAUTHORIZED, _UNAUTHENTICATED, "missing bearer token")
        try:
            claims = self._authority.verify(token.strip())
        except TokenInvalidError as exc:
            return _gateway_error(HTTPStatus.UNAUTHORIZED, _UNAUTHENTICATED, str(exc))
        if REQUIRED_SCOPE not in claims.scopes:
            return _gateway_error(
                HTTPStatus.FORBIDDEN,
                _PERMISSION_DENIED,
                f"permission denied: missing required scope {REQUIRED_SCOPE}",
            )
        if headers.get("x-participant-id", "") != self._participant_id:
            return _gateway_error(
                HTTPStatus.FORBIDDEN,
                _PERMISSION_DENIED,
                "permission denied: wrong or missing x-participant-id",
            )
        return None

    def _throttle(self, path: str) -> HttpResponse | None:
        if self._limiter is not None:
            retry_after = self._limiter.retry_after_s(path)
            if retry_after is not None:
                self._count("rest_rate_limited_total")
                return self._rate_limited(retry_after)
        faults = self._faults.current
        if faults.rest_429_rate and self._rng.random() < faults.rest_429_rate:
            self._count("rest_faults_total")
            return self._rate_limited(1)
        if faults.rest_5xx_rate and self._rng.random() < faults.rest_5xx_rate:
            self._count("rest_faults_total")
            code = _UNAVAILABLE if faults.rest_5xx_status == 503 else _INTERNAL
            return HttpResponse(
                faults.rest_5xx_status,
                {"code": code, "message": "simulated fault: server error", "details": []},
            )
        return None

    @staticmethod
    def _rate_limited(retry_after_s: int) -> HttpResponse:
        return HttpResponse(
            429,
            {"code": _RESOURCE_EXHAUSTED, "message": "rate limit exceeded", "details": []},
            (("Retry-After", str(retry_after_s)),),
        )

    def _search_executions(self, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        return self._search(
            EXECUTIONS_PATH,
            headers,
            body,
            report_pb2.SearchExecutionsRequest(),
            lambda request: search_executions(self._exchange.executions(), request),
        )

    def _search_orders(self, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        return self._search(
            ORDERS_PATH,
            headers,
            body,
            report_pb2.SearchOrdersRequest(),
            lambda request: search_orders(self._exchange.orders_with_last_execution(), request),
        )

    def _search(
        self,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        request: report_pb2.SearchExecutionsRequest | report_pb2.SearchOrdersRequest,
        answer: Callable[[Any], Message],
    ) -> HttpResponse:
        """Guard (auth, rate limit, faults), parse the JSON request, search, answer as JSON."""
        refused = self._guard_search(path, headers)
        if refused is not None:
            return refused
        problem = _parse(body, request)
        if problem is not None:
            return problem
        try:
            response = answer(request)
        except SearchRequestError as exc:
            return _gateway_error(HTTPStatus.BAD_REQUEST, _INVALID_ARGUMENT, str(exc))
        return HttpResponse(200, json_format.MessageToDict(response))

    # ------------------------------------------------------------------ control

    def _change_faults(self, _headers: Mapping[str, str], body: bytes) -> HttpResponse:
        try:
            changes = json.loads(body or b"{}")
        except ValueError:
            return HttpResponse(400, {"error": "the body must be JSON"})
        if not isinstance(changes, dict):
            return HttpResponse(400, {"error": "the body must be a JSON object"})
        try:
            return HttpResponse(200, self._control.change_faults(changes))
        except ValueError as exc:
            return HttpResponse(400, {"error": str(exc)})


def _parse(
    body: bytes, message: report_pb2.SearchExecutionsRequest | report_pb2.SearchOrdersRequest
) -> HttpResponse | None:
    try:
        payload = json.loads(body or b"{}")
        json_format.ParseDict(payload, message, ignore_unknown_fields=True)
    except (ValueError, json_format.ParseError) as exc:
        return _gateway_error(HTTPStatus.BAD_REQUEST, _INVALID_ARGUMENT, f"invalid request body: {exc}")
    return None


class _Handler(BaseHTTPRequestHandler):
    """Adapts ``http.server`` to :class:`RestApi`."""

    server: RestServer
    protocol_version = "HTTP/1.1"

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY_BYTES:
            response = _gateway_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _INVALID_ARGUMENT, "body too large"
            )
        else:
            body = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            response = self.server.handler(method, self.path, headers, body, self.client_address[0])
        data = json.dumps(response.payload).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """Serve a GET."""
        self._answer("GET")

    def do_POST(self) -> None:
        """Serve a POST."""
        self._answer("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Send access logs to ``logging`` at DEBUG instead of stderr."""
        _LOG.debug("%s " + format, self.address_string(), *args)


RequestHandler = Callable[[str, str, Mapping[str, str], bytes, str], HttpResponse]
"""``(method, path, lower-case headers, body, client host) -> answer``, e.g. :meth:`RestApi.handle`."""


class RestServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that hands every request to one function."""

    daemon_threads = True

    def __init__(self, handler: RequestHandler, port: int) -> None:
        self.handler = handler
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server_address[1])
