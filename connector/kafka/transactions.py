"""The producer's Kafka transactions: its ``transactional.id``, fencing, and commits off the engine's thread.

The ``transactional.id`` is the connector name plus a digest of the subscription, so it is the same
for every instance that would publish the same records and differs for any other subscription. A
start initialises the transactions (``init_transactions``): that aborts whatever transaction a
crashed predecessor left open and fences every earlier producer with the same ID, so an earlier
instance still running can no longer append anything (DESIGN.md §4, "two instances with the same
name"). librdkafka's errors on this path are translated here into the connector's error tree.

A commit flushes the transaction's records and waits for the coordinator, milliseconds to seconds;
it runs on a worker thread (librdkafka's transactional calls are thread-safe, and nothing is
produced meanwhile: :class:`~connector.engine.transactions.TransactionalSink` takes no record while
one commits), so the engine's loop stays responsive (SIGTERM, ``/healthz``) even when Kafka is down
and the commit waits up to ``transaction.timeout.ms``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Final

from confluent_kafka import KafkaError, KafkaException, Producer

from connector.errors import FatalProducerError, KafkaUnavailable, RuntimeFailure

_LOG: Final = logging.getLogger(__name__)

INIT_TIMEOUT_S: Final = 15.0
FENCED_CODES: Final = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


def transactional_id(connector: str, subscription: str) -> str:
    """The ``transactional.id`` of a connector name and subscription (``<name>.<12 hex digits>``).

    Kafka ACLs can grant it by prefix: ``--transactional-id <name>. --resource-pattern-type prefixed``.
    """
    digest = hashlib.sha256(subscription.encode()).hexdigest()[:12]
    return f"{connector}.{digest}"


def fenced_message(transactional: str) -> str:
    """The one line a fenced instance stops with."""
    return (
        f"another instance with the same connector.name and subscription took over (transactional.id "
        f"{transactional}: this producer was fenced by a newer one); this instance stops"
    )


def transaction_failure(error: KafkaError, transactional: str, action: str) -> RuntimeFailure:
    """The connector's error for a failed transactional call (fenced, not authorised, or other)."""
    if error.code() in FENCED_CODES:
        return FatalProducerError(fenced_message(transactional))
    if error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        return FatalProducerError(
            f"{action} failed: the connector's principal needs WRITE and DESCRIBE on the transactional "
            f"id {transactional} (a prefixed ACL on '{transactional.rsplit('.', 1)[0]}.' grants it)"
        )
    return FatalProducerError(f"{action} failed: {error.name()}: {error.str()}")


class KafkaTransactions:
    """The :class:`~connector.engine.ports.Transactions` of one confluent-kafka producer."""

    def __init__(
        self, producer: Producer, transactional: str, wake: Callable[[], None] = lambda: None
    ) -> None:
        """Wrap a producer whose ``transactional.id`` is ``transactional``; ``wake`` rings after a commit."""
        self._producer = producer
        self._id = transactional
        self._wake = wake
        self._commit: Future[None] | None = None

    @property
    def transactional_id(self) -> str:
        """The producer's ``transactional.id``."""
        return self._id

    def initialise(self, timeout_s: float = INIT_TIMEOUT_S) -> None:
        """Initialise the transactions (a start-up step): abort a predecessor's, fence earlier producers.

        Raises:
            KafkaUnavailable: Kafka did not answer in time (the call is resumable: the engine retries).
            FatalProducerError: not authorised, or another failure that retrying cannot mend.
        """
        try:
            self._producer.init_transactions(timeout_s)
        except KafkaException as exc:
            error = _error(exc)
            if error is not None and (error.retriable() or error.code() == KafkaError._TIMED_OUT):
                msg = f"cannot initialise the Kafka transactions of {self._id}: {error.str()}"
                raise KafkaUnavailable(msg) from None
            if error is None:
                msg = f"init_transactions failed: {exc}"
                raise FatalProducerError(msg) from None
            raise transaction_failure(error, self._id, "init_transactions") from None
        _LOG.info("Kafka transactions initialised (transactional.id %s)", self._id)

    def begin(self) -> None:
        """Begin a transaction (local).

        Raises:
            FatalProducerError: the producer cannot go on (fenced, for one).
        """
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise self._failure(exc, "begin_transaction") from None

    def start_commit(self) -> None:
        """Commit the open transaction on a worker thread of its own.

        A daemon thread: a commit that cannot complete (Kafka gone) never holds the process's exit.
        """
        commit: Future[None] = Future()
        self._commit = commit
        threading.Thread(target=self._run_commit, args=(commit,), name="kafka-commit", daemon=True).start()

    def commit_finished(self) -> bool:
        """Whether the commit has completed.

        Raises:
            FatalProducerError: it failed.
        """
        commit = self._commit
        if commit is None or not commit.done():
            return False
        self._commit = None
        failure = commit.exception()
        if failure is not None:
            if isinstance(failure, KafkaException):
                raise self._failure(failure, "commit_transaction") from None
            raise failure
        return True

    def close(self) -> None:
        """Forget a commit still running (after the engine stopped; its thread is a daemon)."""
        self._commit = None

    def _run_commit(self, commit: Future[None]) -> None:
        try:
            # -1: the transaction's remaining time, as librdkafka recommends (other values risk
            # desynchronising its state when a protocol request fails).
            self._producer.commit_transaction(-1)
        except BaseException as exc:
            commit.set_exception(exc)
        else:
            commit.set_result(None)
        finally:
            self._wake()

    def _failure(self, exc: KafkaException, action: str) -> RuntimeFailure:
        error = _error(exc)
        if error is None:
            return FatalProducerError(f"{action} failed: {exc}")
        return transaction_failure(error, self._id, action)


def _error(exc: KafkaException) -> KafkaError | None:
    error = exc.args[0] if exc.args else None
    return error if isinstance(error, KafkaError) else None
