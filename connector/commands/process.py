"""What a long-running command needs from its process: stopping on signals and atomic file writes.

Used by ``dev-kafka`` and ``simulator``, which run until SIGINT/SIGTERM and announce readiness
through a ready file that a waiting test or script must never see half-written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Final

_LOG: Final = logging.getLogger(__name__)

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def from_signal_handler(action: Callable[[], None]) -> None:
    """Run ``action`` on its own thread: the way for a signal handler to set a ``threading.Event``.

    A handler runs on the main thread between two bytecodes, possibly while that thread is inside
    ``Event.wait`` holding the event's lock; ``set()`` from the handler then waits for that lock
    forever (a SIGTERM that never stopped the connector). A thread takes the lock once the main
    thread has returned to its wait.
    """
    threading.Thread(target=action, name="signal", daemon=True).start()


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT/SIGTERM while inside the block; restore the old handlers after."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        _LOG.info("received %s, shutting down", signal.Signals(signum).name)
        from_signal_handler(stop.set)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file all at once: a temporary file in the same directory, fsync, then a rename.

    Raises:
        OSError: the file cannot be written (the temporary file is removed).
    """
    directory = path.parent if str(path.parent) else Path()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
