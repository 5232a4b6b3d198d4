"""Running the real, composed connector in-process against a simulator and a Kafka cluster.

:func:`running_connector` builds the service exactly as ``pmx-connector run`` does
(``commands.composition.build``), runs it on a thread, and stops it cleanly on exit (raising what
the engine raised, if it failed). :func:`connector_settings` points a settings document at a
simulator and a cluster. :func:`wait_until` polls a condition against a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from connector.commands.composition import BuiltService, build
from connector.commands.demo import settings_for_simulator
from connector.config import Settings
from connector.core.venue_time import ns_from_iso
from connector.simulator import SimulatedVenue


def connector_settings(
    venue: SimulatedVenue, bootstrap_servers: str, folder: Path, **sections: dict[str, Any]
) -> Settings:
    """Settings for a connector on ``venue`` and ``bootstrap_servers`` (sections merged over them)."""
    key_file = folder / "client.pem"
    if not key_file.exists():
        key_file.write_bytes(venue.generate_client_key())
        key_file.chmod(0o600)
    document = settings_for_simulator(venue.endpoints, bootstrap_servers, key_file)
    document["http"] = {"listen": "127.0.0.1:0"}
    for name, section in sections.items():
        document[name] = {**document.get(name, {}), **section}
    return Settings.model_validate(document)


@contextmanager
def running_connector(settings: Settings) -> Iterator[BuiltService]:
    """The composed service, running on a thread until the block ends (then stopped and joined)."""
    built = build(settings)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            built.run()
        except BaseException as exc:
            failure.append(exc)

    runner = threading.Thread(target=run, name="connector", daemon=True)
    runner.start()
    try:
        yield built
    finally:
        built.stop()
        runner.join(timeout=60)
    assert not runner.is_alive(), "the connector did not stop within 60 s"
    if failure:
        raise failure[0]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.05)


def frontier_ns(built: BuiltService) -> int | None:
    """The completeness frontier the connector reports in ``/status`` (microsecond precision)."""
    frontier = built.status.completeness_frontier
    return None if frontier is None else ns_from_iso(frontier)
