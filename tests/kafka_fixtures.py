"""Kafka fixtures: which broker the tests use, and a fresh embedded cluster for fault tests.

``kafka_bootstrap_servers`` (session) picks, in order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` from the environment (an external cluster);
2. a testcontainers Kafka container, when a Docker engine answers a ping within two seconds;
3. :class:`connector.embedded.EmbeddedKafka` with three brokers (librdkafka's mock cluster).

``embedded_kafka`` (function) always gives a fresh three-broker ``EmbeddedKafka``: fault injection
(broker down/up, request errors, RTT) is only possible there.

``real_kafka`` (session) is the real Apache Kafka for the integration and chaos tests: a three-node
KRaft cluster on loopback (:mod:`tests.kafka_cluster`), started once per session, whose nodes the
tests can SIGKILL, SIGSTOP and restart. Without Java or the broker jars (``make tools``) the tests
that need it skip, and fail under ``CI``. Every node is up before and after each test that uses it
(whatever a test left killed or paused is restarted or resumed).

``secure_kafka`` (session) is a second, single-node real cluster with a SASL_SSL listener
(SCRAM-SHA-512, a private CA made here) and the standard authorizer, with users whose ACLs lack one
permission each (:data:`SECURE_USERS`).
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from connector.embedded import EmbeddedKafka
from tests.kafka_cluster import ClusterError, KafkaCluster, Security, unavailable_reason
from tests.pki import make_pki

_LOG: Final = logging.getLogger("tests.kafka")
DOCKER_PING_TIMEOUT_S: Final = 2


def _docker_socket_missing() -> bool:
    """Whether DOCKER_HOST (or the default) names a unix socket that does not exist: no engine, no probe."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host.startswith("unix://") and not os.path.exists(host.removeprefix("unix://"))


def docker_engine_answers() -> bool:
    """Whether a Docker engine answers a ping quickly (no Docker here means: use the embedded Kafka)."""
    if _docker_socket_missing():
        return False
    try:
        import docker
        import requests
    except ImportError:
        return False
    # A failed probe leaks the docker client's half-open socket; collect it here, where its
    # ResourceWarning is expected, rather than in whichever test the garbage collector picks.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_S)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (docker.errors.DockerException, requests.RequestException, OSError):
            return False
        finally:
            gc.collect()


def _announce(request: pytest.FixtureRequest, message: str) -> None:
    _LOG.warning(message)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\n[kafka] {message}")


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(request: pytest.FixtureRequest) -> Iterator[str]:
    """Bootstrap servers of the Kafka the tests use: external, testcontainers, or embedded."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        _announce(request, f"using external Kafka from KAFKA_BOOTSTRAP_SERVERS={external}")
        yield external
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            servers = str(container.get_bootstrap_server())
            _announce(request, f"using testcontainers Kafka at {servers}")
            yield servers
        return
    with EmbeddedKafka(brokers=3) as kafka:
        _announce(
            request,
            f"no KAFKA_BOOTSTRAP_SERVERS and no Docker: using EmbeddedKafka at {kafka.bootstrap_servers}",
        )
        yield kafka.bootstrap_servers


@pytest.fixture
def embedded_kafka() -> Iterator[EmbeddedKafka]:
    """A fresh three-broker embedded Kafka, destroyed after the test."""
    with EmbeddedKafka(brokers=3) as kafka:
        yield kafka


def require_real_kafka_tooling() -> None:
    """Skip (fail under ``CI``) when Java or the broker jars are missing."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the real Kafka cannot start under CI: {reason}")
    pytest.skip(f"the real Kafka cannot start: {reason}")


