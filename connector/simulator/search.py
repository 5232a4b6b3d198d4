"""The report searches (SearchExecutions, SearchOrders) over the journal and the book: pure, clock-injected.

Semantics chosen where the venue docs are silent (venue-api.md §5; docs/simulator.md repeats them):

* executions: ``startTime``/``endTime`` filter on ``transact_time``, start **inclusive**, end
  **exclusive**. An execution is searchable (indexed) only from its ``transact_time`` +
  ``rest_indexing_delay_s`` + a fixed per-execution share of ``rest_indexing_jitter_s``, so with
  jitter executions become searchable out of order;
* result order: ``newestFirst: true`` gives newest first, always. Otherwise ``rest_result_order``:
  ``oldest_first`` (journal order, which is transact-time order), ``newest_first``, ``shuffled_pages``
  (oldest-first pages, each one shuffled), ``shuffled`` (the whole result shuffled across pages) or
  ``random`` (one of these four per search). An explicit ``newestFirst: false`` cannot be told from an
  absent one: grpc-gateway parses into proto3, where a bool has no presence;
* paging: ``pageSize`` 0 or absent means ``rest_default_page_size``; either above
  ``rest_max_page_size`` is capped to it; negative is an error. Pass ``nextPageToken`` back as
  ``pageToken``; ``eof`` is true on the last page, whose ``nextPageToken`` is empty. Ordered pages
  are keyset pages: the token carries the sequence of the page's last item, so paging stays live
  while the venue trades (an execution indexed later shows up on a later page if it sorts after the
  boundary, and is missed if it sorts before). A ``shuffled`` search fixes its result list at the
  first page (a cursor; the newest 256 are kept, an older token is a 400);
* ``rest_no_token_rate``: per executions page, the answer says ``eof: false`` with an empty
  ``nextPageToken``: the client cannot continue; the same request again (same ``pageToken``) answers
  the same page afresh (a ``shuffled`` search's first page: a fresh cursor);
* orders: ``startTime``/``endTime`` filter on the order's ``last_transact_time`` (so "closed since T"
  finds orders closed during a gap), same bounds; oldest order first; no ``eof``, an empty
  ``nextPageToken`` ends the paging; ``ORDER_STATE_FILTER_OPEN`` means any non-terminal state
  (pending ones included), ``CLOSED`` any terminal state. No indexing delay, no reordering.

Page tokens are opaque.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import random
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from google.protobuf import timestamp_pb2

from connector._pb.polymarket.v1 import enums_pb2, report_pb2, trading_pb2
from connector.simulator.clock import to_timestamp
from connector.simulator.faults import FaultSettings
from connector.simulator.journal import JournaledExecution
from connector.simulator.order_flow import TERMINAL_STATES

__all__ = ["ExecutionSearch", "SearchRequestError", "search_orders"]

_TOKEN_PREFIX: Final = "sim1:"  # noqa: S105 - a page-token format tag, not a secret
_CURSORS_KEPT: Final = 256
_NANOS_PER_SECOND: Final = 1_000_000_000
_ORDERS: Final = ("oldest_first", "newest_first", "shuffled_pages", "shuffled")
_MODE_OF: Final = {"oldest_first": "o", "newest_first": "n", "shuffled_pages": "p", "shuffled": "s"}

_SPECIFIC_STATE: Final = {
    enums_pb2.ORDER_STATE_FILTER_NEW: enums_pb2.ORDER_STATE_NEW,
    enums_pb2.ORDER_STATE_FILTER_PARTIALLY_FILLED: enums_pb2.ORDER_STATE_PARTIALLY_FILLED,
    enums_pb2.ORDER_STATE_FILTER_FILLED: enums_pb2.ORDER_STATE_FILLED,
    enums_pb2.ORDER_STATE_FILTER_CANCELED: enums_pb2.ORDER_STATE_CANCELED,
    enums_pb2.ORDER_STATE_FILTER_REPLACED: enums_pb2.ORDER_STATE_REPLACED,
    enums_pb2.ORDER_STATE_FILTER_REJECTED: enums_pb2.ORDER_STATE_REJECTED,
    enums_pb2.ORDER_STATE_FILTER_EXPIRED: enums_pb2.ORDER_STATE_EXPIRED,
    enums_pb2.ORDER_STATE_FILTER_PENDING_RISK: enums_pb2.ORDER_STATE_PENDING_RISK,
}


class SearchRequestError(ValueError):
    """A search request is invalid (bad page size or page token)."""


def _page_size(requested: int, settings: FaultSettings) -> int:
    if requested < 0:
        msg = f"pageSize must not be negative, got {requested}"
        raise SearchRequestError(msg)
    return min(requested or settings.rest_default_page_size, settings.rest_max_page_size)


def _encode_token(*parts: object) -> str:
    text = _TOKEN_PREFIX + ":".join(str(part) for part in parts)
    return base64.urlsafe_b64encode(text.encode()).decode()


def _decode_token(token: str) -> list[str]:
    """Split a page token into its parts (the first is the mode); raise on anything malformed."""
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except ValueError as exc:
        msg = "invalid pageToken"
        raise SearchRequestError(msg) from exc
    parts = text[len(_TOKEN_PREFIX) :].split(":")
    numbers_ok = all(part.isdigit() for part in parts[1:])
    if not text.startswith(_TOKEN_PREFIX) or not numbers_ok or parts[0] not in _MODE_OF.values():
        msg = "invalid pageToken"
        raise SearchRequestError(msg)
    if len(parts) != (3 if parts[0] == "s" else 2):
        msg = "invalid pageToken"
        raise SearchRequestError(msg)
    return parts


def _nanos(stamp: timestamp_pb2.Timestamp) -> int:
    return stamp.seconds * _NANOS_PER_SECOND + stamp.nanos


def _transact_nanos(entry: JournaledExecution) -> int:
    return _nanos(entry.execution.transact_time)


def _seq(entry: JournaledExecution) -> int:
    return entry.seq


def _window_nanos(
    request: report_pb2.SearchExecutionsRequest | report_pb2.SearchOrdersRequest,
) -> tuple[int | None, int | None]:
    start = _nanos(request.start_time) if request.HasField("start_time") else None
    end = _nanos(request.end_time) if request.HasField("end_time") else None
    return start, end


def _execution_matches(execution: trading_pb2.Execution, request: report_pb2.SearchExecutionsRequest) -> bool:
    order = execution.order
    checks = (
        not request.order_id or order.id == request.order_id,
        not request.clord_id or order.clord_id == request.clord_id,
        not request.symbol or order.symbol == request.symbol,
        not request.accounts or order.account in request.accounts,
        not request.types or execution.type in request.types,
        not request.exec_ids or execution.id in request.exec_ids,
        not request.client_account_id or order.client_account_id == request.client_account_id,
        not request.client_participant_id or order.client_participant_id == request.client_participant_id,
        not request.parent_order_id or order.parent_order_id == request.parent_order_id,
    )
    return all(checks)


class ExecutionSearch:
    """SearchExecutions with the venue's open behaviours, its cursors and dice (see the module docstring).

    Not thread-safe. Deterministic: the same seed and the same calls give the same answers.
    """

    def __init__(self, seed: int | str) -> None:
        self._seed = str(seed)
        self._rng = random.Random(f"{seed}:search")  # noqa: S311 - simulated ordering, not security
        self._cursors: OrderedDict[int, list[JournaledExecution]] = OrderedDict()
        self._next_cursor = 1
        self._jitter_share: dict[str, float] = {}

    def reseed(self, seed: int | str) -> None:
        """Restart the dice from another seed (cursors stay valid)."""
        self._seed = str(seed)
        self._rng = random.Random(f"{seed}:search")  # noqa: S311 - simulated ordering, not security
        self._jitter_share.clear()

    def indexed_at_nanos(self, entry: JournaledExecution, settings: FaultSettings) -> int:
        """When an execution becomes searchable (nanoseconds since the epoch)."""
        delay_s = settings.rest_indexing_delay_s
        if settings.rest_indexing_jitter_s:
            delay_s += settings.rest_indexing_jitter_s * self._share(entry.execution.id)
        return _transact_nanos(entry) + int(delay_s * _NANOS_PER_SECOND)

    def _share(self, execution_id: str) -> float:
        share = self._jitter_share.get(execution_id)
        if share is None:
            digest = hashlib.blake2b(f"{self._seed}:{execution_id}".encode(), digest_size=8).digest()
            share = int.from_bytes(digest, "big") / 2**64
            self._jitter_share[execution_id] = share
        return share

    def answer(
        self,
        journal: Sequence[JournaledExecution],
        request: report_pb2.SearchExecutionsRequest,
        now: datetime,
        settings: FaultSettings,
    ) -> report_pb2.SearchExecutionsResponse:
        """Answer one SearchExecutions request.

        Args:
            journal: Every journaled execution, in sequence order (which is transact-time order).
            request: The request.
            now: The venue's time (for the indexing delay).
            settings: The behaviour settings in force.

        Returns:
            One page of matching executions.

        Raises:
            SearchRequestError: Bad page size or page token.
        """
        size = _page_size(request.page_size, settings)
        parts = _decode_token(request.page_token) if request.page_token else None
        if parts is not None:
            mode = parts[0]
        elif request.newest_first:
            mode = "n"
        else:
            order = settings.rest_result_order
            mode = _MODE_OF[self._rng.choice(_ORDERS) if order == "random" else order]
        candidates = self._candidates(journal, request, now, settings)
        if mode == "s":
            page, token = self._cursor_page(candidates, parts, size)
        else:
            page, token = self._keyset_page(candidates, parts, mode, size)
        response = report_pb2.SearchExecutionsResponse(
            executions=[entry.execution for entry in page], eof=token is None
        )
        if token is not None:
            response.next_page_token = token
        if settings.rest_no_token_rate and self._rng.random() < settings.rest_no_token_rate:
            response.eof = False
            response.next_page_token = ""
        return response

    def _candidates(
        self,
        journal: Sequence[JournaledExecution],
        request: report_pb2.SearchExecutionsRequest,
        now: datetime,
        settings: FaultSettings,
    ) -> list[JournaledExecution]:
        """Every searchable execution matching the window and filters, in sequence order."""
        start, end = _window_nanos(request)
        low = 0 if start is None else bisect.bisect_left(journal, start, key=_transact_nanos)
        high = len(journal) if end is None else bisect.bisect_left(journal, end, key=_transact_nanos)
        delayed = settings.rest_indexing_delay_s > 0 or settings.rest_indexing_jitter_s > 0
        now_nanos = _nanos(to_timestamp(now))
        return [
            entry
            for entry in journal[low:high]
            if (not delayed or self.indexed_at_nanos(entry, settings) <= now_nanos)
            and _execution_matches(entry.execution, request)
        ]

    def _keyset_page(
        self, candidates: list[JournaledExecution], parts: list[str] | None, mode: str, size: int
    ) -> tuple[list[JournaledExecution], str | None]:
        if mode == "n":
            before = (
                len(candidates) if parts is None else bisect.bisect_left(candidates, int(parts[1]), key=_seq)
            )
            page = candidates[max(0, before - size) : before][::-1]
            more = before - size > 0
        else:
            after = 0 if parts is None else bisect.bisect_right(candidates, int(parts[1]), key=_seq)
            page = candidates[after : after + size]
            more = after + size < len(candidates)
        token = _encode_token(mode, page[-1].seq) if more else None
        if mode == "p":
            self._rng.shuffle(page)
        return page, token

    def _cursor_page(
        self, candidates: list[JournaledExecution], parts: list[str] | None, size: int
    ) -> tuple[list[JournaledExecution], str | None]:
        if parts is None:
            cursor, offset = self._next_cursor, 0
            self._next_cursor += 1
            shuffled = list(candidates)
            self._rng.shuffle(shuffled)
            self._cursors[cursor] = shuffled
            while len(self._cursors) > _CURSORS_KEPT:
                self._cursors.popitem(last=False)
        else:
            cursor, offset = int(parts[1]), int(parts[2])
            if cursor not in self._cursors:
                msg = "invalid pageToken: the search cursor has expired"
                raise SearchRequestError(msg)
            self._cursors.move_to_end(cursor)
        results = self._cursors[cursor]
        page = results[offset : offset + size]
        more = offset + size < len(results)
        return page, _encode_token("s", cursor, offset + size) if more else None


def _state_matches(state: enums_pb2.OrderState, state_filter: enums_pb2.OrderStateFilter) -> bool:
    if state_filter == enums_pb2.ORDER_STATE_FILTER_UNDEFINED:
        return True
    if state_filter == enums_pb2.ORDER_STATE_FILTER_OPEN:
        return state not in TERMINAL_STATES
    if state_filter == enums_pb2.ORDER_STATE_FILTER_CLOSED:
        return state in TERMINAL_STATES
    return _SPECIFIC_STATE.get(state_filter) == state


def _order_matches(order: trading_pb2.Order, request: report_pb2.SearchOrdersRequest) -> bool:
    checks = (
        not request.order_id or order.id == request.order_id,
        not request.clord_id or order.clord_id == request.clord_id,
        not request.symbol or order.symbol == request.symbol,
        not request.accounts or order.account in request.accounts,
        not request.side or order.side == request.side,
        not request.type or order.type == request.type,
        _state_matches(order.state, request.order_state_filter),
        not request.client_account_id or order.client_account_id == request.client_account_id,
        not request.client_participant_id or order.client_participant_id == request.client_participant_id,
        not request.parent_order_id or order.parent_order_id == request.parent_order_id,
        not request.cross_id or order.cross_id == request.cross_id,
        not request.host_cross_id or order.host_cross_id == request.host_cross_id,
    )
    return all(checks)


def search_orders(
    orders: Sequence[tuple[trading_pb2.Order, trading_pb2.Execution | None]],
    request: report_pb2.SearchOrdersRequest,
    settings: FaultSettings,
) -> report_pb2.SearchOrdersResponse:
    """Answer a SearchOrders request.

    Args:
        orders: Every order (oldest first) with its latest execution.
        request: The request.
        settings: The behaviour settings in force (page sizes).

    Returns:
        One page of matching orders (and their latest executions when asked).

    Raises:
        SearchRequestError: Bad page size or page token.
    """
    size = _page_size(request.page_size, settings)
    after = int(_decode_token(request.page_token)[1]) if request.page_token else None
    start, end = _window_nanos(request)
    page: list[tuple[trading_pb2.Order, trading_pb2.Execution | None]] = []
    last_position = 0
    more = False
    for position, (order, last_execution) in enumerate(orders, start=1):
        if after is not None and position <= after:
            continue
        moment = _nanos(order.last_transact_time)
        if (start is not None and moment < start) or (end is not None and moment >= end):
            continue
        if not _order_matches(order, request):
            continue
        if len(page) == size:
            more = True
            break
        page.append((order, last_execution))
        last_position = position
    response = report_pb2.SearchOrdersResponse(order=[order for order, _ in page])
    if request.with_last_execution:
        response.last_executions.extend(execution for _, execution in page if execution is not None)
    if more:
        response.next_page_token = _encode_token("o", last_position)
    return response
