"""The connector's topics: their names by role, and the start-up check that they exist (or creation).

Every record type has a topic *role* (a key of ``kafka.topics``); the name is the configured prefix
plus the role's topic. At start the connector verifies that every topic exists and, when the settings
and the cluster's permissions allow, creates the missing ones (the checkpoint topic compacted, with
one partition). Kafka's admin errors are translated here: no answer is
:class:`~connector.errors.KafkaUnavailable` (retried), a missing topic that cannot be created
:class:`~connector.errors.TopicsUnavailable`.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from connector.config import Settings
from connector.core.record_schemas import RecordType
from connector.errors import KafkaUnavailable, TopicsUnavailable
from connector.kafka.publisher import LIBRDKAFKA_LOG, client_config

_LOG: Final = logging.getLogger(__name__)

TOPIC_CHECK_TIMEOUT_S: Final = 15.0


# The topic role (a key of kafka.topics) each record type is written to.
TOPIC_ROLE: Final = {
    RecordType.EXECUTION: "executions",
    RecordType.ORDER_SNAPSHOT: "snapshots",
    RecordType.CANCEL_REJECT: "cancel_rejects",
    RecordType.CONNECTOR_HEARTBEAT: "heartbeats",
    RecordType.CHECKPOINT: "checkpoints",
    RecordType.GAP_DETECTED: "heartbeats",
}


def topic_names(settings: Settings) -> dict[str, str]:
    """Every topic the connector writes, by role."""
    kafka = settings.kafka
    return {
        role: kafka.topic(getattr(kafka.topics, role))
        for role in ("executions", "snapshots", "cancel_rejects", "heartbeats", "checkpoints", "dlq")
    }


def check_topics(settings: Settings, topics: list[str], *, create: bool = True) -> None:
    """Verify that every topic exists (creating missing ones when ``create`` and the settings allow).

    Raises:
        KafkaUnavailable: Kafka does not answer (the caller retries).
        TopicsUnavailable: a topic is missing and cannot be created.
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
    if not missing:
        return
    if not create:
        msg = f"topics missing: {', '.join(missing)}"
        raise TopicsUnavailable(msg)
    if not settings.kafka.create_topics:
        msg = f"topics missing and kafka.create_topics is off: {', '.join(missing)}"
        raise TopicsUnavailable(msg)
    _create_topics(admin, settings, missing)


def _create_topics(admin: AdminClient, settings: Settings, missing: list[str]) -> None:
    checkpoints = settings.kafka.topic(settings.kafka.topics.checkpoints)
    requests = [
        NewTopic(
            topic,
            num_partitions=1 if topic == checkpoints else settings.kafka.partitions,
            replication_factor=settings.kafka.replication_factor,
            config={"cleanup.policy": "compact"} if topic == checkpoints else {},
        )
        for topic in missing
    ]
    for topic, future in admin.create_topics(requests, request_timeout=TOPIC_CHECK_TIMEOUT_S).items():
        try:
            future.result()
            _LOG.info("created topic %s", topic)
        except KafkaException as exc:
            error = exc.args[0]
            if error.name() == "TOPIC_ALREADY_EXISTS":
                continue
            msg = f"topic {topic} is missing and could not be created: {error.name()} ({error.str()})"
            raise TopicsUnavailable(msg) from None
