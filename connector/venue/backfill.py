"""Gap recovery over the venue's REST execution search: paged, paced, retried, filtered.

``POST /v1/report/executions/search`` (venue-api.md §5.2) answers grpc-gateway JSON, parsed here into
the same protobuf ``Execution`` the stream carries, so one mapper serves both. A backfill walks one
window page by page until ``eof``, never faster than the venue's limit (12 requests per minute),
honouring ``Retry-After``, refreshing the token after a 401, and retrying failures with exponential
waits until the retry budget is spent: then :class:`BackfillExhausted` says the window cannot be
proven complete (the caller declares a gap). Executions outside the subscription are dropped here
(the search takes a single symbol). HTTP and JSON errors are translated at this one boundary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import requests
from google.protobuf import json_format

from connector._pb.polymarket.v1 import report_pb2, trading_pb2
from connector.core.backfill_plan import RequestPacer, RetryBudget, SubscriptionFilter, Window
from connector.errors import ConnectorError
from connector.venue.auth import CredentialsRefused, TokenEndpointUnavailable

_LOG: Final = logging.getLogger(__name__)

SEARCH_PATH: Final = "/v1/report/executions/search"
HTTP_UNAUTHORIZED: Final = 401
HTTP_TOO_MANY_REQUESTS: Final = 429
HTTP_OK: Final = 200
CANCELLED: Final = "backfill cancelled"


class BackfillExhausted(ConnectorError):
    """The search kept failing past its retry budget: the window cannot be proven complete."""


class BackfillCancelled(ConnectorError):
    """The backfill was asked to stop (the stream ended or the service is stopping)."""


class SearchFailure(Exception):
    """One search request failed: the HTTP status (0: no answer), ``Retry-After``, and why."""

    def __init__(self, status: int, retry_after_s: float | None, detail: str) -> None:
        super().__init__(status, retry_after_s, detail)
        self.status = status
        self.retry_after_s = retry_after_s
        self.detail = detail

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.detail}" if self.status else self.detail


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """How far a backfill got."""

    window: Window
    pages: int = 0
    requests: int = 0
    executions: int = 0
    done: bool = False


def rfc3339(nanos: int) -> str:
    """Render epoch nanoseconds as RFC 3339 UTC with nanosecond digits (what grpc-gateway accepts)."""
    seconds, fraction = divmod(nanos, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{fraction:09d}Z"


class ExecutionSearch:
    """One page of ``SearchExecutions`` at a time, authenticated like the stream."""

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

    def page(self, window: Window, page_token: str) -> report_pb2.SearchExecutionsResponse:
        """Fetch one page of the window.

        Raises:
            SearchFailure: no answer, a refusal, or an answer that is not a search response.
        """
        body: dict[str, Any] = {
            "startTime": rfc3339(window.start_ns),
            "endTime": rfc3339(window.end_ns),
            "pageSize": self._page_size,
        }
        if page_token:
            body["pageToken"] = page_token
        if self._subscription.accounts:
            body["accounts"] = sorted(self._subscription.accounts)
        if len(self._subscription.symbols) == 1:
            (body["symbol"],) = self._subscription.symbols
        try:
            headers = {"authorization": f"Bearer {self._token()}", "x-participant-id": self._participant_id}
            answer = self._session.post(self._url, json=body, headers=headers, timeout=self._timeout_s)
        except (TokenEndpointUnavailable, CredentialsRefused) as exc:
            raise SearchFailure(0, None, f"no access token: {exc}") from None
        except requests.RequestException as exc:
            raise SearchFailure(0, None, f"{type(exc).__name__}: {exc}") from None
        if answer.status_code != HTTP_OK:
            if answer.status_code == HTTP_UNAUTHORIZED:
                self._invalidate_token()
            raise SearchFailure(answer.status_code, _retry_after(answer), answer.text[:200])
        try:
            return json_format.ParseDict(
                answer.json(), report_pb2.SearchExecutionsResponse(), ignore_unknown_fields=True
            )
        except (ValueError, json_format.ParseError) as exc:
            raise SearchFailure(answer.status_code, None, f"unreadable search response: {exc}") from None

    def wanted(self, execution: trading_pb2.Execution) -> bool:
        """Whether a searched execution belongs to the subscription."""
        return self._subscription.matches(execution.order.symbol, execution.order.account)


def run_backfill(
    *,
    search: ExecutionSearch,
    window: Window,
    pacer: RequestPacer,
    budget: RetryBudget,
    on_page: Callable[[Sequence[trading_pb2.Execution]], None],
    stop: threading.Event,
    on_request: Callable[[str], None] = lambda _result: None,
    on_progress: Callable[[BackfillProgress], None] = lambda _progress: None,
    clock: Callable[[], float] = time.monotonic,
) -> BackfillProgress:
    """Search the window to ``eof``, handing each page's wanted executions to ``on_page``.

    ``on_request`` is told ``ok``, ``throttled`` (429) or ``error`` after each request.

    Raises:
        BackfillExhausted: the retry budget was spent; the window is not proven complete.
        BackfillCancelled: ``stop`` was set.
    """
    progress = BackfillProgress(window)
    page_token = ""
    while True:
        if stop.wait(pacer.wait_s(clock())):
            raise BackfillCancelled(CANCELLED)
        pacer.sent(clock())
        progress = replace(progress, requests=progress.requests + 1)
        try:
            response = search.page(window, page_token)
        except SearchFailure as failure:
            throttled = failure.status == HTTP_TOO_MANY_REQUESTS
            on_request("throttled" if throttled else "error")
            now = clock()
            if failure.retry_after_s is not None:
                pacer.hold(now, failure.retry_after_s)
            delay = budget.failed(now, failure.retry_after_s)
            if delay is None:
                msg = f"execution search failed past its retry budget: {failure}"
                raise BackfillExhausted(msg) from None
            _LOG.warning("execution search failed (%s); retrying in %.1f s", failure, delay)
            if stop.wait(delay):
                raise BackfillCancelled(CANCELLED) from None
            continue
        on_request("ok")
        budget.succeeded()
        wanted = [execution for execution in response.executions if search.wanted(execution)]
        on_page(wanted)
        done = response.eof or not response.next_page_token
        progress = replace(
            progress, pages=progress.pages + 1, executions=progress.executions + len(wanted), done=done
        )
        on_progress(progress)
        if done:
            return progress
        page_token = response.next_page_token


def _retry_after(answer: requests.Response) -> float | None:
    raw = answer.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
