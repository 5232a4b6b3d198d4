"""The benchmark's venue: pre-serialized frames at a set rate, so the venue is not the bottleneck.

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

The venue trades whether or not a stream is open, as the simulator's does: the flow keeps one
schedule, an open stream sends each update as it is made, and while none is open
:func:`trading_unwatched` makes the updates at the flow's (finite) rate. Every update made is noted in
a :class:`BenchJournal` (its send time; the executions are numbered in sequence), which
:func:`bench_search` serves as the venue's REST execution search (the simulator's own
:class:`~connector.simulator.http_api.RestApi`: tokens, ``transact_time`` window, keyset pages), the
executions rebuilt from the same templates: what a connector missed while down is searchable.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, overload

import grpc

from connector._pb.polymarket.v1 import enums_pb2, trading_pb2
from connector.simulator.exchange import Exchange
from connector.simulator.faults import FaultBoard
from connector.simulator.http_api import RestApi, RestServer
from connector.simulator.journal import Journal, JournaledExecution
from connector.simulator.order_flow import FlowParams, OrderFlow
from connector.simulator.tokens import TokenAuthority, TokenInvalidError
from connector.simulator.venue import SimulatedVenue

SERVICE_NAME: Final = "polymarket.v1.OrderEntryAPI"
_NUMBER_WIDTH: Final = 12
_EXECUTION_MARK: Final = b"@" * _NUMBER_WIDTH
_ORDER_MARK: Final = b"%" * _NUMBER_WIDTH
_TIME_MARK: Final = b"\x08TTTTT\x10TTTTT"  # a Timestamp body: seconds and nanos, 5 varint bytes each
_NANOS_PER_SECOND: Final = 1_000_000_000
_EXECUTIONS_PER_ORDER: Final = 2
_IDLE_WAIT_S: Final = 0.05
_HTTP_POLL_S: Final = 0.05
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


class BenchJournal(Journal):
    """Every update the flow made, as the venue's REST search reads it (a journal without a file).

    Only each update's send time is kept: its executions are numbered in sequence from 1 and carry it
    as ``transact_time``. :meth:`executions` rebuilds them from the stream's templates when read, so
    the search answers exactly the executions the stream sent (or would have sent).
    """

    def __init__(self, executions_per_update: int) -> None:
        """Nothing made yet."""
        super().__init__()
        self._per_update = executions_per_update
        self._sent_ns = array("q")

    @property
    def made(self) -> int:
        """Executions made so far."""
        return len(self._sent_ns) * self._per_update

    def note_update(self, sent_ns: int) -> int:
        """Note the next update, made at ``sent_ns``; return its first execution number (one writer)."""
        self._sent_ns.append(sent_ns)
        return self.made - self._per_update + 1

    def executions(self) -> Sequence[JournaledExecution]:
        """The executions made so far, in sequence (= ``transact_time``) order."""
        return _MadeExecutions(self._sent_ns, len(self._sent_ns), self._per_update)


class _MadeExecutions(Sequence[JournaledExecution]):
    """A stable prefix of a :class:`BenchJournal`, each execution rebuilt from the templates when read."""

    def __init__(self, sent_ns: array[int], updates: int, per_update: int) -> None:
        self._sent_ns = sent_ns
        self._length = updates * per_update
        self._per_update = per_update
        self._frames = FrameBuilder("bench-search", per_update)

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> JournaledExecution: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[JournaledExecution]: ...

    def __getitem__(self, index: int | slice) -> JournaledExecution | Sequence[JournaledExecution]:
        if isinstance(index, slice):
            return [self._entry(position) for position in range(*index.indices(self._length))]
        position = index + self._length if index < 0 else index
        if not 0 <= position < self._length:
            raise IndexError(index)
        return self._entry(position)

    def _entry(self, position: int) -> JournaledExecution:
        update, offset = divmod(position, self._per_update)
        frame = self._frames.update(update * self._per_update + 1, self._sent_ns[update])
        execution = trading_pb2.CreateOrderSubscriptionResponse.FromString(frame).update.executions[offset]
        return JournaledExecution(seq=position + 1, execution=execution)


@dataclass(slots=True)
class BenchFlow:
    """What the benchmark asks of the venue, changed while it runs; and what the venue did.

    ``rate`` is executions per second (0: none; ``float('inf')``: as fast as the stream can send). The
    stream threads and :func:`trading_unwatched` make updates through :meth:`take` (one schedule, one
    numbering, under a lock); the benchmark reads the counters (plain attributes: the GIL suffices).
    ``stream_opened_ns`` and ``executions_before_stream`` describe the newest stream: when it opened
    and how many executions had been made by then (the ones it sends are numbered above).
    """

    rate: float = 0.0
    executions_per_update: int = 5
    snapshot_orders: int = 0
    heartbeat_interval_s: float = 1.0
    sent_snapshot_orders: int = 0
    snapshot_sent_ns: int = 0
    streams_opened: int = 0
    streams_open: int = 0
    stream_opened_ns: int = 0
    executions_before_stream: int = 0
    journal: BenchJournal = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _scheduled_rate: float = field(init=False, default=0.0)
    _due: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.journal = BenchJournal(self.executions_per_update)

    @property
    def produced_executions(self) -> int:
        """Executions the venue made: sent on a stream, or, with none open, only searchable."""
        return self.journal.made

    def take(self) -> tuple[int, int] | None:
        """Make the next update if the schedule has one due: its first execution number and send time."""
        with self._lock:
            now, rate = time.monotonic(), self.rate
            if rate != self._scheduled_rate:  # a new rate starts a new schedule
                self._scheduled_rate, self._due = rate, now
            if rate <= 0 or now < self._due:
                return None
            self._due += self.executions_per_update / rate
            sent_ns = time.time_ns()
            return self.journal.note_update(sent_ns), sent_ns

    def wait_s(self) -> float:
        """How long to sleep before :meth:`take` may have an update (at most the idle wait)."""
        if self.rate <= 0:
            return _IDLE_WAIT_S
        return min(max(0.0, self._due - time.monotonic()), _IDLE_WAIT_S)

    def stream_opened(self) -> None:
        """A stream opened: note where the flow is."""
        self.streams_opened += 1
        self.streams_open += 1
        self.stream_opened_ns = time.time_ns()
        self.executions_before_stream = self.produced_executions

    def stream_closed(self) -> None:
        """A stream ended (the RPC terminated, for whatever reason)."""
        self.streams_open -= 1


@contextmanager
def trading_unwatched(flow: BenchFlow) -> Iterator[None]:
    """Keep the flow's schedule while no stream is open (a thread): executions only the search returns.

    Only a finite rate trades unwatched (``inf`` means as fast as a stream takes them).
    """
    stop = threading.Event()

    def trade() -> None:
        while not stop.is_set():
            if flow.streams_open or math.isinf(flow.rate):
                stop.wait(_IDLE_WAIT_S)
            elif flow.take() is None:
                stop.wait(flow.wait_s())

    thread = threading.Thread(target=trade, name="bench-unwatched", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5.0)


@contextmanager
def bench_search(venue: SimulatedVenue, journal: BenchJournal) -> Iterator[str]:
    """Serve the venue's REST search over ``journal`` on a port of its own; yield its base URL.

    It is the simulator's :class:`RestApi` with the venue's token authority and settings: the started
    venue's own REST searches its order flow's journal, which the benchmark's stream bypasses; this
    one searches what the stream made. Tokens still come from the venue's token URL (a client
    assertion's audience).
    """
    config = venue.config
    params = FlowParams(accounts=config.accounts, symbols=config.symbols, participant=config.participant_id)
    api = RestApi(
        exchange=Exchange(OrderFlow(params, config.seed), journal, rate=0.0),
        authority=venue.authority,
        faults=FaultBoard(venue.faults),
        control=venue,
        participant_id=config.participant_id,
        audience=venue.endpoints.audience,
        seed=config.seed,
    )
    server = RestServer(api.handle, 0)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": _HTTP_POLL_S}, name="bench-search", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)


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
        flow.stream_opened()
        if not context.add_callback(flow.stream_closed):  # it has already ended
            flow.stream_closed()
        frames = FrameBuilder(f"bench-{uuid.uuid4()}", flow.executions_per_update)
        snapshot = frames.snapshot(flow.snapshot_orders, sent_ns := time.time_ns())
        flow.snapshot_sent_ns = sent_ns
        yield snapshot
        flow.sent_snapshot_orders += flow.snapshot_orders
        yield from self._updates(frames, context)

    def _updates(self, frames: FrameBuilder, context: grpc.ServicerContext) -> Iterator[bytes]:
        flow = self._flow
        next_heartbeat = time.monotonic() + flow.heartbeat_interval_s
        while context.is_active():
            now = time.monotonic()
            if now >= next_heartbeat:
                yield frames.heartbeat(time.time_ns())
                next_heartbeat = now + flow.heartbeat_interval_s
            update = flow.take()
            if update is None:
                time.sleep(flow.wait_s())
                continue
            yield frames.update(*update)
