"""The venue's report API (SearchExecutions, SearchOrders) as a pure service: every ``now`` is an argument.

Given the journal, the order book and the behaviour settings, :class:`ReportApi` answers one search
request as the venue would, in this order:

1. the rate limit: ``rest_rate_limit_per_minute`` requests (default 12, venue-api.md §5.4) per client
   and endpoint in any rolling minute, whatever the connection (the simulator outlives the client's
   restarts, so a restarted client finds its window as it left it); the next one gets 429,
   ``Retry-After: <seconds until a slot frees>`` and ``{"code": 8, "message": "rate limit exceeded"}``.
   Refused requests do not use a slot;
2. the REST faults: ``rest_429_rate`` (429, ``Retry-After: 1``), then ``rest_5xx_rate``;
3. the grpc-gateway JSON body (unknown fields ignored; 400 with code 3 when malformed);
4. the search (:mod:`connector.simulator.search`: result order, paging, indexing delay, page-size cap,
   ``eof: false`` without a token).

Authentication is the HTTP layer's job (:mod:`connector.simulator.http_api`); this class takes the
client id the token names. Not thread-safe (the HTTP layer serialises calls); deterministic for a given
seed and sequence of calls. A single-threaded simulation uses it directly::

    api = ReportApi(executions=journal.executions, orders=book_with_last_executions,
                    settings=lambda: settings, seed=7)
    answer = api.search_executions("pmx-sim-client", {"startTime": "2026-01-02T03:04:05Z"}, now)
    answer.status, answer.payload, dict(answer.headers)
"""

from __future__ import annotations

import json
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any, Final

from google.protobuf import json_format

from connector._pb.polymarket.v1 import report_pb2, trading_pb2
from connector.simulator.faults import FaultSettings
from connector.simulator.journal import JournaledExecution
from connector.simulator.search import ExecutionSearch, SearchRequestError, search_orders

__all__ = [
    "EXECUTIONS_PATH",
    "ORDERS_PATH",
    "HttpResponse",
    "OrderBookReader",
    "ReportApi",
    "SearchRateLimiter",
    "gateway_error",
]

EXECUTIONS_PATH: Final = "/v1/report/executions/search"
ORDERS_PATH: Final = "/v1/report/orders/search"
_WINDOW: Final = timedelta(seconds=60)

# gRPC status numbers used in grpc-gateway error bodies.
_INVALID_ARGUMENT: Final = 3
_RESOURCE_EXHAUSTED: Final = 8
_INTERNAL: Final = 13
_UNAVAILABLE: Final = 14

OrderBookReader = Callable[[], Sequence[tuple[trading_pb2.Order, trading_pb2.Execution | None]]]
"""Return every order (oldest first) with its latest execution."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """An answer: status, JSON payload and extra headers."""

    status: int
    payload: Mapping[str, Any]
    headers: tuple[tuple[str, str], ...] = field(default=())


def gateway_error(status: HTTPStatus | int, code: int, message: str) -> HttpResponse:
    """Build a grpc-gateway error answer ``{"code", "message", "details"}``."""
    return HttpResponse(int(status), {"code": code, "message": message, "details": []})


class SearchRateLimiter:
    """A rolling one-minute window per (client, endpoint); pure (``now`` is an argument)."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], deque[datetime]] = {}

    def admit(self, client_id: str, endpoint: str, now: datetime, per_minute: int) -> int | None:
        """Count a request if the window has room.

        Args:
            client_id: Who asks.
            endpoint: Which search.
            now: The venue's time.
            per_minute: The limit (0: none).

        Returns:
            None when admitted, else the seconds until a slot frees (at least 1), for ``Retry-After``.
        """
        if per_minute <= 0:
            return None
        hits = self._hits.setdefault((client_id, endpoint), deque())
        while hits and hits[0] <= now - _WINDOW:
            hits.popleft()
        if len(hits) >= per_minute:
            return max(1, math.ceil((hits[-per_minute] + _WINDOW - now).total_seconds()))
        hits.append(now)
        return None


def _rate_limited(retry_after_s: int) -> HttpResponse:
    return HttpResponse(
        HTTPStatus.TOO_MANY_REQUESTS,
        {"code": _RESOURCE_EXHAUSTED, "message": "rate limit exceeded", "details": []},
        (("Retry-After", str(retry_after_s)),),
    )


