"""The simulator's order flow: determinism under a fake clock, and lifecycle invariants over long runs."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from connector._pb.polymarket.v1 import enums_pb2, trading_pb2
from connector.simulator.clock import from_timestamp
from connector.simulator.journal import Journal, journal_lines
from connector.simulator.order_flow import TERMINAL_STATES, FlowParams, OrderFlow, VenueUpdate

ACCOUNTS = ("firms/SIM/accounts/A1", "firms/SIM/accounts/A2", "firms/SIM/accounts/A3")
SYMBOLS = ("SIM-X-YES", "SIM-Y-YES", "SIM-Z-YES")
START = datetime(2026, 3, 1, 14, 30, tzinfo=UTC)


class FakeClock:
    """A clock that moves a fixed step each time it is read."""

    def __init__(self, step: timedelta = timedelta(milliseconds=37)) -> None:
        self.now = START
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def run_flow(seed: int, steps: int, **params: int) -> tuple[OrderFlow, list[VenueUpdate]]:
    flow = OrderFlow(FlowParams(accounts=ACCOUNTS, symbols=SYMBOLS, **params), seed)
    clock = FakeClock()
    return flow, [flow.step(clock()) for _ in range(steps)]


def journal_text(updates: list[VenueUpdate]) -> list[str]:
    lines: list[str] = []
    for update in updates:
        lines.extend(json.dumps(line, sort_keys=True) for line in journal_lines(update, len(lines) + 1))
    return lines


def test_same_seed_gives_the_same_journal_and_another_seed_does_not() -> None:
    first = journal_text(run_flow(42, 3000)[1])
    second = journal_text(run_flow(42, 3000)[1])
    other = journal_text(run_flow(43, 3000)[1])
    assert first == second
    assert first != other
    assert len(first) > 3000


def test_journal_file_lines_have_the_documented_fields(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "journal.jsonl"
    journal = Journal(path)
    journal.open()
    _, updates = run_flow(5, 400)
    for update in updates:
        journal.record(update)
    journal.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    kinds = Counter(line["kind"] for line in lines)
    assert kinds["execution"] > 0 and kinds["cancel_reject"] > 0
    for line in lines:
        assert {
            "kind",
            "execution_id",
            "order_id",
            "account",
            "symbol",
            "type",
            "transact_time",
            "seq",
        } <= set(line)
        assert line["transact_time"].endswith("Z") and len(line["transact_time"]) == len(
            "2026-03-01T14:30:00.000000Z"
        )
        if line["kind"] == "cancel_reject":
            assert line["execution_id"] is None
            assert line["type"].startswith("CXL_REJ_REASON_")
        else:
            assert line["type"].startswith("EXECUTION_TYPE_")


def test_every_lifecycle_of_the_brief_occurs() -> None:
    _, updates = run_flow(11, 6000)
    types = Counter(e.type for u in updates for e in u.executions)
    for exec_type in (
        enums_pb2.EXECUTION_TYPE_NEW,
        enums_pb2.EXECUTION_TYPE_PARTIAL_FILL,
        enums_pb2.EXECUTION_TYPE_FILL,
        enums_pb2.EXECUTION_TYPE_CANCELED,
        enums_pb2.EXECUTION_TYPE_REPLACE,
        enums_pb2.EXECUTION_TYPE_REJECTED,
        enums_pb2.EXECUTION_TYPE_EXPIRED,
    ):
        assert types[exec_type] > 0, enums_pb2.ExecutionType.Name(exec_type)
    reasons = Counter(u.cancel_reject.reject.reject_reason for u in updates if u.cancel_reject is not None)
    assert set(reasons) == {
        enums_pb2.CXL_REJ_REASON_TOO_LATE_TO_CANCEL,
        enums_pb2.CXL_REJ_REASON_UNKNOWN_ORDER,
        enums_pb2.CXL_REJ_REASON_EXCHANGE_OPTION,
        enums_pb2.CXL_REJ_REASON_ALREADY_PENDING,
    }
    assert any(len(u.executions) >= 3 for u in updates), (
        "an aggressive order fills several times in one update"
    )
    assert any(len(u.executions) == 1 and u.cancel_reject is not None for u in updates), (
        "fill plus too-late reject"
    )
    unsolicited = [e for u in updates for e in u.executions if e.unsolicited_cancel_reason]
    assert unsolicited and all(e.type == enums_pb2.EXECUTION_TYPE_CANCELED and e.text for e in unsolicited)
    rejects = [e for u in updates for e in u.executions if e.type == enums_pb2.EXECUTION_TYPE_REJECTED]
    assert all(e.text and e.order.state == enums_pb2.ORDER_STATE_REJECTED for e in rejects)
    assert {e.order_reject_reason for e in rejects} > {enums_pb2.ORD_REJECT_REASON_EXCHANGE_OPTION}


def check_invariants(flow: OrderFlow, updates: list[VenueUpdate], params: FlowParams) -> None:
    exec_ids: set[str] = set()
    trade_ids: set[str] = set()
    closed: set[str] = set()
    fees: dict[str, int] = defaultdict(int)
    last_time: datetime | None = None
    for update in updates:
        times = [from_timestamp(e.transact_time) for e in update.executions]
        if update.cancel_reject is not None:
            times.append(from_timestamp(update.cancel_reject.reject.transact_time))
        for moment in times:
            assert last_time is None or moment >= last_time
            last_time = moment
        for execution in update.executions:
            order = execution.order
            assert execution.id not in exec_ids
            exec_ids.add(execution.id)
            assert order.id not in closed, "terminal states are final"
            assert order.price_scale == params.price_scale
            assert order.fractional_quantity_scale == params.fractional_quantity_scale
            assert order.last_transact_time == execution.transact_time
            assert sum(order.price_to_quantity_filled.values()) == order.cum_qty
            if execution.type in (enums_pb2.EXECUTION_TYPE_FILL, enums_pb2.EXECUTION_TYPE_PARTIAL_FILL):
                assert execution.trade_id and execution.trade_id not in trade_ids
                trade_ids.add(execution.trade_id)
                assert execution.last_shares > 0
                assert execution.last_px in order.price_to_quantity_filled
                gross = execution.last_px * execution.last_shares
                bps = params.taker_fee_bps if execution.aggressor else -params.maker_rebate_bps
                assert execution.commission_notional_collected == (
                    gross * bps // 10_000 if bps > 0 else -(gross * -bps // 10_000)
                )
                fees[order.id] += execution.commission_notional_collected
            else:
                assert not execution.trade_id and execution.last_shares == 0
            assert order.commission_notional_total_collected == fees[order.id]
            if order.cum_qty:
                notional = sum(px * qty for px, qty in order.price_to_quantity_filled.items())
                assert order.avg_px == (notional + order.cum_qty // 2) // order.cum_qty
            if order.state in TERMINAL_STATES:
                closed.add(order.id)
                assert order.leaves_qty == 0
                if order.state == enums_pb2.ORDER_STATE_FILLED:
                    assert order.cum_qty == order.order_qty
            else:
                assert order.cum_qty + order.leaves_qty == order.order_qty
                assert order.leaves_qty > 0
    for order in flow.open_orders():
        assert order.cum_qty + order.leaves_qty == order.order_qty
        assert order.state not in TERMINAL_STATES


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    price_scale=st.sampled_from([1000, 10000]),
    quantity_scale=st.sampled_from([1, 100]),
)
def test_lifecycle_invariants_hold_over_a_long_run(seed: int, price_scale: int, quantity_scale: int) -> None:
    params = FlowParams(
        accounts=ACCOUNTS, symbols=SYMBOLS, price_scale=price_scale, fractional_quantity_scale=quantity_scale
    )
    flow = OrderFlow(params, seed)
    clock = FakeClock()
    updates = [flow.step(clock()) for _ in range(2500)]
    check_invariants(flow, updates, params)


def test_transact_time_never_goes_back_even_if_the_clock_does() -> None:
    flow = OrderFlow(FlowParams(accounts=ACCOUNTS, symbols=SYMBOLS), 3)
    first = flow.step(START + timedelta(seconds=10))
    second = flow.step(START)
    stamps = [e.transact_time for e in first.executions + second.executions]
    assert all(isinstance(stamp, type(trading_pb2.Execution().transact_time)) for stamp in stamps)
    assert from_timestamp(stamps[-1]) >= from_timestamp(stamps[0])
