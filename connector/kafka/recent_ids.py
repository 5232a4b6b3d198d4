"""Seeding the recent-ID set from the executions topic, so a restart publishes nothing twice.

A restart re-reads the venue from the resume point minus the backfill margin, so every execution the
executions topic holds from that time on may come again. The seed therefore reads, per partition,
every record appended since the first one stamped at or after that time (record timestamps are the
executions' ``transact_time``), and remembers their ``execution_id`` headers, whatever the value
encoding. Reading by time, not by count, keeps a hot partition's newest IDs even when the keys are
skewed. When the set's capacity is smaller than what the window holds, the newest IDs are kept and a
warning says a restart may republish the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Final

from confluent_kafka import Message

from connector.core.dedup import RecentExecutionIds
from connector.core.venue_time import NANOS_PER_MILLI
from connector.kafka.topic_reader import read_since, read_tail

_LOG: Final = logging.getLogger(__name__)

READ_TIMEOUT_S: Final = 60.0
EXECUTION_ID_HEADER: Final = "execution_id"


class KafkaRecentIdSeeder:
    """Fills the recent-ID set from the executions topic."""

    def __init__(self, *, bootstrap_servers: str, properties: Mapping[str, object], topic: str) -> None:
        """Hold where to read (no I/O yet)."""
        self._bootstrap_servers = bootstrap_servers
        self._properties = properties
        self._topic = topic

    def seed(self, recent_ids: RecentExecutionIds, since_ns: int | None) -> int:
        """Replace the set's contents with the IDs recorded since ``since_ns`` (None: the newest).

        Raises:
            KafkaUnavailable: Kafka does not answer.
            RuntimeFailure: the topic cannot be read.
        """
        recent_ids.clear()
        if since_ns is None:
            messages = read_tail(
                self._bootstrap_servers,
                self._properties,
                self._topic,
                last=recent_ids.capacity,
                timeout_s=READ_TIMEOUT_S,
            )
        else:
            messages = read_since(
                self._bootstrap_servers,
                self._properties,
                self._topic,
                since_ms=since_ns // NANOS_PER_MILLI,
                fallback_last=recent_ids.capacity,
                timeout_s=READ_TIMEOUT_S,
            )
        seen = add_execution_ids(recent_ids, messages)
        if seen > recent_ids.capacity:
            _LOG.warning(
                "%s holds %d executions since the resume point, more than connector.recent_execution_ids "
                "(%d): the oldest may be published again",
                self._topic,
                seen,
                recent_ids.capacity,
            )
        _LOG.info("dedup seeded with %d execution ids from %s", len(recent_ids), self._topic)
        return len(recent_ids)


def add_execution_ids(recent_ids: RecentExecutionIds, messages: Iterable[Message]) -> int:
    """Remember the ``execution_id`` header of each message; return how many messages carried one."""
    seen = 0
    for message in messages:
        headers = message.headers()
        if not isinstance(headers, list):
            continue
        for name, value in headers:
            if name == EXECUTION_ID_HEADER and isinstance(value, bytes) and value:
                recent_ids.add(value.decode(errors="replace"))
                seen += 1
                break
    return seen
