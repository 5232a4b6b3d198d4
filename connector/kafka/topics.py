"""The connector's topics: names by role, their layout, and the start-up check (existence, creation, ACLs).

Every record type has a topic *role* (a key of ``kafka.topics``); the name is the configured prefix
plus the role's topic. At start the connector verifies that every topic exists and, when the settings
and the cluster's permissions allow, creates the missing ones (the checkpoint topic compacted, with
one partition). On a cluster that reports authorised operations (KIP-430) it then verifies that its
principal may write every topic and read the ones it reads at start, so a missing ACL is one line at
start rather than a failed delivery later. Kafka's admin errors are translated here: no answer is
:class:`~connector.errors.KafkaUnavailable` (the engine retries), anything else
:class:`~connector.errors.TopicsUnavailable`, a single line naming the topic and what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from connector.config import KafkaSettings, Settings
from connector.core.record_schemas import RecordType
from connector.errors import KafkaUnavailable, TopicsUnavailable
from connector.kafka.publisher import LIBRDKAFKA_LOG, client_config

_LOG: Final = logging.getLogger(__name__)

TOPIC_CHECK_TIMEOUT_S: Final = 15.0
TOPIC_ROLES: Final = ("executions", "snapshots", "cancel_rejects", "heartbeats", "checkpoints", "dlq")
# Roles whose topics the connector reads at start (the checkpoint; the executions' tail for dedup).
READ_AT_START: Final = frozenset({"checkpoints", "executions"})
_NOT_PERMITTED: Final = frozenset(
    {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}
)
_TIMED_OUT: Final = frozenset({KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT})


# The topic role (a key of kafka.topics) each record type is written to.
TOPIC_ROLE: Final = {
    RecordType.EXECUTION: "executions",
    RecordType.ORDER_SNAPSHOT: "snapshots",
    RecordType.CANCEL_REJECT: "cancel_rejects",
    RecordType.CONNECTOR_HEARTBEAT: "heartbeats",
    RecordType.CHECKPOINT: "checkpoints",
    RecordType.GAP_DETECTED: "heartbeats",
}


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """How one of the connector's topics is created: partitions, replication and topic configs."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)

    def create_command(self) -> str:
        """The ``kafka-topics.sh`` command that creates this topic."""
        configs = "".join(f" --config {key}={value}" for key, value in self.config.items())
        return (
            f"kafka-topics.sh --create --topic {self.name} --partitions {self.partitions} "
            f"--replication-factor {self.replication_factor}{configs}"
        )


def topic_names(settings: Settings) -> dict[str, str]:
    """Every topic the connector writes, by role."""
    return role_topics(settings.kafka)


def role_topics(kafka: KafkaSettings) -> dict[str, str]:
    """Every topic the connector writes, by role, for these Kafka settings."""
    return {role: kafka.topic(getattr(kafka.topics, role)) for role in TOPIC_ROLES}


def leader_topic(kafka: KafkaSettings) -> str:
    """The leader election's coordination topic (joined as a consumer group, never written)."""
    return kafka.topic(kafka.topics.leader)


def topic_layouts(kafka: KafkaSettings) -> dict[str, TopicLayout]:
    """The layout of every topic, by name: the checkpoint topic compacted with one partition.

    The leader election's coordination topic has one partition too (who is assigned it leads).
    """
    checkpoints = kafka.topic(kafka.topics.checkpoints)
    layouts = {
        name: TopicLayout(
            name,
            partitions=1 if name == checkpoints else kafka.partitions,
            replication_factor=kafka.replication_factor,
            config={"cleanup.policy": "compact"} if name == checkpoints else {},
        )
        for name in role_topics(kafka).values()
    }
    leader = leader_topic(kafka)
    layouts[leader] = TopicLayout(leader, partitions=1, replication_factor=kafka.replication_factor)
    return layouts


