"""Registry mode end to end: the connector process, the real Kafka, a real Schema Registry (Apicurio).

1. The connector starts with ``schema_registry.url`` and auto-registration: every record type is
   registered, and the records carry the IDs the registry gave.
2. The registry goes down mid-run: publishing goes on (the IDs were learnt at start), and the
   connector stops cleanly.
3. The connector starts again with ``auto_register: false`` and every ID pinned, while the registry is
   still down: it needs no registry at all, and its records carry the pinned IDs.

Then the journal check over both runs: nothing missing, every order in venue order, no duplicates
(a clean restart re-publishes nothing). ``schemas --check`` against the real registry is in
``tests/component/test_schema_registry.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import requests

from connector.core.record_schemas import RecordType, schema_dict
from connector.kafka.encoding import registry_subjects
from connector.kafka.topics import TOPIC_ROLE
from tests.chaos import CATCH_UP_TIMEOUT_S, TOPIC_ROLES, Figures, stack, streaming, verify, wait_until
from tests.integration.test_real_kafka_faults import metric_sum
from tests.kafka_cluster import KafkaCluster
from tests.process_stack import stop
from tests.records import read_topic, schema_id
from tests.registry_fixtures import ApicurioRegistry

OUTAGE_S = 5.0


def test_auto_registration_an_outage_and_pinned_ids_on_a_real_registry(
    tmp_path: Path, real_kafka: KafkaCluster
) -> None:
    registry = ApicurioRegistry(tmp_path / "apicurio.log").start()
    try:
        registry.set_compatibility("BACKWARD")
        with stack(
            tmp_path, rate=20, cluster=real_kafka, settings={"schema_registry": {"url": registry.url}}
        ) as running:
            topics = {role: running.topic(role) for role in TOPIC_ROLES}
            subjects = registry_subjects(
                "topic",
                {record_type: topics[TOPIC_ROLE[record_type]] for record_type in RecordType},
                {record_type: schema_dict(record_type) for record_type in RecordType},
            )
            running.start_connector()
            wait_until(lambda: streaming(running), CATCH_UP_TIMEOUT_S, "the first start (auto-registering)")
            registered = {
                record_type: int(
                    requests.get(
                        f"{registry.url}/subjects/{entry.subject}/versions/latest", timeout=10
                    ).json()["id"]
                )
                for record_type, entry in subjects.items()
            }
            base = f"http://127.0.0.1:{running.http_port}"
            label = f'topic="{topics["executions"]}"'
            before = metric_sum(base, "pmx_connector_records_produced_total", label)
            registry.stop()
            time.sleep(OUTAGE_S)
            during_outage = metric_sum(base, "pmx_connector_records_produced_total", label) - before
            assert running.connector is not None
            assert stop(running.connector) == 0, "SIGTERM during the registry outage"
            first_run_records = len(read_topic(running.kafka["bootstrap_servers"], topics["executions"]))

            running.reconfigure(
                {
                    "schema_registry": {
                        "url": registry.url,  # still down
                        "auto_register": False,
                        "pinned_ids": {
                            record_type.value: registered[record_type] for record_type in RecordType
                        },
                    }
                }
            )
            running.start_connector()
            wait_until(
                lambda: streaming(running), CATCH_UP_TIMEOUT_S, "the start with pinned IDs, no registry"
            )
            time.sleep(3)
            assert stop(running.connector) == 0
            figures = Figures()
            verify(running, figures)
            executions = read_topic(running.kafka["bootstrap_servers"], topics["executions"])
            snapshots = read_topic(running.kafka["bootstrap_servers"], topics["snapshots"])
    finally:
        registry.stop()
    print(f"registered IDs {registered}; executions acknowledged during the outage: {during_outage:.0f}")
    print(figures.table())
    assert len(set(registered.values())) == len(RecordType), registered
    assert during_outage > 0, "publishing stopped while the registry was down"
    assert 0 < first_run_records < len(executions), "the pinned run published too"
    assert {schema_id(m.value()) for m in executions} == {registered[RecordType.EXECUTION]}
    assert {schema_id(m.value()) for m in snapshots} == {registered[RecordType.ORDER_SNAPSHOT]}
    assert figures.checked_executions > 100, figures.table()
    assert figures.missing == 0, figures.table()
    assert figures.duplicates == 0, figures.table()
    assert figures.orders_out_of_order == 0, figures.table()
