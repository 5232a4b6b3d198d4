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
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from connector.commands.composition import (
    build_decoder,
    build_tokens,
    encoders_for,
    execution_search,
    framing,
)
from connector.config import Settings, load_settings, start_from_ns
from connector.core.backfill_plan import Window
from connector.core.dedup import RecentExecutionIds
from connector.core.mapping import EventContext, Source
from connector.core.pacing import FullJitterBackoff, RequestPacer
from connector.core.records import Headers, OutRecord, base_headers, record_headers
from connector.core.venue_time import iso_from_ns
from connector.engine.backfill import BackfillRun, BackfillState, BackfillTuning, run_to_end
from connector.engine.pipeline import VenueDecoder, refused_dead_letter
from connector.engine.ports import SearchFailure, SearchPage, SystemClock
from connector.engine.recovery import HTTP_FORBIDDEN, search_result
from connector.errors import ConfigError, RecordRefused, RuntimeFailure, SearchRefused, TransientFailure
from connector.kafka.publisher import KafkaPublisher, build_producer, max_record_bytes
from connector.kafka.recent_ids import KafkaRecentIdSeeder
from connector.kafka.topics import check_topics, topic_names
from connector.observability.metrics import Metrics

FLUSH_TIMEOUT_S: Final = 60.0
FULL_POLL_S: Final = 0.05
REGISTRY_RETRY_MAX_S: Final = 30.0


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
        help="drop executions the executions topic holds from --since on (default: publish all again)",
    )


def run(args: argparse.Namespace) -> int:
    """Search the window to the end, publish every execution, flush; return 0."""
    settings = load_settings(args.config)
    window = _window(args.since, args.until)
    topics = topic_names(settings)
    check_topics(settings, [topics["executions"], topics["dlq"]], create=False)
    metrics = Metrics(tuple(topics.values()))
    kafka = settings.kafka
    recent_ids = RecentExecutionIds(settings.connector.recent_execution_ids)
    if args.skip_published:
        seeder = KafkaRecentIdSeeder(
            bootstrap_servers=kafka.bootstrap_servers, properties=kafka.properties, topic=topics["executions"]
        )
        seeded = seeder.seed(recent_ids, window.start_ns)
        _say(f"{seeded} execution ids already in {topics['executions']} will be skipped")
    encoders, schema_ids = encoders_for(settings, topics)
    if schema_ids is not None and schema_ids.missing():
        _say("asking the Schema Registry for the schema IDs ...")
        _resolve_with_retries(schema_ids.resolve)
    decoder = build_decoder(settings, encoders, framing(settings, schema_ids), "backfill")
    publisher = KafkaPublisher(build_producer(kafka.bootstrap_servers, kafka.properties), lambda _seq: None)
    span = f"[{iso_from_ns(window.start_ns)}, {iso_from_ns(window.end_ns)}]"
    _say(f"backfilling {span} into {topics['executions']}")
    run = _search(settings, window, decoder, publisher, recent_ids=recent_ids, metrics=metrics)
    remaining = publisher.flush(FLUSH_TIMEOUT_S)
    publisher.poll()
    if remaining:
        msg = f"{remaining} records were not acknowledged by Kafka within {FLUSH_TIMEOUT_S:.0f} s"
        raise RuntimeFailure(msg)
    progress = run.progress
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


def _search(
    settings: Settings,
    window: Window,
    decoder: VenueDecoder,
    publisher: KafkaPublisher,
    *,
    recent_ids: RecentExecutionIds,
    metrics: Metrics,
) -> BackfillRun:
    """Drive one backfill to its end with blocking requests, publishing as slices complete."""
    backfill = settings.backfill
    tuning = BackfillTuning(backfill.indexing_delay_s, backfill.slice_max_s, backfill.retry_budget_s)
    clock = SystemClock()
    pacer = RequestPacer(backfill.requests_per_minute, clock.monotonic())
    search = execution_search(settings, build_tokens(settings, metrics))
    run = BackfillRun(window, tuning, pacer, now=clock.monotonic())
    session = f"backfill-{uuid.uuid4()}"
    headers: dict[tuple[str, str], Headers] = {}

    def answered(answer: SearchPage | SearchFailure) -> None:
        metrics.backfill_request(search_result(answer))
        if isinstance(answer, SearchFailure):
            if answer.status == HTTP_FORBIDDEN:
                msg = f"the venue refused the execution search ({answer}): the credentials need read:reports"
                raise SearchRefused(msg)
            _say(f"search failed ({answer}); retrying")
        else:
            found = run.progress.executions + len(answer.executions)
            _say(f"page {run.progress.pages + 1}: {found} executions so far")

    def publish(executions: Sequence[Any]) -> None:
        context = EventContext(Source.BACKFILL, session, None, clock.time_ns(), settings.connector.name)
        for execution in executions:
            record = decoder.execution(execution, context)
            if record.topic == decoder.executions_topic:
                if not recent_ids.add(record.execution_id):
                    metrics.duplicate_dropped()
                    continue
            else:
                metrics.dead_lettered(record.event_type, "venue data")
            base = headers.setdefault(
                (record.event_type, record.topic), base_headers(record, settings.connector.name)
            )
            _publish(publisher, record, record_headers(base, record, relaxed=False), decoder)

    run_to_end(run, search.page, publish, clock=clock, sleep=time.sleep, on_answer=answered)
    if run.state is BackfillState.EXHAUSTED:
        msg = f"the window could not be read completely: {run.failure_detail}"
        raise RuntimeFailure(msg)
    return run


def _publish(publisher: KafkaPublisher, record: OutRecord, headers: Headers, decoder: VenueDecoder) -> None:
    """Hand one record over, waiting while the producer is full; a refused one goes to the DLQ."""
    while True:
        try:
            if publisher.try_publish(record, headers, None):
                return
        except RecordRefused as exc:
            _say(f"{exc}: sent to the DLQ")
            record = refused_dead_letter(record, exc, decoder.dlq_topic, max_record_bytes({}))
            continue
        publisher.poll()
        time.sleep(FULL_POLL_S)


def _resolve_with_retries(resolve: Callable[[], None]) -> None:
    backoff = FullJitterBackoff(1.0, REGISTRY_RETRY_MAX_S)
    while True:
        try:
            resolve()
            return
        except TransientFailure as exc:
            delay = backoff.next_delay()
            _say(f"{exc}; retrying in {delay:.1f} s")
            time.sleep(delay)


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
