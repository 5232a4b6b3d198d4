"""The checkpoint's one home: its topic, key, record, encoding, and reading it back at start.

The checkpoint holds the completeness frontier F (DESIGN.md §4) on the compacted checkpoint topic,
keyed ``connector.name|subscription``. Compaction is lazy (and ignored by the embedded broker), so
reading it back reads the whole topic and the last record with this key wins; a tombstone deletes
it. Checkpoints are always single-object encoded, so resuming never depends on the Schema Registry.
The engine decides *what* a checkpoint may say (``engine/frontier.py``); this module only writes
and reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from connector.core.record_schemas import RecordType, released_schema_dicts, schema_dict
from connector.core.records import EventType, OutRecord
from connector.core.watermark import Position
from connector.engine.ports import Checkpoint
from connector.errors import RuntimeFailure
from connector.kafka.encoding import SingleObjectDecoder, SingleObjectEncoder
from connector.kafka.topic_reader import read_tail

READ_TIMEOUT_S: Final = 60.0


def checkpoint_key(connector: str, subscription: str) -> bytes:
    """The checkpoint's key: connector name and subscription filter."""
    return f"{connector}|{subscription}".encode()


class KafkaCheckpointStore:
    """Writes and reads this connector's checkpoint on the compacted checkpoint topic."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        properties: Mapping[str, object],
        topic: str,
        connector: str,
        subscription: str,
    ) -> None:
        """Hold where the checkpoint lives (no I/O yet)."""
        self.topic = topic
        self.key = checkpoint_key(connector, subscription)
        self._bootstrap_servers = bootstrap_servers
        self._properties = properties
        self._connector = connector
        self._subscription = subscription
        schema = schema_dict(RecordType.CHECKPOINT)
        self._encode = SingleObjectEncoder(schema)
        # A checkpoint an earlier version wrote is read too (an upgrade resumes where it stopped).
        self._decode = SingleObjectDecoder([schema, *released_schema_dicts(RecordType.CHECKPOINT)], schema)

    def record(self, checkpoint: Checkpoint, written_ns: int) -> OutRecord:
        """The checkpoint record (F, and the Drop Copy position confirmed with it)."""
        frontier = checkpoint.frontier
        session_id = frontier.session_id if frontier is not None else ""
        value = self._encode(
            {
                "connector": self._connector,
                "subscription": self._subscription,
                "watermark": frontier.venue_time_ns if frontier is not None else None,
                "last_execution_id": frontier.last_execution_id if frontier is not None else "",
                "session_id": session_id,
                "written_time": written_ns,
                "dropcopy_resume_token": checkpoint.dropcopy_token or None,
                "dropcopy_time": checkpoint.dropcopy_time_ns,
            }
        )
        return OutRecord(
            self.topic,
            self.key,
            value,
            EventType.CHECKPOINT,
            "connector",
            session_id,
            None,
            None,
            "",
        )

    def read(self) -> Checkpoint | None:
        """The last checkpoint written under this key, or None when there is none.

        Raises:
            KafkaUnavailable: Kafka does not answer.
            RuntimeFailure: the topic cannot be read, or the last checkpoint cannot be decoded.
        """
        last: bytes | None = None
        for message in read_tail(
            self._bootstrap_servers, self._properties, self.topic, last=None, timeout_s=READ_TIMEOUT_S
        ):
            if message.key() == self.key:
                last = message.value()  # a None value (tombstone) deletes the checkpoint
        return None if last is None else self.decode(last)

    def decode(self, value: bytes) -> Checkpoint | None:
        """The checkpoint a record value holds (None: it holds neither F nor a token).

        Raises:
            RuntimeFailure: the value cannot be decoded.
        """
        try:
            record = self._decode(value)
        except (ValueError, TypeError) as exc:
            msg = f"cannot decode the last checkpoint in {self.topic}: {exc}"
            raise RuntimeFailure(msg) from None
        watermark = record.get("watermark")
        frontier = None
        if watermark is not None:
            frontier = Position(int(watermark), str(record["last_execution_id"]), str(record["session_id"]))
        token = record.get("dropcopy_resume_token") or b""
        if frontier is None and not token:
            return None
        time_ns = record.get("dropcopy_time")
        return Checkpoint(frontier, bytes(token), None if time_ns is None else int(time_ns))
