"""The venue's journal: every execution and cancel reject it produced, the ground truth for "nothing lost".

The journal keeps each event in memory (the REST searches read it) and, when given a path, appends it
as one JSON line, flushed per line, whether or not any stream saw it. A line looks like::

    {"seq": 7, "kind": "execution", "execution_id": "SIM-E000000007", "order_id": "SIM-O000000003",
     "clord_id": "SIM-C000000003", "account": "firms/SIM/accounts/A1", "symbol": "SIM-A-YES",
     "type": "EXECUTION_TYPE_PARTIAL_FILL", "state": "ORDER_STATE_PARTIALLY_FILLED",
     "transact_time": "2026-01-02T03:04:05.123456Z", "trade_id": "SIM-T000000002",
     "last_shares": 1200, "last_px": 450, "cum_qty": 1200, "leaves_qty": 3800}

``seq`` is the venue-global sequence (1, 2, ...). For ``"kind": "cancel_reject"`` the
``execution_id``, ``trade_id`` and ``state`` are null, ``last_shares``/``last_px``/``cum_qty``/
``leaves_qty`` are absent, ``type`` is the ``CxlRejReason`` name and ``is_replace`` is added.

The journal also knows which executions were ever sent on a stream (:meth:`Journal.was_streamed`).
Built with ``stream_sends=True`` it writes one more line per stream message sent, without ``seq``
(what a checker needs to tell "never streamed" from "streamed and lost")::

    {"kind": "stream_send", "message": "update", "session_id": "sim-...", "queued_behind": 0,
     "jumped": false, "processed_sent_time": "2026-01-02T03:04:05.223456Z",
     "execution_ids": ["SIM-E000000007"]}

``message`` is ``snapshot``, ``update``, ``duplicate`` or ``heartbeat``; ``queued_behind`` counts the
messages still queued behind it; ``jumped`` marks a heartbeat sent ahead of them.

The ``execution`` and ``cancel_reject`` lines are the configured user's (what the user-scoped order
stream can show). Drop Copy is firm-wide: every delivery of a drop-copy stream is kept in memory
(:meth:`Journal.dropcopy_deliveries`, each a :class:`DropCopyDelivery`), and built with
``dropcopy=True`` the journal also writes one line per firm execution, at its firm position (the
user's executions included, other users' too), and one per drop-copy response sent::

    {"kind": "firm_execution", "position": 12, "participant": "firms/SIM/users/desk-2",
     "execution_id": "SIM1U2-E000000004", "order_id": "SIM1U2-O000000002",
     "account": "firms/SIM/accounts/D2-1", "symbol": "SIM-A-YES", "type": "EXECUTION_TYPE_FILL",
     "transact_time": "2026-01-02T03:04:05.123456Z"}
    {"kind": "dropcopy_send", "stream": "dc-...", "batch": "replay", "positions": [11, 12],
     "token_position": 12, "resent": 0, "execution_ids": ["SIM1-E000000009", "SIM1U2-E000000004"],
     "sent_time": "2026-01-02T03:04:05.223456Z"}

``batch`` is ``replay``, ``live`` or ``duplicate`` (an execution sent again; its ``positions`` is
empty); ``token_position`` is the position the batch's ``resume_token`` encodes; ``resent`` counts
executions at or before the resumed token's position (``dropcopy_resend_on_resume``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from connector._pb.polymarket.v1 import enums_pb2, trading_pb2
from connector.errors import RuntimeFailure
from connector.simulator.clock import from_timestamp, rfc3339
from connector.simulator.dropcopy import FirmExecution
from connector.simulator.order_flow import VenueUpdate

__all__ = ["DropCopyDelivery", "Journal", "JournaledExecution", "journal_lines"]


@dataclass(frozen=True, slots=True)
class JournaledExecution:
    """An execution with its venue-global sequence number."""

    seq: int
    execution: trading_pb2.Execution


@dataclass(frozen=True, slots=True)
class DropCopyDelivery:
    """One drop-copy response a stream sent (see the module docstring's ``dropcopy_send`` line)."""

    stream: str
    batch: str
    positions: tuple[int, ...]
    token_position: int
    resent: int
    execution_ids: tuple[str, ...]
    sent_at: datetime


def _execution_line(seq: int, execution: trading_pb2.Execution) -> dict[str, Any]:
    order = execution.order
    return {
        "seq": seq,
        "kind": "execution",
        "execution_id": execution.id,
        "order_id": order.id,
        "clord_id": order.clord_id,
        "account": order.account,
        "symbol": order.symbol,
        "type": enums_pb2.ExecutionType.Name(execution.type),
        "state": enums_pb2.OrderState.Name(order.state),
        "transact_time": rfc3339(from_timestamp(execution.transact_time)),
        "trade_id": execution.trade_id or None,
        "last_shares": execution.last_shares,
        "last_px": execution.last_px,
        "cum_qty": order.cum_qty,
        "leaves_qty": order.leaves_qty,
    }


def _cancel_reject_line(
    seq: int, reject: trading_pb2.CancelReject, account: str, symbol: str
) -> dict[str, Any]:
    return {
        "seq": seq,
        "kind": "cancel_reject",
        "execution_id": None,
        "order_id": reject.order_id,
        "clord_id": reject.clord_id,
        "account": account,
        "symbol": symbol,
        "type": enums_pb2.CxlRejReason.Name(reject.reject_reason),
        "state": None,
        "transact_time": rfc3339(from_timestamp(reject.transact_time)),
        "trade_id": None,
        "is_replace": reject.is_replace,
        "text": reject.text,
    }


def journal_lines(update: VenueUpdate, first_seq: int) -> list[dict[str, Any]]:
    """Describe an update as journal lines, numbered from ``first_seq``.

    Executions come first in their order, then the cancel reject, if any.

    Args:
        update: The update.
        first_seq: Sequence number of the update's first event.

    Returns:
        One JSON-ready dict per event.
    """
    lines = [_execution_line(first_seq + i, execution) for i, execution in enumerate(update.executions)]
    if update.cancel_reject is not None:
        event = update.cancel_reject
        lines.append(_cancel_reject_line(first_seq + len(lines), event.reject, event.account, event.symbol))
    return lines


class Journal:
    """Every event the venue produced, in memory and optionally as a JSON-lines file.

    Appends are serialised by the venue's lock; readers may take :meth:`executions` at any time,
    because entries are only ever appended and never changed.
    """

    def __init__(
        self, path: Path | None = None, *, stream_sends: bool = False, dropcopy: bool = False
    ) -> None:
        self._path = path
        self._stream_sends = stream_sends
        self._dropcopy = dropcopy
        self._dropcopy_deliveries: list[DropCopyDelivery] = []
        self._streamed: set[str] = set()
        self._file: IO[str] | None = None
        self._executions: list[JournaledExecution] = []
        self._last_execution: dict[str, trading_pb2.Execution] = {}
        self._seq = 0
        self._counts = {"execution": 0, "cancel_reject": 0}
        self._write_lock = threading.Lock()

    def open(self) -> None:
        """Open the journal file (truncating it), if there is one.

        Raises:
            RuntimeFailure: The file cannot be opened.
        """
        if self._path is None or self._file is not None:
            return
        try:
            self._file = self._path.open("w", encoding="utf-8")
        except OSError as exc:
            msg = f"cannot open the journal {self._path}: {exc}"
            raise RuntimeFailure(msg) from exc

    def close(self) -> None:
        """Close the journal file."""
        with self._write_lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    @property
    def last_seq(self) -> int:
        """The sequence number of the latest event (0 before the first)."""
        return self._seq

    @property
    def counts(self) -> dict[str, int]:
        """How many executions and cancel rejects were journaled."""
        return dict(self._counts)

    def record(self, update: VenueUpdate) -> None:
        """Append an update's events.

        Args:
            update: The update, exactly as the order flow produced it.
        """
        lines = journal_lines(update, self._seq + 1)
        for i, execution in enumerate(update.executions):
            self._executions.append(JournaledExecution(seq=self._seq + 1 + i, execution=execution))
            self._last_execution[execution.order.id] = execution
        self._seq += len(lines)
        self._counts["execution"] += len(update.executions)
        self._counts["cancel_reject"] += 0 if update.cancel_reject is None else 1
        with self._write_lock:
            if self._file is not None:
                for line in lines:
                    self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
                    self._file.flush()

    def record_stream_send(
        self,
        *,
        session_id: str,
        message: str,
        execution_ids: Sequence[str],
        sent_at: datetime,
        queued_behind: int,
        jumped: bool,
    ) -> None:
        """Note one message a stream sent (thread-safe); a ``stream_send`` line when enabled."""
        with self._write_lock:
            self._streamed.update(execution_ids)
            if self._file is not None and self._stream_sends:
                line = {
                    "kind": "stream_send",
                    "message": message,
                    "session_id": session_id,
                    "queued_behind": queued_behind,
                    "jumped": jumped,
                    "processed_sent_time": rfc3339(sent_at),
                    "execution_ids": list(execution_ids),
                }
                self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
                self._file.flush()

    def record_firm(self, entries: Sequence[FirmExecution]) -> None:
        """Note firm executions at their positions (a ``firm_execution`` line each, when enabled)."""
        if not self._dropcopy:
            return
        with self._write_lock:
            if self._file is None:
                return
            for entry in entries:
                execution = entry.execution
                line = {
                    "kind": "firm_execution",
                    "position": entry.position,
                    "participant": entry.participant,
                    "execution_id": execution.id,
                    "order_id": execution.order.id,
                    "account": execution.order.account,
                    "symbol": execution.order.symbol,
                    "type": enums_pb2.ExecutionType.Name(execution.type),
                    "transact_time": rfc3339(from_timestamp(execution.transact_time)),
                }
                self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._file.flush()

    def record_dropcopy_send(self, delivery: DropCopyDelivery) -> None:
        """Note one drop-copy response sent (thread-safe); a ``dropcopy_send`` line when enabled."""
        with self._write_lock:
            self._dropcopy_deliveries.append(delivery)
            if self._file is not None and self._dropcopy:
                line = {
                    "kind": "dropcopy_send",
                    "stream": delivery.stream,
                    "batch": delivery.batch,
                    "positions": list(delivery.positions),
                    "token_position": delivery.token_position,
                    "resent": delivery.resent,
                    "execution_ids": list(delivery.execution_ids),
                    "sent_time": rfc3339(delivery.sent_at),
                }
                self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
                self._file.flush()

    def dropcopy_deliveries(self, stream: str | None = None) -> list[DropCopyDelivery]:
        """The drop-copy responses sent so far, in send order (of one stream, if given)."""
        with self._write_lock:
            return [d for d in self._dropcopy_deliveries if stream is None or d.stream == stream]

    def was_streamed(self, execution_id: str) -> bool:
        """Tell whether an execution was ever sent on a stream."""
        with self._write_lock:
            return execution_id in self._streamed

    @property
    def streamed_count(self) -> int:
        """How many distinct executions were ever sent on a stream."""
        with self._write_lock:
            return len(self._streamed)

    def executions(self) -> Sequence[JournaledExecution]:
        """The journaled executions so far, in sequence order (a stable prefix copy)."""
        return self._executions[: len(self._executions)]

    def last_execution(self, order_id: str) -> trading_pb2.Execution | None:
        """The latest execution of an order, if it has one."""
        return self._last_execution.get(order_id)
