"""The composition root: the one place that builds the concrete service from validated settings.

settings -> private key -> token provider -> gRPC channel and stream opener -> REST search ->
producer and publisher -> encoders and decoder -> checkpoint store and dedup seeder -> the engine,
plus the HTTP endpoints. Nothing here does network I/O: the engine's start-up steps reach Kafka and
the Schema Registry, with retries, once the HTTP endpoints are up. Everything else is written against
the engine's ports.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

from confluent_kafka.schema_registry import SchemaRegistryClient

from connector.config import Settings, start_from_ns
from connector.core.backfill_plan import RecoveryMargins, SubscriptionFilter
from connector.core.dedup import RecentExecutionIds
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.transcoder import Transcoder
from connector.core.watermark import Watermark
from connector.engine.backfill import BackfillTuning
from connector.engine.dropcopy import DropCopyPorts
from connector.engine.pipeline import Topics, VenueDecoder
from connector.engine.ports import Clock, ExecutionSearch, StartupStep, StreamOpener, SystemClock
from connector.engine.recovery import HoldBackLimits
from connector.engine.service import ConnectorService, EngineSettings
from connector.engine.status import Phase, Role, ServiceStatus
from connector.engine.transactions import TransactionalSink
from connector.errors import ConfigError, TransientFailure
from connector.kafka.checkpoints import KafkaCheckpointStore
from connector.kafka.encoding import (
    REGISTRY_CLIENT_DEFAULTS,
    Encoder,
    RegistrySchemaIds,
    SingleObjectEncoder,
    registry_subjects,
)
from connector.kafka.leadership import LeaderElection, Leadership
from connector.kafka.publisher import KafkaPublisher, build_producer, max_record_bytes
from connector.kafka.recent_ids import KafkaRecentIdSeeder, WarmRecentIdSeeder
from connector.kafka.topics import TOPIC_ROLE, check_topics, leader_topic, topic_names
from connector.kafka.transactions import KafkaTransactions, transactional_id
from connector.observability.http import HealthServer
from connector.observability.metrics import DropCopyMetrics, Metrics
from connector.venue.auth import TokenProvider, load_private_key
from connector.venue.dropcopy import DropCopyClient
from connector.venue.search import ExecutionSearchClient, ThreadedSearch
from connector.venue.stream import OrderStreamClient, open_channel

_LOG: Final = logging.getLogger(__name__)
GC_YOUNG_THRESHOLD: Final = 50_000
GATHER_S: Final = 0.001  # the engine wakes at most this often (Doorbell)
STANDBY_POLL_S: Final = 0.25
STANDBY_RETRY_S: Final = 1.0
# A standby tails the executions topic from this long before it stood by: a takeover's seed (from
# the old leader's last checkpoint minus the backfill margin) is then warm unless F lagged longer.
STANDBY_LOOKBACK_S: Final = 120.0


class Election(Protocol):
    """The leader election among the instances with one connector name and subscription."""

    def start(self) -> None:
        """Join the election (returns at once)."""

    def stop(self) -> None:
        """Leave it, so that a standby takes over at once (idempotent)."""

    def is_leader(self) -> bool:
        """Whether this instance leads now (any thread)."""

    def wait_until_leader(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the leadership; whether this instance leads."""

    def check(self) -> None:
        """Raise :class:`~connector.errors.RuntimeFailure` once the election ended badly (lost, refused)."""


@dataclass(frozen=True, slots=True)
class BuiltService:
    """The engine and what runs beside it (HTTP endpoints, token renewal, the search worker).

    With an ``election``, the instance first stands by (phase ``standby``, ready, publishing
    nothing, its token kept fresh) until it is elected, then runs the engine; the engine stops
    with :class:`~connector.errors.LeadershipLost` if the leadership goes, and the election is
    left when the engine has stopped, so that a standby takes over at once after a SIGTERM.
    """

    service: ConnectorService
    health: HealthServer
    tokens: TokenProvider
    search: ThreadedSearch
    metrics: Metrics
    status: ServiceStatus
    publisher: KafkaPublisher
    transactions: KafkaTransactions
    doorbell: Doorbell
    election: Election | None = None
    prepare_election: Callable[[], None] = lambda: None
    warm_up: Callable[[], None] = lambda: None
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> int:
        """Start the HTTP endpoints and token renewal, run the engine until it stops, then stop them.

        Raises:
            RuntimeFailure: the engine stopped on a fatal condition (one clear line).
        """
        self.health.start()
        self.tokens.start()
        try:
            if self.election is not None and not self._stand_by(self.election):
                return 0  # stopped while standing by
            self.metrics.leader.set(1)
            return self.service.run(self._wait)
        finally:
            self.metrics.leader.set(0)
            if self.election is not None:
                self.election.stop()
            self.transactions.close()
            self.search.close()
            self.tokens.stop()
            self.health.stop()

    def stop(self) -> None:
        """Ask the engine to stop (safe from a signal handler)."""
        self.stopping.set()
        self.service.request_stop()
        self.doorbell.ring()

    def _stand_by(self, election: Election) -> bool:
        """Wait to be elected (True), or for a stop (False)."""
        status = self.status
        status.role = Role.STANDBY.value
        status.phase = Phase.STANDBY.value
        self.metrics.leader.set(0)
        while not self.stopping.is_set():  # the coordination topic, made if missing
            status.tick(time.monotonic())
            try:
                self.prepare_election()
                break
            except TransientFailure as exc:
                status.last_error = f"{exc} (retrying)"
                self.stopping.wait(STANDBY_RETRY_S)
        else:
            return False
        status.last_error = None
        self.warm_up()  # the recent-ID set, from the executions topic (the token renews already)
        election.start()
        _LOG.info("standing by: the connector runs once this instance is elected leader")
        while not self.stopping.is_set():
            status.tick(time.monotonic())
            if election.wait_until_leader(STANDBY_POLL_S):
                status.role = Role.LEADER.value
                status.phase = Phase.STARTING.value
                _LOG.info("elected leader: starting")
                return True
            election.check()
        return False

    def _wait(self, seconds: float) -> None:
        self.doorbell.wait(seconds)


