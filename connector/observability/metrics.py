"""Every Prometheus metric of the connector, defined once, in its own registry.

Names follow DESIGN.md §7: prefix ``pmx_connector_``, base units, ``_total`` counters
pre-initialised to 0 for every label value (so ``increase()`` works from the first event), no
order-level labels. :class:`Metrics` also implements the pipeline's observer protocol.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from connector import __version__

PREFIX: Final = "pmx_connector"
EVENT_TYPES: Final = ("heartbeat", "snapshot_order", "execution", "cancel_reject")
RECONNECT_REASONS: Final = ("eof", "unavailable", "stall", "unauthenticated", "resource_exhausted", "other")
TOKEN_RESULTS: Final = ("success", "refused", "error")
BACKFILL_RESULTS: Final = ("ok", "throttled", "error")
GAP_REASONS: Final = ("rest_exhausted", "beyond_retention", "cancel_rejects_unrecoverable")
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
        self.stream_connected = Gauge(
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
            f"{PREFIX}_inflight_records", "Records produced and not yet acknowledged.", registry=r
        )
        self.event_to_ack = Histogram(
            f"{PREFIX}_event_to_ack_seconds",
            "Venue transact_time (snapshots: processed_sent_time) to Kafka acknowledgement.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.venue_to_receive = Histogram(
            f"{PREFIX}_venue_to_receive_seconds",
            "Venue processed_sent_time to connector receive time.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.watermark = Gauge(
            f"{PREFIX}_watermark_timestamp_seconds",
            "Venue time up to which every event is acknowledged by Kafka.",
            registry=r,
        )
        self.last_checkpoint = Gauge(
            f"{PREFIX}_last_checkpoint_timestamp_seconds",
            "Connector (wall) time the last checkpoint was acknowledged by Kafka.",
            registry=r,
        )
        self.backfill_executions = Counter(
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
        self._previous_heartbeat_ns: int | None = None

    # ------------------------------------------------------------ the pipeline's observer protocol

    def event_received(
        self, event_type: str, received_time_ns: int, processed_sent_time_ns: int | None
    ) -> None:
        """Count a venue event and its venue-to-receive latency."""
        self.events_received.labels(event_type).inc()
        if processed_sent_time_ns is not None and event_type in {"heartbeat", "execution", "cancel_reject"}:
            self.venue_to_receive.observe(max(0.0, (received_time_ns - processed_sent_time_ns) / NANOS))

    def venue_heartbeat(self, processed_sent_time_ns: int | None, session_id: str) -> None:
        """Record a venue heartbeat."""
        del session_id
        if processed_sent_time_ns is None:
            return
        self.last_heartbeat.set(processed_sent_time_ns / NANOS)
        if self._previous_heartbeat_ns is not None:
            self.heartbeat_interval.observe(
                max(0.0, (processed_sent_time_ns - self._previous_heartbeat_ns) / NANOS)
            )
        self._previous_heartbeat_ns = processed_sent_time_ns

    def duplicate_dropped(self) -> None:
        """Count a dropped duplicate."""
        self.duplicates_dropped.inc()

    def dead_lettered(self, event_type: str, reason: str) -> None:
        """Count a dead-lettered event."""
        del event_type
        self.dlq_records.labels(reason).inc()
