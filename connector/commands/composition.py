"""The ``run`` command: the composition root that builds the service from validated settings.

This is the one place that knows the concrete classes: settings -> private key -> token provider
-> gRPC channel -> producer -> publisher -> mapper and encoders -> pipeline -> service, plus the
HTTP endpoints and the signal handlers. Everything else is written against Protocols.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from confluent_kafka.schema_registry import SchemaRegistryClient

from connector.config import Settings, load_settings, start_from_ns
from connector.core.backfill_plan import RequestPacer, SubscriptionFilter, Window
from connector.core.dedup import RecentExecutionIds
from connector.core.mapping import RecordMapper
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.watermark import Watermark
from connector.engine.pipeline import Pipeline, Topics
from connector.engine.recovery import BackfillWorker
from connector.engine.service import BackfillStarter, ConnectorService, ServiceSettings
from connector.errors import ConfigError
from connector.kafka.encoding import (
    REGISTRY_CLIENT_DEFAULTS,
    Encoder,
    RegistrySchemaIds,
    SingleObjectEncoder,
    registry_subjects,
)
from connector.kafka.publisher import Delivered, Publisher, build_producer
from connector.kafka.resume import checkpoint_decoder, read_checkpoint, seed_recent_ids
from connector.kafka.topics import TOPIC_ROLE, check_topics, topic_names
from connector.observability.http import HealthServer, ServiceStatus, iso_from_ns
from connector.observability.metrics import Metrics
from connector.venue.auth import TokenProvider, load_private_key
from connector.venue.backfill import ExecutionSearch
from connector.venue.stream import OrderStreamClient, open_channel

_LOG: Final = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``run``'s flags."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="YAML settings file (optional when every key comes from PMX_CONNECTOR_* variables)",
    )


def run(args: argparse.Namespace) -> int:
    """Build the service from the settings and run it until SIGTERM/SIGINT."""
    stop_requested = threading.Event()
    services: list[BuiltService] = []

    def on_signal(_signum: int, _frame: object) -> None:
        stop_requested.set()
        for service in services:
            service.stop()

    # Installed before the (possibly slow) start-up reads, so a SIGTERM then still ends in exit 0.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    built = build(load_settings(args.config))
    services.append(built)
    if stop_requested.is_set():
        built.stop()
    return built.run()


@dataclass(frozen=True, slots=True)
class BuiltService:
    """The service and what runs beside it."""

    service: ConnectorService
    health: HealthServer
    tokens: TokenProvider
    metrics: Metrics
    status: ServiceStatus
    schema_ids: RegistrySchemaIds[RecordType] | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> int:
        """Start the HTTP endpoints and token renewal, run the service, then stop them.

        With a Schema Registry and IDs not all pinned, first wait (not ready, retrying, the reason in
        ``/status`` and the log) until the registry has given every schema ID.
        """
        self.health.start()
        self.tokens.start()
        try:
            if self.schema_ids is not None and not self._await_schema_ids(self.schema_ids):
                return 0  # stopped while waiting
            return self.service.run()
        finally:
            self.tokens.stop()
            self.health.stop()

    def stop(self) -> None:
        """Ask everything to stop (safe from a signal handler)."""
        self.stopping.set()
        self.service.stop()

    def _await_schema_ids(self, schema_ids: RegistrySchemaIds[RecordType]) -> bool:
        if not schema_ids.missing():
            return True
        self.status.phase = "waiting_for_schema_registry"

        def report(reason: str | None) -> None:
            self.status.last_error = reason

        return schema_ids.wait(self.stopping, report)


def subscription_key(settings: Settings) -> str:
    """A stable description of the subscription filter (checkpoint and heartbeat key)."""
    symbols = ",".join(sorted(settings.venue.symbols)) or "*"
    accounts = ",".join(sorted(settings.venue.accounts)) or "*"
    return f"symbols={symbols};accounts={accounts}"


def build(settings: Settings) -> BuiltService:
    """Build the service: check the topics, read the checkpoint, seed dedup (no venue I/O yet).

    Raises:
        RuntimeFailure: Kafka is unreachable, a topic is missing, or the checkpoint is unreadable.
    """
    topics = topic_names(settings)
    metrics = Metrics(tuple(topics.values()))
    subscription = subscription_key(settings)
    status = ServiceStatus(connector=settings.connector.name, subscription=subscription)
    tokens = build_tokens(settings, metrics)
    check_topics(settings, list(topics.values()))
    encoders, schema_ids = encoders_for(settings, topics)
    service_settings = ServiceSettings(
        connector=settings.connector.name,
        subscription=subscription,
        heartbeat_topic=topics["heartbeats"],
        checkpoint_topic=topics["checkpoints"],
        heartbeat_interval_s=settings.connector.heartbeat_interval_s,
        heartbeat_timeout_s=settings.venue.heartbeat_timeout_s,
        checkpoint_interval_s=settings.connector.checkpoint_interval_s,
        flush_timeout_s=settings.connector.flush_timeout_s,
        backfill=settings.backfill,
    )
    kafka = settings.kafka
    checkpoint = read_checkpoint(
        kafka.bootstrap_servers,
        kafka.properties,
        topics["checkpoints"],
        service_settings.checkpoint_key,
        checkpoint_decoder(),
    )
    if checkpoint is not None:
        _LOG.info("resuming from the checkpoint at %s", iso_from_ns(checkpoint.venue_time_ns))
        status.watermark = iso_from_ns(checkpoint.venue_time_ns)
    resume_ns = checkpoint.venue_time_ns if checkpoint else start_from_ns(settings.connector.start_from)
    recent_ids = RecentExecutionIds(settings.connector.recent_execution_ids)

    def reseed_recent_ids() -> None:
        seed_recent_ids(
            recent_ids,
            kafka.bootstrap_servers,
            kafka.properties,
            topics["executions"],
            settings.connector.recent_execution_ids,
        )

    reseed_recent_ids()
    watermark = Watermark(checkpoint)
    publisher = Publisher(
        build_producer(kafka.bootstrap_servers, kafka.properties),
        watermark,
        on_delivered=lambda delivered: _record_delivery(metrics, status, topics["checkpoints"], delivered),
    )
    pipeline = build_pipeline(
        settings, encoders, publisher, watermark, recent_ids=recent_ids, metrics=metrics
    )
    channel = open_channel(settings.venue)
    client = OrderStreamClient(channel, settings.venue, tokens.token)
    service = ConnectorService(
        settings=service_settings,
        open_stream=client.open,
        pipeline=pipeline,
        publisher=publisher,
        watermark=watermark,
        metrics=metrics,
        status=status,
        encoders=encoders,
        invalidate_token=tokens.invalidate,
        start_backfill=backfill_starter(settings, tokens, metrics),
        reseed_recent_ids=reseed_recent_ids,
        resume_ns=resume_ns,
    )
    health = HealthServer(settings.http.listen, status, metrics.registry)
    return BuiltService(service, health, tokens, metrics, status, schema_ids)


def build_tokens(settings: Settings, metrics: Metrics) -> TokenProvider:
    """The access-token provider (reads the private key; no network I/O yet).

    Raises:
        ConfigError: the private key cannot be used.
    """
    return TokenProvider(
        key=load_private_key(settings.auth.private_key_file),
        client_id=settings.auth.client_id,
        token_url=settings.auth.token_url,
        audience=settings.auth.audience,
        refresh_margin_s=settings.auth.refresh_margin_s,
        ca_file=settings.venue.tls_ca_file,
        on_refresh=lambda result: metrics.token_refreshes.labels(result).inc(),
    )


def build_pipeline(
    settings: Settings,
    encoders: dict[RecordType, Encoder],
    publisher: Publisher,
    watermark: Watermark,
    *,
    recent_ids: RecentExecutionIds,
    metrics: Metrics,
) -> Pipeline:
    """The pipeline, writing to the configured topics."""
    topics = topic_names(settings)
    return Pipeline(
        mapper=RecordMapper.for_venue(),
        encoders=encoders,
        sink=publisher,
        watermark=watermark,
        topics=Topics(topics["executions"], topics["snapshots"], topics["cancel_rejects"], topics["dlq"]),
        connector_name=settings.connector.name,
        recent_ids=recent_ids,
        observer=metrics,
    )


def execution_search(settings: Settings, tokens: TokenProvider) -> ExecutionSearch:
    """The REST execution search, filtered to the configured subscription."""
    venue = settings.venue
    return ExecutionSearch(
        rest_url=venue.rest_url,
        participant_id=venue.participant_id,
        token=tokens.token,
        invalidate_token=tokens.invalidate,
        subscription=SubscriptionFilter(frozenset(venue.symbols), frozenset(venue.accounts)),
        page_size=settings.backfill.page_size,
        timeout_s=settings.backfill.request_timeout_s,
    )


def backfill_starter(settings: Settings, tokens: TokenProvider, metrics: Metrics) -> BackfillStarter:
    """Bind the REST search, the process-wide pacer and the metrics into a backfill starter."""
    search = execution_search(settings, tokens)
    pacer = RequestPacer(settings.backfill.requests_per_minute)

    def start(window: Window) -> BackfillWorker:
        worker = BackfillWorker(
            search=search,
            window=window,
            pacer=pacer,
            retry_budget_s=settings.backfill.retry_budget_s,
            on_request=lambda result: metrics.backfill_requests.labels(result).inc(),
        )
        worker.start()
        return worker

    return start


def encoders_for(
    settings: Settings, topics: dict[str, str]
) -> tuple[dict[RecordType, Encoder], RegistrySchemaIds[RecordType] | None]:
    """The encoder of each record type, and the registry IDs to wait for (None: no registry).

    Checkpoints are the connector's own state and always use single-object encoding, so resuming
    never depends on the registry being up.
    """
    registry = settings.schema_registry
    if registry.url is None:
        encoders: dict[RecordType, Encoder] = {
            record_type: SingleObjectEncoder(schema_dict(record_type)) for record_type in RecordType
        }
        return encoders, None
    try:
        client = SchemaRegistryClient.new_client({**REGISTRY_CLIENT_DEFAULTS, **registry.client_conf()})
    except (ValueError, TypeError, OSError) as exc:
        msg = f"schema_registry: {type(exc).__name__}: {exc}"
        raise ConfigError(msg) from None
    subjects = registry_subjects(
        registry.subject_name_strategy,
        {record_type: topics[TOPIC_ROLE[record_type]] for record_type in RecordType},
        {record_type: schema_dict(record_type) for record_type in RecordType},
    )
    schema_ids = RegistrySchemaIds(
        client,
        subjects,
        auto_register=registry.auto_register,
        pinned_ids={RecordType(name): schema_id for name, schema_id in registry.pinned_ids.items()},
        url=registry.url,
    )
    encoders = {record_type: schema_ids.encoder(record_type) for record_type in RecordType}
    encoders[RecordType.CHECKPOINT] = SingleObjectEncoder(schema_dict(RecordType.CHECKPOINT))
    return encoders, schema_ids


def _record_delivery(metrics: Metrics, status: ServiceStatus, checkpoints: str, delivered: Delivered) -> None:
    if delivered.error is None:
        metrics.records_produced.labels(delivered.topic).inc()
        if delivered.topic == checkpoints:
            metrics.last_checkpoint.set(time.time())
            status.last_checkpoint = datetime.now(UTC).isoformat()
        if delivered.venue_time_ns is not None:
            metrics.event_to_ack.observe(max(0.0, (time.time_ns() - delivered.venue_time_ns) / 1e9))
    else:
        metrics.produce_errors.labels(delivered.topic, delivered.error).inc()