class Doorbell:
    """What the engine sleeps on between steps: the stream reader, the search thread and ``stop`` ring it.

    It gathers: the engine wakes at most once per ``gather_s`` (1 ms), so under load a step takes the
    responses of the last millisecond together instead of one per wake-up (each wake-up costs more CPU
    than a response: the sleep itself, the step's fixed work, caches gone cold). A response that comes
    to an engine that has slept for longer is taken at once: only load waits, at most ``gather_s``.
    """

    def __init__(
        self,
        gather_s: float = GATHER_S,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._event = threading.Event()
        self._gather_s = gather_s
        self._monotonic = monotonic
        self._sleep = sleep
        self._woke_at = -math.inf

    def ring(self) -> None:
        """Wake the engine (any thread; a signal handler too)."""
        self._event.set()

    def wait(self, seconds: float) -> None:
        """Sleep until rung or ``seconds`` passed, but not before ``gather_s`` after the last wake-up."""
        pause = min(seconds, self._gather_s - (self._monotonic() - self._woke_at))
        if pause > 0:
            self._sleep(pause)
            seconds -= pause
        self._event.wait(max(seconds, 0.0))
        self._event.clear()
        self._woke_at = self._monotonic()


def tune_garbage_collection() -> None:
    """Settle Python's cyclic garbage collector for streaming (the ``run`` process, once, after ``build``).

    What is alive by then (modules, schemas, descriptors, the engine) lives as long as the process: it
    is frozen, so that no full collection scans it again. And the hot path makes about ten short-lived
    container objects per record (the record, its headers, its delivery callback) and holds each in
    flight for milliseconds; with the default young-generation threshold (700 net allocations) a
    collection runs every few dozen records and promotes the in-flight ones into the older
    generations, whose collections then scan them again. At 50,000 most have been freed by their
    reference counts before any collection looks at them (nothing on the hot path makes a cycle).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def subscription_key(settings: Settings) -> str:
    """A stable description of the subscription filter (checkpoint and heartbeat key)."""
    symbols = ",".join(sorted(settings.venue.symbols)) or "*"
    accounts = ",".join(sorted(settings.venue.accounts)) or "*"
    return f"symbols={symbols};accounts={accounts}"


def build(settings: Settings) -> BuiltService:
    """Build the service (no network I/O: the engine's start-up steps do it, with retries).

    Raises:
        ConfigError: the private key or the registry settings cannot be used.
    """
    metrics = Metrics(tuple(topic_names(settings).values()))
    subscription = subscription_key(settings)
    status = ServiceStatus(
        connector=settings.connector.name,
        subscription=subscription,
        instance=f"{socket.gethostname()}:{os.getpid()}",
        delivery=settings.connector.delivery,
    )
    tokens = build_tokens(settings, metrics)
    doorbell = Doorbell()
    channel = open_channel(settings.venue)
    stream_client = OrderStreamClient(channel, settings.venue, tokens.token)
    dropcopy = None
    if settings.venue.drop_copy:
        dropcopy_client = DropCopyClient(channel, settings.venue, tokens.token)
        dropcopy = DropCopyPorts(dropcopy_client.opener(doorbell.ring), DropCopyMetrics(metrics.registry))
    search = ThreadedSearch(execution_search(settings, tokens), doorbell.ring)
    election = build_election(settings, status) if settings.connector.leader_election else None
    engine = build_engine(
        settings,
        open_stream=stream_client.opener(doorbell.ring) if settings.venue.order_stream else None,
        dropcopy=dropcopy,
        search=search,
        invalidate_token=tokens.invalidate,
        metrics=metrics,
        status=status,
        wake=doorbell.ring,
        leads=election.is_leader if election is not None else lambda: True,
        warm_standby=election is not None,
    )
    health = HealthServer(settings.http.listen, status, metrics.registry)
    return BuiltService(
        engine.service,
        health,
        tokens,
        search,
        metrics,
        status,
        engine.publisher,
        engine.transactions,
        doorbell,
        election,
        lambda: check_topics(settings, [leader_topic(settings.kafka)]),
        engine.warm_seeder.start_tailing if engine.warm_seeder is not None else lambda: None,
    )


def build_election(settings: Settings, status: ServiceStatus) -> LeaderElection:
    """The leader election of this connector name and subscription (``connector.leader_election``)."""
    kafka = settings.kafka

    def changed(leadership: Leadership) -> None:
        status.leadership = leadership.to_json()

    return LeaderElection(
        kafka.bootstrap_servers,
        kafka.properties,
        leader_topic(kafka),
        election_group(settings.connector.name, subscription_key(settings)),
        on_change=changed,
    )


def election_group(connector: str, subscription: str) -> str:
    """The consumer group of the leader election (the ``transactional.id`` plus ``.leader``)."""
    return f"{transactional_id(connector, subscription)}.leader"


@dataclass(frozen=True, slots=True)
class Engine:
    """The engine and its Kafka producer's two faces (records; transactions)."""

    service: ConnectorService
    publisher: KafkaPublisher
    transactions: KafkaTransactions
    sink: TransactionalSink
    warm_seeder: WarmRecentIdSeeder | None = None  # a standby's (connector.leader_election)


def build_engine(
    settings: Settings,
    *,
    open_stream: StreamOpener | None,
    search: ExecutionSearch,
    invalidate_token: Callable[[], None],
    metrics: Metrics,
    status: ServiceStatus,
    clock: Clock | None = None,
    wake: Callable[[], None] = lambda: None,
    leads: Callable[[], bool] = lambda: True,
    warm_standby: bool = False,
    dropcopy: DropCopyPorts | None = None,
) -> Engine:
    """The engine with every Kafka adapter, given the venue's side (the stream and the search).

    Every record goes through one transactional producer (``connector.delivery`` decides whether
    a record counts as delivered when Kafka acknowledges it or when its transaction commits);
    ``wake`` rings when a commit ends. ``warm_standby``: the seeder can tail the executions topic
    while the instance stands by (:class:`~connector.kafka.recent_ids.WarmRecentIdSeeder`).
    ``open_stream`` None: the order stream is not a source; ``dropcopy``: Drop Copy is.
    """
    topics = topic_names(settings)
    subscription = subscription_key(settings)
    encoders, schema_ids = encoders_for(settings, topics)
    kafka = settings.kafka
    connector = settings.connector
    clock = clock or SystemClock()
    watermark = Watermark()
    transactional = transactional_id(connector.name, subscription)
    producer = build_producer(kafka.bootstrap_servers, kafka.properties, transactional)
    transactions = KafkaTransactions(producer, transactional, wake)
    sink = TransactionalSink(
        transactions,
        clock,
        acknowledge=watermark.acknowledge,
        exactly_once=connector.delivery == "exactly_once",
        interval_s=connector.transaction_interval_s,
        max_records=connector.transaction_max_records,
        on_committed=metrics.transactions_committed.inc,
    )

    def delivered(topic: str, venue_times_ns: Sequence[int | None]) -> None:
        metrics.delivered(topic, venue_times_ns)
        if topic == topics["checkpoints"]:
            metrics.last_checkpoint.set(datetime.now(UTC).timestamp())
            status.last_checkpoint = datetime.now(UTC).isoformat()

    publisher = KafkaPublisher(
        producer,
        sink.acknowledged,
        delivered,
        on_failed=lambda topic, error: metrics.produce_errors.labels(topic=topic, error=error).inc(),
        transactional_id=transactional,
    )
    sink.wrap(publisher)
    recent_ids = RecentExecutionIds(connector.recent_execution_ids)
    cold_seeder = KafkaRecentIdSeeder(
        bootstrap_servers=kafka.bootstrap_servers, properties=kafka.properties, topic=topics["executions"]
    )
    warm_seeder = WarmRecentIdSeeder(cold_seeder, recent_ids, STANDBY_LOOKBACK_S) if warm_standby else None
    startup = [
        StartupStep(Phase.WAITING_FOR_KAFKA.value, lambda: check_topics(settings, list(topics.values())))
    ]
    if schema_ids is not None:
        startup.append(StartupStep(Phase.WAITING_FOR_SCHEMA_REGISTRY.value, schema_ids.resolve))
    # Before the checkpoint is read: this aborts a crashed predecessor's open transaction (so the
    # reads below see everything that will ever be committed) and fences any earlier instance.
    startup.append(StartupStep(Phase.WAITING_FOR_KAFKA.value, transactions.initialise))
    service = ConnectorService(
        settings=engine_settings(settings, subscription, topics),
        clock=clock,
        open_stream=open_stream,
        search=search,
        sink=sink,
        watermark=watermark,
        checkpoints=KafkaCheckpointStore(
            bootstrap_servers=kafka.bootstrap_servers,
            properties=kafka.properties,
            topic=topics["checkpoints"],
            connector=settings.connector.name,
            subscription=subscription,
        ),
        seeder=warm_seeder or cold_seeder,
        startup=startup,
        make_decoder=lambda: build_decoder(settings, encoders, framing(settings, schema_ids), subscription),
        recent_ids=recent_ids,
        observer=metrics,
        status=status,
        invalidate_token=invalidate_token,
        leads=leads,
        dropcopy=dropcopy,
    )
    return Engine(service, publisher, transactions, sink, warm_seeder)


def engine_settings(settings: Settings, subscription: str, topics: dict[str, str]) -> EngineSettings:
    """The engine's settings from the configuration."""
    backfill = settings.backfill
    connector = settings.connector
    return EngineSettings(
        connector=connector.name,
        subscription=subscription,
        executions_topic=topics["executions"],
        dlq_topic=topics["dlq"],
        heartbeat_interval_s=connector.heartbeat_interval_s,
        heartbeat_timeout_s=settings.venue.heartbeat_timeout_s,
        checkpoint_interval_s=connector.checkpoint_interval_s,
        flush_timeout_s=connector.flush_timeout_s,
        start_from_ns=start_from_ns(connector.start_from),
        margins=recovery_margins(settings),
        tuning=BackfillTuning(
            indexing_delay_s=backfill.indexing_delay_s,
            slice_max_s=backfill.slice_max_s,
            retry_budget_s=backfill.retry_budget_s,
        ),
        holdback=HoldBackLimits(
            backfill.holdback_max_s, backfill.holdback_max_records, backfill.holdback_max_bytes
        ),
        requests_per_minute=backfill.requests_per_minute,
        max_record_bytes=max_record_bytes(settings.kafka.properties),
        dropcopy_resend_s=settings.venue.drop_copy_resend_s,
    )


def recovery_margins(settings: Settings) -> RecoveryMargins:
    """The recovery window's margins from the configuration."""
    backfill = settings.backfill
    return RecoveryMargins(
        before_s=backfill.margin_before_s,
        after_s=backfill.margin_after_s,
        indexing_delay_s=backfill.indexing_delay_s,
        retention_days=backfill.retention_days,
    )


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


def build_decoder(
    settings: Settings,
    encoders: dict[RecordType, Encoder],
    prefixes: Mapping[RecordType, bytes],
    subscription: str,
) -> VenueDecoder:
    """The decoder: the compiled transcoder with these framing headers, writing to the configured topics."""
    topics = topic_names(settings)
    return VenueDecoder(
        transcoder=Transcoder(prefixes, settings.connector.name),
        encoders=encoders,
        topics=Topics(
            topics["executions"],
            topics["snapshots"],
            topics["cancel_rejects"],
            topics["heartbeats"],
            topics["dlq"],
        ),
        connector_name=settings.connector.name,
        subscription=subscription,
    )


def framing(settings: Settings, schema_ids: RegistrySchemaIds[RecordType] | None) -> dict[RecordType, bytes]:
    """Each record type's framing header: single-object (marker + fingerprint) or registry (magic + ID).

    With a registry, call it once the IDs are resolved (the engine builds its decoder after its
    start-up steps).
    """
    if settings.schema_registry.url is None or schema_ids is None:
        return {
            record_type: SingleObjectEncoder(schema_dict(record_type)).header for record_type in RecordType
        }
    return {record_type: schema_ids.prefix(record_type) for record_type in RecordType}


def execution_search(settings: Settings, tokens: TokenProvider) -> ExecutionSearchClient:
    """The REST execution search, filtered to the configured subscription."""
    venue = settings.venue
    return ExecutionSearchClient(
        rest_url=venue.rest_url,
        participant_id=venue.participant_id,
        token=tokens.token,
        invalidate_token=tokens.invalidate,
        subscription=SubscriptionFilter(frozenset(venue.symbols), frozenset(venue.accounts)),
        page_size=settings.backfill.page_size,
        timeout_s=settings.backfill.request_timeout_s,
    )


def encoders_for(
    settings: Settings, topics: dict[str, str]
) -> tuple[dict[RecordType, Encoder], RegistrySchemaIds[RecordType] | None]:
    """The encoder of each record type, and the registry IDs to resolve at start (None: no registry).

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
