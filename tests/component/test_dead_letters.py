"""A poison event goes to the dead-letter topic with its headers; the events after it are delivered."""

from __future__ import annotations

import time
from pathlib import Path

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.dedup import RecentExecutionIds
from connector.core.mapping import RecordMapper
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.watermark import Watermark
from connector.embedded import EmbeddedKafka
from connector.engine.pipeline import Pipeline, Topics
from connector.kafka.encoding import SingleObjectEncoder
from connector.kafka.publisher import Publisher, build_producer
from connector.observability.metrics import Metrics
from connector.simulator import SimulatedVenue, SimulatorConfig
from tests.records import decode, read_topic

TOPICS = Topics("dlq.executions", "dlq.snapshots", "dlq.cancel-rejects", "dlq.dlq")
BEYOND_TIMESTAMP_NANOS_S = 10**11  # the year 5138: no timestamp-nanos can hold it


def test_a_poison_execution_is_dead_lettered_and_the_stream_goes_on(
    embedded_kafka: EmbeddedKafka, tmp_path: Path
) -> None:
    with SimulatedVenue(SimulatorConfig(seed=5, rate=0.0, warmup_updates=30)) as venue:
        executions = [entry.execution for entry in venue.journal.executions()][:6]
    assert len(executions) == 6
    poison = trading_pb2.Execution()
    poison.CopyFrom(executions[2])
    poison.transact_time.seconds = BEYOND_TIMESTAMP_NANOS_S
    for topic in (TOPICS.executions, TOPICS.snapshots, TOPICS.cancel_rejects, TOPICS.dlq):
        embedded_kafka.create_topic(topic, partitions=1, replication_factor=1)
    watermark = Watermark()
    publisher = Publisher(build_producer(embedded_kafka.bootstrap_servers, {}), watermark)
    metrics = Metrics((TOPICS.executions, TOPICS.snapshots, TOPICS.cancel_rejects, TOPICS.dlq))
    pipeline = Pipeline(
        mapper=RecordMapper.for_venue(),
        encoders={t: SingleObjectEncoder(schema_dict(t)) for t in RecordType},
        sink=publisher,
        watermark=watermark,
        topics=TOPICS,
        connector_name="dlq-test",
        recent_ids=RecentExecutionIds(1000),
        observer=metrics,
    )
    stream_order = [*executions[:2], poison, *executions[3:]]
    for execution in stream_order:
        response = trading_pb2.CreateOrderSubscriptionResponse(session_id="s-1")
        response.processed_sent_time.GetCurrentTime()
        response.update.executions.append(execution)
        pipeline.on_response(response, time.time_ns())
    assert publisher.flush(30) == 0

    dead = read_topic(embedded_kafka.bootstrap_servers, TOPICS.dlq)
    assert len(dead) == 1
    headers = dict(dead[0].headers())
    assert headers["event_type"] == b"execution"
    assert headers["error_type"] in {b"OverflowError", b"ValueError", b"MappingError"}
    assert headers["error"], "the reason is in the error header"
    assert headers["session_id"] == b"s-1" and headers["connector"] == b"dlq-test"
    assert trading_pb2.Execution.FromString(dead[0].value()) == poison, "the raw protobuf is kept"
    reason = {"reason": headers["error_type"].decode()}
    assert metrics.registry.get_sample_value("pmx_connector_dlq_records_total", reason) == 1

    delivered = [
        decode(m.value(), RecordType.EXECUTION)["execution_id"]
        for m in read_topic(embedded_kafka.bootstrap_servers, TOPICS.executions)
    ]
    assert delivered == [e.id for e in stream_order if e is not poison]
