"""Every Prometheus metric of the connector, defined once, in its own registry.

Names follow DESIGN.md §7: prefix ``pmx_connector_``, base units, ``_total`` counters
pre-initialised to 0 for every label value (so ``increase()`` works from the first event), no
order-level labels. :class:`Metrics` also implements the pipeline's observer protocol.

The hot path (per venue event, per acknowledgement) touches Prometheus as little as it can: labelled
children are resolved once, a message's events are counted with one increment per type, and the two
latency histograms take a batch of observations at once (:class:`BatchHistogram`).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from connector import __version__

PREFIX: Final = "pmx_connector"
EVENT_TYPES: Final = ("heartbeat", "snapshot_order", "execution", "cancel_reject")
LATENCY_EVENT_TYPES: Final = frozenset({"heartbeat", "execution", "cancel_reject"})
RECONNECT_REASONS: Final = ("eof", "unavailable", "stall", "unauthenticated", "resource_exhausted", "other")
TOKEN_RESULTS: Final = ("success", "refused", "error")
BACKFILL_RESULTS: Final = ("ok", "throttled", "error")
GAP_REASONS: Final = (
    "rest_exhausted",
    "beyond_retention",
    "cancel_rejects_unrecoverable",
    "dropcopy_resume_refused",
)
RESUME_MODES: Final = ("token", "time")
LATENCY_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
HEARTBEAT_BUCKETS_S: Final = (0.5, 1, 2, 5, 10, 15, 30, 60, 90, 120, 180, 300)
NANOS: Final = 1e9


class Metrics:
    """The connector's metrics, registered in a private registry (``registry``)."""

    def __init__(self, topics: tuple[str, ...], registry: CollectorRegistry | None = None) -> None:
        """Create every collector and pre-initialise the labelled counters."""
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build_info = Info(f"{PREFIX}_build", "Connector version.", registry=r)
        self.build_info.info({"version": __version__})
        self.stream_connected_gauge = Gauge(
            f"{PREFIX}_stream_connected", "1 while the venue order stream is open.", registry=r
        )
        self.reconnects = Counter(
            f"{PREFIX}_reconnects", "Stream reconnections, by reason.", ["reason"], registry=r
        )
        self.stream_stalls = Counter(
            f"{PREFIX}_stream_stalls", "Streams cancelled by the heartbeat watchdog.", registry=r
        )
        self.last_heartbeat = Gauge(
            f"{PREFIX}_last_heartbeat_timestamp_seconds",
            "Venue processed_sent_time of the last venue heartbeat.",
            registry=r,
        )
        self.heartbeat_interval = Histogram(
            f"{PREFIX}_heartbeat_interval_seconds",
            "Time between consecutive venue heartbeats (connector clock).",
            buckets=HEARTBEAT_BUCKETS_S,
            registry=r,
        )
        self.events_received = Counter(
            f"{PREFIX}_events_received", "Venue events received, by type.", ["type"], registry=r
        )
        self.records_produced = Counter(
            f"{PREFIX}_records_produced", "Records acknowledged by Kafka, by topic.", ["topic"], registry=r
        )
        self.produce_errors = Counter(
            f"{PREFIX}_produce_errors",
            "Failed deliveries, by topic and error.",
            ["topic", "error"],
            registry=r,
        )
        self.inflight_records = Gauge(
            f"{PREFIX}_inflight_records",
            "Records produced and not yet acknowledged, or in a Kafka transaction not yet committed.",
            registry=r,
        )
        self.leader = Gauge(
            f"{PREFIX}_leader",
            "1 while this instance may publish (it leads, or runs without an election); 0 on standby.",
            registry=r,
        )
        self.transactions_committed = Counter(
            f"{PREFIX}_transactions_committed_total", "Kafka transactions committed.", registry=r
        )
        self.event_to_ack = BatchHistogram(
            f"{PREFIX}_event_to_ack_seconds",
            "Venue transact_time (snapshots: processed_sent_time) to Kafka acknowledgement.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.venue_to_receive = BatchHistogram(
            f"{PREFIX}_venue_to_receive_seconds",
            "Venue processed_sent_time to connector receive time.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.watermark = Gauge(
            f"{PREFIX}_watermark_timestamp_seconds",
            "The completeness frontier F: every execution at or before it is in Kafka (or declared a gap).",
            registry=r,
        )
        self.last_checkpoint = Gauge(
            f"{PREFIX}_last_checkpoint_timestamp_seconds",
            "Connector (wall) time the last checkpoint was acknowledged by Kafka.",
            registry=r,
        )
        self._backfill_executions = Counter(
            f"{PREFIX}_backfill_executions", "Executions published from REST backfill.", registry=r
        )
        self.backfill_requests = Counter(
            f"{PREFIX}_backfill_requests",
            "REST execution-search requests, by result.",
            ["result"],
            registry=r,
        )
        self.holdback_overflows = Counter(
            f"{PREFIX}_holdback_overflows",
            "Backfills that outlasted the hold-back buffer (live updates released early).",
            registry=r,
        )
        self.gaps_detected = Counter(
            f"{PREFIX}_gaps_detected",
            "Windows whose completeness could not be proven, by reason.",
            ["reason"],
            registry=r,
        )
        self.duplicates_dropped = Counter(
            f"{PREFIX}_duplicates_dropped", "Executions dropped as already published.", registry=r
        )
        self.dlq_records = Counter(
            f"{PREFIX}_dlq_records",
            "Events sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.token_refreshes = Counter(
            f"{PREFIX}_token_refreshes", "Access token requests, by result.", ["result"], registry=r
        )
        for reason in RECONNECT_REASONS:
            self.reconnects.labels(reason)
        for event_type in EVENT_TYPES:
            self.events_received.labels(event_type)
        for topic in topics:
            self.records_produced.labels(topic)
        for result in TOKEN_RESULTS:
            self.token_refreshes.labels(result)
        for result in BACKFILL_RESULTS:
            self.backfill_requests.labels(result)
        for reason in GAP_REASONS:
            self.gaps_detected.labels(reason)
        # Children resolved once: labels() per event costs more than the increment itself.
        self._events = {event_type: self.events_received.labels(event_type) for event_type in EVENT_TYPES}
        self._produced = _LabelCache(self.records_produced)
        self._previous_heartbeat_ns: int | None = None

    # ------------------------------------------------------------ the engine's Observer port

    def event_received(self, event_type: str, received_ns: int, sent_ns: int | None, count: int = 1) -> None:
        """Count ``count`` venue events of one message and their venue-to-receive latency (one each)."""
        self._events[event_type].inc(count)
        if sent_ns is not None and event_type in LATENCY_EVENT_TYPES:
            self.venue_to_receive.observe_times(max(0.0, (received_ns - sent_ns) / NANOS), count)

    def venue_heartbeat(self, sent_ns: int | None) -> None:
        """Record a venue heartbeat."""
        if sent_ns is None:
            return
        self.last_heartbeat.set(sent_ns / NANOS)
        if self._previous_heartbeat_ns is not None:
            self.heartbeat_interval.observe(max(0.0, (sent_ns - self._previous_heartbeat_ns) / NANOS))
        self._previous_heartbeat_ns = sent_ns

    def duplicate_dropped(self) -> None:
        """Count a dropped duplicate."""
        self.duplicates_dropped.inc()

    def dead_lettered(self, event_type: str, reason: str) -> None:
        """Count a dead-lettered event."""
        del event_type
        self.dlq_records.labels(reason).inc()

    def stream_connected(self, connected: bool) -> None:
        """The stream opened or closed."""
        self.stream_connected_gauge.set(1 if connected else 0)

    def reconnect(self, reason: str) -> None:
        """Count a reconnect."""
        self.reconnects.labels(reason).inc()

    def stream_stalled(self) -> None:
        """Count a stall."""
        self.stream_stalls.inc()

    def backfill_request(self, result: str) -> None:
        """Count a search request by result."""
        self.backfill_requests.labels(result).inc()

    def backfill_executions(self, count: int) -> None:
        """Count executions found by a backfill."""
        self._backfill_executions.inc(count)

    def holdback_overflow(self) -> None:
        """Count a backfill that outlasted the hold-back bound."""
        self.holdback_overflows.inc()

    def gap_detected(self, reason: str) -> None:
        """Count a GapDetected record."""
        self.gaps_detected.labels(reason).inc()

    def frontier(self, venue_time_ns: int | None) -> None:
        """Set the completeness-frontier gauge."""
        if venue_time_ns is not None:
            self.watermark.set(venue_time_ns / NANOS)

    def in_flight(self, records: int) -> None:
        """Set the in-flight gauge."""
        self.inflight_records.set(records)

    def delivered(self, topic: str, venue_times_ns: Sequence[int | None]) -> None:
        """Records of one topic were acknowledged just now (each with its venue time, or None)."""
        self._produced[topic].inc(len(venue_times_ns))
        self.event_to_ack.observe_ages(time.time_ns(), venue_times_ns)