def check_topics(settings: Settings, topics: list[str], *, create: bool = True) -> None:
    """Verify that every topic exists (creating missing ones when ``create`` and the settings allow).

    Then, where the cluster reports authorised operations, verify that the connector may write every
    topic and read those it reads at start.

    Raises:
        KafkaUnavailable: Kafka does not answer (the caller retries).
        TopicsUnavailable: a topic is missing and cannot be created, or a permission is missing.
    """
    config: dict[str, Any] = client_config(settings.kafka.bootstrap_servers, settings.kafka.properties)
    admin = AdminClient({**config, "logger": LIBRDKAFKA_LOG})  # type: ignore[dict-item]  # the stub omits logger
    try:
        metadata = admin.list_topics(timeout=TOPIC_CHECK_TIMEOUT_S)
    except KafkaException as exc:
        reason = exc.args[0].str() if exc.args else str(exc)
        del admin  # destroyed now, so its log thread cannot print after the fatal line
        msg = f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {reason}"
        raise KafkaUnavailable(msg) from None
    missing = [topic for topic in topics if topic not in metadata.topics]
    problem: str | None = None
    if missing and not create:
        problem = f"topics missing: {', '.join(missing)}"
    elif missing and not settings.kafka.create_topics:
        problem = f"topics missing and kafka.create_topics is off: {', '.join(missing)}"
    elif missing:
        problem = _create_topics(admin, settings.kafka, missing)
    if problem is None and metadata.controller_id in metadata.brokers:
        problem = _missing_permission(admin, settings.kafka, topics)
    elif problem is None:  # librdkafka's mock cluster has no controller: none would answer DescribeTopics
        _LOG.debug("Kafka names no controller; the topic permissions are not checked")
    if problem is not None:
        del admin  # destroyed now, so its log thread cannot print after the fatal line
        raise TopicsUnavailable(problem)


def _create_topics(admin: AdminClient, kafka: KafkaSettings, missing: list[str]) -> str | None:
    """Create the missing topics; return why one could not be created (None: all exist now)."""
    layouts = topic_layouts(kafka)
    requests = [
        NewTopic(
            topic,
            num_partitions=layouts[topic].partitions,
            replication_factor=layouts[topic].replication_factor,
            config=layouts[topic].config,
        )
        for topic in missing
    ]
    futures = admin.create_topics(requests, request_timeout=TOPIC_CHECK_TIMEOUT_S)
    for topic, future in futures.items():
        try:
            future.result()
            _LOG.info("created topic %s", topic)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            return _creation_failure(layouts[topic], missing, error)
    return None


def _creation_failure(layout: TopicLayout, missing: list[str], error: KafkaError) -> str:
    if error.code() in _NOT_PERMITTED:
        return (
            f"topic {layout.name} is missing and the connector's principal may not create it "
            f"({error.name()}: no CREATE permission on the topic or the cluster): grant CREATE, "
            f"or create the topics yourself, e.g. {layout.create_command()}"
        )
    if error.code() in _TIMED_OUT:
        others = [topic for topic in missing if topic != layout.name]
        also = f" (and {len(others)} more: {', '.join(others)})" if others else ""
        return (
            f"topic {layout.name} is missing{also} and the cluster did not answer the CreateTopics request "
            f"within {TOPIC_CHECK_TIMEOUT_S:.0f} s ({error.name()}; a cluster without a controller, such "
            f"as librdkafka's mock, never does): create the topics yourself, e.g. {layout.create_command()} "
            "(`pmx-connector dev-kafka` creates them in its embedded cluster)"
        )
    return f"topic {layout.name} is missing and could not be created: {error.name()} ({error.str()})"


def _missing_permission(admin: AdminClient, kafka: KafkaSettings, topics: Iterable[str]) -> str | None:
    """Say which permission the cluster reports missing: WRITE on a topic, or READ on one read at start."""
    reads = {name for role, name in role_topics(kafka).items() if role in READ_AT_START}
    leader = leader_topic(kafka)
    topics = list(topics)
    futures = admin.describe_topics(
        TopicCollection(topics), request_timeout=TOPIC_CHECK_TIMEOUT_S, include_authorized_operations=True
    )
    for topic in topics:
        try:
            description = futures[topic].result()
        except KafkaException as exc:
            _LOG.debug("cannot describe topic %s (%s); its permissions are not checked", topic, exc)
            continue
        granted = {operation.name for operation in description.authorized_operations or ()}
        if not granted or "ALL" in granted:
            continue  # not reported by this broker, or everything allowed
        needed = ["DESCRIBE"] if topic == leader else ["WRITE", *(["READ"] if topic in reads else [])]
        lacking = [operation for operation in needed if operation not in granted]
        if lacking:
            names = " and ".join(lacking)
            allowed = ", ".join(sorted(granted))
            return (
                f"topic {topic}: the connector's principal lacks the {names} permission on it "
                f"(it has {allowed}): grant {names} on the topic"
            )
    return None
