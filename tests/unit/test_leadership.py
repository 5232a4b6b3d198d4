"""The leader election without Kafka: the local lease on an injected clock, and the election thread
driven by a scripted consumer (assignments, revocations, errors) on a clock the test moves.

The real group protocol (two electors, takeover after stop, SIGKILL and SIGSTOP) is tested on the
real cluster in tests/integration/test_leadership.py.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from connector.errors import ConfigError, RuntimeFailure
from connector.kafka.leadership import ElectionState, LeaderElection, Leadership, Lease

TOPIC = "pmx.connector.leader"
GROUP = "pmx-connector.leader.pmx-a.subscription"
LEASE_S = 4.0
WAIT_S = 5.0


# ---------------------------------------------------------------------------- the lease, pure


def test_a_granted_lease_holds_while_the_thread_ticks_within_it() -> None:
    lease = Lease(LEASE_S, now=100.0)
    assert not lease.holds(100.0)
    assert lease.grant(100.1)
    for step in range(1, 50):
        now = 100.1 + step * 0.1
        assert not lease.tick(now)
        assert lease.holds(now)
    assert lease.state is ElectionState.LEADER


def test_a_gap_longer_than_the_lease_loses_leadership_for_good() -> None:
    lease = Lease(LEASE_S, now=0.0)
    assert lease.grant(0.1)
    assert lease.tick(0.1 + LEASE_S + 0.01)  # the process was frozen
    assert lease.state is ElectionState.LOST
    assert lease.reason is not None and "paused 4.0 s" in lease.reason
    assert not lease.holds(4.2)
    assert not lease.grant(4.3)  # never regained by the same object
    assert not lease.holds(4.3)
    assert lease.state is ElectionState.LOST


def test_a_gap_of_exactly_the_lease_keeps_leadership() -> None:
    lease = Lease(LEASE_S, now=0.0)
    assert lease.grant(0.0)
    assert not lease.tick(LEASE_S)
    assert lease.holds(LEASE_S)


def test_a_caller_that_resumes_before_the_election_thread_is_not_the_leader() -> None:
    lease = Lease(LEASE_S, now=0.0)
    assert lease.grant(0.0)
    assert lease.holds(LEASE_S)
    assert not lease.holds(LEASE_S + 0.5)  # the thread has not ticked since the freeze
    assert lease.state is ElectionState.LEADER  # ... until it does:
    assert lease.tick(LEASE_S + 0.6)
    assert lease.state is ElectionState.LOST


def test_a_standby_that_was_paused_stays_a_standby_and_can_still_lead() -> None:
    lease = Lease(LEASE_S, now=0.0)
    assert not lease.tick(30.0)
    assert lease.state is ElectionState.STANDBY
    assert lease.grant(30.1)
    assert lease.holds(30.1)


def test_an_assignment_heard_right_after_a_pause_ends_the_election() -> None:
    lease = Lease(LEASE_S, now=0.0)
    assert not lease.grant(LEASE_S + 1)  # librdkafka may have had it from before the pause
    assert lease.state is ElectionState.LOST
    assert lease.reason is not None and "stale" in lease.reason


def test_a_revocation_ends_leadership_and_means_nothing_to_a_standby() -> None:
    lease = Lease(LEASE_S, now=0.0)
    assert not lease.revoke(0.1, "moved")
    assert lease.state is ElectionState.STANDBY
    assert lease.grant(0.2)
    assert lease.revoke(0.3, "moved")
    assert (lease.state, lease.reason) == (ElectionState.LOST, "moved")


def test_final_states_keep_their_reason() -> None:
    lease = Lease(LEASE_S, now=0.0)
    lease.fail("no ACL")
    lease.stop()
    assert (lease.state, lease.reason) == (ElectionState.FAILED, "no ACL")
    stopped = Lease(LEASE_S, now=0.0)
    assert stopped.grant(0.0)
    stopped.stop()
    assert stopped.state is ElectionState.STOPPED
    assert not stopped.holds(0.0)


# ---------------------------------------------------------------------------- the election thread


class SteppedClock:
    """A monotonic clock that moves only when told (each poll moves it by its timeout)."""

    def __init__(self) -> None:
        self._now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class Polled:
    """What poll returns for an error (a real ``Message`` cannot be built in Python)."""

    def __init__(self, error: KafkaError) -> None:
        self._error = error

    def error(self) -> KafkaError:
        return self._error


class ScriptedConsumer:
    """Runs the steps a test queues, one per poll, on the election thread; each poll moves the clock."""

    def __init__(self, clock: SteppedClock) -> None:
        self.clock = clock
        self.config: dict[str, Any] = {}
        self.callbacks: dict[str, Callable[[Any, list[TopicPartition]], None]] = {}
        self.steps: queue.Queue[Callable[[], Polled | None]] = queue.Queue()
        self.closed = 0
        self.polls = 0
        self.gate = threading.Event()  # cleared: poll blocks (the thread is stuck)
        self.gate.set()
        self.stuck = threading.Event()  # set once poll blocks at the closed gate

    def build(self, config: dict[str, Any]) -> ScriptedConsumer:
        self.config = config
        return self

    def subscribe(self, topics: list[str], **callbacks: Callable[[Any, list[TopicPartition]], None]) -> None:
        assert topics == [TOPIC]
        self.callbacks = callbacks

    def poll(self, timeout: float) -> Polled | None:
        if not self.gate.is_set():
            self.stuck.set()
            self.gate.wait()
        self.polls += 1
        time.sleep(0.002)
        self.clock.advance(timeout)
        try:
            step = self.steps.get_nowait()
        except queue.Empty:
            return None
        return step()

    def memberid(self) -> str | None:
        return "rdkafka-member-1" if self.polls else None

    def close(self) -> None:
        self.closed += 1

    # what the group does, queued for the next poll
    def assign(self, partition: int = 0) -> None:
        self._call("on_assign", partition)

    def revoke(self) -> None:
        self._call("on_revoke", 0)

    def lose(self) -> None:
        self._call("on_lost", 0)

    def fail_with(self, code: int) -> None:
        self.steps.put(lambda: Polled(KafkaError(code)))

    def _call(self, name: str, partition: int) -> None:
        def step() -> None:
            self.callbacks[name](self, [TopicPartition(TOPIC, partition)])

        self.steps.put(step)


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def consumer(clock: SteppedClock) -> ScriptedConsumer:
    return ScriptedConsumer(clock)


@pytest.fixture
def changes() -> list[Leadership]:
    return []


@pytest.fixture
def election(
    clock: SteppedClock, consumer: ScriptedConsumer, changes: list[Leadership]
) -> Iterator[LeaderElection]:
    elector = LeaderElection(
        "127.0.0.1:9",
        {"linger.ms": 5, "security.protocol": "PLAINTEXT", "partition.assignment.strategy": "range"},
        TOPIC,
        GROUP,
        on_change=changes.append,
        clock=clock,
        consumer_factory=consumer.build,
    )
    try:
        yield elector
    finally:
        consumer.gate.set()
        elector.stop()


def eventually(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_the_consumer_is_a_classic_cooperative_group_member_that_commits_nothing(
    election: LeaderElection, consumer: ScriptedConsumer
) -> None:
    election.start()
    config = consumer.config
    assert config["group.id"] == GROUP
    assert config["session.timeout.ms"] == 6000
    assert config["heartbeat.interval.ms"] == 1000
    assert config["group.protocol"] == "classic"
    assert config["partition.assignment.strategy"] == "cooperative-sticky"  # the raw "range" is overridden
    assert config["enable.auto.commit"] is False
    assert config["security.protocol"] == "PLAINTEXT"
    assert "linger.ms" not in config  # producer-only properties stay out
    assert config["logger"].name == "librdkafka"
    assert election.lease_s == LEASE_S


def test_partition_zero_assigned_makes_the_leader(
    election: LeaderElection, consumer: ScriptedConsumer, changes: list[Leadership]
) -> None:
    election.start()
    assert not election.is_leader()
    assert not election.wait_until_leader(0.05)
    consumer.assign(partition=1)  # not the coordination partition (a topic made with more)
    consumer.assign()
    assert election.wait_until_leader(WAIT_S)
    assert election.is_leader()
    election.check()
    status = election.describe()
    assert status.state is ElectionState.LEADER and status.leader
    assert status.since is not None and status.since.tzinfo is not None
    eventually(lambda: election.describe().member_id == "rdkafka-member-1")
    document = election.describe().to_json()
    assert document["state"] == "leader" and document["group"] == GROUP
    eventually(lambda: [c.state for c in changes] == [ElectionState.LEADER])


def test_a_revocation_loses_leadership_leaves_the_group_and_is_final(
    election: LeaderElection, consumer: ScriptedConsumer, changes: list[Leadership]
) -> None:
    election.start()
    consumer.assign()
    assert election.wait_until_leader(WAIT_S)
    consumer.revoke()
    eventually(lambda: consumer.closed == 1)
    assert not election.is_leader()
    assert election.describe().state is ElectionState.LOST
    with pytest.raises(RuntimeFailure, match="moved the coordination partition"):
        election.check()
    assert [c.state for c in changes] == [ElectionState.LEADER, ElectionState.LOST]
    assert not election.wait_until_leader(0.01)
    election.stop()
    assert election.describe().state is ElectionState.LOST  # stop keeps the loss
    assert consumer.closed == 1


def test_a_lost_session_loses_leadership(election: LeaderElection, consumer: ScriptedConsumer) -> None:
    election.start()
    consumer.assign()
    assert election.wait_until_leader(WAIT_S)
    consumer.lose()
    eventually(lambda: election.describe().state is ElectionState.LOST)
    assert "session was lost" in str(election.describe().reason)


def test_a_frozen_process_loses_leadership_as_soon_as_the_thread_resumes(
    election: LeaderElection, consumer: ScriptedConsumer, clock: SteppedClock, changes: list[Leadership]
) -> None:
    election.start()
    consumer.assign()
    assert election.wait_until_leader(WAIT_S)
    consumer.gate.clear()  # the election thread is stuck in poll ...
    assert consumer.stuck.wait(WAIT_S)
    clock.advance(LEASE_S + 0.5)  # ... while the clock runs on (SIGSTOP, then SIGCONT)
    assert not election.is_leader()  # a caller thread that resumes first does not lead
    assert election.describe().state is ElectionState.LEADER  # the thread has not looked yet
    consumer.gate.set()
    eventually(lambda: election.describe().state is ElectionState.LOST)
    assert "paused" in str(election.describe().reason)
    eventually(lambda: consumer.closed == 1)
    eventually(lambda: [c.state for c in changes] == [ElectionState.LEADER, ElectionState.LOST])
    assert not changes[-1].leader


@pytest.mark.parametrize(
    ("code", "needed"),
    [
        (KafkaError.GROUP_AUTHORIZATION_FAILED, f"READ on the consumer group {GROUP}"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, f"DESCRIBE and READ on the topic {TOPIC}"),
    ],
)
def test_an_authorization_failure_is_one_line_naming_the_acl(
    election: LeaderElection, consumer: ScriptedConsumer, code: int, needed: str
) -> None:
    election.start()
    consumer.fail_with(code)
    with pytest.raises(RuntimeFailure) as raised:
        election.wait_until_leader(WAIT_S)
    message = str(raised.value)
    assert needed in message and "\n" not in message
    eventually(lambda: consumer.closed == 1)
    assert election.describe().state is ElectionState.FAILED
    with pytest.raises(RuntimeFailure, match="principal needs"):
        election.check()


def test_kafka_down_is_not_fatal(
    election: LeaderElection, consumer: ScriptedConsumer, caplog: pytest.LogCaptureFixture
) -> None:
    election.start()
    for _ in range(3):
        consumer.fail_with(KafkaError._ALL_BROKERS_DOWN)
    consumer.fail_with(KafkaError._TRANSPORT)
    consumer.assign()
    assert election.wait_until_leader(WAIT_S)
    election.check()
    warnings = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(warnings) == 2  # once per distinct error, not once per poll


def test_stop_leaves_the_group_once_and_is_idempotent(
    election: LeaderElection, consumer: ScriptedConsumer, changes: list[Leadership]
) -> None:
    election.stop()  # before start: nothing to leave
    assert consumer.closed == 0
    other = LeaderElection("127.0.0.1:9", {}, TOPIC, GROUP, consumer_factory=consumer.build)
    other.start()
    consumer.assign()
    assert other.wait_until_leader(WAIT_S)
    other.stop()
    other.stop()
    assert consumer.closed == 1
    assert other.describe().state is ElectionState.STOPPED
    assert not other.is_leader()
    assert not other.wait_until_leader(0.01)
    other.check()  # a stop is not a failure
    with pytest.raises(RuntimeError, match="runs once"):
        other.start()


def test_a_leader_that_is_told_to_stop_stops_leading_at_once(
    election: LeaderElection, consumer: ScriptedConsumer
) -> None:
    election.start()
    consumer.assign()
    assert election.wait_until_leader(WAIT_S)
    consumer.gate.clear()
    assert consumer.stuck.wait(WAIT_S)  # the thread cannot close the consumer yet
    stopper = threading.Thread(target=election.stop)
    stopper.start()
    eventually(lambda: election.describe().state is ElectionState.STOPPED)
    assert not election.is_leader()
    assert consumer.closed == 0
    consumer.gate.set()
    stopper.join(WAIT_S)
    assert consumer.closed == 1


def test_a_bug_in_the_election_thread_fails_the_election(
    election: LeaderElection, consumer: ScriptedConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(args.exc_type))

    def bug() -> None:
        raise ZeroDivisionError

    election.start()
    consumer.steps.put(bug)
    with pytest.raises(RuntimeFailure, match="ended unexpectedly"):
        election.wait_until_leader(WAIT_S)
    eventually(lambda: crashes == [ZeroDivisionError] and consumer.closed == 1)
    with pytest.raises(RuntimeFailure, match="ended unexpectedly"):
        election.check()


def test_a_waiter_is_released_by_stop(election: LeaderElection) -> None:
    election.start()
    answers: list[bool] = []
    waiter = threading.Thread(target=lambda: answers.append(election.wait_until_leader(None)))
    waiter.start()
    time.sleep(0.05)
    election.stop()
    waiter.join(WAIT_S)
    assert answers == [False]


def test_a_session_timeout_too_short_to_heartbeat_in_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 1 s"):
        LeaderElection("127.0.0.1:9", {}, TOPIC, GROUP, session_timeout_s=0.5)
