"""A signal handler's stop must not wait for a lock the interrupted main thread holds."""

from __future__ import annotations

import threading

from connector.commands.process import from_signal_handler


def test_a_stop_from_a_signal_handler_returns_while_the_main_thread_holds_the_events_lock() -> None:
    # The main thread inside Event.wait holds the event's lock at moments; a SIGTERM handler that
    # called set() there waited for it forever (the connector never stopped; CI saw it once).
    stop = threading.Event()
    with stop._cond:  # what the interrupted main thread holds
        returned = threading.Event()
        handler = threading.Thread(target=lambda: (from_signal_handler(stop.set), returned.set()))
        handler.start()
        assert returned.wait(5), "the handler blocked on the lock"
        assert not stop.is_set()
    assert stop.wait(5), "the stop is delivered once the lock is free"
    handler.join(5)
