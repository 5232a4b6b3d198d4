"""The pipeline: one venue response in, records out to Kafka, written against Protocols only.

For each ``CreateOrderSubscriptionResponse`` (DESIGN.md §1, §4):

- ``heartbeat`` -> no record; the watermark moves to its ``processed_sent_time`` once every earlier
  event is acknowledged;
- ``snapshot`` -> one OrderSnapshotEvent per order (Kafka timestamp: ``processed_sent_time``);
- ``update`` -> one ExecutionEvent per execution (timestamp: ``transact_time``), dropping an
  execution whose ID was published recently, and a CancelRejectEvent for ``cancel_reject``;
- an event that cannot be mapped or encoded -> its raw protobuf bytes to the dead-letter topic with
  ``error``, ``error_type`` and ``event_type`` headers; the stream goes on.

Every record is keyed by the order ID's UTF-8 bytes and carries the headers ``event_type``,
``source``, ``session_id``, ``connector`` and, for executions, ``execution_id``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from google.protobuf.message import Message

from connector.core.dedup import RecentExecutionIds
from connector.core.mapping import EventContext, MappingError, RecordMapper, Source, timestamp_ns
from connector.core.record_schemas import RecordType
from connector.core.watermark import Watermark

_LOG: Final = logging.getLogger(__name__)

NANOS_PER_MILLI: Final = 1_000_000

Encoder = Callable[[Mapping[str, Any], str], bytes]  # (record, topic) -> value
Headers = Sequence[tuple[str, bytes]]


class RecordSink(Protocol):
    """Where records go (the Kafka publisher)."""

    def publish(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        *,
        headers: Headers = (),
        timestamp_ms: int | None = None,
        sequence: int | None = None,
        venue_time_ns: int | None = None,
        received_time_ns: int | None = None,
    ) -> None:
        """Queue one record (blocking while the sink is full)."""

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks."""


class PipelineObserver(Protocol):
    """What the pipeline tells the outside world (metrics, status); no effect on delivery."""

    def event_received(
        self, event_type: str, received_time_ns: int, processed_sent_time_ns: int | None
    ) -> None:
        """A venue event (heartbeat, snapshot, execution, cancel_reject) arrived."""

    def venue_heartbeat(self, processed_sent_time_ns: int | None, session_id: str) -> None:
        """A venue heartbeat arrived."""

    def duplicate_dropped(self) -> None:
        """An execution already published was dropped."""

    def dead_lettered(self, event_type: str, reason: str) -> None:
        """An event went to the dead-letter topic."""


@dataclass(frozen=True, slots=True)
class Topics:
    """Destination topic per record kind."""

    executions: str
    snapshots: str
    cancel_rejects: str
    dlq: str


