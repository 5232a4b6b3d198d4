"""The checkpoint record: F and the Drop Copy position round-trip; an earlier version's record still reads.

An upgrade resumes from the checkpoint the previous version wrote (single-object encoded with the
released schema, whose fingerprint differs): it must read as that F with no Drop Copy position.
"""

from __future__ import annotations

import pytest

from connector.core.record_schemas import RecordType, released_schema_dicts, schema_dict
from connector.core.watermark import Position
from connector.engine.ports import Checkpoint
from connector.errors import RuntimeFailure
from connector.kafka.checkpoints import KafkaCheckpointStore
from connector.kafka.encoding import SingleObjectEncoder

F = Position(1_767_225_600_123_456_789, "E-42", "session-7")


def store() -> KafkaCheckpointStore:
    return KafkaCheckpointStore(
        bootstrap_servers="unused:9092", properties={}, topic="t", connector="c", subscription="s"
    )


def test_f_and_the_drop_copy_position_round_trip() -> None:
    checkpoint = Checkpoint(F, b"\x00token\xff", F.venue_time_ns - 5)
    assert store().decode(store().record(checkpoint, 1).value) == checkpoint


def test_a_drop_copy_token_without_f_is_a_checkpoint_and_an_empty_one_is_none() -> None:
    only_token = Checkpoint(None, b"tok", None)
    assert store().decode(store().record(only_token, 1).value) == only_token
    assert store().decode(store().record(Checkpoint(None), 1).value) is None


def test_a_checkpoint_written_by_the_released_version_reads_as_its_f() -> None:
    released = released_schema_dicts(RecordType.CHECKPOINT)
    assert released, "the release baseline holds a Checkpoint schema"
    old = released[-1]
    assert old != schema_dict(RecordType.CHECKPOINT), "the schema changed since (this test's point)"
    value = SingleObjectEncoder(old)(
        {
            "connector": "c",
            "subscription": "s",
            "watermark": F.venue_time_ns,
            "last_execution_id": F.last_execution_id,
            "session_id": F.session_id,
            "written_time": 1,
        }
    )
    assert store().decode(value) == Checkpoint(F, b"", None)


def test_a_value_of_no_known_schema_is_a_clear_failure() -> None:
    with pytest.raises(RuntimeFailure, match="cannot decode the last checkpoint"):
        store().decode(b"\xc3\x01" + bytes(8) + b"junk")
