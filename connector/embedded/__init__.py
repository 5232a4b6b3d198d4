"""Embedded Kafka: librdkafka's mock cluster as a real Kafka-protocol broker for tests and demos."""

from __future__ import annotations

from connector.embedded.cluster import ALL_BROKERS, EmbeddedKafka

__all__ = ["ALL_BROKERS", "EmbeddedKafka"]
