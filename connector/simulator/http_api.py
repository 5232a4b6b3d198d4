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
equal to the registered participant and scope ``read:reports`` (403, ``{"code": 7, ...}``); then the
pure :class:`~connector.simulator.report_api.ReportApi` answers them for the client the token names
(rate limit, REST faults, search behaviours), at the venue clock's time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Protocol

from connector.simulator.clock import Clock, utc_now
from connector.simulator.exchange import Exchange
from connector.simulator.faults import FaultBoard
from connector.simulator.report_api import (
    EXECUTIONS_PATH,
    ORDERS_PATH,
    HttpResponse,
    ReportApi,
    gateway_error,
)
from connector.simulator.tokens import (
    ASSERTION_TYPE,
    AccessTokenClaims,
    AssertionRejectedError,
    TokenAuthority,
    TokenInvalidError,
)

__all__ = ["ControlPlane", "RequestHandler", "RestApi", "RestServer"]

_LOG: Final = logging.getLogger(__name__)

TOKEN_PATH: Final = "/oauth/token"  # noqa: S105 - a URL path, not a secret
HEALTH_PATH: Final = "/v1/health"
REQUIRED_SCOPE: Final = "read:reports"
_MAX_BODY_BYTES: Final = 1024 * 1024
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})

# gRPC status numbers used in grpc-gateway error bodies.
_INVALID_ARGUMENT: Final = 3
_PERMISSION_DENIED: Final = 7
_UNAUTHENTICATED: Final = 16
_NOT_FOUND: Final = 5


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


def _oauth_error(status: int, error: str, description: str) -> HttpResponse:
    return HttpResponse(status, {"error": error, "error_description": description})


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
        seed: int,
        clock: Clock = utc_now,
    ) -> None:
        self._authority = authority
        self._control = control
        self._participant_id = participant_id
        self._audience = audience
        self._clock = clock
        self._report = ReportApi(
            executions=exchange.executions,
            orders=exchange.orders_with_last_execution,
            settings=lambda: faults.current,
            seed=seed,
        )
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {"rest_requests_total": 0, "tokens_refused_total": 0}

    @property
    def counters(self) -> dict[str, int]:
        """Counters of the HTTP side (requests, refused tokens, and the report API's)."""
        with self._lock:
            return {**self._counters, **self._report.counters}

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1

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
                return gateway_error(
                    HTTPStatus.METHOD_NOT_ALLOWED, _NOT_FOUND, f"method {method} not allowed"
                )
            return gateway_error(HTTPStatus.NOT_FOUND, _NOT_FOUND, f"no route for {path}")
        if path.startswith("/control/") and client_host not in _LOOPBACK:
            return gateway_error(HTTPStatus.FORBIDDEN, _PERMISSION_DENIED, "control API is loopback only")
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

    def _authorize(self, headers: Mapping[str, str]) -> HttpResponse | AccessTokenClaims:
        """Authenticate and authorise a search; return the refusal or the token's claims."""
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return gateway_error(HTTPStatus.UNAUTHORIZED, _UNAUTHENTICATED, "missing bearer token")
        try:
            claims = self._authority.verify(token.strip())
        except TokenInvalidError as exc:
            return gateway_error(HTTPStatus.UNAUTHORIZED, _UNAUTHENTICATED, str(exc))
        if REQUIRED_SCOPE not in claims.scopes:
            return gateway_error(
                HTTPStatus.FORBIDDEN,
                _PERMISSION_DENIED,
                f"permission denied: missing required scope {REQUIRED_SCOPE}",
            )
        if headers.get("x-participant-id", "") != self._participant_id:
            return gateway_error(
                HTTPStatus.FORBIDDEN,
                _PERMISSION_DENIED,
                "permission denied: wrong or missing x-participant-id",
            )
        return claims

    def _search_executions(self, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        claims = self._authorize(headers)
        if isinstance(claims, HttpResponse):
            return claims
        with self._lock:
            return self._report.search_executions(claims.subject, body, self._clock())

    def _search_orders(self, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        claims = self._authorize(headers)
        if isinstance(claims, HttpResponse):
            return claims
        with self._lock:
            return self._report.search_orders(claims.subject, body, self._clock())

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


class _Handler(BaseHTTPRequestHandler):
    """Adapts ``http.server`` to :class:`RestApi`."""

    server: RestServer
    protocol_version = "HTTP/1.1"

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY_BYTES:
            response = gateway_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _INVALID_ARGUMENT, "body too large")
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
