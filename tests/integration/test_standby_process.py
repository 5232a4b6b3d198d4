"""Two connector processes with one name and subscription, on the real cluster (issue #15).

The venue simulator and the connectors run as processes against the session's three-node KRaft
cluster, in ``exactly_once`` mode, checked by a ``read_committed`` reader against the venue's
journal (:func:`tests.chaos.verify`: 0 missing, 0 duplicates, every order in venue order):

- **failover under load**: a leader and a standby (``connector.leader_election``); the leader is
  SIGKILLed mid-stream; the standby takes over within 10 s (measured: SIGKILL to the standby's
  stream open) and recovers the gap through the normal recovery path;
- **split brain**: both started at once; the leader is frozen (SIGSTOP) past the election's session
  timeout, the standby takes over, and the frozen one, thawed, stops with exit code 1 and one line,
  without publishing anything more;
- **fencing without an election**: a second instance started beside a running one (a misconfigured
  deployment) fences the first at the broker, which stops with exit code 1 and one line naming it;
  at-least-once mode, so this also shows fencing in that mode.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from tests.chaos import CATCH_UP_TIMEOUT_S, Figures, Instance, Stack, stack, verify, wait_until
from tests.kafka_cluster import KafkaCluster
from tests.process_stack import stop

RATE = 100.0  # updates per second (several executions each)
TAKEOVER_BUDGET_S = 10.0
FLOW_S = 4.0
FREEZE_S = 9.0  # > the election's 6 s session timeout
EXIT_TIMEOUT_S = 30.0


def settings(delivery: str, *, election: bool) -> dict[str, dict[str, Any]]:
    return {"connector": {"delivery": delivery, "leader_election": election}}


def leads(instance: Instance) -> bool:
    status = instance.status()
    return status is not None and status["role"] == "leader" and status["phase"] == "streaming"


def stands_by(instance: Instance) -> bool:
    status = instance.status()
    return status is not None and status["phase"] == "standby" and status["ready"]


def last_line(instance: Instance) -> str:
    lines = [line for line in instance.log.read_text().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def assert_each_once_in_order(figures: Figures, report: str) -> None:
    """The journal check of exactly-once: enough flow, nothing missing, nothing twice, order kept."""
    assert figures.checked_executions > 200, report
    assert figures.missing == 0, report
    assert figures.duplicates == 0, report
    assert figures.orders_out_of_order == 0, report


def finish(running: Stack, survivor: Instance) -> Figures:
    """Let the survivor catch up, stop it cleanly, and check the topic against the journal."""
    wait_until(lambda: leads(survivor), CATCH_UP_TIMEOUT_S, "the survivor to catch up")
    time.sleep(2)
    figures = Figures()
    figures.connector_exits.append(stop(survivor.process))
    verify(running, figures)
    print(figures.table())
    return figures


def test_the_standby_takes_over_within_10_s_of_the_leaders_sigkill_and_loses_nothing(
    tmp_path: Path, real_kafka: KafkaCluster
) -> None:
    configured = settings("exactly_once", election=True)
    with stack(tmp_path, rate=RATE, cluster=real_kafka, settings=configured) as running:
        leader = running.start_instance("a")
        wait_until(lambda: leads(leader), CATCH_UP_TIMEOUT_S, "the first instance to lead")
        standby = running.start_instance("b")
        wait_until(lambda: stands_by(standby), CATCH_UP_TIMEOUT_S, "the second to stand by")
        time.sleep(FLOW_S)
        leader.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(
            lambda: (standby.status() or {}).get("connected", False), 2 * TAKEOVER_BUDGET_S, "the takeover"
        )
        takeover_s = time.monotonic() - killed_at
        print(f"[standby] SIGKILL -> the standby's stream open: {takeover_s:.2f} s")
        time.sleep(FLOW_S)
        figures = finish(running, standby)
    report = f"takeover {takeover_s:.2f} s\n{figures.table()}\nlogs in {tmp_path}"
    assert takeover_s <= TAKEOVER_BUDGET_S, report
    assert_each_once_in_order(figures, report)


def test_split_brain_a_frozen_leader_is_replaced_and_stops_when_thawed_publishing_nothing(
    tmp_path: Path, real_kafka: KafkaCluster
) -> None:
    configured = settings("exactly_once", election=True)
    with stack(tmp_path, rate=RATE, cluster=real_kafka, settings=configured) as running:
        both = [running.start_instance("a"), running.start_instance("b")]
        wait_until(lambda: any(leads(i) for i in both), CATCH_UP_TIMEOUT_S, "one instance to lead")
        leader = next(i for i in both if leads(i))
        other = next(i for i in both if i is not leader)
        wait_until(lambda: stands_by(other), CATCH_UP_TIMEOUT_S, "the other to stand by")
        time.sleep(FLOW_S)
        leader.process.send_signal(signal.SIGSTOP)
        wait_until(lambda: leads(other), CATCH_UP_TIMEOUT_S, "the standby to replace the frozen leader")
        time.sleep(max(0.0, FREEZE_S - 6.0))
        leader.process.send_signal(signal.SIGCONT)
        code = leader.process.wait(timeout=EXIT_TIMEOUT_S)
        stopped_with = last_line(leader)
        time.sleep(FLOW_S)
        figures = finish(running, other)
    report = f"the thawed leader: exit {code}, {stopped_with!r}\n{figures.table()}\nlogs in {tmp_path}"
    assert code == 1, report
    assert "no longer leads" in stopped_with or "took over" in stopped_with, report
    assert_each_once_in_order(figures, report)


def test_without_an_election_a_second_instance_fences_the_first_at_least_once(
    tmp_path: Path, real_kafka: KafkaCluster
) -> None:
    configured = settings("at_least_once", election=False)
    with stack(tmp_path, rate=RATE, cluster=real_kafka, settings=configured) as running:
        first = running.start_instance("a")
        wait_until(lambda: leads_alone(first), CATCH_UP_TIMEOUT_S, "the first instance to stream")
        time.sleep(FLOW_S)
        second = running.start_instance("b")
        code = first.process.wait(timeout=CATCH_UP_TIMEOUT_S)
        stopped_with = last_line(first)
        wait_until(lambda: leads_alone(second), CATCH_UP_TIMEOUT_S, "the second instance to stream")
        time.sleep(FLOW_S)
        figures = Figures()
        figures.connector_exits.append(stop(second.process))
        verify(running, figures)
        print(figures.table())
    report = f"the first instance: exit {code}, {stopped_with!r}\n{figures.table()}\nlogs in {tmp_path}"
    assert code == 1, report
    assert "another instance with the same connector.name and subscription took over" in stopped_with, report
    assert figures.missing == 0, report


def leads_alone(instance: Instance) -> bool:
    status = instance.status()
    return status is not None and status["role"] == "single" and status["phase"] == "streaming"
