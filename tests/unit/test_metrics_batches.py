"""Batched metric updates expose exactly what the same events, observed one by one, would."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from connector.observability.metrics import LATENCY_BUCKETS_S, NANOS, BatchHistogram, Metrics


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


def pair() -> tuple[Histogram, BatchHistogram, CollectorRegistry, CollectorRegistry]:
    one, batch = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h_seconds", "h", buckets=LATENCY_BUCKETS_S, registry=one)
    batched = BatchHistogram("h_seconds", "h", buckets=LATENCY_BUCKETS_S, registry=batch)
    return reference, batched, one, batch


def assert_same(one: CollectorRegistry, batch: CollectorRegistry) -> None:
    expected, actual = samples(one), samples(batch)
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_observing_ages_in_a_batch_matches_observing_each() -> None:
    reference, batched, one, batch = pair()
    rng = random.Random(3)
    now_ns = 1_763_800_000_000_000_000
    ages_ns = [int(bound * NANOS) for bound in LATENCY_BUCKETS_S]  # exactly on every bound
    ages_ns += [int(bound * NANOS) + 1 for bound in LATENCY_BUCKETS_S]  # just above it
    ages_ns += [rng.randrange(0, 100 * 10**9) for _ in range(500)] + [-5_000_000, 0, 10**12]
    times_ns: list[int | None] = [now_ns - age for age in ages_ns] + [None]
    for age in ages_ns:
        reference.observe(max(0.0, age / NANOS))
    batched.observe_ages(now_ns, times_ns[:100])
    batched.observe_ages(now_ns, times_ns[100:])
    batched.observe_ages(now_ns, [])
    assert_same(one, batch)


def test_observing_one_amount_several_times_matches_observing_it_each_time() -> None:
    reference, batched, one, batch = pair()
    for amount, count in [(0.0, 3), (0.001, 5), (0.0042, 1), (7.5, 2), (1e6, 4), (0.3, 0)]:
        for _ in range(count):
            reference.observe(amount)
        batched.observe_times(amount, count)
    assert_same(one, batch)


def test_a_messages_events_are_counted_and_timed_one_by_one() -> None:
    metrics = Metrics(("t",))
    sample = metrics.registry.get_sample_value
    metrics.event_received("execution", 3_000_000, 1_000_000, 5)
    metrics.event_received("snapshot_order", 3_000_000, 1_000_000, 7)
    assert sample("pmx_connector_events_received_total", {"type": "execution"}) == 5
    assert sample("pmx_connector_events_received_total", {"type": "snapshot_order"}) == 7
    assert sample("pmx_connector_venue_to_receive_seconds_count") == 5, "snapshots are not timed"
    assert sample("pmx_connector_venue_to_receive_seconds_bucket", {"le": "0.001"}) == 0
    assert sample("pmx_connector_venue_to_receive_seconds_bucket", {"le": "0.0025"}) == 5
    assert sample("pmx_connector_venue_to_receive_seconds_sum") == pytest.approx(0.01)


def test_delivered_records_are_counted_per_topic_and_timed_when_they_have_a_venue_time() -> None:
    metrics = Metrics(("t.exec", "t.hb"))
    sample = metrics.registry.get_sample_value
    metrics.delivered("t.exec", [1, 2, 3])
    metrics.delivered("t.hb", [None])
    metrics.delivered("t.hb", [])
    assert sample("pmx_connector_records_produced_total", {"topic": "t.exec"}) == 3
    assert sample("pmx_connector_records_produced_total", {"topic": "t.hb"}) == 1
    assert sample("pmx_connector_event_to_ack_seconds_count") == 3
    assert sample("pmx_connector_event_to_ack_seconds_bucket", {"le": "+Inf"}) == 3
