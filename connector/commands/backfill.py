"""The ``backfill`` command: re-feed a window of venue executions to Kafka, once, with progress.

For accounting after an incident ("re-send everything between 09:00 and 10:00"): the same REST
search, pacing, retry budget, subscription filter and mapping as the service's own recovery
(DESIGN.md §4), published with ``source=backfill`` to the executions topic. By default every
execution in the window is published again, since re-feeding is the point; ``--skip-published``
drops the ones already in the tail of the executions topic instead. The service can keep running
beside it (the venue's 12 searches a minute are shared by both, so expect 429s to be honoured).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from connector._pb.polymarket.v1 import trading_pb2
from connector.commands.composition import build_pipeline, build_tokens, encoders_for, execution_search
from connector.config import load_settings, start_from_ns
from connector.core.backfill_plan import RequestPacer, RetryBudget, Window
from connector.core.dedup import RecentExecutionIds
from connector.core.mapping import EventContext, Source
from connector.core.watermark import Watermark
from connector.errors import ConfigError, RuntimeFailure
from connector.kafka.publisher import Publisher, build_producer
from connector.kafka.resume import seed_recent_ids
from connector.kafka.topics import check_topics, topic_names
from connector.observability.http import iso_from_ns
from connector.observability.metrics import Metrics
from connector.venue.backfill import BackfillCancelled, BackfillExhausted, run_backfill

FLUSH_TIMEOUT_S: Final = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``backfill``'s flags."""
    parser.add_argument("--config", type=Path, metavar="PATH", help="YAML settings file (as for run)")
    parser.add_argument(
        "--since", required=True, metavar="TIME", help="window start, ISO 8601 with offset (inclusive)"
    )
    parser.add_argument(
        "--until",
        default="now",
        metavar="TIME",
        help="window end, ISO 8601 with offset (exclusive); default now",
    )
    parser.add_argument(
        "--skip-published",
        action="store_true",
        help="drop executions already in the tail of the executions topic (default: publish all again)",
    )


def run(args: argparse.Namespace) -> int:
    """Search the window to the end, publish every execution, flush; return 0."""
    settings = load_settings(args.config)
    window = _window(args.since, args.until)
    topics = topic_names(settings)
    check_topics(settings, [topics["executions"], topics["dlq"]], create=False)
    metrics = Metrics(tuple(topics.values()))
    kafka = settings.kafka
    capacity = settings.connector.recent_execution_ids
    recent_ids = RecentExecutionIds(capacity)
    if args.skip_published:
        seeded = seed_recent_ids(
            recent_ids, kafka.bootstrap_servers, kafka.properties, topics["executions"], capacity
        )
        _say(f"{seeded} execution ids already in {topics['executions']} will be skipped")
    watermark = Watermark()
    publisher = Publisher(build_producer(kafka.bootstrap_servers, kafka.properties), watermark)
    encoders, schema_ids = encoders_for(settings, topics)
    if schema_ids is not None and schema_ids.missing():
        _say("asking the Schema Registry for the schema IDs ...")
        if not schema_ids.wait(threading.Event(), lambda reason: _say(reason) if reason else None):
            return 1
    pipeline = build_pipeline(
        settings, encoders, publisher, watermark, recent_ids=recent_ids, metrics=metrics
    )
    session = f"backfill-{uuid.uuid4()}"

    def publish(executions: Sequence[trading_pb2.Execution]) -> None:
        context = EventContext(Source.BACKFILL, session, None, time.time_ns(), settings.connector.name)
        for execution in executions:
            pipeline.on_execution(execution, context)
        publisher.poll(0)

    span = f"[{iso_from_ns(window.start_ns)}, {iso_from_ns(window.end_ns)})"
    _say(f"backfilling {span} into {topics['executions']}")
    tokens = build_tokens(settings, metrics)
    try:
        progress = run_backfill(
            search=execution_search(settings, tokens),
            window=window,
            pacer=RequestPacer(settings.backfill.requests_per_minute),
            budget=RetryBudget(settings.backfill.retry_budget_s),
            on_page=publish,
            stop=threading.Event(),  # runs to the end; Ctrl-C interrupts the process
            on_request=lambda result: metrics.backfill_requests.labels(result).inc(),
            on_progress=lambda p: _say(f"page {p.pages}: {p.executions} executions so far"),
        )
    except (BackfillExhausted, BackfillCancelled) as exc:
        msg = f"the window could not be read completely: {exc}"
        raise RuntimeFailure(msg) from None
    remaining = publisher.flush(FLUSH_TIMEOUT_S)
    if remaining or watermark.failure is not None:
        reason = f" (delivery failed: {watermark.failure.reason})" if watermark.failure else ""
        msg = f"{remaining} records were not acknowledged by Kafka{reason}"
        raise RuntimeFailure(msg)
    skipped = _sample(metrics, "pmx_connector_duplicates_dropped_total")
    dead = sum(
        _sample(metrics, "pmx_connector_dlq_records_total", {"reason": r}) for r in _dlq_reasons(metrics)
    )
    _say(
        f"done: {progress.executions} executions in {progress.pages} pages ({progress.requests} requests): "
        f"{progress.executions - skipped - dead} published, {skipped} skipped as already published, "
        f"{dead} dead-lettered"
    )
    return 0


def _window(since: str, until: str) -> Window:
    try:
        start = start_from_ns(since)
        end = start_from_ns(until)
    except ValueError as exc:
        msg = f"--since/--until: {exc}"
        raise ConfigError(msg) from None
    if start is None:
        msg = "--since: give a time, not 'now'"
        raise ConfigError(msg)
    end = time.time_ns() if end is None else end
    if start >= end:
        msg = f"--since ({since}) must be before --until ({until})"
        raise ConfigError(msg)
    return Window(start, end)


def _sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> int:
    return int(metrics.registry.get_sample_value(name, labels or {}) or 0)


def _dlq_reasons(metrics: Metrics) -> set[str]:
    return {
        sample.labels["reason"]
        for family in metrics.dlq_records.collect()
        for sample in family.samples
        if "reason" in sample.labels
    }


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
