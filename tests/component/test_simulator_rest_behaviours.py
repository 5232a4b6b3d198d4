"""The REST behaviours the venue docs leave open, over real HTTP, on a venue driven by a virtual clock.

Result order, ``newestFirst``, the indexing delay, ``eof: false`` without a token, the page-size cap and
the 12/minute limit per client across connections and tokens.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connector.commands import simulator as command
from connector.simulator import SimulatedVenue, SimulatorConfig
from tests.simulator_fixtures import HTTP_TIMEOUT_S, VirtualClock, make_assertion, request_token, search


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def venue_config() -> SimulatorConfig:
    return SimulatorConfig(seed=7, rate=0.0, warmup_updates=120, rest_rate_limit=False)


@pytest.fixture
def venue(venue_config: SimulatorConfig, clock: VirtualClock) -> Iterator[SimulatedVenue]:
    with SimulatedVenue(venue_config, clock=clock) as started:
        yield started


@pytest.fixture
def client_key(venue: SimulatedVenue) -> bytes:
    return venue.generate_client_key()


def token_for(venue: SimulatedVenue, key: bytes, client_id: str | None = None) -> str:
    assertion = make_assertion(key, venue.endpoints, client_id=client_id)
    response = request_token(venue.endpoints, assertion, client_id=client_id)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture
def token(venue: SimulatedVenue, client_key: bytes) -> str:
    return token_for(venue, client_key)


def control(venue: SimulatedVenue, changes: dict[str, Any]) -> None:
    response = requests.post(f"{venue.endpoints.control_url}/faults", json=changes, timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200, response.text


def page(venue: SimulatedVenue, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = search(venue.endpoints, token, "executions", body)
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


def every_page(venue: SimulatedVenue, token: str, body: dict[str, Any]) -> list[list[str]]:
    pages, request = [], dict(body)
    for _ in range(500):
        payload = page(venue, token, request)
        pages.append([execution["id"] for execution in payload.get("executions", [])])
        if payload.get("eof"):
            return pages
        if payload.get("nextPageToken"):
            request = {**body, "pageToken": payload["nextPageToken"]}
    pytest.fail("no eof")


def journal_ids(venue: SimulatedVenue) -> list[str]:
    return [entry.execution.id for entry in venue.journal.executions()]


def test_result_orders_set_over_the_control_endpoint(venue: SimulatedVenue, token: str) -> None:
    expected = journal_ids(venue)
    assert [i for p in every_page(venue, token, {"pageSize": 40}) for i in p] == expected, "oldest first"
    control(venue, {"rest_result_order": "newest_first"})
    assert [i for p in every_page(venue, token, {"pageSize": 40}) for i in p] == expected[::-1]
    control(venue, {"rest_result_order": "shuffled"})
    shuffled = [i for p in every_page(venue, token, {"pageSize": 40}) for i in p]
    assert sorted(shuffled) == sorted(expected) and shuffled != expected
    newest = every_page(venue, token, {"pageSize": 40, "newestFirst": True})
    assert [i for p in newest for i in p] == expected[::-1], "newestFirst is honoured"


def parsed(*flags: str) -> SimulatorConfig:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.config_from_args(parser.parse_args(["--rate", "0", "--no-rest-rate-limit", *flags]))


@pytest.mark.parametrize(
    "venue_config", [parsed("--rest-result-order", "shuffled_pages", "--rest-max-page-size", "25")]
)
def test_shuffled_pages_and_the_page_cap_set_by_flags(venue: SimulatedVenue, token: str) -> None:
    pages = every_page(venue, token, {"pageSize": 1000})
    expected = journal_ids(venue)
    assert all(len(p) <= 25 for p in pages) and len(pages[0]) == 25
    assert [set(p) for p in pages] == [set(expected[n : n + 25]) for n in range(0, len(expected), 25)]
    assert [i for p in pages for i in p] != expected


def test_an_execution_is_searchable_only_after_the_indexing_delay(
    venue: SimulatedVenue, token: str, clock: VirtualClock
) -> None:
    control(venue, {"rest_indexing_delay_s": 5.0})
    before = set(journal_ids(venue))
    clock.advance(5.0)
    fresh = {e.id for u in venue.advance(20) for e in u.executions}
    visible = {e["id"] for e in page(venue, token, {"pageSize": 1000})["executions"]}
    assert visible == before, "the fresh executions are not searchable yet"
    clock.advance(4.9)
    assert {e["id"] for e in page(venue, token, {"pageSize": 1000})["executions"]} == before
    clock.advance(0.1)
    assert {e["id"] for e in page(venue, token, {"pageSize": 1000})["executions"]} == before | fresh


def test_eof_false_with_an_empty_next_page_token(venue: SimulatedVenue, token: str) -> None:
    control(venue, {"rest_no_token_rate": 1.0})
    first = page(venue, token, {"pageSize": 10})
    assert len(first["executions"]) == 10 < len(journal_ids(venue))
    assert first.get("eof", False) is False
    assert first.get("nextPageToken", "") == ""
    control(venue, {"rest_no_token_rate": 0.0})
    again = page(venue, token, {"pageSize": 10})
    assert [e["id"] for e in again["executions"]] == [e["id"] for e in first["executions"]]
    assert again["nextPageToken"]
    stats = requests.get(f"{venue.endpoints.control_url}/stats", timeout=HTTP_TIMEOUT_S).json()
    assert stats["rest_no_token_pages_total"] == 1


@pytest.mark.parametrize("venue_config", [SimulatorConfig(seed=7, rate=0.0, warmup_updates=20)])
def test_the_rate_limit_is_per_client_across_connections_and_tokens(
    venue: SimulatedVenue, client_key: bytes, clock: VirtualClock
) -> None:
    first_token = token_for(venue, client_key)
    statuses = []
    with requests.Session() as connection:  # one keep-alive connection
        for _ in range(6):
            response = connection.post(
                f"{venue.endpoints.rest_url}/v1/report/executions/search",
                json={},
                headers={
                    "Authorization": f"Bearer {first_token}",
                    "x-participant-id": venue.endpoints.participant_id,
                },
                timeout=HTTP_TIMEOUT_S,
            )
            statuses.append(response.status_code)
    clock.advance(10)
    restarted_token = token_for(venue, client_key)  # a restarted client: new token, new connections
    statuses += [search(venue.endpoints, restarted_token, "executions", {}).status_code for _ in range(7)]
    assert statuses == [200] * 12 + [429]
    refused = search(venue.endpoints, restarted_token, "executions", {})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "50"
    assert refused.json() == {"code": 8, "message": "rate limit exceeded", "details": []}
    assert search(venue.endpoints, restarted_token, "orders", {}).status_code == 200, "its own window"
    other_key = venue.generate_client_key("another-client")
    other = token_for(venue, other_key, "another-client")
    assert search(venue.endpoints, other, "executions", {}).status_code == 200, "another client's window"
    clock.advance(50)
    assert search(venue.endpoints, restarted_token, "executions", {}).status_code == 200
    control(venue, {"rest_rate_limit_per_minute": 0})
    assert all(search(venue.endpoints, other, "executions", {}).status_code == 200 for _ in range(15))
