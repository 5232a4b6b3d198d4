"""Drop Copy as the venue runs it: the firm's execution sequence, resume tokens, and one stream (pure).

Three pieces, none with a thread or a clock of its own (every method that needs the time takes
``now``), so a single-threaded simulation can drive them directly:

* :class:`FirmLog`: every execution of the firm (every user, every account) in venue order, each at a
  **position** 1, 2, ... The exchange appends to it under its lock; readers take stable prefixes.
* :class:`ResumeTokens`: encodes a position as an opaque ``resume_token`` and decodes it again,
  refusing an **unknown** token (not ours, damaged, or ahead of the log) or an **expired** one (older
  than ``dropcopy_token_lifetime_s``, or issued before :meth:`ResumeTokens.expire_all`). Format, 44
  bytes: ``b"SIMDC1"`` | venue epoch (8) | generation (4) | position (8) | issued at, µs since the
  epoch (8) | the first 10 bytes of an HMAC-SHA256 over the rest, keyed per venue process. Clients
  must treat it as opaque; tests may read the position with :meth:`ResumeTokens.position_of`.
* :class:`DropCopyStream`: what the venue keeps per ``CreateDropCopySubscription`` call. It starts
  at a position (0: the log's start; the join position: live) and sends, in order, the **replay**
  (positions after the start up to the position at which it joined the feed, read from the log in
  batches of ``dropcopy_batch_size``, paced at ``dropcopy_replay_rate`` executions per second after
  ``dropcopy_replay_delay_s``), then the **live** executions the exchange delivers (queued while the
  client does not read, coalesced into batches; past ``send_queue_capacity`` queued executions the
  stream ends with ``queue_overflow_status``). Every batch carries the token of its last position;
  a re-sent execution (``duplicate_rate``, one recently sent execution as its own batch) carries the
  last token sent, so a token never moves backwards. ``unknown_enum_rate`` and ``unknown_field_rate``
  alter sent copies as on the order stream. The symbol filter drops executions, not positions: a
  replayed batch whose executions are all filtered out is skipped.

At-least-once around reconnects is the owner's choice of start: a resume by token starts
``dropcopy_resend_on_resume`` positions before the token's (those re-sent executions count as
``resent``).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import random
import secrets
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, cast

from connector._pb.polymarket.v1 import dropcopy_pb2, enums_pb2, trading_pb2
from connector.simulator.clock import from_timestamp
from connector.simulator.faults import FaultSettings
from connector.simulator.stream_behaviour import UNKNOWN_FIELD_BYTES, StreamEnd

__all__ = [
    "EXPIRED_TOKEN",
    "UNKNOWN_TOKEN",
    "DropCopySent",
    "DropCopyStream",
    "FirmExecution",
    "FirmLog",
    "ResumeTokens",
    "TokenRefusedError",
]

_MAGIC: Final = b"SIMDC1"
_BODY: Final = struct.Struct(">QIQq")
_MAC_BYTES: Final = 10
TOKEN_BYTES: Final = len(_MAGIC) + _BODY.size + _MAC_BYTES
_RECENT_EXECUTIONS: Final = 256
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_REPLAY: Final = "replay"
_LIVE: Final = "live"
_DUPLICATE: Final = "duplicate"
UNKNOWN_TOKEN: Final = "unknown"  # noqa: S105 - a refusal reason, not a secret
EXPIRED_TOKEN: Final = "expired"  # noqa: S105 - a refusal reason, not a secret


@dataclass(frozen=True, slots=True)
class FirmExecution:
    """One execution of the firm at its position (the protobuf is shared: never mutate it)."""

    position: int
    participant: str
    execution: trading_pb2.Execution


class FirmLog:
    """The firm's executions in venue order; appended under the exchange's lock, read as stable prefixes."""

    def __init__(self) -> None:
        self._entries: list[FirmExecution] = []
        self._times_us: list[int] = []

    @property
    def head(self) -> int:
        """The position of the latest execution (0 before the first)."""
        return len(self._entries)

    def append(self, executions: Sequence[trading_pb2.Execution], participant: str) -> list[FirmExecution]:
        """Append executions of one participant, in order; return them at their positions."""
        added = []
        for execution in executions:
            entry = FirmExecution(len(self._entries) + 1, participant, execution)
            self._entries.append(entry)
            # The venue's transact times never go backwards, so this list stays sorted.
            moment_us = _micros(from_timestamp(execution.transact_time))
            self._times_us.append(max(moment_us, self._times_us[-1]) if self._times_us else moment_us)
            added.append(entry)
        return added

    def after(self, position: int, limit: int, until: int | None = None) -> Sequence[FirmExecution]:
        """The entries after ``position``: at most ``limit`` of them, none past ``until``."""
        end = position + limit if until is None else min(position + limit, until)
        return self._entries[max(0, position) : max(0, end)]

    def entries(self) -> Sequence[FirmExecution]:
        """Every entry so far (a stable prefix copy)."""
        return self._entries[: len(self._entries)]

    def position_before(self, moment: datetime) -> int:
        """The position just before the first execution at or after ``moment`` (a replay's start)."""
        return bisect.bisect_left(self._times_us, _micros(moment), 0, len(self._entries))


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


class TokenRefusedError(Exception):
    """A resume token the venue will not resume from: ``reason`` is ``unknown`` or ``expired``."""

    def __init__(self, reason: str, details: str) -> None:
        super().__init__(details)
        self.reason = reason
        self.details = details


class ResumeTokens:
    """Makes and checks resume tokens (see the module docstring for the format); thread-safe."""

    def __init__(self, *, secret: bytes | None = None, epoch: int | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._epoch = secrets.randbits(63) if epoch is None else epoch
        self._generation = 0

    def expire_all(self) -> None:
        """Expire every token issued so far."""
        self._generation += 1

    def encode(self, position: int, now: datetime) -> bytes:
        """The token of ``position`` (resume just after it), issued at ``now``."""
        body = _MAGIC + _BODY.pack(self._epoch, self._generation, position, _micros(now))
        return body + self._mac(body)

    def decode(self, token: bytes, now: datetime, *, head: int, lifetime_s: float | None) -> int:
        """Check a token and return its position.

        Raises:
            TokenRefusedError: Unknown (not ours, damaged, ahead of ``head``) or expired.
        """
        if len(token) != TOKEN_BYTES or not token.startswith(_MAGIC):
            raise TokenRefusedError(UNKNOWN_TOKEN, "resume token not recognised")
        body, mac = token[:-_MAC_BYTES], token[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise TokenRefusedError(UNKNOWN_TOKEN, "resume token not recognised")
        epoch, generation, position, issued_us = _BODY.unpack(body[len(_MAGIC) :])
        if epoch != self._epoch or position > head:
            raise TokenRefusedError(UNKNOWN_TOKEN, "resume token does not belong to this venue's history")
        if generation != self._generation:
            raise TokenRefusedError(EXPIRED_TOKEN, "resume token expired")
        if lifetime_s is not None and _micros(now) - issued_us > lifetime_s * 1_000_000:
            raise TokenRefusedError(EXPIRED_TOKEN, f"resume token expired (older than {lifetime_s:g} s)")
        return int(position)

    @staticmethod
    def position_of(token: bytes) -> int:
        """Read the position out of a token without checking it (for tests and the journal)."""
        _epoch, _generation, position, _issued = _BODY.unpack(token[len(_MAGIC) : len(_MAGIC) + _BODY.size])
        return int(position)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_BYTES]


@dataclass(frozen=True, slots=True)
class DropCopySent:
    """One drop-copy response the venue sent.

    Attributes:
        response: The message.
        kind: ``replay``, ``live`` or ``duplicate`` (re-sending an execution already sent).
        positions: The firm positions of its executions, in order.
        token_position: The position its ``resume_token`` encodes.
        resent: How many of its executions were re-sent at or before the resumed token's position.
    """

    response: dropcopy_pb2.CreateDropCopySubscriptionResponse
    kind: str
    positions: tuple[int, ...]
    token_position: int
    resent: int = 0

    @property
    def execution_ids(self) -> tuple[str, ...]:
        """The ids of its executions, in order."""
        return tuple(execution.id for execution in self.response.executions)


@dataclass(slots=True)
class DropCopyCounts:
    """What one drop-copy stream did."""

    sent: int = 0
    executions: int = 0
    replayed: int = 0
    resent: int = 0
    duplicates: int = 0
    max_queued: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class DropCopyStream:
    """One drop-copy stream's replay cursor, live queue, pacing and dice; see the module docstring."""

    def __init__(
        self,
        settings: FaultSettings,
        *,
        log: FirmLog,
        start: int,
        joined_at: int,
        opened_at: datetime,
        token_for: Callable[[int, datetime], bytes],
        rng: random.Random,
        symbols: frozenset[str] = frozenset(),
        resumed_at: int | None = None,
    ) -> None:
        """Open the stream.

        Args:
            settings: The settings in force (already :meth:`FaultSettings.for_stream` ``dropcopy``).
            log: The firm's log (read for the replay).
            start: Send the executions after this position.
            joined_at: The log's head when the stream joined the feed: the replay ends there and the
                exchange delivers every later execution.
            opened_at: When the stream opened.
            token_for: Encodes a position as a resume token at a time.
            rng: The stream's dice.
            symbols: The symbol filter (empty: all).
            resumed_at: The resumed token's position, when resumed by token (executions at or before
                it are counted as re-sent).
        """
        self._settings = settings
        self._log = log
        self._cursor = max(0, min(start, joined_at))
        self._joined_at = joined_at
        self._token_for = token_for
        self._rng = rng
        self._symbols = symbols
        self._resumed_at = resumed_at
        self._now = opened_at
        self._replay_due = opened_at + timedelta(seconds=settings.dropcopy_replay_delay_s)
        self._live: deque[FirmExecution] = deque()
        self._duplicates: deque[trading_pb2.Execution] = deque()
        self._recent: deque[trading_pb2.Execution] = deque(maxlen=_RECENT_EXECUTIONS)
        self._last_token_position = start
        self._ended: StreamEnd | None = None
        self.counts = DropCopyCounts()

    # ------------------------------------------------------------------ state

    @property
    def ended(self) -> StreamEnd | None:
        """How the venue ended the stream, once it did."""
        return self._ended

    @property
    def replaying(self) -> bool:
        """Whether replayed executions remain to be sent."""
        return self._cursor < self._joined_at

    @property
    def sent(self) -> int:
        """Responses sent so far."""
        return self.counts.sent

    @property
    def queued(self) -> int:
        """Live executions waiting to be sent."""
        return len(self._live)

    def next_wakeup(self, now: datetime) -> datetime:
        """When something becomes due without a delivery (the next paced replay batch), or ``now`` + 1 h."""
        if self.replaying:
            return self._replay_due
        return max(now, self._now) + timedelta(hours=1)

    # ------------------------------------------------------------------ inputs

    def apply(self, settings: FaultSettings, now: datetime) -> None:
        """Put new settings in force (the start position stays)."""
        self._now = max(now, self._now)
        self._settings = settings

    def deliver(self, entries: Sequence[FirmExecution], now: datetime) -> None:
        """Queue live executions (the exchange's thread, in firm order, after the join position)."""
        self._now = max(now, self._now)
        if self._ended is not None:
            return
        capacity = self._settings.send_queue_capacity
        for entry in entries:
            if entry.position <= self._joined_at:
                continue
            if capacity is not None and len(self._live) >= capacity:
                self.end(
                    self._settings.queue_overflow_status,
                    f"slow consumer: the stream's send queue of {capacity} executions is full",
                )
                return
            self._live.append(entry)
        self.counts.max_queued = max(self.counts.max_queued, len(self._live))

    def end(self, status: str, details: str) -> None:
        """End the stream (a fault decided by the owner); nothing more is sent."""
        if self._ended is None:
            self._ended = StreamEnd(status, details)
            self._live.clear()
            self._duplicates.clear()

    # ------------------------------------------------------------------ output

    def next_message(self, now: datetime) -> DropCopySent | None:
        """Send the next response, if one is due (the client is ready to read at ``now``)."""
        self._now = now = max(now, self._now)
        if self._ended is not None:
            return None
        if self._duplicates:
            execution = self._duplicates.popleft()
            return self._send(_DUPLICATE, [execution], (), self._last_token_position, now)
        if self.replaying:
            return self._next_replay(now)
        while self._live:
            size = min(self._settings.dropcopy_batch_size, len(self._live))
            batch = [self._live.popleft() for _ in range(size)]
            chosen = [entry for entry in batch if self._wanted(entry)]
            if chosen:
                positions = tuple(entry.position for entry in chosen)
                return self._send(_LIVE, [e.execution for e in chosen], positions, batch[-1].position, now)
        return None

    # ------------------------------------------------------------------ internals

    def _wanted(self, entry: FirmExecution) -> bool:
        return not self._symbols or entry.execution.order.symbol in self._symbols

    def _next_replay(self, now: datetime) -> DropCopySent | None:
        settings = self._settings
        while self.replaying:
            if now < self._replay_due:
                return None
            chunk = self._log.after(self._cursor, settings.dropcopy_batch_size, until=self._joined_at)
            if not chunk:  # pragma: no cover - the log holds every position up to the join
                self._cursor = self._joined_at
                break
            self._cursor = chunk[-1].position
            chosen = [entry for entry in chunk if self._wanted(entry)]
            if settings.dropcopy_replay_rate is not None:
                self._replay_due = max(self._replay_due, now) + timedelta(
                    seconds=len(chunk) / settings.dropcopy_replay_rate
                )
            if chosen:
                positions = tuple(entry.position for entry in chosen)
                sent = self._send(_REPLAY, [e.execution for e in chosen], positions, self._cursor, now)
                self.counts.replayed += len(chosen)
                return sent
        return None

    def _send(
        self,
        kind: str,
        executions: Sequence[trading_pb2.Execution],
        positions: tuple[int, ...],
        token_position: int,
        now: datetime,
    ) -> DropCopySent:
        settings = self._settings
        response = dropcopy_pb2.CreateDropCopySubscriptionResponse()
        response.executions.extend(executions)  # copies: the shared protos stay untouched
        for execution in response.executions:
            if self._roll(settings.unknown_enum_rate):
                execution.type = cast(enums_pb2.ExecutionType, settings.unknown_enum_value)
        if self._roll(settings.unknown_field_rate):
            response.MergeFromString(UNKNOWN_FIELD_BYTES)
            response.executions[0].MergeFromString(UNKNOWN_FIELD_BYTES)
        self._last_token_position = max(self._last_token_position, token_position)
        response.resume_token = self._token_for(self._last_token_position, now)
        resent = 0
        if self._resumed_at is not None and kind != _DUPLICATE:
            resent = sum(1 for position in positions if position <= self._resumed_at)
        counts = self.counts
        counts.sent += 1
        counts.executions += len(executions)
        counts.resent += resent
        counts.by_kind[kind] = counts.by_kind.get(kind, 0) + 1
        if kind == _DUPLICATE:
            counts.duplicates += 1
        else:
            self._recent.extend(executions)
            if self._roll(settings.duplicate_rate):
                self._duplicates.append(self._rng.choice(self._recent))
        return DropCopySent(response, kind, positions, self._last_token_position, resent)

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