class Pipeline:
    """Turns venue responses into published records."""

    def __init__(
        self,
        *,
        mapper: RecordMapper,
        encoders: Mapping[RecordType, Encoder],
        sink: RecordSink,
        watermark: Watermark,
        topics: Topics,
        connector_name: str,
        recent_ids: RecentExecutionIds,
        observer: PipelineObserver,
    ) -> None:
        """Wire the pipeline's collaborators (all built by the composition root)."""
        self._mapper = mapper
        self._encoders = encoders
        self._sink = sink
        self._watermark = watermark
        self._topics = topics
        self._connector = connector_name
        self._connector_header = connector_name.encode()
        self._recent_ids = recent_ids
        self._observer = observer

    def on_response(self, response: Any, received_time_ns: int, source: Source = Source.STREAM) -> None:
        """Handle one ``CreateOrderSubscriptionResponse``."""
        session_id: str = response.session_id
        processed_sent_time_ns = _optional_timestamp(response, "processed_sent_time")
        context = EventContext(source, session_id, processed_sent_time_ns, received_time_ns, self._connector)
        if response.HasField("heartbeat"):
            self._observer.event_received("heartbeat", received_time_ns, processed_sent_time_ns)
            self._observer.venue_heartbeat(processed_sent_time_ns, session_id)
            if processed_sent_time_ns is not None:
                self._watermark.arrive_heartbeat(processed_sent_time_ns, session_id)
        elif response.HasField("snapshot"):
            snapshot_context = EventContext(
                Source.SNAPSHOT, session_id, processed_sent_time_ns, received_time_ns, self._connector
            )
            self._snapshot(response.snapshot.orders, snapshot_context)
        elif response.HasField("update"):
            update = response.update
            for execution in update.executions:
                self.on_execution(execution, context)
            if update.HasField("cancel_reject"):
                self._cancel_reject(update.cancel_reject, context)
        self._sink.poll(0.0)

    def on_execution(self, execution: Any, context: EventContext) -> None:
        """Publish one execution (from the stream or a backfill) unless it was published recently."""
        self._observer.event_received("execution", context.received_time_ns, context.processed_sent_time_ns)
        execution_id: str = execution.id
        if execution_id and execution_id in self._recent_ids:
            self._observer.duplicate_dropped()
            return
        try:
            record = self._mapper.execution(execution, context)
            value = self._encoders[RecordType.EXECUTION](record, self._topics.executions)
        except (MappingError, ValueError, TypeError, OverflowError) as exc:
            self._dead_letter("execution", execution, exc, context)
            return
        self._recent_ids.add(execution_id)
        transact_time_ns = record["transact_time"]
        sequence = self._watermark.arrive(transact_time_ns, execution_id, context.session_id)
        self._sink.publish(
            self._topics.executions,
            record["order_id"].encode(),
            value,
            headers=self._headers("execution", context, (("execution_id", execution_id.encode()),)),
            timestamp_ms=_millis(transact_time_ns),
            sequence=sequence,
            venue_time_ns=transact_time_ns,
            received_time_ns=context.received_time_ns,
        )

    def _snapshot(self, orders: Sequence[Any], context: EventContext) -> None:
        size = len(orders)
        snapshot_id = f"{context.session_id}@{context.processed_sent_time_ns or context.received_time_ns}"
        encode = self._encoders[RecordType.ORDER_SNAPSHOT]
        for position, order in enumerate(orders):
            self._observer.event_received(
                "snapshot_order", context.received_time_ns, context.processed_sent_time_ns
            )
            try:
                record = self._mapper.snapshot_order(order, snapshot_id, position, size, context)
                value = encode(record, self._topics.snapshots)
            except (MappingError, ValueError, TypeError, OverflowError) as exc:
                self._dead_letter("snapshot_order", order, exc, context)
                continue
            # A snapshot is state, not history: it proves nothing about earlier executions, so it
            # never moves the watermark (the backfill after it may still be filling a gap).
            sequence = self._watermark.arrive(None, session_id=context.session_id)
            self._sink.publish(
                self._topics.snapshots,
                record["order_id"].encode(),
                value,
                headers=self._headers("order_snapshot", context),
                timestamp_ms=_millis(context.processed_sent_time_ns),
                sequence=sequence,
                venue_time_ns=context.processed_sent_time_ns,
                received_time_ns=context.received_time_ns,
            )

    def _cancel_reject(self, cancel_reject: Any, context: EventContext) -> None:
        self._observer.event_received(
            "cancel_reject", context.received_time_ns, context.processed_sent_time_ns
        )
        try:
            record = self._mapper.cancel_reject(cancel_reject, context)
            value = self._encoders[RecordType.CANCEL_REJECT](record, self._topics.cancel_rejects)
        except (MappingError, ValueError, TypeError, OverflowError) as exc:
            self._dead_letter("cancel_reject", cancel_reject, exc, context)
            return
        venue_time_ns = record["transact_time"] or context.processed_sent_time_ns
        sequence = self._watermark.arrive(venue_time_ns, session_id=context.session_id)
        self._sink.publish(
            self._topics.cancel_rejects,
            record["order_id"].encode(),
            value,
            headers=self._headers("cancel_reject", context),
            timestamp_ms=_millis(venue_time_ns),
            sequence=sequence,
            venue_time_ns=venue_time_ns,
            received_time_ns=context.received_time_ns,
        )

    def _dead_letter(
        self, event_type: str, message: Message, error: Exception, context: EventContext
    ) -> None:
        reason = type(error).__name__
        _LOG.warning("event sent to the dead-letter topic: %s: %s", event_type, error)
        self._observer.dead_lettered(event_type, reason)
        key = (getattr(message, "id", "") or getattr(message, "order_id", "") or "").encode()
        sequence = self._watermark.arrive(context.processed_sent_time_ns, session_id=context.session_id)
        self._sink.publish(
            self._topics.dlq,
            key,
            message.SerializeToString(),
            headers=self._headers(
                event_type,
                context,
                (("error", str(error).encode()[:1000]), ("error_type", reason.encode())),
            ),
            timestamp_ms=_millis(context.processed_sent_time_ns),
            sequence=sequence,
        )

    def _headers(
        self, event_type: str, context: EventContext, extra: Sequence[tuple[str, bytes]] = ()
    ) -> list[tuple[str, bytes]]:
        return [
            ("event_type", event_type.encode()),
            ("source", context.source.value.lower().encode()),
            ("session_id", context.session_id.encode()),
            ("connector", self._connector_header),
            *extra,
        ]


def _optional_timestamp(message: Any, field: str) -> int | None:
    try:
        return timestamp_ns(message, field)
    except MappingError:
        return None


def _millis(nanos: int | None) -> int | None:
    return None if nanos is None else nanos // NANOS_PER_MILLI
