"""The start-up topic check on the embedded Kafka (no controller, no CreateTopics): the lines it says."""

from __future__ import annotations

import copy

import pytest

from connector.config import Settings
from connector.embedded import EmbeddedKafka
from connector.errors import RuntimeFailure
from connector.kafka import topics
from connector.kafka.topics import check_topics, topic_names
from tests.unit.test_config import VALID


def settings_for(bootstrap: str) -> Settings:
    document = copy.deepcopy(VALID)
    document["kafka"] = {"bootstrap_servers": bootstrap, "replication_factor": 1}
    return Settings.model_validate(document)


def test_a_create_topics_request_nobody_answers_is_one_line_saying_how_to_create_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(topics, "TOPIC_CHECK_TIMEOUT_S", 2.0)
    with EmbeddedKafka(brokers=1) as kafka:
        settings = settings_for(kafka.bootstrap_servers)
        with pytest.raises(RuntimeFailure) as raised:
            check_topics(settings, list(topic_names(settings).values()))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        "topic pmx.orders.executions is missing (and 5 more: pmx.orders.snapshots, "
        "pmx.orders.cancel-rejects, pmx.connector.heartbeats, pmx.connector.checkpoints, "
        "pmx.connector.dlq) and the cluster did not answer the CreateTopics request within 2 s (_TIMED_OUT;"
    ), message
    assert message.endswith(
        "create the topics yourself, e.g. kafka-topics.sh --create --topic pmx.orders.executions "
        "--partitions 6 --replication-factor 1 "
        "(`pmx-connector dev-kafka` creates them in its embedded cluster)"
    ), message


def test_existing_topics_on_a_cluster_without_a_controller_skip_the_permission_check() -> None:
    with EmbeddedKafka(brokers=1) as kafka:
        settings = settings_for(kafka.bootstrap_servers)
        for name in topic_names(settings).values():
            kafka.create_topic(name, partitions=1, replication_factor=1)
        check_topics(settings, list(topic_names(settings).values()))  # no DescribeTopics wait, no error
