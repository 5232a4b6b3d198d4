"""The venue simulator: a fake Polymarket US venue for tests and the demo; never imported by the pipeline.

It serves the ``CreateOrderSubscription`` gRPC stream, the REST report searches and the OAuth token
endpoint on localhost, driven by a seeded order flow, with a journal of every event it produced and
fault injection, and every behaviour the venue's docs leave open (:mod:`connector.simulator.faults`).
:class:`SimulatedVenue` runs it in-process; ``pmx-connector simulator`` runs it as a process
(:mod:`connector.commands.simulator`). The behaviours are pure, clock-injected components that a
single-threaded simulation uses directly: :mod:`~connector.simulator.stream_behaviour` (one stream),
:mod:`~connector.simulator.report_api` (the REST searches), :mod:`~connector.simulator.exchange` and
:mod:`~connector.simulator.order_flow` (the venue's feed).
"""

from __future__ import annotations

from connector.simulator.faults import FaultSettings
from connector.simulator.venue import SimulatedVenue, SimulatorConfig, VenueEndpoints

__all__ = ["FaultSettings", "SimulatedVenue", "SimulatorConfig", "VenueEndpoints"]
