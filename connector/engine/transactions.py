"""Every record in a Kafka transaction: the sink that batches them, and what "delivered" means per mode.

The connector writes everything (venue records, its checkpoints, heartbeats, gap records, dead
letters) through one transactional producer whose ``transactional.id`` belongs to the connector
name and subscription. That is what fences a second instance: a broker appends a record only for
the newest epoch of a ``transactional.id``, so once a later instance has initialised its
transactions, every produce and commit of the earlier one is refused (``_FENCED``) and it stops.

:class:`TransactionalSink` wraps the producer's :class:`~connector.engine.ports.RecordSink`: it
begins a transaction with the first record after the last commit and commits it once the
transaction is ``interval_s`` old or holds ``max_records`` records. From then until the commit
completes (on the producer's side, without blocking the engine) it takes no record: to the engine
that is a full producer queue, so records wait in the outbox, in order, as they do when Kafka is slow.
It asks for the commit only once the producer has acknowledged every record of the transaction:
librdkafka's commit flushes first, and a flush serves delivery callbacks on the thread that calls it
(the commit's worker); with nothing left to deliver, every acknowledgement still reaches the
watermark on the engine's thread, the only one the publisher and the watermark may be called from.

What counts as delivered (``connector.delivery``):

- ``at_least_once``: a record Kafka acknowledged, as without transactions. A crash aborts the open
  transaction; a ``read_committed`` consumer never sees its records, a ``read_uncommitted`` one
  does, and the restart sends them again (its dedup seed reads committed records only).
- ``exactly_once``: a record whose transaction committed. Acknowledgements are held until then, so
  the completeness frontier, every checkpoint and heartbeat, and the lag figures only ever cover
  committed records.

In both modes :attr:`in_flight` counts the records of the open transaction, so a stop waits for
their commit before it writes the final checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from connector.core.records import Headers, OutRecord
from connector.engine.ports import Clock, RecordSink, Transactions

DEFAULT_INTERVAL_S: Final = 0.1
DEFAULT_MAX_RECORDS: Final = 10_000


class TransactionalSink:
    """A :class:`~connector.engine.ports.RecordSink` that writes in transactions of bounded age and size."""

    def __init__(
        self,
        transactions: Transactions,
        clock: Clock,
        *,
        acknowledge: Callable[[int], None],
        exactly_once: bool,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_records: int = DEFAULT_MAX_RECORDS,
        on_committed: Callable[[], None] = lambda: None,
    ) -> None:
        """Batch into ``transactions``; ``acknowledge`` takes arrival sequences (the watermark's).

        Build the producer's own sink with :meth:`acknowledged` as its acknowledgement callback, then
        hand it to :meth:`wrap`.
        """
        self._transactions = transactions
        self._clock = clock
        self._acknowledge = acknowledge
        self._exactly_once = exactly_once
        self._interval_s = interval_s
        self._max_records = max_records
        self._inner: RecordSink | None = None
        self._open = False
        self._opened_at = 0.0
        self._records = 0  # handed over in the open transaction
        self._committing = False  # no record is taken until the commit completed
        self._commit_started = False  # asked for, once every record of the transaction was acknowledged
        self._held: list[int] = []  # exactly_once: acknowledged, not yet committed
        self._on_committed = on_committed
        self.commits = 0  # transactions committed

    def wrap(self, inner: RecordSink) -> None:
        """Publish through ``inner`` (built with :meth:`acknowledged` as its acknowledgement callback)."""
        self._inner = inner

    @property
    def exactly_once(self) -> bool:
        """Whether records count as delivered only once committed."""
        return self._exactly_once

    def acknowledged(self, sequence: int) -> None:
        """Kafka acknowledged the record with this arrival sequence (the producer's callback)."""
        if self._exactly_once:
            self._held.append(sequence)
        else:
            self._acknowledge(sequence)

    @property
    def in_flight(self) -> int:
        """Records not yet acknowledged, or in a transaction not yet committed."""
        return self._records if self._open else self._sink.in_flight

    def try_publish(self, record: OutRecord, headers: Headers, sequence: int | None) -> bool:
        """Hand one record over inside the open transaction (beginning one); False while one commits.

        Raises:
            RecordRefused: the record is larger than the producer takes.
            FatalProducerError: the producer cannot go on (fenced, a failed delivery).
        """
        if self._committing:
            return False
        if not self._open:
            self._transactions.begin()
            self._open = True
            self._opened_at = self._clock.monotonic()
            self._records = 0
        if not self._sink.try_publish(record, headers, sequence):
            return False
        self._records += 1
        return True

    def poll(self) -> None:
        """Serve acknowledgements; start a due commit, or finish the one running.

        Raises:
            FatalProducerError: a delivery or the commit failed, or another instance fenced this one.
        """
        self._sink.poll()
        if not self._committing:
            if not self._open or (
                self._records < self._max_records
                and self._clock.monotonic() - self._opened_at < self._interval_s
            ):
                return
            self._committing = True  # the transaction takes no more records
        if not self._commit_started:
            if self._sink.in_flight:
                return  # acknowledgements still to come, served by this thread's polls
            self._commit_started = True
            self._transactions.start_commit()
        if self._transactions.commit_finished():
            self._committed()

    def _committed(self) -> None:
        self._committing = False
        self._commit_started = False
        self._open = False
        self._records = 0
        self.commits += 1
        self._on_committed()
        if self._held:
            # Nothing is produced while a commit runs, so every record held now was in this one.
            held, self._held = self._held, []
            acknowledge = self._acknowledge
            for sequence in held:
                acknowledge(sequence)

    @property
    def _sink(self) -> RecordSink:
        inner = self._inner
        assert inner is not None  # noqa: S101 - wrap() comes before any use (the composition root)
        return inner
