"""A real Apache Kafka cluster on loopback: KRaft nodes as processes the tests can kill, stop and restart.

The broker is the Apache Kafka distribution's jars (``org.apache.kafka:kafka_2.13``, fetched by
``scripts/install-tools.sh`` into ``.tools/kafka/libs``), run with the machine's Java. Each node is
one JVM in combined mode (broker and controller), with its own data directory and log file, on free
loopback ports. The default cluster has three nodes, replication factor 3 and
``min.insync.replicas`` 2, so one node can be lost without losing acknowledged writes.

A :class:`Security` turns a cluster into a locked-down one: a SASL_SSL listener (SCRAM-SHA-512, a
certificate signed by a private CA the caller made) for clients, and the standard authorizer with
the listed super users; the inter-broker/admin listener stays PLAINTEXT on loopback for the tests.

By hand (a developer's manual run)::

    .venv/bin/python -m tests.kafka_cluster --dir /tmp/pmx-kafka --ready-file /tmp/pmx-kafka/ready.json

prints the bootstrap servers and runs until Ctrl-C; ``--nodes 1`` for a single node. Each run is a
fresh cluster (new cluster ID and ports; ``--dir``'s old node data is removed).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
KAFKA_LIBS_ENV: Final = "PMX_KAFKA_LIBS"
DEFAULT_LIBS: Final = REPO_ROOT / ".tools" / "kafka" / "libs"
START_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 30.0
# Small heaps: the machine has 2 cores and is shared; C1 only and the serial GC start a JVM fastest.
JVM_OPTIONS: Final = (
    "-Xms64m",
    "-Xmx320m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:MaxMetaspaceSize=128m",
    "-Xss512k",
    "-Djava.awt.headless=true",
)
LOG4J2_PROPERTIES: Final = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka-request.name = kafka.request.logger
logger.kafka-request.level = WARN
logger.state-change.name = state.change.logger
logger.state-change.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""


PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the node gets SIGKILL when the thread that started it dies (a killed test run leaves no JVM)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ClusterError(RuntimeError):
    """The cluster could not be started (no Java, no broker jars, a node that did not come up)."""


def kafka_libs() -> Path:
    """Where the broker's jars are: ``$PMX_KAFKA_LIBS`` or ``.tools/kafka/libs``."""
    return Path(os.environ.get(KAFKA_LIBS_ENV) or DEFAULT_LIBS)


def java_command() -> str:
    """The ``java`` to run: ``$JAVA_HOME/bin/java`` or the one on PATH.

    Raises:
        ClusterError: no Java is installed.
    """
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        msg = "no java on PATH (and no JAVA_HOME): install a JDK 17+ to run the real Kafka"
        raise ClusterError(msg)
    return found


def unavailable_reason() -> str | None:
    """Why the real cluster cannot start here (None when Java and the broker jars are present)."""
    try:
        java_command()
    except ClusterError as exc:
        return str(exc)
    libs = kafka_libs()
    if not any(libs.glob("kafka_2.13-*.jar")):
        return f"the Kafka broker jars are not in {libs}: run `make tools` (scripts/install-tools.sh)"
    return None


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_cluster_id() -> str:
    """A random Kafka cluster ID (a UUID in URL-safe base64), not starting with a dash (a CLI flag)."""
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class Security:
    """A locked-down cluster: SASL_SSL (SCRAM-SHA-512) for clients and the standard authorizer.

    Attributes:
        keystore_pem: A PEM file with the broker's certificate chain and (unencrypted) private key.
        scram_users: User name -> password, created at format time.
        super_users: Principals allowed everything (``User:NAME``); the PLAINTEXT admin listener's
            ``User:ANONYMOUS`` is always one.
    """

    keystore_pem: Path
    scram_users: Mapping[str, str]
    super_users: tuple[str, ...] = ()


