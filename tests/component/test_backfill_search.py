"""The REST backfill against the simulator: paged to eof, 429s honoured, filtered, token refreshed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.backfill_plan import RequestPacer, RetryBudget, SubscriptionFilter, Window
from connector.simulator import SimulatedVenue, SimulatorConfig
from connector.venue.auth import TokenProvider, load_private_key
from connector.venue.backfill import ExecutionSearch, run_backfill

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
        search = ExecutionSearch(
            rest_url=endpoints.rest_url,
            participant_id=endpoints.participant_id,
            token=tokens.token,
            invalidate_token=tokens.invalidate,
            subscription=SubscriptionFilter(frozenset({SYMBOL}), frozenset()),
            page_size=25,
            timeout_s=10,
        )
        pages: list[list[trading_pb2.Execution]] = []
        results: list[str] = []
        started = time.monotonic()
        progress = run_backfill(
            search=search,
            window=Window(0, time.time_ns() + 10**9),
            pacer=RequestPacer(1000),
            budget=RetryBudget(60),
            on_page=lambda page: pages.append(list(page)),
            stop=threading.Event(),
            on_request=results.append,
        )
        elapsed = time.monotonic() - started
        journal = [entry.execution for entry in venue.journal.executions()]
    expected = [e.id for e in journal if e.order.symbol == SYMBOL]
    received = [e.id for page in pages for e in page]
    assert len(expected) > 25, "more than one page"
    assert received == expected, "every execution of the subscription, in venue order, once"
    assert progress.done and progress.executions == len(expected) and progress.pages == len(pages)
    assert results.count("throttled") >= 1, "429s were injected"
    assert results.count("error") >= 1, "the expired token was refused once, then refreshed"
    assert elapsed >= results.count("throttled") * 1.0 * 0.9, "Retry-After: 1 was honoured each time"
