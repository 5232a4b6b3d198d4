"""One simulated schedule: a seeded scenario of faults, and the driver that runs the real engine through it.

:func:`scenario` draws everything from the seed: the venue's behaviour (openings, heartbeat queueing,
send queue bound, sessions and snapshots mid-stream, duplicates, REST result order, indexing delay,
``eof`` without a token, page size cap, 429s and 5xx), the subscription, the connector's tunable
settings, and a list of faults at random times (SIGKILL, SIGTERM, stream drops, stalls, Kafka
outages, REST outages short and long, a permanent produce error, a new session, a snapshot), and,
from a second generator (so the draws above stay what they were), the delivery mode (``exactly_once``
or ``at_least_once``), the transactions' bounds, and in a fraction of the schedules a *zombie*: a
second connector process starts while the first is still alive (frozen for a while and then thawed,
or running on), so the newer one's ``init_transactions`` must fence it. From a third generator, the
sources (``venue.sources``): the order stream only (most schedules), Drop Copy only, or both; with
Drop Copy, the venue's Drop Copy behaviour (other users of the firm, batch size, replay pace and
delay, re-sends on resume) and its faults: every resume token refused (expired, or unknown), and
rarely a window in which a resume time is refused too.

:class:`World` runs it: the virtual clock jumps from event to event (a venue update or timer, an
acknowledgement, a search answer, a fault, the engine's own wake-up), and the engine is stepped at
each. A crash discards the engine and everything but what the fake Kafka holds; a restart builds a
new engine, as a new process would, wired as the composition root wires it: the real
:class:`~connector.engine.transactions.TransactionalSink` around the fake producer, and the fake's
``initialise`` as the last start-up step. A zombie is stepped beside the current process until it
stops (fenced: ``FatalProducerError``, exit 1). After the faults, the venue stops trading and the
world runs on until the connector has caught up (or a cap passes), then stops it with SIGTERM.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from enum import StrEnum

from connector.core.backfill_plan import RecoveryMargins, SubscriptionFilter
from connector.core.dedup import RecentExecutionIds
from connector.core.venue_time import NANOS_PER_SECOND, ns_from_timestamp
from connector.core.watermark import Watermark
from connector.engine.backfill import BackfillTuning
from connector.engine.dropcopy import DropCopyPorts
from connector.engine.ports import DropCopyResume, StartupStep, VenueStream
from connector.engine.recovery import HoldBackLimits
from connector.engine.service import ConnectorService, EngineSettings
from connector.engine.status import ServiceStatus
from connector.engine.transactions import TransactionalSink
from connector.errors import FatalProducerError, KafkaUnavailable
from connector.kafka.transactions import transactional_id
from connector.simulator.dropcopy import ResumeTokens
from connector.simulator.faults import FaultSettings
from connector.simulator.venue import DEFAULT_ACCOUNTS, DEFAULT_SYMBOLS
from tests.simulation.clock import SimClock
from tests.simulation.kafka import SimCheckpointStore, SimKafka, SimProducer, SimSeeder, SimTransactions
from tests.simulation.venue import (
    DropCopySetup,
    SimSearch,
    SimStream,
    SimVenue,
    VenueSetup,
    search_client,
)
from tests.venue_strategies import DECODER, TOPICS

SUBSCRIPTION = "symbols=*;accounts=*"
CONNECTOR = "fuzz"
PARTITIONS = {TOPICS.executions: 4, TOPICS.snapshots: 4, TOPICS.cancel_rejects: 2, TOPICS.heartbeats: 1,
              TOPICS.dlq: 1, "fz.checkpoints": 1}  # fmt: skip
CHECKPOINTS = "fz.checkpoints"
SETTLE_CAP_S = 420.0  # long enough for a 5-minute RESOURCE_EXHAUSTED backoff, then catching up
STEPS_AT_ONE_INSTANT_MAX = 10_000  # more means the engine spins without the clock moving: a livelock
RETRY_BUDGET_S = 12.0
LONG_S = RETRY_BUDGET_S  # an outage longer than this (plus a little) exhausts the search's budget
TRANSACTIONAL_ID = transactional_id(CONNECTOR, SUBSCRIPTION)
ZOMBIE_SHARE = 0.15  # of the schedules, those with a second process starting beside a live one
ZOMBIE_FREEZE_MAX_S = 8.0
ZOMBIE_GRACE_S = 10.0  # after the final stop, how long a zombie still gets to find out it was fenced
TIME_REFUSAL_END_S = 6.0  # a refused resume time ends this long before the market goes quiet, so the
# live stream after the gap still sees an execution: with no heartbeat, F cannot pass a silent firm


class Sources(StrEnum):
    """Which venue streams the connector reads (``venue.sources``)."""

    ORDERS = "orders"
    DROPCOPY = "dropcopy"
    BOTH = "orders+dropcopy"

    @property
    def order_stream(self) -> bool:
        """Whether the order stream is a source."""
        return self is not Sources.DROPCOPY

    @property
    def dropcopy(self) -> bool:
        """Whether Drop Copy is a source."""
        return self is not Sources.ORDERS


SOURCE_WEIGHTS = {Sources.ORDERS: 2, Sources.DROPCOPY: 1, Sources.BOTH: 1}  # today's share stays the largest


class FaultKind(StrEnum):
    """What can go wrong, and when."""

    CRASH = "crash"
    TERM = "term"
    DROP = "drop"
    STALL = "stall"
    KAFKA_OUTAGE = "kafka_outage"
    LEADER_OUTAGE = "leader_outage"
    REST_OUTAGE = "rest_outage"
    PERMANENT_ERROR = "permanent_error"
    NEW_SESSION = "new_session"
    SNAPSHOT = "snapshot"
    NETWORK_PARTITION = "network_partition"  # the pod's network: stream, REST and Kafka all at once
    ZOMBIE = "zombie"  # a second process starts; the first lives on (frozen for duration_s, then thawed)
    TOKENS_EXPIRED = "dropcopy_tokens_expired"  # every Drop Copy resume token issued so far expires
    TOKENS_UNKNOWN = "dropcopy_tokens_unknown"  # the venue no longer knows any token issued so far
    RESUME_REFUSED = "dropcopy_resume_refused"  # tokens expire, and resume times are refused for a while


DROPCOPY_FAULTS = (FaultKind.TOKENS_EXPIRED, FaultKind.TOKENS_UNKNOWN, FaultKind.RESUME_REFUSED)
RANDOM_FAULTS = [kind for kind in FaultKind if kind is not FaultKind.ZOMBIE and kind not in DROPCOPY_FAULTS]
# (drawn with the weights below; the Drop Copy faults from the sources' generator)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault at a time, lasting ``duration_s`` when it lasts."""

    at: float
    kind: FaultKind
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything one schedule does, drawn from its seed."""

    seed: int
    duration_s: float
    setup: VenueSetup
    engine: EngineSettings
    producer_capacity: int
    ack_latency_s: tuple[float, float]
    faults: tuple[Fault, ...]
    message_timeout_s: float | None = None  # None: the connector's (infinite); a number: the reverted fix
    exactly_once: bool = False  # connector.delivery
    transaction_interval_s: float = 0.1
    transaction_max_records: int = 10_000
    sources: Sources = Sources.ORDERS

    def describe(self) -> str:
        """One line per fault, for a failure report."""
        behaviour = self.setup.behaviour
        lines = [
            f"seed {self.seed}: {self.duration_s:.0f} s at {self.setup.updates_per_s:.1f} updates/s, "
            f"heartbeats every {self.setup.heartbeat_interval_s} s, "
            f"holdback {self.engine.holdback.max_s:.1f} s, "
            f"opening {behaviour.stream_opening}, heartbeats {behaviour.heartbeat_queueing}, send queue "
            f"{behaviour.send_queue_capacity}, results {behaviour.rest_result_order}, indexing "
            f"{behaviour.rest_indexing_delay_s:.1f}+{behaviour.rest_indexing_jitter_s:.1f} s, pages "
            f"{behaviour.rest_max_page_size}, producer queue {self.producer_capacity}, "
            f"acks in {self.ack_latency_s} s, "
            f"{'exactly_once' if self.exactly_once else 'at_least_once'} in transactions of at most "
            f"{self.transaction_interval_s:g} s and {self.transaction_max_records} records, "
            f"sources {self.sources.value}"
        ]
        dropcopy = self.setup.dropcopy
        if dropcopy is not None:
            lines.append(
                f"  drop copy: {dropcopy.firm_users} other users at {dropcopy.firm_flow_ratio:g}, batches of "
                f"{behaviour.dropcopy_batch_size}, replay at {behaviour.dropcopy_replay_rate} /s after "
                f"{behaviour.dropcopy_replay_delay_s:g} s, {behaviour.dropcopy_resend_on_resume} re-sent on "
                "resume"
            )
        lines += [f"  {f.at:7.2f} s  {f.kind.value}" + (f" {f.duration_s:.1f} s" if f.duration_s else "")
                  for f in self.faults]  # fmt: skip
        return "\n".join(lines)


def scenario(seed: int, *, duration_s: float = 30.0, message_timeout_s: float | None = None) -> Scenario:
    """Draw a schedule from ``seed``."""
    rng = random.Random(seed)
    delay = rng.choice([0.0, 0.5, 1.0])
    jitter = rng.choice([0.0, 0.5, 1.0])
    behaviour = FaultSettings().with_changes(
        {
            "stream_opening": rng.choice(["snapshot", "heartbeat", "updates", "random"]),
            "opening_updates": rng.randint(1, 3),
            "heartbeat_queueing": rng.choice(["jump", "queue", "random"]),
            "send_queue_capacity": rng.choice([None, 100, 2_000]),
            "queue_overflow_status": rng.choice(["UNAVAILABLE", "RESOURCE_EXHAUSTED"]),
            "new_session_every_s": rng.choice([None, None, 15.0]),
            "snapshot_every_s": rng.choice([None, None, 12.0]),
            "duplicate_rate": rng.choice([0.0, 0.05]),
            "unknown_enum_rate": rng.choice([0.0, 0.02]),
            "rest_result_order": rng.choice(["oldest_first", "newest_first", "shuffled_pages", "shuffled"]),
            "rest_indexing_delay_s": delay,
            "rest_indexing_jitter_s": jitter,
            "rest_no_token_rate": rng.choice([0.0, 0.0, 0.2]),
            "rest_max_page_size": rng.choice([50, 200, 1000]),
            "rest_429_rate": rng.choice([0.0, 0.1]),
            "rest_5xx_rate": rng.choice([0.0, 0.05]),
            "fault_seed": seed,
        }
    )
    subscription = rng.choice(
        [
            SubscriptionFilter(frozenset(), frozenset()),
            SubscriptionFilter(frozenset(DEFAULT_SYMBOLS[:2]), frozenset()),
            SubscriptionFilter(frozenset(), frozenset(DEFAULT_ACCOUNTS[1:])),
        ]
    )
    setup = VenueSetup(
        seed=seed,
        updates_per_s=rng.uniform(3, 12),
        heartbeat_interval_s=rng.choice([1.0, 2.0, 5.0]),
        behaviour=behaviour,
        search_latency_s=(0.02, 0.4),
        subscription=subscription,
    )
    engine = EngineSettings(
        connector=CONNECTOR,
        subscription=SUBSCRIPTION,
        executions_topic=TOPICS.executions,
        dlq_topic=TOPICS.dlq,
        heartbeat_interval_s=1.0,
        heartbeat_timeout_s=10.0,
        checkpoint_interval_s=rng.choice([0.5, 1.0, 3.0]),
        flush_timeout_s=5.0,
        start_from_ns=None,  # set by the world: a few seconds before it begins
        margins=RecoveryMargins(
            before_s=2.0, after_s=1.0, indexing_delay_s=delay + jitter + 0.5, retention_days=7
        ),
        tuning=BackfillTuning(
            indexing_delay_s=delay + jitter + 0.5,
            slice_max_s=rng.choice([5.0, 300.0]),
            retry_budget_s=RETRY_BUDGET_S,
        ),
        holdback=HoldBackLimits(max_s=rng.uniform(1.0, 6.0), max_records=100_000, max_bytes=64 * 2**20),
        requests_per_minute=12,
        max_record_bytes=1_000_000,
        ack_poll_s=1.0,  # the world steps the engine whenever an acknowledgement is due
        dropcopy_resend_s=30.0,  # the fake venue re-sends at most 10 executions before a token
    )
    faults = []
    for _ in range(rng.randint(2, 10)):
        at = rng.uniform(2, duration_s)
        while True:  # faults come in clusters: one often follows another within seconds
            kind = rng.choices(RANDOM_FAULTS, weights=[3, 2, 3, 1, 2, 2, 1, 1, 1, 1, 1])[0]
            duration = {
                FaultKind.STALL: rng.uniform(2, 15),
                FaultKind.KAFKA_OUTAGE: rng.uniform(1, 15),
                FaultKind.LEADER_OUTAGE: rng.uniform(1, 20),
                FaultKind.REST_OUTAGE: rng.choice([rng.uniform(1, 6), rng.uniform(RETRY_BUDGET_S + 5, 30)]),
                FaultKind.NETWORK_PARTITION: rng.choice(
                    [rng.uniform(1, 8), rng.uniform(RETRY_BUDGET_S + 2, 25)]
                ),
            }.get(kind, 0.0)
            faults.append(Fault(at, kind, duration))
            if rng.random() < 0.5 or at > duration_s:
                break
            # the next one soon after this one begins, or just after it ends (when backlogs drain)
            at += rng.choice([0.0, duration]) + rng.uniform(0.05, 4.0)
    ack_latency = rng.choice([(0.001, 0.030), (0.001, 0.030), (0.05, 0.3), (0.2, 1.0)])  # a slow broker
    capacity = rng.choice([50, 200, 5_000])
    transactions = random.Random(f"{seed}:transactions")
    exactly_once = transactions.random() < 0.5
    interval_s = transactions.choice([0.05, 0.1, 0.1, 0.3])
    max_records = transactions.choice([100, 1_000, 10_000])
    if transactions.random() < ZOMBIE_SHARE:
        for _ in range(transactions.choice([1, 1, 1, 2])):
            freeze = transactions.choice([0.0, transactions.uniform(0.5, ZOMBIE_FREEZE_MAX_S)])
            faults.append(Fault(transactions.uniform(2, duration_s), FaultKind.ZOMBIE, freeze))
    sources = random.Random(f"{seed}:sources")
    source = sources.choices(list(SOURCE_WEIGHTS), weights=list(SOURCE_WEIGHTS.values()))[0]
    if source.dropcopy:
        setup, dropcopy_faults = _dropcopy(sources, setup, duration_s)
        faults += dropcopy_faults
    faults.sort(key=lambda fault: fault.at)
    return Scenario(
        seed,
        duration_s,
        setup,
        engine,
        capacity,
        ack_latency,
        tuple(faults),
        message_timeout_s,
        exactly_once,
        interval_s,
        max_records,
        source,
    )


def _dropcopy(rng: random.Random, setup: VenueSetup, duration_s: float) -> tuple[VenueSetup, list[Fault]]:
    """The venue's Drop Copy behaviour, and its faults (venue-api.md §6; every allowed variant)."""
    behaviour = setup.behaviour.with_changes(
        {
            "dropcopy_batch_size": rng.choice([1, 3, 20, 100]),
            "dropcopy_replay_rate": rng.choice([None, 20.0, 200.0]),  # a slow replay is dropped mid-way
            "dropcopy_replay_delay_s": rng.choice([0.0, 0.0, 0.5, 2.0]),
            "dropcopy_resend_on_resume": rng.choice([0, 0, 2, 10]),
        }
    )
    dropcopy = DropCopySetup(firm_users=rng.choice([0, 1, 2]), firm_flow_ratio=rng.choice([0.3, 1.0]))
    faults = []
    for _ in range(rng.choice([0, 1, 1, 2])):
        kind = rng.choice([FaultKind.TOKENS_EXPIRED, FaultKind.TOKENS_UNKNOWN])
        faults.append(Fault(rng.uniform(2, duration_s), kind))
    if rng.random() < 0.15:  # rarely: the resume time is refused too (then a gap, and the stream goes live)
        at = rng.uniform(2, duration_s - TIME_REFUSAL_END_S - 1)
        faults.append(
            Fault(at, FaultKind.RESUME_REFUSED, rng.uniform(1, duration_s - TIME_REFUSAL_END_S - at))
        )
    return dataclasses.replace(setup, behaviour=behaviour, dropcopy=dropcopy), faults


