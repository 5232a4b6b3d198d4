"""Dead letters: venue data that cannot become a record, and records Kafka refuses, go to the DLQ;
the connector's own bugs never do.

The real engine and Kafka adapters on the embedded Kafka, fed by a scripted venue stream.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from connector._pb.polymarket.v1 import trading_pb2
from connector.config import Settings
from connector.core.record_schemas import RecordType
from connector.core.transcoder import Transcoder
from connector.embedded import EmbeddedKafka
from connector.kafka.topics import topic_names
from tests.engine_fixtures import (
    ScriptedStream,
    engine_on_kafka,
    response_of,
    step_until,
    stop,
    undialled_settings,
    venue_executions,
)
from tests.records import decode, read_topic

BEYOND_TIMESTAMP_NANOS_S = 10**11  # the year 5138: no timestamp-nanos can hold it


def settings_for(embedded_kafka: EmbeddedKafka, tmp_path: Path, **kafka_properties: Any) -> Settings:
    settings = undialled_settings(
        embedded_kafka.bootstrap_servers,
        tmp_path / "unused.pem",
        kafka={"bootstrap_servers": embedded_kafka.bootstrap_servers, "properties": kafka_properties},
        connector={"name": "dlq-test", "heartbeat_interval_s": 0.2},
    )
    for topic in topic_names(settings).values():
        embedded_kafka.create_topic(topic, partitions=1, replication_factor=1)
    return settings


def drain(service: Any, metrics: Any, expected_records: int) -> None:
    produced = metrics.registry.get_sample_value
    step_until(
        service,
        lambda: (
            sum(
                produced("pmx_connector_records_produced_total", {"topic": topic}) or 0
                for topic in ("pmx.orders.executions", "pmx.connector.dlq")
            )
            >= expected_records
        ),
        30,
        "the records to be acknowledged",
    )


def test_a_poison_execution_is_dead_lettered_and_the_stream_goes_on(
    embedded_kafka: EmbeddedKafka, tmp_path: Path
) -> None:
    settings = settings_for(embedded_kafka, tmp_path)
    executions = venue_executions(6)
    poison = trading_pb2.Execution()
    poison.CopyFrom(executions[2])
    poison.transact_time.seconds = BEYOND_TIMESTAMP_NANOS_S
    stream_order = [*executions[:2], poison, *executions[3:]]
    stream = ScriptedStream(response_of(execution) for execution in stream_order)
    service, _publisher, metrics, _status = engine_on_kafka(settings, [stream])
    drain(service, metrics, len(stream_order))
    stop(service)
    topics = topic_names(settings)

    dead = read_topic(embedded_kafka.bootstrap_servers, topics["dlq"])
    assert len(dead) == 1
    headers = dict(dead[0].headers())
    assert headers["event_type"] == b"execution"
    assert headers["error_type"] == b"MappingError"
    assert headers["error"], "the reason is in the error header"
    assert headers["session_id"] == b"s-1" and headers["connector"] == b"dlq-test"
    assert headers["execution_id"] == poison.id.encode()
    assert dead[0].key() == poison.order.id.encode(), "keyed by the order ID, like the order's records"
    assert trading_pb2.Execution.FromString(dead[0].value()) == poison, "the raw protobuf is kept"
    assert (
        metrics.registry.get_sample_value("pmx_connector_dlq_records_total", {"reason": "MappingError"}) == 1
    )

    delivered = [
        decode(m.value(), RecordType.EXECUTION)["execution_id"]
        for m in read_topic(embedded_kafka.bootstrap_servers, topics["executions"])
    ]
    assert delivered == [e.id for e in stream_order if e is not poison]


def test_a_record_kafka_refuses_as_too_large_is_dead_lettered_not_a_crash_loop(
    embedded_kafka: EmbeddedKafka, tmp_path: Path
) -> None:
    settings = settings_for(embedded_kafka, tmp_path, **{"message.max.bytes": 20_000})
    executions = venue_executions(3)
    huge = trading_pb2.Execution()
    huge.CopyFrom(executions[1])
    huge.text = "x" * 50_000
    stream = ScriptedStream([response_of(executions[0]), response_of(huge), response_of(executions[2])])
    service, _publisher, metrics, _status = engine_on_kafka(settings, [stream])
    drain(service, metrics, 3)
    stop(service)
    topics = topic_names(settings)
    dead = read_topic(embedded_kafka.bootstrap_servers, topics["dlq"])
    assert len(dead) == 1
    headers = dict(dead[0].headers())
    assert headers["error_type"] == b"RecordRefused"
    assert b"larger than the producer takes" in headers["error"]
    assert headers["execution_id"] == huge.id.encode() and dead[0].key() == huge.order.id.encode()
    assert len(dead[0].value()) <= 10_000, "cut to fit"
    delivered = [
        decode(m.value(), RecordType.EXECUTION)["execution_id"]
        for m in read_topic(embedded_kafka.bootstrap_servers, topics["executions"])
    ]
    assert delivered == [executions[0].id, executions[2].id]


def test_a_bug_in_the_connector_is_not_venue_data_it_stops_loudly_and_f_stays(
    embedded_kafka: EmbeddedKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(embedded_kafka, tmp_path)
    executions = venue_executions(2)
    original = Transcoder.response

    def buggy(self: Transcoder, data: bytes, received_time_ns: int, source: Any = None) -> Any:
        if executions[1].id.encode() in data:
            msg = "'NoneType' object is not subscriptable"
            raise TypeError(msg)
        return original(self, data, received_time_ns)

    monkeypatch.setattr(Transcoder, "response", buggy)
    stream = ScriptedStream([response_of(executions[0])])
    service, _publisher, metrics, _status = engine_on_kafka(settings, [stream])
    drain(service, metrics, 1)
    frontier = service.frontier
    stream.push(response_of(executions[1]))
    with pytest.raises(TypeError, match="not subscriptable"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            service.step()
            time.sleep(0.01)
    assert service.frontier == frontier, "F did not move past the event the bug lost"
    topics = topic_names(settings)
    assert read_topic(embedded_kafka.bootstrap_servers, topics["dlq"], timeout_s=2) == []
