"""Leader election through Kafka itself: a consumer group over a one-partition coordination topic.

Every instance with the same connector name and subscription joins one consumer group (the caller
derives the group ID) subscribed to ``kafka.topics.leader``, a topic with exactly one partition. The
group coordinator assigns that partition to one member at a time: the instance holding partition 0
leads (opens the venue stream), the others stand by, warm. Nothing is ever produced to or consumed
from the topic; the group is only a membership protocol with a failure detector (the session
timeout) run by the broker.

The election is the fast, cooperative path. The hard guarantee is the transactional producer: an
instance that starts publishing fences the previous one at the broker (producer epoch).

Leadership is lost, for good, when:

- the group revokes partition 0 or librdkafka reports the assignment lost (session expired);
- the **local lease** lapses: the election thread measures the gap between its own iterations on the
  monotonic clock. A gap longer than :attr:`LeaderElection.lease_s` (the session timeout less two
  heartbeat intervals) means the process was frozen (SIGSTOP, a VM pause) long enough that the broker
  may have expired the member and given the partition to a standby, maybe before librdkafka, also
  frozen, could hear of it. :meth:`LeaderElection.is_leader` also answers False once the thread's
  last iteration is older than the lease, so a caller thread that resumes first does not lead either.

An object that lost leadership never leads again: it leaves the group, and the process is expected
to exit 1 and restart as a standby (its restart joins the group afresh). Kafka being unreachable is
not fatal (librdkafka keeps trying; no leadership meanwhile). An authorization failure on the group
or the topic is a :class:`~connector.errors.RuntimeFailure` naming the ACL that is missing.

The group uses the classic protocol (its session timeout is the client's; the KIP-848 protocol takes
the broker's) with the cooperative-sticky assignor, so a member joining (a rolling update's new pod)
does not revoke the leader's partition, as an eager assignor would at every rebalance.

confluent-kafka's consumer errors of the election are translated here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connector.errors import ConfigError, RuntimeFailure
from connector.kafka.publisher import LIBRDKAFKA_LOG, client_config

_LOG: Final = logging.getLogger(__name__)

# The broker's default group.min.session.timeout.ms: the shortest session a group member may ask for.
SESSION_TIMEOUT_S: Final = 6.0
POLL_S: Final = 0.1
HEARTBEATS_PER_SESSION: Final = 6
# The lease is the session timeout less this many heartbeat intervals: the broker counts the session
# from the last heartbeat it received, which may precede the thread's last iteration by one interval;
# the second covers scheduling and the round trip.
LEASE_MARGIN_HEARTBEATS: Final = 2
REBALANCE_TIMEOUT_SESSIONS: Final = 2
STOP_TIMEOUT_S: Final = 10.0
COORDINATION_PARTITION: Final = 0
# Authorization failures, and what the principal needs for them.
_PERMISSION_HINTS: Final[Mapping[int, str]] = {
    KafkaError.GROUP_AUTHORIZATION_FAILED: "READ on the consumer group {group}",
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "DESCRIBE and READ on the topic {topic}",
}
# Consumer settings the election depends on; raw properties may not change them.
_ENFORCED: Final[Mapping[str, Any]] = {
    "group.protocol": "classic",
    "partition.assignment.strategy": "cooperative-sticky",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": False,
    "auto.offset.reset": "latest",
}


class ElectionState(StrEnum):
    """Where one election object is in its life; LOST, FAILED and STOPPED are final."""

    STANDBY = "standby"  # in the group (or trying to reach it), not holding partition 0
    LEADER = "leader"  # holding partition 0, lease fresh
    LOST = "lost"  # led (or was assigned right after a pause), then lost it: exit 1, restart as a standby
    FAILED = "failed"  # Kafka refused the election (authorization, a fatal consumer error)
    STOPPED = "stopped"  # stop() was called; the group was left


FINAL_STATES: Final = frozenset({ElectionState.LOST, ElectionState.FAILED, ElectionState.STOPPED})


class Lease:
    """The local lease: leadership counts only while this process provably kept up with the group.

    Pure state on an injected monotonic clock (the caller passes ``now``); not thread-safe by
    itself (:class:`LeaderElection` holds a lock around it).
    """

    def __init__(self, lease_s: float, now: float) -> None:
        self.lease_s = lease_s
        self.state = ElectionState.STANDBY
        self.reason: str | None = None
        self._last_tick = now

    def tick(self, now: float) -> bool:
        """Record one iteration of the election thread; True when this ended leadership (a freeze)."""
        gap = self._advance(now)
        if gap > self.lease_s and self.state is ElectionState.LEADER:
            self._end(ElectionState.LOST, f"{_paused(gap, self.lease_s)}: the group may have another leader")
            return True
        return False

    def grant(self, now: float) -> bool:
        """Partition 0 was assigned; True when this made the object the leader.

        An assignment heard right after a pause longer than the lease may be stale (librdkafka had it
        before the pause; the broker may have expired the member since): it ends the election instead,
        so that the partition is not held by a member that will not lead.
        """
        if self.state is not ElectionState.STANDBY:
            self.tick(now)
            return False
        gap = self._advance(now)
        if gap > self.lease_s:
            self._end(ElectionState.LOST, f"{_paused(gap, self.lease_s)}: the assignment may be stale")
            return False
        self.state = ElectionState.LEADER
        return True

    def revoke(self, now: float, reason: str) -> bool:
        """Partition 0 was revoked or lost; True when this ended leadership."""
        if self.tick(now):
            return True
        if self.state is ElectionState.LEADER:
            self._end(ElectionState.LOST, reason)
            return True
        return False

    def fail(self, reason: str) -> None:
        """Kafka refused the election: final."""
        if self.state not in FINAL_STATES:
            self._end(ElectionState.FAILED, reason)

    def stop(self) -> None:
        """The owner stopped the election: final (a loss or failure keeps its state and reason)."""
        if self.state not in FINAL_STATES:
            self._end(ElectionState.STOPPED, "stopped")

    def holds(self, now: float) -> bool:
        """Whether this process leads at ``now``: the leader, and the thread's last tick within the lease."""
        return self.state is ElectionState.LEADER and now - self._last_tick <= self.lease_s

    def _advance(self, now: float) -> float:
        gap = now - self._last_tick
        self._last_tick = now
        return gap

    def _end(self, state: ElectionState, reason: str) -> None:
        self.state = state
        self.reason = reason


