"""Shared pytest configuration: the fixture modules every test level can use.

Broker selection (DESIGN.md §6) lives in ``tests/kafka_fixtures.py``: ``KAFKA_BOOTSTRAP_SERVERS`` if
set, else a testcontainers Kafka when a Docker engine answers, else the embedded Kafka.
"""

from __future__ import annotations

pytest_plugins = ["tests.kafka_fixtures", "tests.simulator_fixtures", "tests.registry_fixtures"]
