"""The venue's REST execution search: one page per request, answered on a worker thread.

``POST /v1/report/executions/search`` (venue-api.md §5.2) answers grpc-gateway JSON, parsed here into
the same protobuf ``Execution`` the stream carries, so one decoder serves both. Each request asks
for the oldest first (``newestFirst: false``) at the configured page size, with the subscription's
accounts, and its symbol when it has exactly one; the filter is applied client-side too (the search
takes a single symbol). A 401 drops the cached token so the next request gets a fresh one.

:class:`ThreadedSearch` is the engine's :class:`~connector.engine.ports.ExecutionSearch`: requests
run one at a time on a worker thread, and the answer rings the engine's doorbell. Pacing, retries,
paging and the tail re-search are the engine's (``engine/backfill.py``). HTTP and JSON errors are
translated here into :class:`~connector.engine.ports.SearchFailure` values.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

import requests
from google.protobuf import json_format

from connector._pb.polymarket.v1 import report_pb2, trading_pb2
from connector.core.backfill_plan import SubscriptionFilter
from connector.core.venue_time import rfc3339_ns
from connector.engine.ports import SearchFailure, SearchPage, SearchRequest
from connector.errors import CredentialsRefused, TokenEndpointUnavailable

_LOG: Final = logging.getLogger(__name__)

SEARCH_PATH: Final = "/v1/report/executions/search"
HTTP_UNAUTHORIZED: Final = 401
HTTP_OK: Final = 200


class ExecutionSearchClient:
    """One page of ``SearchExecutions`` at a time, authenticated like the stream (blocking)."""

    def __init__(
        self,
        *,
        rest_url: str,
        participant_id: str,
        token: Callable[[], str],
        invalidate_token: Callable[[], None],
        subscription: SubscriptionFilter,
        page_size: int,
        timeout_s: float,
        session: requests.Session | None = None,
    ) -> None:
        """Hold what every request needs (no I/O yet)."""
        self._url = rest_url.rstrip("/") + SEARCH_PATH
        self._participant_id = participant_id
        self._token = token
        self._invalidate_token = invalidate_token
        self._subscription = subscription
        self._page_size = page_size
        self._timeout_s = timeout_s
        self._session = session or requests.Session()

    def page(self, request: SearchRequest) -> SearchPage | SearchFailure:
        """Fetch one page: the subscription's executions and where to go on, or why it failed."""
        try:
            headers = {"authorization": f"Bearer {self._token()}", "x-participant-id": self._participant_id}
            answer = self._session.post(
                self._url, json=self.body(request), headers=headers, timeout=self._timeout_s
            )
        except (TokenEndpointUnavailable, CredentialsRefused) as exc:
            return SearchFailure(0, None, f"no access token: {exc}")
        except requests.RequestException as exc:
            return SearchFailure(0, None, f"{type(exc).__name__}: {exc}")
        if answer.status_code == HTTP_UNAUTHORIZED:
            self._invalidate_token()
        try:
            payload: Any = answer.json()
        except ValueError:
            payload = answer.text
        return self.answer(answer.status_code, payload, parse_retry_after(answer.headers.get("Retry-After")))

    def body(self, request: SearchRequest) -> dict[str, Any]:
        """The JSON body of one search request (oldest first, the subscription's accounts and symbol)."""
        window = request.window
        body: dict[str, Any] = {
            "startTime": rfc3339_ns(window.start_ns),
            "endTime": rfc3339_ns(window.end_ns),
            "pageSize": self._page_size,
            "newestFirst": False,
        }
        if request.page_token:
            body["pageToken"] = request.page_token
        if self._subscription.accounts:
            body["accounts"] = sorted(self._subscription.accounts)
        if len(self._subscription.symbols) == 1:
            (body["symbol"],) = self._subscription.symbols
        return body

    def answer(self, status: int, payload: Any, retry_after_s: float | None) -> SearchPage | SearchFailure:
        """Translate one HTTP answer (status, parsed JSON) into a page of the subscription, or a failure."""
        if status != HTTP_OK:
            detail = payload if isinstance(payload, str) else json.dumps(payload)
            return SearchFailure(status, retry_after_s, detail[:200])
        try:
            parsed = json_format.ParseDict(
                payload, report_pb2.SearchExecutionsResponse(), ignore_unknown_fields=True
            )
        except (ValueError, TypeError, AttributeError, json_format.ParseError) as exc:
            return SearchFailure(status, None, f"unreadable search response: {exc}")
        wanted = [execution for execution in parsed.executions if self.wanted(execution)]
        return SearchPage(wanted, parsed.next_page_token, parsed.eof)

    def wanted(self, execution: trading_pb2.Execution) -> bool:
        """Whether a searched execution belongs to the subscription."""
        return self._subscription.matches(execution.order.symbol, execution.order.account)


class ThreadedSearch:
    """The engine's search port: one request at a time on a worker thread, answers polled."""

    def __init__(self, client: ExecutionSearchClient, doorbell: Callable[[], None]) -> None:
        """Send requests through ``client``; ring ``doorbell`` when an answer is ready."""
        self._client = client
        self._doorbell = doorbell
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search")
        self._pending: Future[SearchPage | SearchFailure] | None = None
        self._lock = threading.Lock()

    def submit(self, request: SearchRequest) -> None:
        """Send the request on the worker thread."""
        future = self._executor.submit(self._client.page, request)
        with self._lock:
            self._pending = future
        future.add_done_callback(lambda _future: self._doorbell())

    def poll(self) -> SearchPage | SearchFailure | None:
        """The answer to the request in flight, once it has come."""
        with self._lock:
            future = self._pending
            if future is None or not future.done():
                return None
            self._pending = None
        return future.result()

    def cancel(self) -> None:
        """Forget the request in flight (the worker finishes it; its answer is dropped)."""
        with self._lock:
            self._pending = None

    def close(self) -> None:
        """Stop the worker thread (after the engine finished)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def parse_retry_after(raw: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (None when absent or an HTTP date)."""
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