def _paused(gap_s: float, lease_s: float) -> str:
    return f"the process was paused {gap_s:.1f} s, longer than the {lease_s:.1f} s leadership lease"


@dataclass(frozen=True, slots=True)
class Leadership:
    """One look at the election, for ``/status`` and the ``on_change`` callback.

    Attributes:
        state: See :class:`ElectionState`.
        leader: Whether this process leads now (what :meth:`LeaderElection.is_leader` answered).
        since: When it became the leader (aware UTC), None when it never led.
        member_id: The group member ID librdkafka was given, once known.
        group: The consumer group of the election.
        reason: Why leadership ended (lost, failed), else None.
    """

    state: ElectionState
    leader: bool
    since: datetime | None
    member_id: str | None
    group: str
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        """The ``leadership`` part of the ``/status`` document."""
        return {
            "state": self.state.value,
            "leader": self.leader,
            "since": self.since.isoformat() if self.since is not None else None,
            "member_id": self.member_id,
            "group": self.group,
            "reason": self.reason,
        }


class _Polled(Protocol):
    """What ``Consumer.poll`` returns (a ``confluent_kafka.Message`` cannot be built in tests)."""

    def error(self) -> KafkaError | None: ...


class GroupConsumer(Protocol):
    """The part of ``confluent_kafka.Consumer`` the election uses."""

    def subscribe(
        self,
        topics: list[str],
        *,
        on_assign: Callable[[Any, list[TopicPartition]], None],
        on_revoke: Callable[[Any, list[TopicPartition]], None],
        on_lost: Callable[[Any, list[TopicPartition]], None],
    ) -> None:
        """Join the group for ``topics``; the callbacks run inside :meth:`poll`."""

    def poll(self, timeout: float) -> _Polled | None:
        """Serve the group protocol's callbacks and errors for up to ``timeout`` seconds."""

    def memberid(self) -> str | None:
        """The member ID the coordinator gave, once joined."""

    def close(self) -> None:
        """Leave the group and release the client."""


ConsumerFactory = Callable[[dict[str, Any]], GroupConsumer]


