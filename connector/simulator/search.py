"""The report searches (SearchExecutions, SearchOrders) over the journal and the order book: pure functions.

Semantics chosen where the venue docs are silent (docs/simulator.md repeats them):

* executions: ``startTime``/``endTime`` filter on ``transact_time``, start **inclusive**, end
  **exclusive**; results are in journal (sequence) order, which is also transact-time order, or the
  reverse with ``newestFirst``; ``eof`` is true on the last page, whose ``nextPageToken`` is empty;
* orders: ``startTime``/``endTime`` filter on the order's ``last_transact_time`` (so "closed since T"
  finds orders closed during a gap), same bounds; oldest order first; no ``eof``, an empty
  ``nextPageToken`` ends the paging; ``ORDER_STATE_FILTER_OPEN`` means any non-terminal state
  (pending ones included), ``CLOSED`` any terminal state;
* ``pageSize``: 0 or absent means 100, values above 1000 are capped at 1000, negative is an error;
* page tokens are opaque; they carry the sequence of the last item returned, so paging is stable while
  the venue keeps trading.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from connector._pb.polymarket.v1 import enums_pb2, report_pb2, trading_pb2
from connector.simulator.clock import from_timestamp
from connector.simulator.journal import JournaledExecution
from connector.simulator.order_flow import TERMINAL_STATES

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "SearchRequestError", "search_executions", "search_orders"]

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
_TOKEN_PREFIX: Final = "sim1:"  # noqa: S105 - a page-token format tag, not a secret

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


def _page_size(requested: int) -> int:
    if requested < 0:
        msg = f"pageSize must not be negative, got {requested}"
        raise SearchRequestError(msg)
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _encode_token(position: int) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{position}".encode()).decode()


def _decode_token(token: str) -> int | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except ValueError as exc:
        msg = "invalid pageToken"
        raise SearchRequestError(msg) from exc
    if not text.startswith(_TOKEN_PREFIX) or not text[len(_TOKEN_PREFIX) :].isdigit():
        msg = "invalid pageToken"
        raise SearchRequestError(msg)
    return int(text[len(_TOKEN_PREFIX) :])


def _in_window(moment: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or moment >= start) and (end is None or moment < end)


def _window(
    request: report_pb2.SearchExecutionsRequest | report_pb2.SearchOrdersRequest,
) -> tuple[datetime | None, datetime | None]:
    start = from_timestamp(request.start_time) if request.HasField("start_time") else None
    end = from_timestamp(request.end_time) if request.HasField("end_time") else None
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


def search_executions(
    journal: Sequence[JournaledExecution], request: report_pb2.SearchExecutionsRequest
) -> report_pb2.SearchExecutionsResponse:
    """Answer a SearchExecutions request from the journal.

    Args:
        journal: Every journaled execution, in sequence order.
        request: The request.

    Returns:
        One page of matching executions.

    Raises:
        SearchRequestError: Bad page size or page token.
    """
    size = _page_size(request.page_size)
    after = _decode_token(request.page_token)
    start, end = _window(request)
    ordered = reversed(journal) if request.newest_first else iter(journal)
    page: list[JournaledExecution] = []
    more = False
    for entry in ordered:
        if after is not None and (entry.seq >= after if request.newest_first else entry.seq <= after):
            continue
        if not _in_window(from_timestamp(entry.execution.transact_time), start, end):
            continue
        if not _execution_matches(entry.execution, request):
            continue
        if len(page) == size:
            more = True
            break
        page.append(entry)
    response = report_pb2.SearchExecutionsResponse(
        executions=[entry.execution for entry in page], eof=not more
    )
    if more:
        response.next_page_token = _encode_token(page[-1].seq)
    return response


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
) -> report_pb2.SearchOrdersResponse:
    """Answer a SearchOrders request.

    Args:
        orders: Every order (oldest first) with its latest execution.
        request: The request.

    Returns:
        One page of matching orders (and their latest executions when asked).

    Raises:
        SearchRequestError: Bad page size or page token.
    """
    size = _page_size(request.page_size)
    after = _decode_token(request.page_token)
    start, end = _window(request)
    page: list[tuple[trading_pb2.Order, trading_pb2.Execution | None]] = []
    last_position = 0
    more = False
    for position, (order, last_execution) in enumerate(orders, start=1):
        if after is not None and position <= after:
            continue
        if not _in_window(from_timestamp(order.last_transact_time), start, end):
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
        response.next_page_token = _encode_token(last_position)
    return response
