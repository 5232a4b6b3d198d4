"""The connector on a locked-down real Kafka: SASL_SSL (SCRAM-SHA-512) and the standard authorizer.

The session's ``secure_kafka`` (one KRaft node, a private CA made by the fixture) has users whose
ACLs each lack one permission. A principal that may not create its missing topics, and one that may
not write its (existing) topics, each end in one clear fatal line naming the topic and the missing
permission, exit 1, no traceback. The password always comes from a ``PMX_CONNECTOR_*`` variable;
``tests/integration/test_hardening_processes.py`` runs the connector that may do everything (the
secrets test over SASL_SSL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from connector.config import KafkaSettings
from connector.kafka.topics import topic_layouts
from connector.simulator import SimulatedVenue
from tests.integration.test_hardening_processes import (
    assert_one_fatal_line,
    client_key,
    connector_config,
    free_port,
    start_run,
    stop_every_run,
    venue,
)
from tests.kafka_fixtures import SecureKafka

__all__ = ["client_key", "stop_every_run", "venue"]  # fixtures shared with the hardening tests

PASSWORD_VARIABLE = "PMX_CONNECTOR_KAFKA__PROPERTIES__SASL.PASSWORD"


def secure_settings(secure_kafka: SecureKafka, user: str, prefix: str) -> dict[str, Any]:
    """The ``kafka`` section for ``user`` over SASL_SSL, without the password (it comes from the env)."""
    properties = secure_kafka.client_properties(user)
    del properties["sasl.password"]
    return {
        "bootstrap_servers": secure_kafka.bootstrap_servers,
        "topic_prefix": prefix,
        "replication_factor": 1,
        "properties": properties,
    }


def test_a_principal_that_may_not_create_or_may_not_write_stops_with_one_line(
    venue: SimulatedVenue, secure_kafka: SecureKafka, client_key: Path, tmp_path: Path
) -> None:
    admin = AdminClient({"bootstrap.servers": secure_kafka.cluster.bootstrap_servers})  # the admin door
    existing = KafkaSettings(bootstrap_servers="unused:9092", topic_prefix="nowrite", replication_factor=1)
    creations = admin.create_topics(
        [
            NewTopic(layout.name, layout.partitions, layout.replication_factor, config=layout.config)
            for layout in topic_layouts(existing).values()
        ]
    )
    for future in creations.values():
        future.result(timeout=30)

    runs = {}
    for user, prefix in (("pmx-no-create", "nocreate"), ("pmx-no-write", "nowrite")):
        config = connector_config(
            venue, client_key, "unused:9092", free_port(), kafka=secure_settings(secure_kafka, user, prefix)
        )
        runs[user] = start_run(user, tmp_path, config, env={PASSWORD_VARIABLE: secure_kafka.passwords[user]})

    for run in runs.values():
        assert run.wait(90) == 1, f"{run.name}:\n{run.text()[-3000:]}"
    assert_one_fatal_line(
        runs["pmx-no-create"],
        "topic nocreate.orders.executions is missing and the connector's principal may not create it "
        "(TOPIC_AUTHORIZATION_FAILED: no CREATE permission on the topic or the cluster): grant CREATE, "
        "or create the topics yourself, e.g. kafka-topics.sh --create --topic nocreate.orders.executions "
        "--partitions 6 --replication-factor 1",
    )
    assert_one_fatal_line(
        runs["pmx-no-write"],
        "topic nowrite.orders.executions: the connector's principal lacks the WRITE permission on it "
        "(it has CREATE, DESCRIBE, READ): grant WRITE on the topic",
    )
    for user, run in runs.items():
        assert secure_kafka.passwords[user] not in run.text()