class LeaderElection:
    """Elect one leader among the instances sharing a consumer group; see the module docstring.

    Thread-safety: :meth:`is_leader`, :meth:`wait_until_leader`, :meth:`describe`, :meth:`check`
    and :meth:`stop` may be called from any thread. The consumer lives on the election's own daemon
    thread, which also calls ``on_change`` after every change of state: it must return quickly (the
    thread's iterations are what keep the lease fresh) and must not call :meth:`start`.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        properties: Mapping[str, object],
        topic: str,
        group_id: str,
        *,
        session_timeout_s: float = SESSION_TIMEOUT_S,
        on_change: Callable[[Leadership], None] = lambda _leadership: None,
        clock: Callable[[], float] = time.monotonic,
        consumer_factory: ConsumerFactory = Consumer,
    ) -> None:
        """Prepare the election (no I/O: :meth:`start` joins the group).

        Args:
            bootstrap_servers: The Kafka cluster.
            properties: The operator's raw librdkafka properties (``kafka.properties``).
            topic: The one-partition coordination topic (prefix applied).
            group_id: The group of every instance with this connector name and subscription.
            session_timeout_s: The group session timeout: a member silent this long is expired and
                its partition moves (the broker's ``group.min.session.timeout.ms`` is the floor).
            on_change: Called on the election thread with each new state.
            clock: The monotonic clock (tests inject one).
            consumer_factory: Builds the consumer from its configuration (tests inject a fake).

        Raises:
            ConfigError: the session timeout is too short to heartbeat within.
        """
        if session_timeout_s < 1:
            msg = f"the leader election's session timeout must be at least 1 s, not {session_timeout_s}"
            raise ConfigError(msg)
        self.topic = topic
        self.group_id = group_id
        self.session_timeout_s = session_timeout_s
        self.heartbeat_interval_s = session_timeout_s / HEARTBEATS_PER_SESSION
        self.lease_s = session_timeout_s - LEASE_MARGIN_HEARTBEATS * self.heartbeat_interval_s
        self._config = {
            **client_config(bootstrap_servers, properties),
            "logger": LIBRDKAFKA_LOG,
            "group.id": group_id,
            "session.timeout.ms": round(session_timeout_s * 1000),
            "heartbeat.interval.ms": round(self.heartbeat_interval_s * 1000),
            # Also the rebalance timeout: how long the coordinator waits for a member to rejoin.
            "max.poll.interval.ms": round(REBALANCE_TIMEOUT_SESSIONS * session_timeout_s * 1000),
            "error_cb": self._on_error,
            **_ENFORCED,
        }
        self._on_change = on_change
        self._clock = clock
        self._consumer_factory = consumer_factory
        self._changed = threading.Condition()  # guards everything below
        self._lease = Lease(self.lease_s, clock())
        self._since: datetime | None = None
        self._member_id: str | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._last_warning: str | None = None

    def start(self) -> None:
        """Join the group on the election thread (returns at once; leadership comes later, if at all).

        Raises:
            ConfigError: librdkafka refused the consumer's configuration (a raw property).
            RuntimeError: the election was started before (an object runs one election).
        """
        with self._changed:
            if self._thread is not None or self._stopping:
                msg = "a LeaderElection runs once; make a new one"
                raise RuntimeError(msg)
            try:
                consumer = self._consumer_factory(dict(self._config))
            except KafkaException as exc:
                msg = f"kafka.properties: the leader election's consumer refused its configuration: {exc}"
                raise ConfigError(msg) from None
            consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            self._lease.tick(self._clock())  # the lease counts from here, not from construction
            self._thread = threading.Thread(
                target=self._run, args=(consumer,), name="leader-election", daemon=True
            )
            self._thread.start()
        _LOG.info("leader election: joining group %s on %s", self.group_id, self.topic)

    def stop(self) -> None:
        """Give up leadership now and leave the group (a standby leads about a second later); idempotent.

        :meth:`is_leader` answers False from the moment ``stop`` is called; the election thread then
        closes the consumer (waited for, up to ``STOP_TIMEOUT_S``, unless called on that thread).
        """
        with self._changed:
            self._stopping = True
            self._lease.stop()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT_S)
            if thread.is_alive():
                _LOG.warning("leader election: the consumer did not close within %.0f s", STOP_TIMEOUT_S)

    def is_leader(self) -> bool:
        """Whether this process leads now (False once the election thread has not ticked within the lease)."""
        with self._changed:
            return self._lease.holds(self._clock())

    def wait_until_leader(self, timeout_s: float | None = None) -> bool:
        """Block until this process leads (True), or the election ended or ``timeout_s`` passed (False).

        Raises:
            RuntimeFailure: Kafka refused the election (authorization).
        """
        with self._changed:
            self._changed.wait_for(
                lambda: self._lease.state is not ElectionState.STANDBY or self._stopping, timeout_s
            )
            if self._lease.state is ElectionState.FAILED:
                raise RuntimeFailure(self._lease.reason)
            return self._lease.holds(self._clock())

    def check(self) -> None:
        """Raise if the election ended badly; a standby or a leader passes.

        Raises:
            RuntimeFailure: leadership was lost (the process should exit 1), or Kafka refused the election.
        """
        with self._changed:
            state, reason = self._lease.state, self._lease.reason
        if state in {ElectionState.LOST, ElectionState.FAILED}:
            raise RuntimeFailure(reason)

    def describe(self) -> Leadership:
        """The election as ``/status`` shows it."""
        with self._changed:
            return self._leadership()

    def _leadership(self) -> Leadership:
        return Leadership(
            state=self._lease.state,
            leader=self._lease.holds(self._clock()),
            since=self._since,
            member_id=self._member_id,
            group=self.group_id,
            reason=self._lease.reason,
        )

    # ------------------------------------------------------------------ the election thread

    def _run(self, consumer: GroupConsumer) -> None:
        notified = ElectionState.STANDBY
        try:
            while True:
                with self._changed:
                    self._lease.tick(self._clock())
                    state = self._lease.state
                notified = self._notify(notified, state)
                if state in FINAL_STATES:
                    return
                try:
                    polled = consumer.poll(POLL_S)
                except KafkaException as exc:  # confluent-kafka raises a fatal error from poll()
                    error = exc.args[0] if exc.args else None
                    if isinstance(error, KafkaError):
                        self._on_error(error)
                    else:
                        self._fail(f"the leader election's consumer failed: {exc}")
                    time.sleep(POLL_S)  # a non-fatal one would come back at once
                    continue
                if polled is not None and (error := polled.error()) is not None:
                    self._on_error(error)
                member_id = consumer.memberid() or None  # it changes when the member rejoins
                with self._changed:
                    self._member_id = member_id
        finally:
            self._close(consumer)

    def _notify(self, notified: ElectionState, state: ElectionState) -> ElectionState:
        if state is notified:
            return notified
        leadership = self.describe()
        log = _LOG.warning if state in {ElectionState.LOST, ElectionState.FAILED} else _LOG.info
        log(
            "leader election: %s (group %s%s)",
            state.value,
            self.group_id,
            f": {leadership.reason}" if leadership.reason and state is not ElectionState.STOPPED else "",
        )
        self._on_change(leadership)
        return state

    def _close(self, consumer: GroupConsumer) -> None:
        with self._changed:
            # Every way out of the loop but an exception (a bug) is a final state; after one, the
            # caller's check() must fail rather than see a quiet standby.
            self._lease.fail("the leader election's thread ended unexpectedly")
            self._changed.notify_all()
        try:
            consumer.close()  # leaves the group: the partition moves to a standby at once
        except (KafkaException, RuntimeError) as exc:
            _LOG.warning("leader election: closing the consumer failed: %s", exc)

    def _on_assign(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        if not _holds_partition(partitions, self.topic):
            return
        with self._changed:
            if self._lease.grant(self._clock()):
                self._since = datetime.now(UTC)
            self._changed.notify_all()

    def _on_revoke(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        self._take_away(partitions, "the group moved the coordination partition to another member")

    def _on_lost(self, _consumer: object, partitions: list[TopicPartition]) -> None:
        self._take_away(partitions, "the group session was lost (the broker expired this member)")

    def _take_away(self, partitions: list[TopicPartition], reason: str) -> None:
        if not _holds_partition(partitions, self.topic):
            return
        with self._changed:
            self._lease.revoke(self._clock(), reason)
            self._changed.notify_all()

    def _on_error(self, error: KafkaError) -> None:
        """A consumer error (from ``poll`` or librdkafka's ``error_cb``): fatal ones end the election."""
        code = error.code()
        hint = _PERMISSION_HINTS.get(code)
        if hint is not None:
            needed = hint.format(group=self.group_id, topic=self.topic)
            self._fail(f"Kafka refused the leader election ({error.name()}): the principal needs {needed}")
        elif code == KafkaError.INVALID_SESSION_TIMEOUT:
            self._fail(
                f"the broker refused the leader election's session timeout of {self.session_timeout_s:g} s "
                "(outside its group.min/max.session.timeout.ms)"
            )
        elif error.fatal():
            self._fail(f"the leader election's consumer failed: {error.name()}: {error.str()}")
        else:
            # Kafka down, the topic not there yet, a coordinator moving: librdkafka keeps trying.
            warning = f"{error.name()}: {error.str()}"
            if warning != self._last_warning:
                self._last_warning = warning
                _LOG.warning("leader election: %s (retrying; no leadership meanwhile)", warning)

    def _fail(self, reason: str) -> None:
        with self._changed:
            self._lease.fail(reason)
            self._changed.notify_all()


def _holds_partition(partitions: list[TopicPartition], topic: str) -> bool:
    return any(p.topic == topic and p.partition == COORDINATION_PARTITION for p in partitions)
