"""What a start resumes from, read back from Kafka: the last checkpoint and the recent execution IDs.

No local disk (DESIGN.md §4): a pod can be rescheduled anywhere, so both come from topics.

- The checkpoint topic is compacted, but compaction is lazy (and ignored by the embedded broker), so
  the whole topic is read and the last record with this connector's key wins.
- The recent-ID set is seeded from the ``execution_id`` header of the last records of the executions
  topic, whatever their value encoding: executions already in Kafka are not published again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from connector.core.dedup import RecentExecutionIds
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.watermark import Position
from connector.errors import RuntimeFailure
from connector.kafka.encoding import SingleObjectDecoder
from connector.kafka.topic_reader import read_tail

_LOG: Final = logging.getLogger(__name__)

READ_TIMEOUT_S: Final = 60.0
EXECUTION_ID_HEADER: Final = "execution_id"

CheckpointDecoder = Callable[[bytes, str], Mapping[str, Any]]


def checkpoint_decoder() -> CheckpointDecoder:
    """Decode a checkpoint (always single-object encoded: resuming never needs the registry)."""
    single_object = SingleObjectDecoder([schema_dict(RecordType.CHECKPOINT)])

    def decode(value: bytes, topic: str) -> Mapping[str, Any]:
        del topic
        return single_object(value)

    return decode


def read_checkpoint(
    bootstrap_servers: str,
    properties: Mapping[str, object],
    topic: str,
    key: bytes,
    decode: CheckpointDecoder,
) -> Position | None:
    """The last checkpoint written under ``key``, or None when there is none.

    Raises:
        RuntimeFailure: Kafka cannot be read, or the last checkpoint cannot be decoded.
    """
    last: bytes | None = None
    for message in read_tail(bootstrap_servers, properties, topic, last=None, timeout_s=READ_TIMEOUT_S):
        if message.key() == key:
            last = message.value()  # a None value (tombstone) deletes the checkpoint
    if last is None:
        return None
    try:
        record = decode(last, topic)
    except (ValueError, TypeError) as exc:
        msg = f"cannot decode the last checkpoint in {topic}: {exc}"
        raise RuntimeFailure(msg) from None
    if record.get("watermark") is None:
        return None
    return Position(int(record["watermark"]), str(record["last_execution_id"]), str(record["session_id"]))


def seed_recent_ids(
    recent_ids: RecentExecutionIds,
    bootstrap_servers: str,
    properties: Mapping[str, object],
    topic: str,
    capacity: int,
) -> int:
    """Replace the set's contents with the execution IDs of the last ``capacity`` records; return how many.

    Raises:
        RuntimeFailure: Kafka cannot be read.
    """
    recent_ids.clear()
    for message in read_tail(bootstrap_servers, properties, topic, last=capacity, timeout_s=READ_TIMEOUT_S):
        headers = message.headers()
        if not isinstance(headers, list):
            continue
        for name, value in headers:
            if name == EXECUTION_ID_HEADER and isinstance(value, bytes) and value:
                recent_ids.add(value.decode(errors="replace"))
    _LOG.info("dedup seeded with %d execution ids from %s", len(recent_ids), topic)
    return len(recent_ids)