class DropCopyMetrics:
    """The Drop Copy stream's metrics (registered only when ``venue.sources`` holds ``drop_copy``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the collectors in ``registry`` (the connector's) and pre-initialise the labels."""
        r = registry
        self.connected_gauge = Gauge(
            f"{PREFIX}_dropcopy_connected", "1 while the venue Drop Copy stream is open.", registry=r
        )
        self.reconnects = Counter(
            f"{PREFIX}_dropcopy_reconnects",
            "Drop Copy stream reconnections, by reason.",
            ["reason"],
            registry=r,
        )
        self.executions_received = Counter(
            f"{PREFIX}_dropcopy_executions", "Drop Copy executions received (before dedup).", registry=r
        )
        self.resume_refusals = Counter(
            f"{PREFIX}_dropcopy_resume_refusals",
            "Drop Copy resume positions the venue refused (token: resumed by time; time: went live).",
            ["resume"],
            registry=r,
        )
        self.token_confirmed_at = Gauge(
            f"{PREFIX}_dropcopy_token_confirmed_timestamp_seconds",
            "Wall time the newest Drop Copy resume token was confirmed (its batch acknowledged).",
            registry=r,
        )
        for reason in RECONNECT_REASONS:
            self.reconnects.labels(reason)
        for mode in RESUME_MODES:
            self.resume_refusals.labels(mode)

    # ------------------------------------------------------------ the engine's DropCopyObserver port

    def connected(self, connected: bool) -> None:
        """The stream opened or closed."""
        self.connected_gauge.set(1 if connected else 0)

    def reconnect(self, reason: str) -> None:
        """Count a reconnect."""
        self.reconnects.labels(reason).inc()

    def executions(self, count: int) -> None:
        """Count executions received."""
        self.executions_received.inc(count)

    def resume_refused(self, resume: str) -> None:
        """Count a refused resume position."""
        self.resume_refusals.labels(resume).inc()

    def token_confirmed(self) -> None:
        """A newer resume token is confirmed now."""
        self.token_confirmed_at.set(time.time())


