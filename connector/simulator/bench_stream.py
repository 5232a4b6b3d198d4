"""The benchmark's order stream: pre-serialized frames at a set rate, so the venue is not the bottleneck.

The simulated venue's own stream builds every message from the order flow (protobuf objects, journal,
fault dice), which costs more CPU per execution than the connector spends on it. For ``make bench``
this module serves the same RPC from byte templates instead: each message is built once at stream
start with placeholders, and sending one only patches fixed-width fields in a copy of the bytes:

- execution ids ``EX-<12 digits>``, trade ids, order and client order ids (unique, in sequence);
- ``transact_time`` of each execution and the message's ``processed_sent_time``: both the send time,
  written as Timestamps of fixed-width (5-byte) varints, which protobuf parsers accept as any varint.

Executions are realistic in content (every usual Order field set, a filled price level), several per
update. The stream is a snapshot of ``snapshot_orders`` open orders, then updates at the rate the
:class:`BenchFlow` asks for, and a heartbeat every ``heartbeat_interval_s``. Authentication is the
venue's (a bearer token its authority issued); no other check, no faults.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import grpc

from connector._pb.polymarket.v1 import enums_pb2, trading_pb2
from connector.simulator.tokens import TokenAuthority, TokenInvalidError

SERVICE_NAME: Final = "polymarket.v1.OrderEntryAPI"
_NUMBER_WIDTH: Final = 12
_EXECUTION_MARK: Final = b"@" * _NUMBER_WIDTH
_ORDER_MARK: Final = b"%" * _NUMBER_WIDTH
_TIME_MARK: Final = b"\x08TTTTT\x10TTTTT"  # a Timestamp body: seconds and nanos, 5 varint bytes each
_NANOS_PER_SECOND: Final = 1_000_000_000
_EXECUTIONS_PER_ORDER: Final = 2
_IDLE_WAIT_S: Final = 0.05
_LENGTH_DELIMITED: Final = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _fixed_varint5(value: int) -> bytes:
    """A varint in exactly five bytes (values below 2**35), so that it can be patched in place."""
    return bytes(((value >> (7 * i)) & 0x7F) | (0x80 if i < 4 else 0) for i in range(5))


def timestamp_body(time_ns: int) -> bytes:
    """A ``google.protobuf.Timestamp`` body of fixed size (12 bytes) for a time after 1970."""
    seconds, nanos = divmod(time_ns, _NANOS_PER_SECOND)
    return b"\x08" + _fixed_varint5(seconds) + b"\x10" + _fixed_varint5(nanos)


def _template_execution() -> trading_pb2.Execution:
    execution = trading_pb2.Execution(
        id="EX-" + _EXECUTION_MARK.decode(),
        last_shares=300,
        last_px=9700,
        type=enums_pb2.EXECUTION_TYPE_PARTIAL_FILL,
        trade_id="TR-" + _EXECUTION_MARK.decode(),
        aggressor=True,
        commission_notional_collected=2910,
        trace_id="bench-trace-0001",
    )
    order = execution.order
    _fill_order(order)
    order.state = enums_pb2.ORDER_STATE_PARTIALLY_FILLED
    order.cum_qty, order.leaves_qty = 300, 700
    order.avg_px = 9700
    order.price_to_quantity_filled[9700] = 300
    order.last_trade_id = "TR-" + _EXECUTION_MARK.decode()
    return execution


def _fill_order(order: trading_pb2.Order) -> None:
    stamp = 1_763_800_000_000_000_000
    order.id = "OR-" + _ORDER_MARK.decode()
    order.clord_id = "CL-" + _ORDER_MARK.decode()
    order.symbol = "tec-nfl-sbw-2026-02-08-kc"
    order.account = "firms/BENCH/accounts/A1"
    order.side = enums_pb2.SIDE_BUY
    order.type = enums_pb2.ORDER_TYPE_LIMIT
    order.time_in_force = enums_pb2.TIME_IN_FORCE_GOOD_TILL_CANCEL
    order.state = enums_pb2.ORDER_STATE_NEW
    order.order_qty, order.leaves_qty = 1000, 1000
    order.price, order.price_scale, order.fractional_quantity_scale = 9700, 10000, 100
    order.participant = "firms/BENCH/users/trader"
    order.insert_time.FromNanoseconds(stamp)
    order.create_time.FromNanoseconds(stamp)
    order.last_transact_time.FromNanoseconds(stamp)


class _Template:
    """Message bytes with the offsets of what each send patches."""

    def __init__(self, frame: bytes) -> None:
        self.frame = frame
        self.execution_numbers = _offsets(frame, _EXECUTION_MARK)
        self.order_numbers = _offsets(frame, _ORDER_MARK)
        self.times = _offsets(frame, _TIME_MARK)


def _offsets(frame: bytes, mark: bytes) -> list[int]:
    found, start = [], frame.find(mark)
    while start >= 0:
        found.append(start)
        start = frame.find(mark, start + len(mark))
    return found


class FrameBuilder:
    """Builds the stream's messages from byte templates (see the module docstring)."""

    def __init__(self, session_id: str, executions_per_update: int) -> None:
        """Serialize the templates once for one stream."""
        self.executions_per_update = executions_per_update
        execution = _template_execution().SerializeToString() + _field(8, _TIME_MARK)  # transact_time
        update = b"".join(_field(1, execution) for _ in range(executions_per_update))
        self._envelope = _field(4, session_id.encode()) + _field(5, _TIME_MARK)  # processed_sent_time
        self._update = _Template(_field(3, update) + self._envelope)
        self._heartbeat = _Template(_field(1, b"") + self._envelope)
        order = trading_pb2.Order()
        _fill_order(order)
        self._order = _Template(_field(1, order.SerializeToString()))

    def update(self, first_execution: int, now_ns: int) -> bytes:
        """An update with the executions numbered from ``first_execution``, sent at ``now_ns``."""
        template = self._update
        frame = bytearray(template.frame)
        for index, offset in enumerate(template.execution_numbers):
            # Each execution's id, trade id and its order's last trade id: three marks per execution.
            frame[offset : offset + _NUMBER_WIDTH] = b"%012d" % (first_execution + index // 3)
        for index, offset in enumerate(template.order_numbers):
            order = (first_execution + index // 2) // _EXECUTIONS_PER_ORDER  # id and clord id per execution
            frame[offset : offset + _NUMBER_WIDTH] = b"%012d" % order
        stamp = timestamp_body(now_ns)
        for offset in template.times:
            frame[offset : offset + len(stamp)] = stamp
        return bytes(frame)

    def heartbeat(self, now_ns: int) -> bytes:
        """A heartbeat sent at ``now_ns``."""
        frame = bytearray(self._heartbeat.frame)
        offset = self._heartbeat.times[0]
        frame[offset : offset + len(_TIME_MARK)] = timestamp_body(now_ns)
        return bytes(frame)

    def snapshot(self, orders: int, now_ns: int) -> bytes:
        """A snapshot of ``orders`` open orders (ids ``SN-<n>``-style numbers), sent at ``now_ns``."""
        template = self._order
        parts = []
        for number in range(orders):
            frame = bytearray(template.frame)
            digits = b"9%011d" % number  # snapshot orders: numbers no update uses
            for offset in template.order_numbers:
                frame[offset : offset + _NUMBER_WIDTH] = digits
            parts.append(bytes(frame))
        envelope = bytearray(self._envelope)
        offset = _offsets(bytes(envelope), _TIME_MARK)[0]
        envelope[offset : offset + len(_TIME_MARK)] = timestamp_body(now_ns)
        return _field(2, b"".join(parts)) + bytes(envelope)


@dataclass(slots=True)
class BenchFlow:
    """What the benchmark asks of the stream, changed while it runs; and what the stream sent.

    ``rate`` is executions per second (0: none; ``float('inf')``: as fast as the stream can send). One
    stream thread writes the counters and the benchmark reads them (plain attributes: the GIL suffices).
    """

    rate: float = 0.0
    executions_per_update: int = 5
    snapshot_orders: int = 0
    heartbeat_interval_s: float = 1.0
    sent_executions: int = 0
    sent_snapshot_orders: int = 0
    snapshot_sent_ns: int = 0
    streams_opened: int = 0


class BenchStreamService:
    """Serves ``CreateOrderSubscription`` from :class:`FrameBuilder` frames at the flow's rate."""

    def __init__(self, authority: TokenAuthority, flow: BenchFlow) -> None:
        """Authenticate with the venue's token authority; send what ``flow`` asks."""
        self._authority = authority
        self._flow = flow

    def rpc_handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The handler to add to the venue's gRPC server (responses are sent as the bytes given)."""
        method = grpc.unary_stream_rpc_method_handler(
            self.create_order_subscription,
            request_deserializer=trading_pb2.CreateOrderSubscriptionRequest.FromString,
            response_serializer=None,  # the frames are already serialized
        )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {"CreateOrderSubscription": method})

    def create_order_subscription(self, _request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Serve one stream: the snapshot, then updates at the flow's rate and heartbeats."""
        metadata = {key.lower(): value for key, value in context.invocation_metadata()}
        token = str(metadata.get("authorization", "")).partition(" ")[2]
        try:
            self._authority.verify(token.strip())
        except TokenInvalidError as exc:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        flow = self._flow
        flow.streams_opened += 1
        frames = FrameBuilder(f"bench-{uuid.uuid4()}", flow.executions_per_update)
        snapshot = frames.snapshot(flow.snapshot_orders, sent_ns := time.time_ns())
        flow.snapshot_sent_ns = sent_ns
        yield snapshot
        flow.sent_snapshot_orders += flow.snapshot_orders
        yield from self._updates(frames, context)

    def _updates(self, frames: FrameBuilder, context: grpc.ServicerContext) -> Iterator[bytes]:
        flow, per_update = self._flow, frames.executions_per_update
        next_heartbeat = time.monotonic() + flow.heartbeat_interval_s
        due = time.monotonic()  # when the next update is due at the current rate
        rate = flow.rate
        while context.is_active():
            now = time.monotonic()
            if now >= next_heartbeat:
                yield frames.heartbeat(time.time_ns())
                next_heartbeat = now + flow.heartbeat_interval_s
            if flow.rate != rate:  # a new rate starts a new schedule
                rate, due = flow.rate, now
            if rate <= 0:
                time.sleep(_IDLE_WAIT_S)
                due = time.monotonic()
                continue
            if now < due:
                time.sleep(min(due - now, _IDLE_WAIT_S))
                continue
            first = flow.sent_executions + 1
            yield frames.update(first, time.time_ns())
            flow.sent_executions += per_update
            due += per_update / rate
