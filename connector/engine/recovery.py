"""The moving parts of gap recovery that the service loop drives: backfill thread and hold-back.

- :class:`BackfillWorker` runs one REST backfill window on its own thread (the search is paced to
  12 requests a minute, so it can take minutes) and hands pages back to the main thread, which alone
  touches the pipeline, the watermark and the producer.
- :class:`HoldBack` keeps the live stream's responses while the backfill runs, bounded in records
  and bytes, so backfilled executions are published before the live ones that follow them.
- :func:`gap_record` builds the GapDetected record that declares a window unproven.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from connector import __version__
from connector._pb.polymarket.v1 import trading_pb2
from connector.core.backfill_plan import Gap, RequestPacer, RetryBudget, Window
from connector.observability.http import iso_from_ns
from connector.venue.backfill import (
    CANCELLED,
    BackfillCancelled,
    BackfillExhausted,
    BackfillProgress,
    ExecutionSearch,
    run_backfill,
)

_LOG: Final = logging.getLogger(__name__)

PAGE_QUEUE_CAPACITY: Final = 8
PROGRESS_LOG_EVERY_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class BackfillFinished:
    """The window was searched to ``eof``."""

    progress: BackfillProgress


@dataclass(frozen=True, slots=True)
class BackfillFailed:
    """The search failed past its retry budget: the window is a gap."""

    window: Window
    detail: str


BackfillItem = Sequence[trading_pb2.Execution] | BackfillFinished | BackfillFailed


class BackfillWorker:
    """One backfill window, searched on a daemon thread; pages are collected by the main thread."""

    def __init__(
        self,
        *,
        search: ExecutionSearch,
        window: Window,
        pacer: RequestPacer,
        retry_budget_s: float,
        on_request: Callable[[str], None],
    ) -> None:
        """Prepare the worker (nothing runs until :meth:`start`)."""
        self.window = window
        self._search = search
        self._pacer = pacer
        self._retry_budget_s = retry_budget_s
        self._on_request = on_request
        self._items: queue.Queue[BackfillItem] = queue.Queue(maxsize=PAGE_QUEUE_CAPACITY)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backfill", daemon=True)
        self._last_progress_log = 0.0
        self.progress = BackfillProgress(window)

    def start(self) -> None:
        """Start searching."""
        _LOG.info("backfill started: %s", describe_window(self.window))
        self._thread.start()

    def cancel(self) -> None:
        """Stop searching (the thread ends at its next wait; pages not yet collected are dropped)."""
        self._stop.set()

    def collect(self) -> list[BackfillItem]:
        """Take every page and outcome ready now (never blocks)."""
        items: list[BackfillItem] = []
        while True:
            try:
                items.append(self._items.get_nowait())
            except queue.Empty:
                return items

    def _run(self) -> None:
        try:
            progress = run_backfill(
                search=self._search,
                window=self.window,
                pacer=self._pacer,
                budget=RetryBudget(self._retry_budget_s),
                on_page=self._put,
                stop=self._stop,
                on_request=self._on_request,
                on_progress=self._log_progress,
            )
            self._put(BackfillFinished(progress))
        except BackfillExhausted as exc:
            self._put(BackfillFailed(self.window, str(exc)))
        except BackfillCancelled:
            return

    def _put(self, item: BackfillItem) -> None:
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise BackfillCancelled(CANCELLED)

    def _log_progress(self, progress: BackfillProgress) -> None:
        self.progress = progress
        now = time.monotonic()
        if progress.done or now - self._last_progress_log >= PROGRESS_LOG_EVERY_S:
            self._last_progress_log = now
            _LOG.info(
                "backfill %s: %d pages, %d requests, %d executions",
                "done" if progress.done else "in progress",
                progress.pages,
                progress.requests,
                progress.executions,
            )


class HoldBack:
    """Live responses held while a backfill runs, bounded in records and serialized bytes."""

    def __init__(self, max_records: int, max_bytes: int) -> None:
        """Hold at most ``max_records`` responses and ``max_bytes`` bytes."""
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._held: deque[tuple[Any, int]] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._held)

    def offer(self, response: Any, received_time_ns: int) -> bool:
        """Hold a response; False (and nothing held) when it does not fit."""
        size = response.ByteSize()
        if len(self._held) >= self._max_records or self._bytes + size > self._max_bytes:
            return False
        self._held.append((response, received_time_ns))
        self._bytes += size
        return True

    def release(self) -> list[tuple[Any, int]]:
        """Everything held, oldest first; the buffer is empty afterwards."""
        released = list(self._held)
        self._held.clear()
        self._bytes = 0
        return released


def describe_window(window: Window) -> str:
    """A window as two RFC 3339 times."""
    return f"[{iso_from_ns(window.start_ns)}, {iso_from_ns(window.end_ns)})"


def gap_record(connector: str, subscription: str, gap: Gap, session_id: str) -> dict[str, Any]:
    """The GapDetected record for a gap."""
    return {
        "connector": connector,
        "subscription": subscription,
        "reason": gap.reason.value,
        "window_start": gap.window.start_ns,
        "window_end": gap.window.end_ns,
        "detected_time": time.time_ns(),
        "detail": gap.detail,
        "session_id": session_id,
        "version": __version__,
    }