class BatchHistogram(Histogram):
    """An unlabelled histogram that takes many observations in one call (the samples ``observe`` makes).

    ``observe`` takes two locks per observation (the sum, the bucket); a batch takes one per bucket it
    touches and one for the sum. It adds to the parent's own values (``_sum``, ``_buckets``,
    ``_upper_bounds``: the same in every prometheus-client this project allows; a unit test checks
    the exposition against ``observe``). No exemplars.
    """

    def observe_times(self, amount: float, count: int) -> None:
        """Observe one amount ``count`` times."""
        if count > 0:
            self._sum.inc(amount * count)
            self._buckets[bisect_left(self._upper_bounds, amount)].inc(count)  # first bound >= amount

    def observe_ages(self, now_ns: int, times_ns: Iterable[int | None]) -> None:
        """Observe, in seconds, how long before ``now_ns`` each time was (at least 0; None: skipped)."""
        bounds_ns = self._bounds_ns()
        counts: dict[int, int] = {}
        total_ns = 0
        for time_ns in times_ns:
            if time_ns is None:
                continue
            age_ns = now_ns - time_ns
            if age_ns < 0:  # noqa: PLR1730 - a comparison, not a call, per acknowledgement
                age_ns = 0
            index = bisect_left(bounds_ns, age_ns)
            counts[index] = counts.get(index, 0) + 1
            total_ns += age_ns
        if counts:
            self._sum.inc(total_ns / NANOS)
            buckets = self._buckets
            for index, count in counts.items():
                buckets[index].inc(count)

    def _bounds_ns(self) -> list[float]:
        bounds: list[float] | None = getattr(self, "_upper_bounds_ns", None)
        if bounds is None:
            bounds = [bound * NANOS for bound in self._upper_bounds]
            self._upper_bounds_ns = bounds
        return bounds


class _LabelCache(dict[str, Any]):
    """A counter's children by label value, resolved on first use."""

    def __init__(self, counter: Counter) -> None:
        super().__init__()
        self._counter = counter

    def __missing__(self, label: str) -> Any:
        child = self._counter.labels(label)
        self[label] = child
        return child