@pytest.fixture(scope="session")
def real_kafka_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaCluster]:
    """The session's three-node KRaft cluster (started on first use)."""
    require_real_kafka_tooling()
    cluster = KafkaCluster(tmp_path_factory.mktemp("real-kafka"), nodes=3)
    try:
        cluster.start()
    except ClusterError as exc:
        cluster.stop()
        pytest.fail(f"the real Kafka did not start: {exc}")
    _announce(request, f"real Kafka (3 KRaft nodes) at {cluster.bootstrap_servers}, in {cluster.root}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def real_kafka(real_kafka_session: KafkaCluster) -> Iterator[KafkaCluster]:
    """The session's real cluster, every node up before and after the test."""
    restore_every_node(real_kafka_session)
    yield real_kafka_session
    restore_every_node(real_kafka_session)


def restore_every_node(cluster: KafkaCluster) -> None:
    """Resume paused nodes and restart dead ones, then wait until all are in the cluster."""
    for node in cluster.members:
        if node.running():
            node.resume()
        else:
            node.start(cluster.classpath)
    cluster.wait_until_ready(node_ids=tuple(node.node_id for node in cluster.members))


@dataclass(frozen=True)
class SecureKafka:
    """The session's locked-down single-node cluster: SASL_SSL (SCRAM-SHA-512) and an authorizer.

    Attributes:
        cluster: The cluster; its PLAINTEXT listener is the tests' admin door (a super user).
        ca_file: The private CA that signed the broker's certificate.
        passwords: SCRAM user -> password (see :data:`SECURE_USERS`).
    """

    cluster: KafkaCluster
    ca_file: Path
    passwords: dict[str, str]

    @property
    def bootstrap_servers(self) -> str:
        """The SASL_SSL listener."""
        return self.cluster.secure_bootstrap_servers

    def client_properties(self, user: str) -> dict[str, str]:
        """librdkafka properties for ``user`` over SASL_SSL, password included (for test clients)."""
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": self.passwords[user],
            "ssl.ca.location": str(self.ca_file),
        }


# The SCRAM users of the secure cluster, and the topic prefix each may use (ACLs in secure_kafka).
SECURE_USERS: Final = {
    "pmx-connector": "granted",  # everything on topics prefixed "granted."
    "pmx-no-create": "nocreate",  # read, write and describe on "nocreate." topics, not create
    "pmx-no-write": "nowrite",  # read, describe and create on "nowrite." topics, not write
}


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """A single-node SASL_SSL cluster with the standard authorizer and the :data:`SECURE_USERS` ACLs."""
    require_real_kafka_tooling()
    root = tmp_path_factory.mktemp("secure-kafka")
    pki = make_pki(root / "pki")
    passwords = {user: f"scram-{secrets.token_hex(12)}" for user in SECURE_USERS}
    security = Security(keystore_pem=pki.server_keystore(root / "keystore.pem"), scram_users=passwords)
    cluster = KafkaCluster(root / "cluster", nodes=1, security=security)
    try:
        cluster.start()
    except ClusterError as exc:
        cluster.stop()
        pytest.fail(f"the secure real Kafka did not start: {exc}")
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        bindings = []
        grants = {
            "pmx-connector": [AclOperation.ALL],
            "pmx-no-create": [AclOperation.DESCRIBE, AclOperation.READ, AclOperation.WRITE],
            "pmx-no-write": [AclOperation.DESCRIBE, AclOperation.READ, AclOperation.CREATE],
        }
        for user, prefix in SECURE_USERS.items():
            principal = f"User:{user}"
            for operation in grants[user]:
                bindings.append(
                    AclBinding(
                        ResourceType.TOPIC, f"{prefix}.", ResourcePatternType.PREFIXED,
                        principal, "*", operation, AclPermissionType.ALLOW,
                    )
                )  # fmt: skip
            bindings.append(
                AclBinding(
                    ResourceType.GROUP, "*", ResourcePatternType.LITERAL,
                    principal, "*", AclOperation.READ, AclPermissionType.ALLOW,
                )
            )  # fmt: skip
            # Every record is in a transaction: the connector's transactional.id is
            # "<connector.name>.<hex>", granted by prefix as the README says.
            for operation in (AclOperation.WRITE, AclOperation.DESCRIBE):
                bindings.append(
                    AclBinding(
                        ResourceType.TRANSACTIONAL_ID, "pmx-connector.", ResourcePatternType.PREFIXED,
                        principal, "*", operation, AclPermissionType.ALLOW,
                    )
                )  # fmt: skip
        for future in admin.create_acls(bindings).values():
            future.result(timeout=30)
        yield SecureKafka(cluster, pki.ca, passwords)
    finally:
        cluster.stop()