@dataclass(slots=True)
class Incarnation:
    """One connector process (``number``: the world's count of starts; it tags what the process appends)."""

    number: int
    service: ConnectorService
    producer: SimProducer
    transactions: SimTransactions
    sink: TransactionalSink
    search: SimSearch
    status: ServiceStatus
    started_at: float
    streams: list[VenueStream] = field(default_factory=list)  # order and Drop Copy streams
    frozen_until: float = 0.0  # a zombie: not stepped before then
    last_frontier: int | None = None


@dataclass(slots=True)
class Outcome:
    """What a run left behind, for the invariants."""

    kafka: SimKafka
    venue: SimVenue
    scenario: Scenario
    start_from_ns: int
    in_flight_at_crash: set[str] = field(default_factory=set)
    rest_outages: list[tuple[float, float]] = field(default_factory=list)
    search_answers: list[list[tuple[float, int]]] = field(default_factory=list)  # per connector process
    caught_up: bool = False
    phase_when_caught_up: str | None = None  # what /status said then, if the stream had recovered
    restarts: int = 0
    crashes: int = 0
    fatal_exits: int = 0
    search_requests: int = 0
    steps: int = 0
    exactly_once: bool = False
    zombies: int = 0  # processes left alive when a second one started
    # (process, why it stopped, whether it had another reason to: SIGTERM, a failed delivery)
    zombie_exits: list[tuple[int, str, bool]] = field(default_factory=list)
    zombies_running: list[int] = field(default_factory=list)  # still running (not fenced) at the end
    frontier_claims: list[tuple[int, int]] = field(default_factory=list)  # (cluster serial, F) as F moved
    commits: int = 0
    sources: Sources = Sources.ORDERS


