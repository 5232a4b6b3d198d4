"""The REST search and the backfill state machine against the simulator: every page, through 429s."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from connector.core.backfill_plan import SubscriptionFilter, Window
from connector.core.pacing import RequestPacer
from connector.engine.backfill import BackfillRun, BackfillState, BackfillTuning, run_to_end
from connector.engine.ports import SearchFailure, SearchPage, SystemClock
from connector.engine.recovery import search_result
from connector.simulator import SimulatedVenue, SimulatorConfig
from connector.venue.auth import TokenProvider, load_private_key
from connector.venue.search import ExecutionSearchClient

SYMBOL = "SIM-ELECTION-YES"


def test_a_backfill_reads_the_whole_window_through_429s_and_an_expired_token(tmp_path: Path) -> None:
    config = SimulatorConfig(seed=3, rate=0.0, warmup_updates=300, rest_rate_limit=False)
    with SimulatedVenue(config) as venue:
        key_file = tmp_path / "client.pem"
        key_file.write_bytes(venue.generate_client_key())
        endpoints = venue.endpoints
        tokens = TokenProvider(
            key=load_private_key(key_file),
            client_id=endpoints.client_id,
            token_url=endpoints.token_url,
            audience=endpoints.audience,
        )
        tokens.token()
        venue.set_faults(rest_429_rate=0.4, expire_issued_tokens=True)
        search = ExecutionSearchClient(
            rest_url=endpoints.rest_url,
            participant_id=endpoints.participant_id,
            token=tokens.token,
            invalidate_token=tokens.invalidate,
            subscription=SubscriptionFilter(frozenset({SYMBOL}), frozenset()),
            page_size=25,
            timeout_s=10,
        )
        clock = SystemClock()
        run = BackfillRun(
            Window(0, clock.time_ns()),
            BackfillTuning(indexing_delay_s=0.0, slice_max_s=10**9, retry_budget_s=60),
            RequestPacer(1000, clock.monotonic()),
            now=clock.monotonic(),
        )
        published: list[Any] = []
        results: list[str] = []

        def record(answer: SearchPage | SearchFailure) -> None:
            results.append(search_result(answer))

        def publish(executions: Sequence[Any]) -> None:
            published.extend(executions)

        started = time.monotonic()
        run_to_end(run, search.page, publish, clock=clock, sleep=time.sleep, on_answer=record)
        elapsed = time.monotonic() - started
        journal = [entry.execution for entry in venue.journal.executions()]
    expected = [e.id for e in journal if e.order.symbol == SYMBOL]
    assert len(expected) > 25, "more than one page"
    assert [e.id for e in published] == expected, "every execution of the subscription, in venue order, once"
    assert run.state is BackfillState.DONE
    assert run.progress.executions == len(expected)
    assert run.progress.pages == results.count("ok")
    assert results.count("throttled") >= 1, "429s were injected"
    assert results.count("error") >= 1, "the expired token was refused once, then refreshed"
    assert elapsed >= results.count("throttled") * 1.0 * 0.9, "Retry-After: 1 was honoured each time"