@dataclass
class KafkaNode:
    """One KRaft node (broker and controller in one JVM) and its process."""

    node_id: int
    broker_port: int
    controller_port: int
    client_port: int | None
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def config_file(self) -> Path:
        """The node's ``server.properties``."""
        return self.directory / "server.properties"

    @property
    def log_file(self) -> Path:
        """The node's stdout and stderr (log4j writes to the console)."""
        return self.directory / "node.log"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` of the PLAINTEXT listener."""
        return f"127.0.0.1:{self.broker_port}"

    def running(self) -> bool:
        """Whether the node's process is alive (stopped by SIGSTOP still counts)."""
        return self.process is not None and self.process.poll() is None

    def start(self, classpath: str) -> None:
        """Start the node's JVM (its data directory must be formatted).

        On Linux the JVM dies with the thread that started it: start nodes from a long-lived thread.
        """
        if self.running():
            return
        self.starts += 1
        env = {**os.environ, "KAFKA_LOG4J_OPTS": ""}
        with self.log_file.open("ab") as sink:
            sink.write(f"\n===== start {self.starts} =====\n".encode())
            sink.flush()
            self.process = subprocess.Popen(
                [
                    java_command(),
                    *JVM_OPTIONS,
                    f"-Dlog4j2.configurationFile={self.directory.parent / 'log4j2.properties'}",
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(self.config_file),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # a Ctrl-C in the developer's terminal reaches the cluster via stop()
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509 - no lock taken
            )

    def kill(self) -> None:
        """SIGKILL the node (no shutdown, no flush) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def pause(self) -> None:
        """SIGSTOP the node: its sockets stay open but it answers nothing."""
        assert self.process is not None and self.process.poll() is None, f"node {self.node_id} not running"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused node."""
        assert self.process is not None and self.process.poll() is None, f"node {self.node_id} not running"
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM the node (a controlled shutdown), SIGKILL after a timeout."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class KafkaCluster:
    """A KRaft cluster of ``nodes`` combined nodes under ``root``; use as a context manager.

    Attributes:
        root: Directory for the nodes' configs, data and logs (created; left in place for reading).
        nodes: Number of nodes (1 or 3 here; replication and ``min.insync.replicas`` follow).
        security: Make it a SASL_SSL cluster with an authorizer (see :class:`Security`).
        broker_settings: Extra ``server.properties`` lines for every node.
    """

    root: Path
    nodes: int = 3
    security: Security | None = None
    broker_settings: Mapping[str, str] = field(default_factory=dict)
    members: list[KafkaNode] = field(default_factory=list, init=False)
    cluster_id: str = field(default_factory=new_cluster_id, init=False)

    def __enter__(self) -> KafkaCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def classpath(self) -> str:
        """The broker's classpath (every jar in :func:`kafka_libs`)."""
        return f"{kafka_libs()}/*"

    @property
    def bootstrap_servers(self) -> str:
        """The PLAINTEXT listeners (the admin listener, when secured) of every node."""
        return ",".join(node.address for node in self.members)

    @property
    def secure_bootstrap_servers(self) -> str:
        """The SASL_SSL listeners of every node (a secured cluster only)."""
        assert self.security is not None, "not a secured cluster"
        return ",".join(f"localhost:{node.client_port}" for node in self.members)

    @property
    def replication_factor(self) -> int:
        """The replication factor topics get here: 3, or 1 on a single node."""
        return min(3, self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        """The node with this ID (1-based)."""
        return self.members[node_id - 1]

    def start(self) -> None:
        """Write the configs, format the storage, start every node and wait until all are in the cluster.

        Raises:
            ClusterError: Java or the jars are missing, formatting failed, or a node did not come up.
        """
        reason = unavailable_reason()
        if reason:
            raise ClusterError(reason)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        self.members = [
            KafkaNode(
                node_id=index + 1,
                broker_port=free_port(),
                controller_port=free_port(),
                client_port=free_port() if self.security else None,
                directory=self.root / f"node-{index + 1}",
            )
            for index in range(self.nodes)
        ]
        for node in self.members:
            node.directory.mkdir(parents=True, exist_ok=True)
            node.config_file.write_text(self._server_properties(node))
        self._format()
        for node in self.members:
            node.start(self.classpath)
        self.wait_until_ready()

    def _server_properties(self, node: KafkaNode) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.members)
        replication = str(self.replication_factor)
        min_isr = "2" if self.nodes >= 3 else "1"
        listeners = [
            f"PLAINTEXT://127.0.0.1:{node.broker_port}",
            f"CONTROLLER://127.0.0.1:{node.controller_port}",
        ]
        advertised = [f"PLAINTEXT://127.0.0.1:{node.broker_port}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        settings: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(node.directory / "data"),
            "num.partitions": "3",
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            # few threads: three JVMs share two cores with the tests
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "num.replica.fetchers": "1",
            "background.threads": "2",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
            "log.cleaner.backoff.ms": "1000",
            "log.retention.check.interval.ms": "5000",
            # a node that stops answering leaves the ISR and loses leadership within seconds
            "replica.lag.time.max.ms": "6000",
            "broker.session.timeout.ms": "6000",
            "broker.heartbeat.interval.ms": "1000",
            "controller.quorum.election.timeout.ms": "1000",
            "controller.quorum.fetch.timeout.ms": "2000",
            "controlled.shutdown.enable": "true",
            "unclean.leader.election.enable": "false",
        }
        if self.security is not None:
            listeners.append(f"SASL_SSL://localhost:{node.client_port}")
            advertised.append(f"SASL_SSL://localhost:{node.client_port}")
            protocols.append("SASL_SSL:SASL_SSL")
            supers = ";".join(("User:ANONYMOUS", *self.security.super_users))
            settings |= {
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                ),
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.security.keystore_pem),
                "ssl.client.auth": "none",
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users": supers,
                "allow.everyone.if.no.acl.found": "false",
            }
        settings |= {
            "listeners": ",".join(listeners),
            "advertised.listeners": ",".join(advertised),
            "listener.security.protocol.map": ",".join(protocols),
        }
        settings |= dict(self.broker_settings)
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _format(self) -> None:
        scram: list[str] = []
        if self.security is not None:
            for user, password in self.security.scram_users.items():
                scram += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        java = [java_command(), "-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        tool = [f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}", "-cp", self.classpath]
        formatting = [
            subprocess.Popen(
                [
                    *java,
                    *tool,
                    "kafka.tools.StorageTool",
                    "format",
                    "--cluster-id",
                    self.cluster_id,
                    "--config",
                    str(node.config_file),
                    "--ignore-formatted",
                    *scram,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            for node in self.members
        ]
        for node, process in zip(self.members, formatting, strict=True):
            output, _ = process.communicate(timeout=START_TIMEOUT_S)
            if process.returncode != 0:
                msg = f"formatting node {node.node_id} failed: {output.decode(errors='replace')[-2000:]}"
                raise ClusterError(msg)

    def wait_until_ready(self, timeout_s: float = START_TIMEOUT_S, node_ids: tuple[int, ...] = ()) -> None:
        """Wait until every running node (or ``node_ids``) is a registered broker and a topic can be made.

        Raises:
            ClusterError: a node exited, or the cluster was not ready in time.
        """
        wanted = set(node_ids or (node.node_id for node in self.members if node.running()))
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 2})
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            for node in self.members:
                if node.node_id in wanted and not node.running():
                    msg = f"node {node.node_id} exited: {self._tail(node)}"
                    raise ClusterError(msg)
            try:
                metadata = admin.list_topics(timeout=2)
                if wanted <= set(metadata.brokers):
                    return
                last = f"brokers registered: {sorted(metadata.brokers)}"
            except KafkaException as exc:
                last = str(exc)
            time.sleep(0.3)
        msg = f"the Kafka cluster in {self.root} was not ready after {timeout_s:.0f} s ({last})"
        raise ClusterError(msg)

    def _tail(self, node: KafkaNode) -> str:
        try:
            return node.log_file.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def restart(self, node_id: int) -> None:
        """Start a killed or stopped node again and wait until it is back in the cluster."""
        node = self.node(node_id)
        node.start(self.classpath)
        self.wait_until_ready(node_ids=(node_id,))

    def stop(self) -> None:
        """Stop every node (in parallel: a controlled shutdown each, SIGKILL after a timeout)."""
        threads = [threading.Thread(target=node.stop) for node in self.members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def leader(self, topic: str, partition: int = 0) -> int:
        """The node ID leading ``topic``'s ``partition`` now.

        Raises:
            ClusterError: the partition has no leader.
        """
        admin = AdminClient({"bootstrap.servers": self.running_bootstrap_servers(), "log_level": 2})
        metadata = admin.list_topics(topic, timeout=10)
        leader = int(metadata.topics[topic].partitions[partition].leader)
        if leader < 0:
            msg = f"{topic}[{partition}] has no leader"
            raise ClusterError(msg)
        return leader

    def running_bootstrap_servers(self) -> str:
        """The PLAINTEXT listeners of the nodes whose process is alive."""
        return ",".join(node.address for node in self.members if node.running()) or self.bootstrap_servers


@contextlib.contextmanager
def running_cluster(root: Path | None = None, **options: object) -> Iterator[KafkaCluster]:
    """A started :class:`KafkaCluster` in ``root`` (a temporary directory when None), stopped on exit."""
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pmx-kafka-")))
        cluster = KafkaCluster(root, **options)  # type: ignore[arg-type]
        yield stack.enter_context(cluster)


def main() -> int:
    """Run a cluster until SIGINT/SIGTERM (a developer's manual run)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=3, help="number of KRaft nodes (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="data, configs and logs (default: a temp dir)")
    parser.add_argument(
        "--ready-file", type=Path, default=None, help="write {bootstrap_servers} here once up"
    )
    args = parser.parse_args()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    started = time.monotonic()
    if args.dir is not None:
        for old in args.dir.glob("node-*"):  # a fresh cluster each time: new ID, new ports
            shutil.rmtree(old)
    try:
        with running_cluster(args.dir, nodes=args.nodes) as cluster:
            print(f"bootstrap servers: {cluster.bootstrap_servers}", flush=True)
            print(f"data and logs: {cluster.root} (up in {time.monotonic() - started:.1f} s)", flush=True)
            if args.ready_file is not None:
                args.ready_file.write_text(json.dumps({"bootstrap_servers": cluster.bootstrap_servers}))
            stop.wait()
            print("stopping ...", flush=True)
    except ClusterError as exc:
        print(f"kafka_cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
