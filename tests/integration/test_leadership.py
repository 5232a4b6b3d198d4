"""The leader election on the real three-node cluster: one leader, and takeover after stop, SIGKILL, SIGSTOP.

Each test makes its own one-partition coordination topic and group. In-process electors (threads)
show that exactly one leads and that a stop hands over at once; ``tests.leader_probe`` processes show
the takeover after the leader's death (SIGKILL) and its freeze (SIGSTOP longer than the session
timeout), and that the frozen one reports lost leadership and exits 1 as soon as it resumes. The
measured takeover times are printed (``pytest -s``) and in the assertion messages. On the locked-down
``secure_kafka``, a principal without READ on the group, or without DESCRIBE on the topic, gets one
line naming the ACL.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from connector.errors import RuntimeFailure
from connector.kafka.leadership import SESSION_TIMEOUT_S, ElectionState, LeaderElection
from tests.kafka_cluster import KafkaCluster
from tests.kafka_fixtures import SecureKafka

REPO_ROOT = Path(__file__).resolve().parents[2]
TAKEOVER_LIMIT_S = 10.0  # issue #15: the standby leads within 10 s of the leader's death
STOP_TAKEOVER_LIMIT_S = 4.0  # a leader that leaves the group hands over within a few heartbeats
RESUME_EXIT_LIMIT_S = 2.0  # the frozen leader says so and exits 1 about a second after SIGCONT
JOIN_TIMEOUT_S = 30.0
PAUSE_S = SESSION_TIMEOUT_S + 2  # longer than the session: the broker expires the frozen member


@pytest.fixture
def election_topic(real_kafka: KafkaCluster) -> tuple[str, str]:
    """A fresh one-partition coordination topic and a fresh group for it."""
    name = f"leader-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": real_kafka.bootstrap_servers, "log_level": 2})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=3)])[name].result(timeout=30)
    return name, f"group-{name}"


def eventually(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Wait for ``condition``; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < timeout_s, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def electors(real_kafka: KafkaCluster, election_topic: tuple[str, str]) -> Iterator[list[LeaderElection]]:
    topic, group = election_topic
    made = [LeaderElection(real_kafka.bootstrap_servers, {}, topic, group) for _ in range(2)]
    try:
        yield made
    finally:
        for elector in made:
            elector.stop()


def test_exactly_one_of_two_electors_leads_and_a_stop_hands_over(electors: list[LeaderElection]) -> None:
    for elector in electors:
        elector.start()
    eventually(lambda: sum(e.is_leader() for e in electors) == 1, JOIN_TIMEOUT_S, "one leader")
    for _ in range(20):  # and it stays that way: never two
        assert sum(e.is_leader() for e in electors) == 1
        time.sleep(0.05)
    leader = next(e for e in electors if e.is_leader())
    standby = next(e for e in electors if e is not leader)
    status = leader.describe()
    assert status.since is not None and status.member_id
    assert standby.describe().state is ElectionState.STANDBY

    stopping = time.monotonic()
    leader.stop()
    assert not leader.is_leader()
    left = time.monotonic() - stopping  # stop() returns once the consumer has left the group
    eventually(standby.is_leader, STOP_TAKEOVER_LIMIT_S, "the standby leads after the leader's stop")
    took = time.monotonic() - stopping
    print(f"\n[leadership] takeover after stop(): {took:.2f} s (stop() returned after {left:.2f} s)")
    assert leader.describe().state is ElectionState.STOPPED and not leader.is_leader()
    assert standby.wait_until_leader(0)


class Probe:
    """A ``tests.leader_probe`` process and the JSON lines it printed."""

    def __init__(self, bootstrap: str, topic: str, group: str, name: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.leader_probe", "--bootstrap", bootstrap, "--topic", topic,
             "--group", group],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.leading = False
        self.stderr: list[str] = []
        self.paused = False
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_errors, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            change = json.loads(line)
            change["seen"] = time.monotonic()
            self.lines.put(change)

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def next_change(self, timeout_s: float) -> dict[str, Any]:
        try:
            change = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            msg = f"{self.name}: no change within {timeout_s:.0f} s; stderr: {''.join(self.stderr)[-2000:]}"
            raise AssertionError(msg) from None
        self.leading = bool(change["leader"])
        return change

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)
        self.paused = signum is signal.SIGSTOP

    def end(self) -> None:
        if self.process.poll() is None:
            if self.paused:
                self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=30)
        for reader in self._readers:
            reader.join(timeout=5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def probes(real_kafka: KafkaCluster, election_topic: tuple[str, str]) -> Iterator[list[Probe]]:
    """Two probe processes in one election; the first to start leads."""
    topic, group = election_topic
    started: list[Probe] = []
    try:
        first = Probe(real_kafka.bootstrap_servers, topic, group, "first")
        started.append(first)
        assert first.next_change(JOIN_TIMEOUT_S)["state"] == "standby"
        assert first.next_change(JOIN_TIMEOUT_S)["leader"] is True
        second = Probe(real_kafka.bootstrap_servers, topic, group, "second")
        started.append(second)
        assert second.next_change(JOIN_TIMEOUT_S)["state"] == "standby"
        time.sleep(1.5)  # the second has joined: the group rebalanced, cooperatively, around it
        assert second.lines.empty() and first.lines.empty(), "a rebalance moved the leadership"
        yield started
    finally:
        for probe in started:
            probe.end()


def test_the_standby_process_leads_within_10_s_of_the_leaders_sigkill(probes: list[Probe]) -> None:
    leader, standby = probes
    killed = time.monotonic()
    leader.signal(signal.SIGKILL)
    change = standby.next_change(TAKEOVER_LIMIT_S + 5)
    took = change["seen"] - killed
    print(f"\n[leadership] takeover after SIGKILL of the leader: {took:.2f} s")
    assert change["leader"] is True
    assert took < TAKEOVER_LIMIT_S, f"the standby led {took:.2f} s after the leader's SIGKILL"


def test_a_frozen_leader_is_replaced_and_exits_on_resume(probes: list[Probe]) -> None:
    leader, standby = probes
    paused = time.monotonic()
    leader.signal(signal.SIGSTOP)
    change = standby.next_change(TAKEOVER_LIMIT_S + 5)
    took = change["seen"] - paused
    print(f"\n[leadership] takeover after SIGSTOP of the leader: {took:.2f} s")
    assert change["leader"] is True
    assert took < TAKEOVER_LIMIT_S, f"the standby led {took:.2f} s after the leader's SIGSTOP"
    time.sleep(max(0.0, PAUSE_S - (time.monotonic() - paused)))

    resumed = time.monotonic()
    leader.signal(signal.SIGCONT)
    lost = leader.next_change(RESUME_EXIT_LIMIT_S + 3)
    assert lost["leader"] is False and lost["state"] == "lost"
    code = leader.process.wait(timeout=RESUME_EXIT_LIMIT_S + 3)
    exited = time.monotonic() - resumed
    print(f"[leadership] the frozen leader reported lost and exited {code} {exited:.2f} s after SIGCONT")
    assert code == 1
    assert exited < RESUME_EXIT_LIMIT_S, f"the resumed leader exited {exited:.2f} s after SIGCONT"
    eventually(lambda: "leader_probe: lost:" in "".join(leader.stderr), 5, "the one line saying why")
    assert standby.lines.empty() and standby.leading, "the new leader kept its leadership"


def test_a_principal_without_the_acls_gets_one_line_naming_them(secure_kafka: SecureKafka) -> None:
    user = "pmx-connector"  # ALL on "granted." topics, READ on every group (tests.kafka_fixtures)
    suffix = uuid.uuid4().hex[:8]
    granted, other = f"granted.leader-{suffix}", f"leader-{suffix}"
    denied_group = f"denied-{suffix}"
    admin = AdminClient({"bootstrap.servers": secure_kafka.cluster.bootstrap_servers, "log_level": 2})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (granted, other)]).values():
        future.result(timeout=30)
    deny = AclBinding(
        ResourceType.GROUP, denied_group, ResourcePatternType.LITERAL,
        f"User:{user}", "*", AclOperation.READ, AclPermissionType.DENY,
    )  # fmt: skip
    for future in admin.create_acls([deny]).values():
        future.result(timeout=30)
    properties = secure_kafka.client_properties(user)
    cases = {
        (other, f"group-{suffix}"): f"DESCRIBE and READ on the topic {other}",
        (granted, denied_group): f"READ on the consumer group {denied_group}",
    }
    try:
        for (topic, group), needed in cases.items():
            election = LeaderElection(secure_kafka.bootstrap_servers, properties, topic, group)
            election.start()
            try:
                with pytest.raises(RuntimeFailure) as raised:
                    election.wait_until_leader(JOIN_TIMEOUT_S)
            finally:
                election.stop()
            message = str(raised.value)
            print(f"\n[leadership] {message}")
            assert needed in message and "\n" not in message
            assert election.describe().state is ElectionState.FAILED
    finally:
        deny_filter = AclBindingFilter(
            ResourceType.GROUP, denied_group, ResourcePatternType.LITERAL,
            None, None, AclOperation.ANY, AclPermissionType.ANY,
        )  # fmt: skip
        for future in admin.delete_acls([deny_filter]).values():
            future.result(timeout=30)
