"""The benchmark stream's pre-serialized frames parse to the messages they stand for."""

from __future__ import annotations

from connector._pb.polymarket.v1 import trading_pb2
from connector.simulator.bench_stream import FrameBuilder, timestamp_body

Response = trading_pb2.CreateOrderSubscriptionResponse
SENT_NS = 1_763_800_123_456_789_012


def test_an_update_carries_numbered_executions_stamped_with_the_send_time() -> None:
    response = Response.FromString(FrameBuilder("bench-s1", 3).update(41, SENT_NS))
    assert response.session_id == "bench-s1"
    assert response.processed_sent_time.ToNanoseconds() == SENT_NS
    executions = response.update.executions
    assert [e.id for e in executions] == ["EX-000000000041", "EX-000000000042", "EX-000000000043"]
    assert [e.trade_id for e in executions] == ["TR-000000000041", "TR-000000000042", "TR-000000000043"]
    assert [e.order.id for e in executions] == ["OR-000000000020", "OR-000000000021", "OR-000000000021"]
    assert all(e.order.clord_id == "CL-" + e.order.id[3:] for e in executions)
    assert all(e.transact_time.ToNanoseconds() == SENT_NS for e in executions)
    assert all(e.order.price_to_quantity_filled[9700] == 300 for e in executions)


def test_heartbeat_and_snapshot_frames() -> None:
    frames = FrameBuilder("bench-s2", 5)
    heartbeat = Response.FromString(frames.heartbeat(SENT_NS))
    assert heartbeat.HasField("heartbeat") and heartbeat.processed_sent_time.ToNanoseconds() == SENT_NS
    snapshot = Response.FromString(frames.snapshot(3, SENT_NS))
    assert [order.id for order in snapshot.snapshot.orders] == [
        "OR-900000000000",
        "OR-900000000001",
        "OR-900000000002",
    ]
    assert Response.FromString(frames.snapshot(0, SENT_NS)).HasField("snapshot")


def test_fixed_width_timestamps_read_back_exactly() -> None:
    for time_ns in (0, 1, 999_999_999, SENT_NS, 2**35 * 1_000_000_000 - 1):
        stamp = trading_pb2.Execution.FromString(b"\x42\x0c" + timestamp_body(time_ns)).transact_time
        assert len(timestamp_body(time_ns)) == 12
        assert stamp.ToNanoseconds() == time_ns
