"""The benchmark's moving parts: the broker and connector processes, the venue, and a reader of Kafka.

- :func:`dev_kafka`: ``pmx-connector dev-kafka`` in its own process (3 brokers), every connector
  topic created through its control endpoint (the embedded cluster refuses CreateTopics). It is
  librdkafka's mock cluster: transactions work, but a ``read_committed`` consumer also sees records
  of transactions not committed (it ignores ``isolation.level``), and commits cost what the mock's
  do, not a broker's.
- :func:`real_kafka`: a three-node Apache Kafka (:mod:`tests.kafka_cluster`, KRaft processes), topics
  created through the admin API; no broker control (the outage phase needs dev-kafka).
- :func:`bench_venue`: the simulated venue in this process, its order stream replaced by the
  pre-serialized frames of :mod:`connector.simulator.bench_stream`, trading while no stream is open,
  and its REST execution search over what the stream made (OAuth stays the venue's).
- :class:`ConnectorProcess`: ``pmx-connector run`` with a config file; its CPU and memory read from
  ``/proc/<pid>``, its counters from ``/metrics``, its state from ``/status``.
- :class:`ExecutionsReader`: drives :mod:`tests.perf.reader`, a process that reads every
  ExecutionEvent back, notes which execution numbers arrived, the latency of each, and its framing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Protocol

import requests

from connector.config import Settings, load_settings
from connector.simulator.bench_stream import BenchFlow, BenchStreamService, bench_search, trading_unwatched
from connector.simulator.venue import SimulatedVenue, SimulatorConfig, VenueEndpoints

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
PAGE_KB: Final = os.sysconf("SC_PAGE_SIZE") // 1024
BROKERS: Final = 3
PARTITIONS: Final = 6
READY_TIMEOUT_S: Final = 120.0


def log(message: str) -> None:
    """Progress on stderr, with the time of day."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def start_process(
    args: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m connector <args>`` with its output in a log file."""
    with log_path.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "connector", *args], stdout=sink, stderr=subprocess.STDOUT, env=env
        )


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 60) -> int | None:
    """SIGTERM, then SIGKILL if it does not exit in time; return the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def wait_for_json(path: Path, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Wait for a ready file the process writes."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            msg = f"{process.args} did not write {path}"
            raise RuntimeError(msg)
        time.sleep(0.1)
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@dataclass(frozen=True, slots=True)
class Kafka:
    """A running dev-kafka: where it listens and how to control it."""

    bootstrap_servers: str
    control_url: str

    def brokers(self, action: str) -> None:
        """Take every broker ``down`` or bring them ``up``."""
        requests.post(f"{self.control_url}/brokers/{action}", json={}, timeout=10).raise_for_status()

    def create_topic(self, name: str, partitions: int, *, compact: bool = False) -> None:
        """Create a topic with a replica on every broker (``compact``: ignored by the mock)."""
        del compact
        body = {"name": name, "partitions": partitions, "replication_factor": BROKERS}
        requests.post(f"{self.control_url}/topics", json=body, timeout=10).raise_for_status()


class BenchKafka(Protocol):
    """What the benchmark needs of a Kafka: where it listens, topics, and (dev-kafka only) an outage."""

    @property
    def bootstrap_servers(self) -> str:
        """The bootstrap servers."""

    def brokers(self, action: str) -> None:
        """Take every broker ``down`` or bring them ``up``."""

    def create_topic(self, name: str, partitions: int, *, compact: bool = False) -> None:
        """Create a topic with a replica on every broker."""


@dataclass(frozen=True, slots=True)
class RealKafka:
    """A running three-node Apache Kafka (:mod:`tests.kafka_cluster`)."""

    bootstrap_servers: str

    def brokers(self, action: str) -> None:
        """Not here: the outage phase runs on dev-kafka only."""
        msg = f"brokers {action}: the benchmark controls brokers on dev-kafka only"
        raise NotImplementedError(msg)

    def create_topic(self, name: str, partitions: int, *, compact: bool = False) -> None:
        """Create a topic with a replica on every node (``compact``: cleanup.policy compact)."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 2})
        config = {"cleanup.policy": "compact"} if compact else {}
        topic = NewTopic(name, num_partitions=partitions, replication_factor=BROKERS, config=config)
        admin.create_topics([topic])[name].result(timeout=60)


@contextmanager
def real_kafka(folder: Path) -> Iterator[RealKafka]:
    """Run a three-node Apache Kafka under ``folder`` (needs ``make tools``: Java and the broker's jars)."""
    from tests.kafka_cluster import running_cluster

    with running_cluster(folder / "kafka", nodes=BROKERS) as cluster:
        yield RealKafka(cluster.bootstrap_servers)


@contextmanager
def dev_kafka(folder: Path) -> Iterator[Kafka]:
    """Run the embedded Kafka in its own process, without topics (the benchmark creates its own)."""
    ready = folder / "kafka.json"
    process = start_process(
        ["dev-kafka", "--brokers", str(BROKERS), "--no-default-topics", "--ready-file", str(ready)],
        folder / "kafka.log",
    )
    try:
        info = wait_for_json(ready, process)
        yield Kafka(info["bootstrap_servers"], info["control_url"])
    finally:
        stop_process(process)


@contextmanager
def bench_venue(folder: Path, flow: BenchFlow) -> Iterator[tuple[VenueEndpoints, Path]]:
    """Run the venue with the benchmark's stream in this process; yield its endpoints and the client key.

    The endpoints' REST URL is the benchmark's search (:func:`connector.simulator.bench_stream.bench_search`).
    """
    venue = SimulatedVenue(
        SimulatorConfig(rate=0.0, warmup_updates=0, rest_rate_limit=False, token_lifetime_s=3600),
        stream_handler=lambda authority: BenchStreamService(authority, flow).rpc_handler(),
    )
    key_path = folder / "client-key.pem"
    key_path.write_bytes(venue.generate_client_key())
    key_path.chmod(0o600)
    with venue, bench_search(venue, flow.journal) as rest_url, trading_unwatched(flow):
        yield replace(venue.endpoints, rest_url=rest_url), key_path


def connector_settings(
    venue: VenueEndpoints, key_path: Path, bootstrap: str, http_port: int
) -> dict[str, Any]:
    """The connector's settings document for the benchmark stack."""
    return {
        "venue": {
            "grpc_target": venue.grpc_target,
            "rest_url": venue.rest_url,
            "insecure": True,
            "participant_id": venue.participant_id,
        },
        "auth": {
            "token_url": venue.token_url,
            "client_id": venue.client_id,
            "private_key_file": str(key_path),
            "audience": venue.audience,
        },
        "kafka": {"bootstrap_servers": bootstrap, "partitions": PARTITIONS, "replication_factor": BROKERS},
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "connector": {"name": "bench", "heartbeat_interval_s": 1.0},
    }


def topics_of(settings: Settings) -> dict[str, str]:
    """Every topic the connector writes, by role (each field of the topic settings)."""
    kafka = settings.kafka
    return {role: kafka.topic(getattr(kafka.topics, role)) for role in type(kafka.topics).model_fields}


class ConnectorProcess:
    """``pmx-connector run`` as a process, observed from the outside."""

    def __init__(self, config: dict[str, Any], folder: Path, name: str = "connector") -> None:
        """Write the config file (``<name>.json``) and start the process (its output in ``<name>.log``)."""
        path = folder / f"{name}.json"
        path.write_text(json.dumps(config))  # JSON is YAML
        self.settings = load_settings(path)
        self.topics = topics_of(self.settings)
        self.url = f"http://{config['http']['listen']}"
        self.started_ns = time.time_ns()
        self.process = start_process(["run", "--config", str(path)], folder / f"{name}.log")
        self.pid = self.process.pid

    def check_running(self) -> None:
        """Raise if the process has exited."""
        if self.process.poll() is not None:
            msg = f"the connector exited with {self.process.returncode}"
            raise RuntimeError(msg)

    def wait_ready(self) -> None:
        """Wait until ``/readyz`` answers 200."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_running()
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        msg = "the connector never became ready"
        raise RuntimeError(msg)

    def metrics(self) -> dict[str, float]:
        """The ``/metrics`` exposition as ``{series: value}``."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                values[series] = float(value)
        return values

    def metric_sum(self, name: str) -> float:
        """A metric summed over its label values."""
        return sum(value for series, value in self.metrics().items() if series.partition("{")[0] == name)

    def status(self) -> dict[str, Any]:
        """The ``/status`` document."""
        document: dict[str, Any] = requests.get(f"{self.url}/status", timeout=10).json()
        return document

    def produced(self, role: str) -> float:
        """Records Kafka acknowledged to the connector on one topic (its own counter)."""
        return self.metrics().get(f'pmx_connector_records_produced_total{{topic="{self.topics[role]}"}}', 0.0)

    def cpu_seconds(self) -> float:
        """User + system CPU of the process (all its threads) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def memory_mb(self) -> tuple[float, float]:
        """Resident memory now and its peak so far (VmRSS, VmHWM), in MB."""
        status = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines()
            if ":" in line
        )
        return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024

    def stop(self) -> int | None:
        """SIGTERM (flush, then exit) and wait."""
        return stop_process(self.process, timeout_s=120)

    def kill(self) -> int:
        """SIGKILL (a crash: nothing flushed, no checkpoint written) and wait."""
        self.process.kill()
        return self.process.wait()


class ExecutionsReader:
    """Reads the executions topic back in its own process (:mod:`tests.perf.reader`), so that its CPU
    and its hold on a GIL disturb neither the venue nor the connector.

    Latency is the reader's ``time.time_ns()`` when it holds a record minus the record's
    ``processed_sent_time`` (the venue's send time). The connector writes every record inside a Kafka
    transaction (in both delivery modes), so what that bounds depends on ``isolation``:

    - ``read_committed`` (the default, explicit): venue send -> visible to a read_committed consumer,
      i.e. after the record's transaction committed (``connector.transaction_interval_s`` plus the
      commit), whatever ``connector.delivery`` says;
    - ``read_uncommitted``: an upper bound of venue send -> Kafka ack, since a record is readable only
      once the brokers acknowledged it (acks=all, high watermark).

    Either way the reader adds its own fetch delay (``fetch.wait.max.ms`` 5). ``from_end``: read only
    what is written after the reader's start (for a latency window), not the whole topic.
    """

    def __init__(
        self, bootstrap: str, topic: str, *, isolation: str = "read_committed", from_end: bool = False
    ) -> None:
        """Start the reader process (it reads every partition from the beginning, or the end)."""
        start = "end" if from_end else "beginning"
        self.isolation = isolation
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.perf.reader", bootstrap, topic, str(PARTITIONS), isolation, start],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def _ask(self, *words: object) -> Any:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(" ".join(str(word) for word in words) + "\n")
        self._process.stdin.flush()
        return json.loads(self._process.stdout.readline())

    @property
    def count(self) -> int:
        """Records read so far."""
        count: int = self._ask("count")
        return count

    def mark(self) -> int:
        """A position in the latency samples (to cut a phase's window)."""
        mark: int = self._ask("mark")
        return mark

    def latencies_ms(self, start: int, end: int | None = None) -> list[float]:
        """The percentiles (p50, p99, p99.9) and sample count between two marks."""
        found: list[float] = self._ask("latencies", start, -1 if end is None else end)
        return found

    def missing(self, first: int, last: int) -> int:
        """How many execution numbers in ``first..last`` never arrived."""
        missing: int = self._ask("missing", first, last)
        return missing

    def newest(self) -> int:
        """The highest execution number read so far (0: none)."""
        newest: int = self._ask("newest")
        return newest

    def framings(self) -> dict[str, int]:
        """Records read so far by framing: ``single_object`` and ``confluent``."""
        framings: dict[str, int] = self._ask("framings")
        return framings

    def duplicates(self) -> int:
        """How many executions arrived more than once (extra copies)."""
        duplicates: int = self._ask("duplicates")
        return duplicates

    def wait_for(self, first: int, last: int, timeout_s: float) -> bool:
        """Wait until every execution numbered ``first..last`` was read; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.missing(first, last):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def close(self) -> None:
        """Stop the reader process."""
        assert self._process.stdin is not None
        self._process.stdin.close()  # the reader exits when its input ends
        stop_process(self._process, timeout_s=10)
