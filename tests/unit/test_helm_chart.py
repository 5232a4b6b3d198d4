"""The Helm chart: strict lint, rendering, strict Kubernetes schemas, values schema, and what it promises.

Rendered with the real Helm engine (helm-python-sdk) and validated with kubernetes-validate in strict
mode; the prometheus-operator kinds are on an explicit allow-list (no schema ships for them) and are
checked semantically here and by tests/unit/test_alert_rules.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate.utils as kv
import pytest
import yaml
from pydantic import BaseModel, SecretStr

from connector.cli import build_parser
from connector.config import SECRET_KAFKA_PROPERTIES, ConnectorSettings, Settings, load_settings
from connector.engine.service import FINAL_FLUSH_S
from tests.deploy_fixtures import (
    CHART_DIR,
    DASHBOARD_FILE,
    all_documents,
    rendered_notes,
    the_one,
)

KUBE_VERSION = "1.30"
CRD_ALLOW_LIST = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
SASL_PASSWORD = "s3cr3t-not-in-any-configmap"

FULL: dict[str, Any] = {
    "image": {"repository": "registry.example.com/pmx-connector", "tag": "1.2.3"},
    "privateKey": {"existingSecret": "pmx-venue-key", "secretKey": "key.pem"},
    "config": {
        "venue": {"symbols": ["SIM-A-YES"], "accounts": ["firms/F/accounts/A1"]},
        "kafka": {
            "bootstrap_servers": "broker-1.example.com:9093",
            "properties": {
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": "pmx-connector",
                "ssl.ca.location": "/etc/kafka-ca/ca.pem",
            },
        },
        "schema_registry": {"url": "https://registry.example.com"},
        "connector": {"name": "pmx-a"},
    },
    "kafkaSecretProperties": {"sasl.password": {"secretName": "kafka-credentials", "key": "password"}},
    "schemaRegistryBasicAuth": {"secretName": "registry-credentials", "key": "user-info"},
    "extraVolumes": [{"name": "kafka-ca", "configMap": {"name": "kafka-ca"}}],
    "extraVolumeMounts": [{"name": "kafka-ca", "mountPath": "/etc/kafka-ca", "readOnly": True}],
    "extraEnv": [{"name": "PMX_CONNECTOR_VENUE__HEARTBEAT_TIMEOUT_S", "value": "120"}],
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "grafanaDashboard": {"labels": {"team": "trading"}, "annotations": {"grafana_folder": "Trading"}},
    "networkPolicy": {
        "enabled": True,
        "ingressFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
        "egress": {
            "venue": {"ports": [443]},
            "kafka": {"ports": [9093], "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]},
            "schemaRegistry": {"ports": [443, 8081]},
            "dns": {"ports": [53]},
        },
    },
}
WITH_PEM: dict[str, Any] = {
    "privateKey": {"pem": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"}
}
HOT_STANDBY: dict[str, Any] = {**FULL, "replicas": 2}
DROP_COPY_VENUE: dict[str, Any] = {"sources": ["order_stream", "drop_copy"], "drop_copy_firms": ["firms/F"]}
DROP_COPY: dict[str, Any] = {
    **HOT_STANDBY,
    "config": {**FULL["config"], "venue": {**FULL["config"]["venue"], **DROP_COPY_VENUE}},
}
VALUE_SETS = {
    "defaults": {}, "full": FULL, "pem": WITH_PEM, "hot-standby": HOT_STANDBY, "drop-copy": DROP_COPY,
}  # fmt: skip


def deployment(values: dict[str, Any]) -> dict[str, Any]:
    return the_one(all_documents(values), "Deployment")


def container(values: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment(values)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def config_map(values: dict[str, Any]) -> dict[str, Any]:
    documents = [d for d in all_documents(values) if d["kind"] == "ConfigMap" and "config.yaml" in d["data"]]
    assert len(documents) == 1
    return documents[0]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_chart_lints_strictly(name: str) -> None:
    result = helm.lint(str(CHART_DIR), VALUE_SETS[name], strict=True, kube_version="v1.30.0")
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_object_passes_strict_kubernetes_validation(name: str) -> None:
    problems = []
    for document in all_documents(VALUE_SETS[name]):
        identity = f"{document['kind']}/{document['metadata']['name']}"
        try:
            kv.validate(document, KUBE_VERSION, strict=True)
        except kv.SchemaNotFoundError:
            if (document["apiVersion"], document["kind"]) not in CRD_ALLOW_LIST:
                problems.append(f"{identity}: no schema for {document['apiVersion']}")
        except kv.ValidationError as exc:
            problems.append(f"{identity}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert problems == []


def test_the_objects_each_value_set_renders() -> None:
    def kinds(values: dict[str, Any]) -> list[str]:
        return sorted(document["kind"] for document in all_documents(values))

    assert kinds({}) == ["ConfigMap", "ConfigMap", "Deployment", "Service", "ServiceAccount"]
    assert kinds(FULL) == [
        "ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PrometheusRule", "Service",
        "ServiceAccount", "ServiceMonitor",
    ]  # fmt: skip
    assert kinds(WITH_PEM).count("Secret") == 1
    for values in (value_set for value_set in VALUE_SETS.values() if value_set.get("replicas", 1) == 1):
        assert "PodDisruptionBudget" not in kinds(values)  # a singleton's PDB would block node drains
    assert kinds(HOT_STANDBY) == sorted([*kinds(FULL), "PodDisruptionBudget"])


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": 2}, "additional properties 'replicaCount' not allowed"),
        ({"replicas": 0}, "/replicas"),
        ({"replicas": "2"}, "/replicas"),
        ({"config": {"venue": {"grpc_targett": "x:1"}}}, "additional properties 'grpc_targett' not allowed"),
        ({"config": {"venue": {"sources": []}}}, "'/config/venue/sources': minItems: got 0, want 1"),
        ({"config": {"venue": {"sources": ["fix"]}}}, "'/config/venue/sources/0': value must be one of"),
        ({"config": {"venue": {"sources": ["drop_copy"] * 2}}}, "'/config/venue/sources': items at 0 and 1"),
        ({"config": {"venue": {"drop_copy_firms": [""]}}}, "'/config/venue/drop_copy_firms/0': minLength"),
        (
            {"config": {"kafka": {"properties": {"sasl.password": "x"}}}},
            "invalid propertyName 'sasl.password'",
        ),
        (
            {"config": {"schema_registry": {"basic_auth_user_info": "u:p"}}},
            "'basic_auth_user_info' not allowed",
        ),
        ({"config": {"auth": {"private_key_file": "/k.pem"}}}, "'private_key_file' not allowed"),
        ({"logFormat": "xml"}, "/logFormat"),
        ({"terminationGracePeriodSeconds": 10}, "minimum: got 10, want 30"),
        ({"alerts": {"heartbeatGap": {"for": "one minute"}}}, "/alerts/heartbeatGap/for"),
        ({"alerts": {"noLeader": {"for": "two minutes"}}}, "/alerts/noLeader/for"),
        ({"alerts": {"twoLeaders": {"threshold": 2}}}, "additional properties 'threshold' not allowed"),
        ({"alerts": {"dropCopyDown": {"for": "five minutes"}}}, "/alerts/dropCopyDown/for"),
        ({"alerts": {"dropCopyTokenRefused": {"for": "5m"}}}, "additional properties 'for' not allowed"),
        ({"serviceMonitor": {"enabled": "yes"}}, "/serviceMonitor/enabled"),
        ({"kafkaSecretProperties": {"sasl.password": {"secretName": "s"}}}, "missing property 'key'"),
    ],
)
def test_values_outside_the_schema_are_rejected(values: dict[str, Any], complaint: str) -> None:
    with helm.Chart.load(str(CHART_DIR)) as chart, pytest.raises(helm.HelmValuesError) as raised:
        chart.render(
            values, name="pmx-connector", namespace="t", revision=1, is_install=True, is_upgrade=False
        )
    assert complaint in str(raised.value)


def test_a_key_from_both_an_existing_secret_and_pem_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match="existingSecret or pem, not both"):
        all_documents({"privateKey": {"existingSecret": "k", "pem": "x"}})


def test_the_schema_forbids_exactly_the_connectors_secret_kafka_properties() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    properties = schema["properties"]["config"]["properties"]["kafka"]["properties"]["properties"]
    assert set(properties["propertyNames"]["not"]["enum"]) == SECRET_KAFKA_PROPERTIES


def test_the_config_schema_matches_the_connectors_settings() -> None:
    """Every config key the schema allows exists in connector/config.py; only chart-set keys are absent."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())["properties"]["config"]
    chart_owned = {"auth.private_key_file", "schema_registry.basic_auth_user_info", "http"}

    def compare(node: dict[str, Any], model: type[BaseModel], prefix: str) -> None:
        allowed = set(node["properties"])
        fields = model.model_fields
        for key in sorted(set(fields) - allowed):
            assert f"{prefix}{key}" in chart_owned, f"the chart schema lacks config key {prefix}{key}"
        for key in sorted(allowed):
            assert key in fields, f"the chart schema allows {prefix}{key}, which the connector does not know"
            annotation = fields[key].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                compare(node["properties"][key], annotation, f"{prefix}{key}.")

    compare(schema, Settings, "")


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_rendered_config_file_is_accepted_by_the_connector(name: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(mounted_here(config_map(VALUE_SETS[name])["data"]["config.yaml"], tmp_path))
    settings = load_settings(path, environ={})
    mounts = {m["name"]: m["mountPath"] for m in container(VALUE_SETS[name])["volumeMounts"]}
    assert settings.auth.private_key_file.parent == Path(mounts["private-key"])
    assert settings.http.listen == "0.0.0.0:9400"


def test_the_venue_sources_and_drop_copy_firms_are_rendered_into_the_config_file() -> None:
    defaults = yaml.safe_load(config_map({})["data"]["config.yaml"])["venue"]
    assert defaults["sources"] == ["order_stream"] and defaults["drop_copy_firms"] == []
    venue = yaml.safe_load(config_map(DROP_COPY)["data"]["config.yaml"])["venue"]
    assert venue["sources"] == ["order_stream", "drop_copy"]
    assert venue["drop_copy_firms"] == ["firms/F"]
    assert venue["symbols"] == ["SIM-A-YES"]  # the other venue keys stay as they were


def test_the_connector_reads_the_drop_copy_settings_the_chart_renders() -> None:
    venue = connector_settings(DROP_COPY).venue
    # getattr: the fields are the dropcopy branch's (a str or an enum with a value per source)
    sources = [getattr(source, "value", source) for source in getattr(venue, "sources", ())]
    assert sources == ["order_stream", "drop_copy"]
    assert list(getattr(venue, "drop_copy_firms", ())) == ["firms/F"]
    # one drop-copy stream per firm and release: two replicas run it only on the elected leader
    assert connector_settings(DROP_COPY).connector.leader_election is True


def mounted_here(config_text: str, tmp_path: Path) -> str:
    """The config with the pod's mounted CA file stood in for by a local one (settings check it exists)."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return config_text.replace("/etc/kafka-ca/ca.pem", str(ca))


def test_secrets_come_from_secrets_never_from_the_config_map(tmp_path: Path) -> None:
    rendered = yaml.safe_dump_all(all_documents(FULL))
    assert "sasl.password" not in config_map(FULL)["data"]["config.yaml"]
    env = {item["name"]: item for item in container(FULL)["env"]}
    password = env["PMX_CONNECTOR_KAFKA__PROPERTIES__SASL.PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "kafka-credentials", "key": "password"}
    registry = env["PMX_CONNECTOR_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO"]
    assert registry["valueFrom"]["secretKeyRef"] == {"name": "registry-credentials", "key": "user-info"}
    # The connector maps that variable name onto the librdkafka property, held as a secret.
    path = tmp_path / "config.yaml"
    path.write_text(mounted_here(config_map(FULL)["data"]["config.yaml"], tmp_path))
    settings = load_settings(path, environ={"PMX_CONNECTOR_KAFKA__PROPERTIES__SASL.PASSWORD": SASL_PASSWORD})
    secret = settings.kafka.properties["sasl.password"]
    assert isinstance(secret, SecretStr) and secret.get_secret_value() == SASL_PASSWORD
    assert SASL_PASSWORD not in rendered
    assert all(SASL_PASSWORD not in argument for argument in container(FULL)["args"])


def test_the_private_key_comes_from_the_existing_secret_or_the_charts_own() -> None:
    volumes = {v["name"]: v for v in deployment(FULL)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["private-key"]["secret"]["secretName"] == "pmx-venue-key"
    assert volumes["private-key"]["secret"]["items"] == [{"key": "key.pem", "path": "key.pem"}]
    secret = the_one(all_documents(WITH_PEM), "Secret")
    volumes = {v["name"]: v for v in deployment(WITH_PEM)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["private-key"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert set(secret["data"]) == {"private-key.pem"}


def test_without_a_key_source_the_notes_say_how_to_create_the_secret() -> None:
    assert "kubectl -n trading create secret generic pmx-connector-key" in rendered_notes()
    assert "create secret" not in rendered_notes(FULL)


def test_a_singleton_replaced_with_recreate() -> None:
    spec = deployment(FULL)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert "affinity" not in spec["template"]["spec"]
    assert connector_settings(FULL).connector.leader_election is False


def connector_settings(values: dict[str, Any]) -> Settings:
    """The settings the connector reads from the rendered ConfigMap."""
    with TemporaryDirectory() as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(mounted_here(config_map(values)["data"]["config.yaml"], Path(directory)))
        return load_settings(path, environ={})


def test_two_replicas_elect_a_leader_and_roll_one_pod_at_a_time() -> None:
    spec = deployment(HOT_STANDBY)["spec"]
    assert spec["replicas"] == 2
    # A new pod joins (as a standby) before an old one goes: a warm standby whenever the leader goes.
    rolling = {"maxSurge": 1, "maxUnavailable": 0}
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": rolling}
    assert connector_settings(HOT_STANDBY).connector.leader_election is True
    assert connector_settings({"replicas": 3}).connector.leader_election is True
    explicit = {"replicas": 2, "config": {"connector": {"leader_election": True}}}
    assert connector_settings(explicit).connector.leader_election is True


def test_two_replicas_without_the_leader_election_are_refused() -> None:
    refused = {"replicas": 2, "config": {"connector": {"leader_election": False}}}
    with pytest.raises(helm.HelmRenderError, match=r"replicas: 2 needs config\.connector\.leader_election"):
        all_documents(refused)
    singleton = {"config": {"connector": {"leader_election": False}}}
    assert connector_settings(singleton).connector.leader_election is False


def test_the_disruption_budget_lets_a_drain_evict_one_pod_at_a_time() -> None:
    documents = all_documents(HOT_STANDBY)
    budget = the_one(documents, "PodDisruptionBudget")["spec"]
    pod_labels = the_one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    # maxUnavailable 1 of 2: a drain evicts one pod (a takeover at most), never both; minAvailable 2
    # would block every drain.
    assert budget["maxUnavailable"] == 1
    assert "minAvailable" not in budget
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_the_replicas_prefer_different_nodes_unless_the_user_sets_an_affinity() -> None:
    pod = deployment(HOT_STANDBY)["spec"]["template"]
    preferred = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert len(preferred) == 1
    term = preferred[0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in pod["spec"]["affinity"]["podAntiAffinity"]
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    assert deployment({**HOT_STANDBY, "affinity": own})["spec"]["template"]["spec"]["affinity"] == own


def test_the_hot_standby_needs_no_kubernetes_api_access() -> None:
    """The election runs through Kafka (no Kubernetes Lease): no RBAC objects, no service-account token."""
    kinds = {document["kind"] for document in all_documents(HOT_STANDBY)}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    assert deployment(HOT_STANDBY)["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_the_notes_say_which_mode_runs() -> None:
    assert "one replica, Recreate" in rendered_notes()
    assert "2 replicas, leader election through Kafka" in rendered_notes({"replicas": 2})


def test_the_pod_runs_non_root_read_only_without_capabilities() -> None:
    pod = deployment({})["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = container({})["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert "limits" in container({})["resources"] and "requests" in container({})["resources"]


def test_the_probes_use_the_health_endpoints_on_the_http_port() -> None:
    spec = container({})
    assert spec["ports"] == [{"name": "http", "containerPort": 9400, "protocol": "TCP"}]
    assert spec["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_the_grace_period_covers_the_shutdown_flush() -> None:
    flush_s = ConnectorSettings.model_fields["flush_timeout_s"].default
    assert isinstance(flush_s, float)
    grace = deployment({})["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > flush_s + FINAL_FLUSH_S


def test_a_grace_period_shorter_than_the_configured_flush_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"must exceed config\.connector\.flush_timeout_s"):
        all_documents({"config": {"connector": {"flush_timeout_s": 60}}})
    assert deployment({"config": {"connector": {"flush_timeout_s": 60}}, "terminationGracePeriodSeconds": 90})


def test_the_container_runs_the_run_command_with_the_mounted_config() -> None:
    spec = container(FULL)
    args = build_parser("run").parse_args(spec["args"])
    assert args.command == "run" and args.log_format == "json"
    mounts = {m["name"]: m["mountPath"] for m in spec["volumeMounts"]}
    assert args.config == Path(mounts["config"]) / "config.yaml"
    assert spec["image"] == "registry.example.com/pmx-connector:1.2.3"
    assert (
        container({})["image"]
        == f"pmx-connector:{yaml.safe_load((CHART_DIR / 'Chart.yaml').read_text())['appVersion']}"
    )


def test_the_config_checksum_follows_the_config() -> None:
    def checksum(values: dict[str, Any]) -> str:
        annotation: str = deployment(values)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return annotation

    base = checksum({})
    assert len(base) == 64
    assert checksum({"config": {"venue": {"symbols": ["SIM-A-YES"]}}}) != base
    assert checksum({"config": {"kafka": {"properties": {"linger.ms": 10}}}}) != base
    assert checksum({"resources": {"limits": {"memory": "1Gi"}}}) == base
    assert checksum({}) == base


def test_the_service_monitor_selects_the_service_and_its_port() -> None:
    documents = all_documents(FULL)
    service, monitor = the_one(documents, "Service"), the_one(documents, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert the_one(documents, "PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert service["spec"]["publishNotReadyAddresses"] is True  # scraped while not ready


def test_the_dashboard_config_map_carries_the_sidecar_label_and_the_dashboard() -> None:
    documents = [
        d for d in all_documents(FULL) if d["kind"] == "ConfigMap" and "config.yaml" not in d["data"]
    ]
    assert len(documents) == 1
    labels = documents[0]["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "1" and labels["team"] == "trading"
    assert documents[0]["metadata"]["annotations"] == {"grafana_folder": "Trading"}
    assert json.loads(documents[0]["data"]["pmx-connector.json"]) == json.loads(DASHBOARD_FILE.read_text())
    without = [d for d in all_documents({"grafanaDashboard": {"enabled": False}}) if d["kind"] == "ConfigMap"]
    assert [d["metadata"]["name"] for d in without] == ["pmx-connector"]


def test_the_network_policy_allows_the_http_port_in_and_venue_kafka_registry_dns_out() -> None:
    policy = the_one(all_documents(FULL), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert policy["ingress"][0]["from"] == FULL["networkPolicy"]["ingressFrom"]
    egress = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert {(443, "TCP"), (9093, "TCP"), (8081, "TCP"), (53, "UDP"), (53, "TCP")} <= egress
    kafka = next(rule for rule in policy["egress"] if rule["ports"] == [{"port": 9093, "protocol": "TCP"}])
    assert kafka["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]


def test_the_values_schema_is_a_valid_draft_7_schema() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART_DIR / "values.yaml").read_text()))