class ReportApi:
    """The report searches with the venue's rate limit, faults and behaviours; see the module docstring."""

    def __init__(
        self,
        *,
        executions: Callable[[], Sequence[JournaledExecution]],
        orders: OrderBookReader,
        settings: Callable[[], FaultSettings],
        seed: int,
    ) -> None:
        """Set the service up.

        Args:
            executions: Returns every journaled execution, in sequence order.
            orders: Returns every order with its latest execution.
            settings: Returns the behaviour settings in force (read per request).
            seed: The venue's seed; ``fault_seed`` in the settings, when set, replaces it.
        """
        self._executions = executions
        self._orders = orders
        self._settings = settings
        self._seed = seed
        self._dice_seed = seed
        self._rng = random.Random(f"{seed}:rest")  # noqa: S311 - fault dice, not security
        self._search = ExecutionSearch(seed)
        self._limiter = SearchRateLimiter()
        self.counters: dict[str, int] = {
            "rest_rate_limited_total": 0,
            "rest_faults_total": 0,
            "rest_pages_total": 0,
            "rest_no_token_pages_total": 0,
        }

    def search_executions(
        self, client_id: str, body: bytes | Mapping[str, Any], now: datetime
    ) -> HttpResponse:
        """Answer ``POST /v1/report/executions/search`` (the body as bytes or as parsed JSON)."""
        settings = self._in_force()
        refused = self._guard(client_id, EXECUTIONS_PATH, now, settings)
        if refused is not None:
            return refused
        request = report_pb2.SearchExecutionsRequest()
        problem = _parse(body, request)
        if problem is not None:
            return problem
        try:
            response = self._search.answer(self._executions(), request, now, settings)
        except SearchRequestError as exc:
            return gateway_error(HTTPStatus.BAD_REQUEST, _INVALID_ARGUMENT, str(exc))
        self.counters["rest_pages_total"] += 1
        if not response.eof and not response.next_page_token:
            self.counters["rest_no_token_pages_total"] += 1
        return HttpResponse(HTTPStatus.OK, json_format.MessageToDict(response))

    def search_orders(self, client_id: str, body: bytes | Mapping[str, Any], now: datetime) -> HttpResponse:
        """Answer ``POST /v1/report/orders/search`` (the body as bytes or as parsed JSON)."""
        settings = self._in_force()
        refused = self._guard(client_id, ORDERS_PATH, now, settings)
        if refused is not None:
            return refused
        request = report_pb2.SearchOrdersRequest()
        problem = _parse(body, request)
        if problem is not None:
            return problem
        try:
            response = search_orders(self._orders(), request, settings)
        except SearchRequestError as exc:
            return gateway_error(HTTPStatus.BAD_REQUEST, _INVALID_ARGUMENT, str(exc))
        return HttpResponse(HTTPStatus.OK, json_format.MessageToDict(response))

    def _in_force(self) -> FaultSettings:
        """Read the settings, and restart the dice when ``fault_seed`` changed."""
        settings = self._settings()
        dice_seed = self._seed if settings.fault_seed is None else settings.fault_seed
        if dice_seed != self._dice_seed:
            self._dice_seed = dice_seed
            self._rng = random.Random(f"{dice_seed}:rest")  # noqa: S311 - fault dice, not security
            self._search.reseed(dice_seed)
        return settings

    def _guard(
        self, client_id: str, endpoint: str, now: datetime, settings: FaultSettings
    ) -> HttpResponse | None:
        """Apply the rate limit and roll the REST faults; return the refusal, if any."""
        retry_after = self._limiter.admit(client_id, endpoint, now, settings.rest_rate_limit_per_minute)
        if retry_after is not None:
            self.counters["rest_rate_limited_total"] += 1
            return _rate_limited(retry_after)
        if settings.rest_429_rate and self._rng.random() < settings.rest_429_rate:
            self.counters["rest_faults_total"] += 1
            return _rate_limited(1)
        if settings.rest_5xx_rate and self._rng.random() < settings.rest_5xx_rate:
            self.counters["rest_faults_total"] += 1
            code = _UNAVAILABLE if settings.rest_5xx_status == HTTPStatus.SERVICE_UNAVAILABLE else _INTERNAL
            return gateway_error(settings.rest_5xx_status, code, "simulated fault: server error")
        return None


def _parse(
    body: bytes | Mapping[str, Any],
    message: report_pb2.SearchExecutionsRequest | report_pb2.SearchOrdersRequest,
) -> HttpResponse | None:
    try:
        payload = json.loads(body or b"{}") if isinstance(body, bytes) else dict(body)
        json_format.ParseDict(payload, message, ignore_unknown_fields=True)
    except (ValueError, json_format.ParseError) as exc:
        return gateway_error(HTTPStatus.BAD_REQUEST, _INVALID_ARGUMENT, f"invalid request body: {exc}")
    return None
