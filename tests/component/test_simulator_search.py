"""The simulator's REST report searches: exactly the journal's executions, paging, filters, pacing, auth."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from connector._pb.polymarket.v1 import report_pb2
from connector.simulator import SimulatedVenue, SimulatorConfig
from connector.simulator.order_flow import TERMINAL_STATES
from tests.simulator_fixtures import search


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        seed=21, rate=0.0, warmup_updates=600, heartbeat_interval_s=0.2, rest_rate_limit=False,
        journal_path=tmp_path / "journal.jsonl",
    )  # fmt: skip


def journal_executions(venue: SimulatedVenue) -> list[dict[str, Any]]:
    assert venue.config.journal_path is not None
    lines = [json.loads(line) for line in venue.config.journal_path.read_text().splitlines()]
    return [line for line in lines if line["kind"] == "execution"]


def page_through(venue: SimulatedVenue, token: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    executions: list[dict[str, Any]] = []
    pages = 0
    page_token = ""
    while True:
        response = search(venue.endpoints, token, "executions", {**body, "pageToken": page_token})
        assert response.status_code == 200, response.text
        payload = response.json()
        pages += 1
        parsed = json_format.ParseDict(
            payload, report_pb2.SearchExecutionsResponse(), ignore_unknown_fields=True
        )
        executions.extend(payload.get("executions", []))
        if payload.get("eof"):
            assert not parsed.next_page_token
            return executions, pages
        assert parsed.next_page_token
        page_token = parsed.next_page_token


def test_execution_search_returns_exactly_the_journal_window_across_pages(
    simulator: SimulatedVenue, simulator_token: str
) -> None:
    journal = journal_executions(simulator)
    start, end = journal[100]["transact_time"], journal[400]["transact_time"]
    expected = [line["execution_id"] for line in journal if start <= line["transact_time"] < end]
    got, pages = page_through(
        simulator, simulator_token, {"startTime": start, "endTime": end, "pageSize": 17}
    )
    assert [e["id"] for e in got] == expected
    assert pages == len(expected) // 17 + 1
    newest, _ = page_through(
        simulator, simulator_token, {"startTime": start, "endTime": end, "pageSize": 50, "newestFirst": True}
    )
    assert [e["id"] for e in newest] == expected[::-1]


def test_execution_search_json_is_grpc_gateway_shaped(
    simulator: SimulatedVenue, simulator_token: str
) -> None:
    payload = search(simulator.endpoints, simulator_token, "executions", {"pageSize": 5}).json()
    first = payload["executions"][0]
    assert isinstance(first["order"]["orderQty"], str)  # int64 as a string
    assert first["order"]["priceScale"] == "1000"
    assert "type" not in first or first["type"].startswith(
        "EXECUTION_TYPE_"
    )  # NEW is the zero value: omitted
    assert first["transactTime"].endswith("Z")
    assert "eof" not in payload  # false is a zero value
    assert payload["nextPageToken"]


@pytest.mark.parametrize(
    ("body", "keep"),
    [
        ({"symbol": "SIM-RATES-CUT-YES"}, lambda line: line["symbol"] == "SIM-RATES-CUT-YES"),
        (
            {"accounts": ["firms/SIM/accounts/A1", "firms/SIM/accounts/A3"]},
            lambda line: line["account"] in {"firms/SIM/accounts/A1", "firms/SIM/accounts/A3"},
        ),
        (
            {"types": ["EXECUTION_TYPE_NEW", "EXECUTION_TYPE_FILL"]},
            lambda line: line["type"] in {"EXECUTION_TYPE_NEW", "EXECUTION_TYPE_FILL"},
        ),
    ],
    ids=["symbol", "accounts", "types"],
)
def test_execution_search_filters_match_the_journal(
    simulator: SimulatedVenue, simulator_token: str, body: dict[str, Any], keep: Any
) -> None:
    expected = [line["execution_id"] for line in journal_executions(simulator) if keep(line)]
    assert expected
    got, _ = page_through(simulator, simulator_token, {**body, "pageSize": 40})
    assert [e["id"] for e in got] == expected


def test_execution_search_by_order_and_exec_ids(simulator: SimulatedVenue, simulator_token: str) -> None:
    journal = journal_executions(simulator)
    order_id = journal[10]["order_id"]
    got, _ = page_through(simulator, simulator_token, {"orderId": order_id})
    assert [e["id"] for e in got] == [
        line["execution_id"] for line in journal if line["order_id"] == order_id
    ]
    wanted = [journal[3]["execution_id"], journal[77]["execution_id"]]
    got, _ = page_through(simulator, simulator_token, {"execIds": wanted})
    assert [e["id"] for e in got] == wanted


def test_execution_search_sees_new_executions(simulator: SimulatedVenue, simulator_token: str) -> None:
    before = len(journal_executions(simulator))
    simulator.advance(20)
    after = journal_executions(simulator)
    got, _ = page_through(
        simulator, simulator_token, {"startTime": after[before]["transact_time"], "pageSize": 1000}
    )
    assert {e["id"] for e in got} >= {line["execution_id"] for line in after[before:]}


@pytest.mark.parametrize("body", [{"pageToken": "garbage"}, {"pageSize": -1}, {"startTime": "yesterday"}])
def test_bad_search_request_is_400(
    simulator: SimulatedVenue, simulator_token: str, body: dict[str, Any]
) -> None:
    response = search(simulator.endpoints, simulator_token, "executions", body)
    assert response.status_code == 400
    assert response.json()["code"] == 3


def test_order_search_state_filters_and_last_execution(
    simulator: SimulatedVenue, simulator_token: str
) -> None:
    open_ids = [order.id for order in simulator.open_orders()]

    def all_orders(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        orders: list[dict[str, Any]] = []
        last: list[dict[str, Any]] = []
        token = ""
        while True:
            response = search(
                simulator.endpoints, simulator_token, "orders", {**body, "pageToken": token, "pageSize": 25}
            )
            assert response.status_code == 200, response.text
            payload = response.json()
            assert "eof" not in payload
            orders.extend(payload.get("order", []))
            last.extend(payload.get("lastExecutions", []))
            token = payload.get("nextPageToken", "")
            if not token:
                return orders, last

    opened, _ = all_orders({"orderStateFilter": "ORDER_STATE_FILTER_OPEN"})
    assert [o["id"] for o in opened] == open_ids
    closed, last = all_orders({"orderStateFilter": "ORDER_STATE_FILTER_CLOSED", "withLastExecution": True})
    assert closed and not {o["id"] for o in closed} & set(open_ids)
    terminal_names = {
        "ORDER_STATE_FILLED",
        "ORDER_STATE_CANCELED",
        "ORDER_STATE_REJECTED",
        "ORDER_STATE_EXPIRED",
    }
    assert {o["state"] for o in closed} <= terminal_names
    assert len(terminal_names) == len(TERMINAL_STATES) - 1  # REPLACED is never produced
    assert [e["order"]["id"] for e in last] == [o["id"] for o in closed]
    for execution in last:
        journaled = simulator.journal.last_execution(execution["order"]["id"])
        assert journaled is not None and execution["id"] == journaled.id
    filled, _ = all_orders({"orderStateFilter": "ORDER_STATE_FILTER_FILLED"})
    assert filled and all(o["state"] == "ORDER_STATE_FILLED" for o in filled)
    without, last_none = all_orders({"orderStateFilter": "ORDER_STATE_FILTER_CLOSED"})
    assert len(without) == len(closed) and not last_none


def test_order_search_time_window_is_on_last_transact_time(
    simulator: SimulatedVenue, simulator_token: str
) -> None:
    orders = simulator.open_orders()
    start = orders[-1].last_transact_time.ToJsonString()
    response = search(simulator.endpoints, simulator_token, "orders", {"startTime": start, "pageSize": 1000})
    got = response.json().get("order", [])
    assert orders[-1].id in {o["id"] for o in got}
    start_time = datetime.fromisoformat(start)
    assert all(datetime.fromisoformat(o["lastTransactTime"]) >= start_time for o in got)


def test_search_needs_token_scope_and_participant(simulator: SimulatedVenue, simulator_token: str) -> None:
    endpoints = simulator.endpoints
    missing = search(endpoints, None, "executions", {})
    assert missing.status_code == 401 and missing.json()["code"] == 16
    expired = search(endpoints, simulator.issue_token(lifetime_s=-1), "executions", {})
    assert expired.status_code == 401
    no_scope = search(endpoints, simulator.issue_token(scopes=["read:orders"]), "orders", {})
    assert no_scope.status_code == 403 and no_scope.json()["code"] == 7
    wrong_participant = search(endpoints, simulator_token, "executions", {}, participant_id="firms/X/users/y")
    assert wrong_participant.status_code == 403


@pytest.mark.parametrize("simulator_config", [SimulatorConfig(rate=0.0, rest_rate_limit=True)])
def test_rate_limit_answers_429_with_retry_after(simulator: SimulatedVenue, simulator_token: str) -> None:
    codes = [
        search(simulator.endpoints, simulator_token, "executions", {"pageSize": 1}).status_code
        for _ in range(12)
    ]
    assert codes == [200] * 12
    limited = search(simulator.endpoints, simulator_token, "executions", {"pageSize": 1})
    assert limited.status_code == 429
    assert limited.json() == {"code": 8, "message": "rate limit exceeded", "details": []}
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # The limit is per endpoint: the orders search is still allowed.
    assert search(simulator.endpoints, simulator_token, "orders", {"pageSize": 1}).status_code == 200