class World:
    """Runs one scenario."""

    def __init__(self, plan: Scenario) -> None:
        self.plan = plan
        self.clock = SimClock()
        self.kafka = SimKafka(PARTITIONS, self.clock)
        self.venue = SimVenue(plan.setup, self.clock)
        self.rng = random.Random(f"{plan.seed}:world")
        self.start_from_ns = self.clock.wall_ns(0) - 5 * NANOS_PER_SECOND
        self.outcome = Outcome(
            self.kafka,
            self.venue,
            plan,
            self.start_from_ns,
            exactly_once=plan.exactly_once,
            sources=plan.sources,
        )
        self.current: Incarnation | None = None
        self.zombies: list[Incarnation] = []
        self.restart_at: float | None = 0.0
        self._pending = list(plan.faults)
        self._last_ns = 0
        self._last_dropcopy_position = 0  # of the firm's last execution Drop Copy covers, once quiet

    # --------------------------------------------------------------------- processes

    def _start(self) -> None:
        plan = self.plan
        number = self.outcome.restarts + 1
        watermark = Watermark()

        def acknowledged(sequence: int) -> None:
            sink.acknowledged(sequence)  # the sink below, built around this producer

        producer = SimProducer(
            self.kafka,
            acknowledged,
            self.clock,
            random.Random(self.rng.randrange(2**32)),
            capacity=plan.producer_capacity,
            message_timeout_s=plan.message_timeout_s,
            ack_latency_s=plan.ack_latency_s,
            transactional_id=TRANSACTIONAL_ID,
            number=number,
        )
        transactions = SimTransactions(
            producer, self.kafka, self.clock, random.Random(self.rng.randrange(2**32))
        )
        sink = TransactionalSink(
            transactions,
            self.clock,
            acknowledge=watermark.acknowledge,
            exactly_once=plan.exactly_once,
            interval_s=plan.transaction_interval_s,
            max_records=plan.transaction_max_records,
        )
        sink.wrap(producer)
        settings = plan.engine
        settings = EngineSettings(**{**_fields(settings), "start_from_ns": self.start_from_ns})

        def kafka_answers() -> None:
            if self.kafka.down():
                msg = "cannot reach Kafka (simulated outage)"
                raise KafkaUnavailable(msg)

        search = SimSearch(
            self.venue, search_client(plan.setup.subscription, 1000), random.Random(self.rng.randrange(2**32))
        )
        self.outcome.search_answers.append(search.answers)
        status = ServiceStatus(connector=CONNECTOR, subscription=SUBSCRIPTION)
        streams: list[VenueStream] = []

        def open_stream() -> SimStream:
            stream = self.venue.open_stream()
            streams.append(stream)  # the connection goes with this process
            return stream

        def open_dropcopy(resume: DropCopyResume) -> VenueStream:
            stream = self.venue.open_dropcopy(resume)
            streams.append(stream)
            return stream

        dropcopy = DropCopyPorts(open_dropcopy, _NoMetrics()) if plan.sources.dropcopy else None
        service = ConnectorService(
            settings=settings,
            clock=self.clock,
            open_stream=open_stream if plan.sources.order_stream else None,
            search=search,
            sink=sink,
            watermark=watermark,
            checkpoints=SimCheckpointStore(
                self.kafka, topic=CHECKPOINTS, connector=CONNECTOR, subscription=SUBSCRIPTION
            ),
            seeder=SimSeeder(self.kafka, TOPICS.executions),
            # as the composition root: init_transactions last, before the checkpoint is read
            startup=[
                StartupStep("waiting_for_kafka", kafka_answers),
                StartupStep("waiting_for_kafka", transactions.initialise),
            ],
            make_decoder=lambda: DECODER,
            recent_ids=RecentExecutionIds(200_000),
            observer=_NoMetrics(),
            status=status,
            invalidate_token=lambda: None,
            rng=random.Random(self.rng.randrange(2**32)),
            dropcopy=dropcopy,
        )
        self.current = Incarnation(
            number, service, producer, transactions, sink, search, status, self.clock.monotonic(), streams
        )
        self.restart_at = None
        self.outcome.restarts += 1

    def _end(self, process: Incarnation, *, killed: bool) -> None:
        """A process is gone: killed (SIGKILL, exit 1: in flight written or not) or stopped by itself."""
        if killed:
            process.producer.crash()
            process.transactions.crash()
            self.outcome.in_flight_at_crash |= process.producer.in_flight_execution_ids
        for stream in list(process.streams):
            stream.cancel()
        self.outcome.search_requests += process.search.requests
        self.outcome.commits += process.sink.commits

    def _crash(self) -> None:
        """SIGKILL: everything is gone but what Kafka holds."""
        current = self.current
        if current is None:
            return
        self._end(current, killed=True)
        self.outcome.crashes += 1
        self.current = None
        self.restart_at = self.clock.monotonic() + self.rng.uniform(0.5, 3.0)

    def _leave_zombie(self, freeze_s: float) -> None:
        """A second process starts while this one lives on (a partition, a frozen and thawed process)."""
        current = self.current
        if current is None or current.producer.epoch is None:
            return  # nothing running, or not yet past init_transactions: a plain restart race
        current.frozen_until = self.clock.monotonic() + freeze_s
        self.zombies.append(current)
        self.outcome.zombies += 1
        self.current = None
        self.restart_at = self.clock.monotonic() + self.rng.uniform(0.3, 2.0)

    # --------------------------------------------------------------------- faults

    def _apply(self, fault: Fault) -> None:
        now = self.clock.monotonic()
        until = now + fault.duration_s
        current = self.current
        kind = fault.kind
        if kind is FaultKind.CRASH:
            self._crash()
        elif kind is FaultKind.ZOMBIE:
            self._leave_zombie(fault.duration_s)
        elif kind is FaultKind.TERM and current is not None:
            current.service.request_stop()
        elif kind is FaultKind.PERMANENT_ERROR and current is not None:
            current.producer.inject_permanent_error()
        elif kind is FaultKind.KAFKA_OUTAGE:
            self.kafka.outages.append((now, until))
        elif kind is FaultKind.LEADER_OUTAGE:  # one partition of the executions or heartbeats topic
            topic = self.rng.choice([TOPICS.executions, TOPICS.heartbeats])
            self.kafka.leader_outages.append((now, until, topic, self.rng.randrange(PARTITIONS[topic])))
        elif kind is FaultKind.REST_OUTAGE:
            self._rest_outage(now, until)
        elif kind in DROPCOPY_FAULTS:
            self.venue.lose_dropcopy_tokens(unknown=kind is FaultKind.TOKENS_UNKNOWN)
            if kind is FaultKind.RESUME_REFUSED:
                self.venue.time_refused_until = until
        elif kind is FaultKind.NETWORK_PARTITION:
            self.venue.drop_streams("UNAVAILABLE")
            self.venue.unreachable_until = until
            self._rest_outage(now, until)
            self.kafka.outages.append((now, until))
        else:
            self._venue_fault(kind, until)

    def _rest_outage(self, now: float, until: float) -> None:
        self.venue.rest_outages.append((now, until))
        self.outcome.rest_outages.append((now, until))

    def _venue_fault(self, kind: FaultKind, until: float) -> None:
        if kind is FaultKind.DROP:
            self.venue.drop_streams(self.rng.choice(["UNAVAILABLE", "INTERNAL", "UNAUTHENTICATED"]))
        elif kind is FaultKind.STALL:
            self.venue.stalled_until = until
        for stream in self.venue.streams:
            if kind is FaultKind.NEW_SESSION:
                stream.behaviour.new_session()
            elif kind is FaultKind.SNAPSHOT:
                stream.behaviour.request_snapshot()

    # --------------------------------------------------------------------- the loop

    def run(self) -> Outcome:
        """Run the scenario to its end; return what it left."""
        plan = self.plan
        settle_until = plan.duration_s + SETTLE_CAP_S
        stopping = False
        stopped_at: float | None = None
        instant, repeats = -1.0, 0
        while True:
            now = self.clock.monotonic()
            repeats = repeats + 1 if now == instant else 0
            instant = now
            if repeats > STEPS_AT_ONE_INSTANT_MAX:
                msg = f"livelock: {repeats} steps at virtual time {now:.6f} s without the clock moving"
                raise AssertionError(msg)
            while self._pending and self._pending[0].at <= now:
                self._apply(self._pending.pop(0))
            if self.venue.producing and now >= plan.duration_s:
                self.venue.producing = False  # the market goes quiet: the connector must catch up
                self._last_ns = max(
                    (ns_from_timestamp(e.execution.transact_time) for e in self.venue.executions()
                     if self.venue.in_subscription(e.execution)),
                    default=0,
                )  # fmt: skip
                self._last_dropcopy_position = max(
                    (
                        e.position
                        for e in self.venue.firm_log().entries()
                        if self.venue.in_dropcopy(e.execution)
                    ),
                    default=0,
                )
            self.venue.tick()
            if (
                self.current is None
                and self.restart_at is not None
                and now >= self.restart_at
                and stopped_at is None
            ):
                self._start()
            wake = self._step(now)
            wakes = [self._step_zombie(zombie, now) for zombie in list(self.zombies)]
            if not stopping and not self.venue.producing and self._caught_up():
                self.outcome.caught_up = True
                stopping = True
                assert self.current is not None
                session = self.current.service._session  # the harness looks inside
                if self.current.status.connected and session is not None and session.complete:
                    self.outcome.phase_when_caught_up = self.current.status.phase
                self.current.service.request_stop()
            if stopping and self.current is None and self.restart_at is not None:
                stopped_at = now if stopped_at is None else stopped_at
                if not self.zombies or now >= stopped_at + ZOMBIE_GRACE_S:
                    break  # stopped cleanly after catching up (and every zombie is gone)
            if now >= settle_until:
                break
            restart = self.restart_at if stopped_at is None else stopped_at + ZOMBIE_GRACE_S
            self.clock.advance_to(self._next_event(now, [wake, *wakes, restart]))
        if self.current is not None:
            self._end(self.current, killed=False)
        for zombie in self.zombies:
            self.outcome.zombies_running.append(zombie.number)
            self._end(zombie, killed=False)
        return self.outcome

    def _next_event(self, now: float, candidates: list[float | None]) -> float:
        """When something happens next: a process's wake-up, the venue, a fault, Kafka, a search."""
        candidates.append(self.venue.next_event())
        if self._pending:
            candidates.append(self._pending[0].at)
        for process in [self.current, *self.zombies]:
            if process is not None and now >= process.frozen_until:
                candidates += [
                    process.producer.next_event(),
                    process.transactions.next_event(),
                    _commit_due(process.sink, now),
                    process.search.next_event(),
                ]
        upcoming = [t for t in candidates if t is not None]
        return min(max(t, now) for t in upcoming) if upcoming else now + 1.0

    def _step(self, now: float) -> float | None:
        current = self.current
        if current is None:
            return None
        self.outcome.steps += 1
        try:
            wait = current.service.step()
        except FatalProducerError:
            self.outcome.fatal_exits += 1
            self._crash()  # exit 1: the process is gone, with whatever it had in flight
            return None
        self._claims(current)
        if current.service.finished:
            if current.service.failure is not None:
                self.outcome.fatal_exits += 1
            self._end(current, killed=False)
            self.current = None
            self.restart_at = now + self.rng.uniform(0.5, 3.0)
            return None
        return now + wait

    def _step_zombie(self, zombie: Incarnation, now: float) -> float | None:
        if now < zombie.frozen_until:
            return zombie.frozen_until
        self.outcome.steps += 1
        try:
            wait = zombie.service.step()
        except FatalProducerError as exc:
            self.outcome.zombie_exits.append((zombie.number, str(exc), _had_reason_to_stop(zombie)))
            self.zombies.remove(zombie)
            self._end(zombie, killed=True)  # exit 1
            return None
        self._claims(zombie)
        if zombie.service.finished:
            why = f"finished: {zombie.service.failure}"
            self.outcome.zombie_exits.append((zombie.number, why, _had_reason_to_stop(zombie)))
            self.zombies.remove(zombie)
            self._end(zombie, killed=False)
            return None
        return now + wait

    def _claims(self, process: Incarnation) -> None:
        """Note F whenever a process's F moves (what its checkpoints, heartbeats and /status say)."""
        frontier = process.service.frontier
        if frontier is not None and frontier.venue_time_ns != process.last_frontier:
            process.last_frontier = frontier.venue_time_ns
            self.outcome.frontier_claims.append((self.kafka.serial, frontier.venue_time_ns))

    def _caught_up(self) -> bool:
        current = self.current
        if current is None or current.service.frontier is None or current.sink.in_flight:
            return False
        sources = self.plan.sources
        if current.service.frontier.venue_time_ns < self._last_ns:
            return False
        return not sources.dropcopy or self._dropcopy_caught_up(current)

    def _dropcopy_caught_up(self, current: Incarnation) -> bool:
        """Whether the confirmed Drop Copy token is past the firm's last execution (the order stream's F
        says nothing about other users' executions)."""
        if not self._last_dropcopy_position:
            return True  # nothing to carry
        feed = current.service._dropcopy  # the harness looks inside
        if feed is None:
            return False
        token, _time_ns = feed.confirmed
        return bool(token) and ResumeTokens.position_of(token) >= self._last_dropcopy_position


def _had_reason_to_stop(process: Incarnation) -> bool:
    """Whether a process had been told to stop (SIGTERM), or a delivery of its own failed."""
    return process.service._stop_requested or process.producer.delivery_failed  # the harness looks inside


def _commit_due(sink: TransactionalSink, now: float) -> float | None:
    """When the open transaction will be old enough to commit (production polls every 5 ms meanwhile).

    None when no commit is due later: the sink was polled now, so a due time already passed means
    the commit started, or the poll failed before it (the process is gone).
    """
    if not sink._open or sink._committing:  # the harness looks inside
        return None
    due = sink._opened_at + sink._interval_s + 1e-9  # just past it: ``now - opened_at`` rounds down
    return due if due > now else None


def _fields(settings: EngineSettings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


class _NoMetrics:
    """The engine's observer, ignoring everything (metrics are not part of the simulation)."""

    def __getattr__(self, _name: str) -> object:
        return lambda *_args, **_kwargs: None
