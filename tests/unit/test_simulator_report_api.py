"""The pure report API: result orders, paging, indexing delay, eof without a token, page sizes, rate limit.

Driven by explicit ``now`` values over a journal the real order flow produced on a virtual clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.simulator.clock import rfc3339
from connector.simulator.exchange import Exchange
from connector.simulator.faults import FaultSettings
from connector.simulator.journal import JournaledExecution
from connector.simulator.report_api import ReportApi, SearchRateLimiter
from tests.simulator_fixtures import VirtualClock, virtual_exchange

CLIENT = "pmx-sim-client"
UNLIMITED = FaultSettings(rest_rate_limit_per_minute=0)


class Venue:
    """A virtual-clock exchange with a report API whose settings a test can change."""

    def __init__(self, updates: int = 150, seed: int = 7) -> None:
        self.clock = VirtualClock()
        self.exchange: Exchange = virtual_exchange(self.clock, seed)
        for _ in range(updates):
            self.clock.advance(0.01)
            self.exchange.advance(1)
        self.settings = UNLIMITED
        self.api = ReportApi(
            executions=self.exchange.executions,
            orders=self.exchange.orders_with_last_execution,
            settings=lambda: self.settings,
            seed=seed,
        )

    def journal(self) -> Sequence[JournaledExecution]:
        return self.exchange.executions()

    def page(self, body: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
        answer = self.api.search_executions(CLIENT, body, now or self.clock())
        assert answer.status == 200, answer.payload
        return dict(answer.payload)

    def all_pages(self, body: dict[str, Any], *, limit: int = 1000) -> list[list[str]]:
        """Page to eof, re-sending the same request after an eof=false page without a token."""
        pages = []
        request = dict(body)
        for _ in range(limit):
            payload = self.page(request)
            pages.append([e["id"] for e in payload.get("executions", [])])
            if payload.get("eof"):
                return pages
            if payload.get("nextPageToken"):
                request = {**body, "pageToken": payload["nextPageToken"]}
        pytest.fail("no eof")


@pytest.fixture
def venue() -> Venue:
    return Venue()


def journal_ids(venue: Venue) -> list[str]:
    return [entry.execution.id for entry in venue.journal()]


# ---------------------------------------------------------------------- order and paging


def test_oldest_first_by_default_in_pages_of_the_default_size(venue: Venue) -> None:
    venue.settings = UNLIMITED.with_changes({"rest_default_page_size": 40})
    pages = venue.all_pages({})
    assert [len(page) for page in pages[:-1]] == [40] * (len(pages) - 1)
    assert [i for page in pages for i in page] == journal_ids(venue)


def test_newest_first_when_the_client_asks_whatever_the_setting(venue: Venue) -> None:
    venue.settings = UNLIMITED.with_changes({"rest_result_order": "shuffled"})
    pages = venue.all_pages({"newestFirst": True, "pageSize": 30})
    assert [i for page in pages for i in page] == journal_ids(venue)[::-1]


def test_newest_first_by_setting(venue: Venue) -> None:
    venue.settings = UNLIMITED.with_changes({"rest_result_order": "newest_first"})
    pages = venue.all_pages({"pageSize": 30})
    assert [i for page in pages for i in page] == journal_ids(venue)[::-1]


def test_shuffled_across_pages_returns_everything_once(venue: Venue) -> None:
    venue.settings = UNLIMITED.with_changes({"rest_result_order": "shuffled"})
    pages = venue.all_pages({"pageSize": 30})
    flat = [i for page in pages for i in page]
    assert sorted(flat) == sorted(journal_ids(venue))
    assert flat != journal_ids(venue)
    oldest_first_pages = [set(journal_ids(venue)[n : n + 30]) for n in range(0, len(flat), 30)]
    assert [set(page) for page in pages] != oldest_first_pages, "shuffled across pages, not only within"


def test_shuffled_pages_keep_the_page_boundaries(venue: Venue) -> None:
    venue.settings = UNLIMITED.with_changes({"rest_result_order": "shuffled_pages"})
    pages = venue.all_pages({"pageSize": 30})
    expected = journal_ids(venue)
    assert [set(page) for page in pages] == [set(expected[n : n + 30]) for n in range(0, len(expected), 30)]
    assert [i for page in pages for i in page] != expected


def test_random_order_varies_per_search_and_the_token_keeps_it(venue: Venue) -> None:
    venue.settings = UNLIMITED.with_changes({"rest_result_order": "random"})
    expected = sorted(journal_ids(venue))
    seen_orders = set()
    for _ in range(12):
        flat = [i for page in venue.all_pages({"pageSize": 50}) for i in page]
        assert sorted(flat) == expected
        seen_orders.add(tuple(flat))
    assert len(seen_orders) >= 3


def test_window_start_inclusive_end_exclusive_with_filters(venue: Venue) -> None:
    journal = venue.journal()
    start = journal[10].execution.transact_time.ToDatetime(tzinfo=UTC)
    end = journal[60].execution.transact_time.ToDatetime(tzinfo=UTC)
    symbol = journal[20].execution.order.symbol
    body = {"startTime": rfc3339(start), "endTime": rfc3339(end), "symbol": symbol, "pageSize": 7}
    got = [i for page in venue.all_pages(body) for i in page]
    expected = [
        e.execution.id
        for e in journal
        if start <= e.execution.transact_time.ToDatetime(tzinfo=UTC) < end
        and e.execution.order.symbol == symbol
    ]
    assert got == expected and expected


def test_page_size_is_capped_and_negative_is_refused(venue: Venue) -> None:
    venue.settings = UNLIMITED.with_changes({"rest_max_page_size": 25, "rest_default_page_size": 10})
    assert len(venue.page({"pageSize": 5000})["executions"]) == 25
    assert len(venue.page({})["executions"]) == 10
    venue.settings = UNLIMITED.with_changes({"rest_max_page_size": 5})
    assert len(venue.page({})["executions"]) == 5, "the default page is capped too"
    refused = venue.api.search_executions(CLIENT, {"pageSize": -1}, venue.clock())
    assert refused.status == 400 and refused.payload["code"] == 3


def test_bad_tokens_and_bodies_are_400(venue: Venue) -> None:
    for body in (b"{not json", b'{"pageToken": "bm9wZQ=="}', b'{"pageSize": "many"}'):
        answer = venue.api.search_executions(CLIENT, body, venue.clock())
        assert answer.status == 400, body
        assert answer.payload["code"] == 3


# ---------------------------------------------------------------------- indexing delay


def test_an_execution_is_searchable_only_after_the_indexing_delay(venue: Venue) -> None:
    venue.settings = UNLIMITED.with_changes({"rest_indexing_delay_s": 2.0, "rest_max_page_size": 1000})
    journal = venue.journal()
    last = journal[-1].execution.transact_time.ToDatetime(tzinfo=UTC)
    now = journal[0].execution.transact_time.ToDatetime(tzinfo=UTC) + timedelta(seconds=2.75)
    visible = [e["id"] for e in venue.page({"pageSize": 1000}, now).get("executions", [])]
    delay = timedelta(seconds=2)
    expected = [
        e.execution.id for e in journal if e.execution.transact_time.ToDatetime(tzinfo=UTC) + delay <= now
    ]
    assert visible == expected
    assert 0 < len(visible) < len(journal)
    later = last + timedelta(seconds=2)
    assert len(venue.page({"pageSize": 1000}, later)["executions"]) == len(venue.journal())


def test_indexing_jitter_makes_executions_searchable_out_of_order(venue: Venue) -> None:
    venue.settings = UNLIMITED.with_changes({"rest_indexing_jitter_s": 1.0})
    journal = venue.journal()
    first = journal[0].execution.transact_time.ToDatetime(tzinfo=UTC)
    now = first + timedelta(seconds=1.0)
    visible = {e["id"] for e in venue.page({"pageSize": 1000}, now).get("executions", [])}
    order = [entry.execution.id for entry in journal]
    positions = sorted(order.index(i) for i in visible)
    assert visible and len(visible) < len(order)
    assert positions != list(range(len(positions))), "a later execution is searchable before an earlier one"


# ---------------------------------------------------------------------- eof without a token


def test_eof_false_with_an_empty_token_and_the_same_request_answers_the_same_page(venue: Venue) -> None:
    assert venue.page({"pageSize": 20})["nextPageToken"], "without the fault, the first page has a token"
    venue.settings = UNLIMITED.with_changes({"rest_no_token_rate": 1.0})
    first = venue.page({"pageSize": 20})
    assert not first.get("eof", False)
    assert "nextPageToken" not in first
    assert len(first["executions"]) == 20 < len(venue.journal())
    assert [e["id"] for e in venue.page({"pageSize": 20})["executions"]] == [
        e["id"] for e in first["executions"]
    ]
    assert venue.api.counters["rest_no_token_pages_total"] == 2


@settings(max_examples=40, deadline=None)
@given(
    order=st.sampled_from(["oldest_first", "newest_first", "shuffled_pages", "shuffled", "random"]),
    size=st.integers(1, 60),
    no_token_rate=st.sampled_from([0.0, 0.3]),
    newest=st.booleans(),
)
def test_property_paging_to_eof_returns_every_execution_of_the_window(
    order: str, size: int, no_token_rate: float, newest: bool
) -> None:
    venue = Venue(updates=60)
    venue.settings = UNLIMITED.with_changes({"rest_result_order": order, "rest_no_token_rate": no_token_rate})
    body: dict[str, Any] = {"pageSize": size, "newestFirst": newest}
    pages = venue.all_pages(body)
    flat = [i for page in pages for i in page]
    assert set(flat) == set(journal_ids(venue))
    if no_token_rate == 0.0:
        assert len(flat) == len(set(flat)), "each once"
    assert all(len(page) <= size for page in pages)


# ---------------------------------------------------------------------- rate limit and faults


def test_rate_limiter_rolling_minute_per_client_and_endpoint() -> None:
    limiter = SearchRateLimiter()
    t0 = VirtualClock()()
    for n in range(12):
        assert limiter.admit("a", "x", t0 + timedelta(seconds=n), 12) is None
    assert limiter.admit("a", "x", t0 + timedelta(seconds=20), 12) == 40
    assert limiter.admit("b", "x", t0 + timedelta(seconds=20), 12) is None, "another client"
    assert limiter.admit("a", "y", t0 + timedelta(seconds=20), 12) is None, "another endpoint"
    assert limiter.admit("a", "x", t0 + timedelta(seconds=60), 12) is None, "the first hit left the window"
    assert limiter.admit("a", "x", t0 + timedelta(seconds=60.5), 12) == 1
    assert limiter.admit("a", "x", t0 + timedelta(seconds=61), 5) == 7, "lower limit: 8 + 60 - 61"
    assert limiter.admit("a", "x", t0, 0) is None, "0: no limit"


def test_report_api_answers_429_with_retry_after_and_refusals_use_no_slot(venue: Venue) -> None:
    venue.settings = FaultSettings(rest_rate_limit_per_minute=3)
    now = venue.clock()
    statuses = [venue.api.search_executions(CLIENT, {}, now + timedelta(seconds=n)).status for n in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = venue.api.search_executions(CLIENT, {}, now + timedelta(seconds=30))
    assert refused.status == 429
    assert dict(refused.headers)["Retry-After"] == "30"
    assert refused.payload == {"code": 8, "message": "rate limit exceeded", "details": []}
    assert venue.api.search_orders(CLIENT, {}, now).status == 200, "each endpoint has its own window"
    assert venue.api.search_executions(CLIENT, {}, now + timedelta(seconds=60)).status == 200


def test_rest_fault_dice_follow_the_fault_seed() -> None:
    def statuses(seed: int | None) -> list[int]:
        venue = Venue(updates=5)
        venue.settings = UNLIMITED.with_changes(
            {"rest_429_rate": 0.3, "rest_5xx_rate": 0.3, "fault_seed": seed}
        )
        return [venue.api.search_executions(CLIENT, {}, venue.clock()).status for _ in range(40)]

    assert statuses(5) == statuses(5)
    assert statuses(5) != statuses(6)
    assert {200, 429, 503} <= set(statuses(5))
