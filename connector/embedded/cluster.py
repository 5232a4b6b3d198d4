"""An in-process Kafka cluster for tests and demos: librdkafka's mock cluster, reached through ``ctypes``.

librdkafka (bundled inside the ``confluent-kafka`` wheel) contains a *mock cluster*: real TCP listeners on
localhost speaking the Kafka protocol, with produce, fetch, idempotence, transactions and consumer groups.
Any Kafka client (librdkafka, aiokafka, the Java client) can use it. It is not a full broker: the admin
APIs (CreateTopics, DescribeConfigs, ...) are refused, ``cleanup.policy`` is ignored, ``offsets_for_times``
answers -1, and each partition keeps only its last 5 MiB / 100,000 message sets.

The cluster's threads live inside a private ``rd_kafka_t`` handle that this module creates; the handle is
kept alive for the cluster's whole lifetime and destroyed after it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Final, Self

from connector.errors import EmbeddedKafkaError

__all__ = ["ALL_BROKERS", "EmbeddedKafka", "load_librdkafka"]

_LOG: Final = logging.getLogger(__name__)

ALL_BROKERS: Final = -1
"""Broker id that the mock cluster API understands as "every broker"."""

_RD_KAFKA_PRODUCER: Final = 0
_RESP_ERR_NO_ERROR: Final = 0
_ERRSTR_SIZE: Final = 512
_MAX_BROKERS: Final = 64
_INT16_MAX: Final = 32767
_INT32_MAX: Final = 2**31 - 1
_HANDLE_CONFIG: Final[dict[str, str]] = {
    # The private handle only hosts the mock cluster; keep it quiet on stderr.
    "log_level": "3",
    "client.id": "pmx-connector-embedded-kafka",
}


def _candidate_paths() -> list[str]:
    """Return the paths where the bundled librdkafka may be, most specific first."""
    candidates: list[str] = []
    spec = importlib.util.find_spec("confluent_kafka")
    if spec is not None and spec.origin is not None:
        site_packages = os.path.dirname(os.path.dirname(spec.origin))
        for pattern in ("confluent_kafka.libs/librdkafka*.so*", "confluent_kafka.libs/librdkafka*.dylib"):
            candidates.extend(sorted(glob.glob(os.path.join(site_packages, pattern))))
        candidates.extend(sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "librdkafka*"))))
    system = ctypes.util.find_library("rdkafka")
    if system is not None:
        candidates.append(system)
    return candidates


@functools.cache
def load_librdkafka() -> ctypes.CDLL:
    """Load librdkafka and declare the signatures of the functions this module calls.

    Returns:
        The loaded library, with ``argtypes``/``restype`` set for every function used here.

    Raises:
        EmbeddedKafkaError: No librdkafka with the mock cluster API could be found.
    """
    tried: list[str] = []
    for path in _candidate_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            tried.append(f"{path} ({exc})")
            continue
        if not hasattr(lib, "rd_kafka_mock_cluster_new"):
            tried.append(f"{path} (no mock cluster API)")
            continue
        _declare(lib)
        _LOG.debug("using librdkafka at %s", path)
        return lib
    detail = "; ".join(tried) if tried else "no candidate found"
    msg = (
        "cannot find librdkafka with the mock cluster API: install confluent-kafka (its wheel bundles "
        f"librdkafka) or a system librdkafka; tried: {detail}"
    )
    raise EmbeddedKafkaError(msg)


def _declare(lib: ctypes.CDLL) -> None:
    """Declare the C signatures (checked against ``rdkafka.h`` and ``rdkafka_mock.h``)."""
    vp, cint, i32, i16 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int32, ctypes.c_int16
    signatures: dict[str, tuple[list[type], type | None]] = {
        "rd_kafka_conf_new": ([], vp),
        "rd_kafka_conf_set": ([vp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t], cint),
        "rd_kafka_conf_destroy": ([vp], None),
        "rd_kafka_new": ([cint, vp, ctypes.c_char_p, ctypes.c_size_t], vp),
        "rd_kafka_destroy": ([vp], None),
        "rd_kafka_err2str": ([cint], ctypes.c_char_p),
        "rd_kafka_mock_cluster_new": ([vp, cint], vp),
        "rd_kafka_mock_cluster_destroy": ([vp], None),
        "rd_kafka_mock_cluster_bootstraps": ([vp], ctypes.c_char_p),
        "rd_kafka_mock_topic_create": ([vp, ctypes.c_char_p, cint, cint], cint),
        "rd_kafka_mock_broker_set_down": ([vp, i32], cint),
        "rd_kafka_mock_broker_set_up": ([vp, i32], cint),
        "rd_kafka_mock_broker_set_rtt": ([vp, i32, cint], cint),
        "rd_kafka_mock_push_request_errors_array": ([vp, i16, ctypes.c_size_t, ctypes.POINTER(cint)], None),
        "rd_kafka_mock_clear_request_errors": ([vp, i16], None),
        "rd_kafka_mock_group_initial_rebalance_delay_ms": ([vp, i32], None),
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype


def _err2str(lib: ctypes.CDLL, code: int) -> str:
    raw = lib.rd_kafka_err2str(code)
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else f"error {code}"


def _require_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        msg = f"{name} must be an integer in [{low}, {high}], got {value!r}"
        raise EmbeddedKafkaError(msg)
    return value


class EmbeddedKafka:
    """A Kafka cluster inside this process, on 127.0.0.1 with ephemeral ports.

    Use it as a context manager::

        with EmbeddedKafka(brokers=3) as kafka:
            kafka.create_topic("orders", partitions=6)
            producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})

    Nothing is started until ``__enter__`` (or :meth:`start`); :meth:`close` is idempotent. Every
    method is thread-safe. Refusals by the mock cluster raise
    :class:`~connector.errors.EmbeddedKafkaError` with librdkafka's error text.

    Args:
        brokers: Number of brokers, with ids ``1..brokers``.
        group_initial_rebalance_delay_ms: How long a new consumer group waits for more members before
            its first rebalance. librdkafka's mock default is Kafka's 3000 ms; the default here is 0,
            as on usual development brokers, so a consumer gets its assignment at once.
    """

    def __init__(self, brokers: int = 3, *, group_initial_rebalance_delay_ms: int = 0) -> None:
        self._broker_count = _require_int("brokers", brokers, 1, _MAX_BROKERS)
        self._rebalance_delay_ms = _require_int(
            "group_initial_rebalance_delay_ms", group_initial_rebalance_delay_ms, 0, _INT32_MAX
        )
        self._lock = threading.RLock()
        self._lib: ctypes.CDLL | None = None
        self._handle: int | None = None
        self._cluster: int | None = None
        self._bootstrap_servers: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Create the private librdkafka handle and the mock cluster on it.

        Raises:
            EmbeddedKafkaError: The cluster was already started or closed, or librdkafka refused.
        """
        with self._lock:
            if self._closed or self._cluster is not None:
                msg = "an EmbeddedKafka can be started only once"
                raise EmbeddedKafkaError(msg)
            lib = load_librdkafka()
            handle = self._new_handle(lib)
            cluster = lib.rd_kafka_mock_cluster_new(handle, self._broker_count)
            if not cluster:
                lib.rd_kafka_destroy(handle)
                msg = f"librdkafka could not create a mock cluster with {self._broker_count} broker(s)"
                raise EmbeddedKafkaError(msg)
            raw = lib.rd_kafka_mock_cluster_bootstraps(cluster)
            self._lib, self._handle, self._cluster = lib, handle, cluster
            self._bootstrap_servers = raw.decode("ascii") if isinstance(raw, bytes) else ""
            lib.rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, self._rebalance_delay_ms)
            _LOG.info(
                "embedded Kafka started: %d broker(s) at %s", self._broker_count, self._bootstrap_servers
            )

    @staticmethod
    def _new_handle(lib: ctypes.CDLL) -> int:
        errstr = ctypes.create_string_buffer(_ERRSTR_SIZE)
        conf = lib.rd_kafka_conf_new()
        for key, value in _HANDLE_CONFIG.items():
            if lib.rd_kafka_conf_set(conf, key.encode(), value.encode(), errstr, _ERRSTR_SIZE) != 0:
                lib.rd_kafka_conf_destroy(conf)
                msg = f"librdkafka refused {key}={value}: {errstr.value.decode('utf-8', 'replace')}"
                raise EmbeddedKafkaError(msg)
        # rd_kafka_new takes ownership of conf on success only.
        handle = lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, _ERRSTR_SIZE)
        if not handle:
            lib.rd_kafka_conf_destroy(conf)
            msg = f"librdkafka could not create a handle: {errstr.value.decode('utf-8', 'replace')}"
            raise EmbeddedKafkaError(msg)
        return int(handle)

    def close(self) -> None:
        """Destroy the cluster, then its handle; all data is lost. Safe to call more than once."""
        with self._lock:
            self._closed = True
            lib, handle, cluster = self._lib, self._handle, self._cluster
            self._lib = self._handle = self._cluster = None
            if lib is None:
                return
            if cluster is not None:
                lib.rd_kafka_mock_cluster_destroy(cluster)
            if handle is not None:
                lib.rd_kafka_destroy(handle)
            _LOG.info("embedded Kafka stopped")

    # ------------------------------------------------------------------ properties
    @property
    def bootstrap_servers(self) -> str:
        """The ``host:port,host:port,...`` list of the brokers' listeners."""
        with self._lock:
            self._live()
            return self._bootstrap_servers or ""

    @property
    def broker_ids(self) -> tuple[int, ...]:
        """The ids of the brokers, ``1..brokers``."""
        return tuple(range(1, self._broker_count + 1))

    @property
    def running(self) -> bool:
        """Whether the cluster is started and not yet closed."""
        with self._lock:
            return self._cluster is not None

    # ------------------------------------------------------------------ topics
    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        """Create a topic (the admin API CreateTopics is not supported by the mock cluster).

        Args:
            name: Topic name.
            partitions: Partition count, at least 1.
            replication_factor: Replicas per partition, between 1 and the broker count.

        Raises:
            EmbeddedKafkaError: Bad arguments, or the topic already exists.
        """
        if not isinstance(name, str) or not name or len(name) > 249:
            msg = f"topic name must be a non-empty string of at most 249 characters, got {name!r}"
            raise EmbeddedKafkaError(msg)
        # librdkafka aborts the whole process on a partition count below 1; check here.
        _require_int("partitions", partitions, 1, 100_000)
        _require_int("replication_factor", replication_factor, 1, self._broker_count)
        with self._lock:
            lib, cluster = self._live()
            err = int(lib.rd_kafka_mock_topic_create(cluster, name.encode(), partitions, replication_factor))
            self._check(lib, err, f"create topic {name!r}")
        _LOG.info("created topic %s (%d partition(s), rf %d)", name, partitions, replication_factor)

    # ------------------------------------------------------------------ faults
    def set_broker_down(self, broker_id: int) -> None:
        """Disconnect a broker and refuse its new connections (no leader change happens).

        Args:
            broker_id: A broker id from :attr:`broker_ids`.

        Raises:
            EmbeddedKafkaError: Unknown broker.
        """
        self._broker_call("rd_kafka_mock_broker_set_down", self._broker_id(broker_id), "take down broker")

    def set_broker_up(self, broker_id: int) -> None:
        """Let a broker accept connections again.

        Args:
            broker_id: A broker id from :attr:`broker_ids`.

        Raises:
            EmbeddedKafkaError: Unknown broker.
        """
        self._broker_call("rd_kafka_mock_broker_set_up", self._broker_id(broker_id), "bring up broker")

    def set_all_brokers_down(self) -> None:
        """Take every broker down at once."""
        self._broker_call("rd_kafka_mock_broker_set_down", ALL_BROKERS, "take down all brokers")

    def set_all_brokers_up(self) -> None:
        """Bring every broker up at once."""
        self._broker_call("rd_kafka_mock_broker_set_up", ALL_BROKERS, "bring up all brokers")

    def set_broker_rtt(self, broker_id: int, rtt_ms: int) -> None:
        """Delay every response of a broker by ``rtt_ms`` milliseconds (0 removes the delay).

        Args:
            broker_id: A broker id from :attr:`broker_ids`, or :data:`ALL_BROKERS`.
            rtt_ms: Round-trip delay in milliseconds, 0 or more.

        Raises:
            EmbeddedKafkaError: Unknown broker or a negative delay.
        """
        target = ALL_BROKERS if broker_id == ALL_BROKERS else self._broker_id(broker_id)
        delay = _require_int("rtt_ms", rtt_ms, 0, _INT32_MAX)
        self._broker_call("rd_kafka_mock_broker_set_rtt", target, "set rtt of broker", delay)

    def push_request_errors(self, api_key: int, errors: Sequence[int]) -> None:
        """Make the next ``len(errors)`` requests of one type fail, in order, cluster-wide.

        Args:
            api_key: Kafka protocol ApiKey, e.g. 0 for Produce, 1 for Fetch, 3 for Metadata.
            errors: Kafka error codes, e.g. 6 NOT_LEADER_OR_FOLLOWER; -195 (``_TRANSPORT``) disconnects.

        Raises:
            EmbeddedKafkaError: Bad api key or error codes.
        """
        key = _require_int("api_key", api_key, 0, _INT16_MAX)
        codes = [_require_int("error code", code, -(2**31), _INT32_MAX) for code in errors]
        if not codes:
            return
        array = (ctypes.c_int * len(codes))(*codes)
        with self._lock:
            lib, cluster = self._live()
            lib.rd_kafka_mock_push_request_errors_array(cluster, key, len(codes), array)
        _LOG.info("pushed %d error(s) for api key %d: %s", len(codes), key, codes)

    def clear_request_errors(self, api_key: int) -> None:
        """Drop the errors still pending for one ApiKey.

        Args:
            api_key: Kafka protocol ApiKey.
        """
        key = _require_int("api_key", api_key, 0, _INT16_MAX)
        with self._lock:
            lib, cluster = self._live()
            lib.rd_kafka_mock_clear_request_errors(cluster, key)

    def set_group_initial_rebalance_delay(self, delay_ms: int) -> None:
        """Set how long a new consumer group waits for more members before its first rebalance.

        Args:
            delay_ms: Delay in milliseconds, 0 or more.
        """
        delay = _require_int("delay_ms", delay_ms, 0, _INT32_MAX)
        with self._lock:
            lib, cluster = self._live()
            lib.rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, delay)

    # ------------------------------------------------------------------ helpers
    def _live(self) -> tuple[ctypes.CDLL, int]:
        if self._lib is None or self._cluster is None:
            state = "closed" if self._closed else "not started (use it as a context manager)"
            msg = f"the embedded Kafka cluster is {state}"
            raise EmbeddedKafkaError(msg)
        return self._lib, self._cluster

    def _broker_id(self, broker_id: int) -> int:
        if isinstance(broker_id, bool) or not isinstance(broker_id, int) or broker_id not in self.broker_ids:
            msg = f"unknown broker {broker_id!r}: the brokers are {self.broker_ids[0]}..{self.broker_ids[-1]}"
            raise EmbeddedKafkaError(msg)
        return broker_id

    def _broker_call(self, function: str, broker_id: int, action: str, *extra: int) -> None:
        with self._lock:
            lib, cluster = self._live()
            err = int(getattr(lib, function)(cluster, broker_id, *extra))
            what = f"{action} {broker_id}" if broker_id != ALL_BROKERS else action
            self._check(lib, err, what)
        _LOG.info("%s%s", action, f" {broker_id}" if broker_id != ALL_BROKERS else "")

    @staticmethod
    def _check(lib: ctypes.CDLL, err: int, action: str) -> None:
        if err != _RESP_ERR_NO_ERROR:
            msg = f"embedded Kafka could not {action}: {_err2str(lib, err)} (error {err})"
            raise EmbeddedKafkaError(msg)

    def __repr__(self) -> str:
        state = self._bootstrap_servers if self.running else ("closed" if self._closed else "not started")
        return f"EmbeddedKafka(brokers={self._broker_count}, {state})"
