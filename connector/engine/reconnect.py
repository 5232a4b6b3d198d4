"""When to reopen a venue stream that ended: the failure matrix's reconnect rules, for every stream.

DESIGN.md §4: full-jitter backoff 1 s doubling to 30 s, reset once a stream was healthy for 60 s; a
fresh token and an immediate reconnect (once) after UNAUTHENTICATED, then backoff; up to 5 minutes
after RESOURCE_EXHAUSTED (the firm's 20 streams are taken). The order stream and Drop Copy each
have their own :class:`ReconnectPolicy`; the status names that the metrics count are here too.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from connector.core.pacing import FullJitterBackoff
from connector.engine.ports import Disposition, StreamEnd

BACKOFF_BASE_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
BACKOFF_RESOURCE_EXHAUSTED_MAX_S: Final = 300.0
HEALTHY_RESET_S: Final = 60.0

RECONNECT_REASONS: Final = {
    "EOF": "eof",
    "UNAVAILABLE": "unavailable",
    "STALL": "stall",
    "UNAUTHENTICATED": "unauthenticated",
    "RESOURCE_EXHAUSTED": "resource_exhausted",
}


def reconnect_reason(ended: StreamEnd) -> str:
    """The ``reason`` label of a reconnect after ``ended``."""
    return RECONNECT_REASONS.get(ended.status, "other")


class ReconnectPolicy:
    """The delay before the next attempt (of a start-up, or of a stream after it ended)."""

    def __init__(self, invalidate_token: Callable[[], None], rng: random.Random | None = None) -> None:
        """``invalidate_token`` drops the cached access token (after UNAUTHENTICATED)."""
        self._backoff = FullJitterBackoff(BACKOFF_BASE_S, BACKOFF_MAX_S, rng)
        self._invalidate_token = invalidate_token
        self._reauthenticated = False

    def next_delay(self) -> float:
        """The next backoff delay (a failed attempt that is not a stream's end)."""
        return self._backoff.next_delay()

    def reset(self) -> None:
        """An attempt succeeded: the next failure starts from the base delay."""
        self._backoff.reset()

    def answered(self) -> None:
        """The stream delivered: the next UNAUTHENTICATED gets its immediate retry again."""
        self._reauthenticated = False

    def after(self, ended: StreamEnd, healthy_s: float) -> float:
        """The delay before reopening a stream that was open ``healthy_s`` and ended so."""
        if healthy_s >= HEALTHY_RESET_S:
            self._backoff.reset()
        delay = self._backoff.next_delay()
        if ended.disposition is Disposition.REAUTHENTICATE:
            self._invalidate_token()
            if not self._reauthenticated:
                self._reauthenticated = True
                delay = 0.0
        elif ended.disposition is Disposition.BACK_OFF_LONG:
            delay = self._backoff.next_delay(BACKOFF_RESOURCE_EXHAUSTED_MAX_S)
        return delay
