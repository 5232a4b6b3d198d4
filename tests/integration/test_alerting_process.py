"""The monitoring end to end, as processes: connector -> Prometheus with the chart's rules -> alert.

``dev-kafka``, ``simulator`` and ``run`` run as in test_run_process.py; a real Prometheus server
(the Debian binary that scripts/install-tools.sh unpacks) scrapes the connector every second on
loopback and evaluates the alert rules rendered from the chart, with a 4 s heartbeat-gap threshold
so the test is quick. Checked:

- every metric name the rules and the dashboard use is exported by the running connector (which
  runs Drop Copy beside the order stream: its metrics exist only then);
- the heartbeat-gap alert stays silent while heartbeats flow, and fires once the simulator stalls
  the stream (fault ``stall_s`` on its control endpoint).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy_fixtures import (
    alert_rules,
    alerts_of,
    dashboard,
    dashboard_targets,
    metric_names,
    required_tool,
    write_rules,
)
from tests.integration.test_run_process import TOPICS
from tests.process_stack import free_port, poll_http, start, stop, wait_for_file, write_connector_config

JOB = "pmx-connector"
HEARTBEAT_GAP_S = 4
STALL_S = 40
ALERT = "PmxConnectorHeartbeatGap"
DECLARED_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}

pytestmark = pytest.mark.slow


def prometheus_config(tmp: Path, connector_port: int) -> Path:
    rules = alert_rules({"alerts": {"heartbeatGap": {"thresholdSeconds": HEARTBEAT_GAP_S, "for": "0s"}}})
    write_rules(rules, tmp / "rules.yaml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "rules.yaml")],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{connector_port}"]}]}
        ],
    }
    path = tmp / "prometheus.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def connector_config(venue: dict[str, Any], kafka: dict[str, Any], tmp: Path, port: int) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "connector": {"name": "alerting-it", "heartbeat_interval_s": 0.5},
        # the simulator serves Drop Copy; the connector registers its metrics only then
        "venue": {"sources": ["order_stream", "drop_copy"]},
    }
    return write_connector_config(
        tmp / "config.yaml",
        venue,
        kafka["bootstrap_servers"],
        port,
        key_file=tmp / "key.pem",
        sections=sections,
    )


def start_prometheus(tmp: Path, connector_port: int, port: int) -> subprocess.Popen[bytes]:
    arguments = [
        required_tool("prometheus"),
        f"--config.file={prometheus_config(tmp, connector_port)}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",  # never the default 0.0.0.0:9090
    ]
    with (tmp / "prometheus.log").open("wb") as log:
        return subprocess.Popen(
            arguments, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(tmp)}
        )


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Kafka, the simulator, the connector and Prometheus, all started; their addresses."""
    required_tool("prometheus")
    tmp = tmp_path_factory.mktemp("alerting")
    topics = [arg for name, partitions in TOPICS.items() for arg in ("--topic", f"{name}:{partitions}")]
    simulator = [
        "simulator",
        "--ready-file",
        str(tmp / "venue.json"),
        "--client-key-out",
        str(tmp / "key.pem"),
    ]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            start(["dev-kafka", "--ready-file", str(tmp / "kafka.json"), *topics], tmp / "kafka.log")
        )
        processes.append(
            start([*simulator, "--rate", "20", "--heartbeat-interval", "0.5"], tmp / "venue.log")
        )
        kafka = wait_for_file(tmp / "kafka.json", processes[0])
        venue = wait_for_file(tmp / "venue.json", processes[1])
        port, prometheus_port = free_port(), free_port()
        config = connector_config(venue, kafka, tmp, port)
        processes.append(start(["--log-format", "json", "run", "--config", str(config)], tmp / "run.log"))
        processes.append(start_prometheus(tmp, port, prometheus_port))
        yield {
            "connector": f"http://127.0.0.1:{port}",
            "prometheus": f"http://127.0.0.1:{prometheus_port}",
            "control": venue["control_url"],
            "tmp": tmp,
        }
    finally:
        for process in reversed(processes):  # Prometheus, connector, simulator, Kafka
            stop(process)


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def alerts(prometheus: str, name: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{prometheus}/api/v1/alerts", timeout=5).json()
    return [alert for alert in answer["data"]["alerts"] if alert["labels"]["alertname"] == name]


def wait_for(condition: Any, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(0.25)


def exported_names(exposition: str) -> set[str]:
    """Every series name the exposition declares: sample names, plus each family's typed names."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in DECLARED_SUFFIXES.get(family.type, ()))
    return names


def test_every_metric_the_rules_and_the_dashboard_use_is_exported(monitored: dict[str, Any]) -> None:
    poll_http(f"{monitored['connector']}/readyz", lambda r: r.status_code == 200, timeout_s=60)
    exposition = requests.get(f"{monitored['connector']}/metrics", timeout=5).text
    exported = exported_names(exposition)
    used = {name for rule in alerts_of(alert_rules()) for name in metric_names(rule["expr"])}
    used |= {name for _, target in dashboard_targets(dashboard()) for name in metric_names(target["expr"])}
    assert len(used) > 15
    assert sorted(used - exported) == []


def test_a_venue_stall_fires_the_heartbeat_gap_alert(monitored: dict[str, Any]) -> None:
    prometheus = monitored["prometheus"]
    poll_http(f"{monitored['connector']}/readyz", lambda r: r.status_code == 200, timeout_s=60)
    wait_for(
        lambda: query(prometheus, f'pmx_connector_last_heartbeat_timestamp_seconds{{job="{JOB}"}} > 0'),
        "Prometheus scraping the connector's heartbeats",
        timeout_s=30,
    )
    assert [sample["value"][1] for sample in query(prometheus, f'up{{job="{JOB}"}}')] == ["1"]
    # While heartbeats flow, the rule is evaluated (health ok) and stays silent.
    quiet_until = time.monotonic() + 4
    while time.monotonic() < quiet_until:
        assert alerts(prometheus, ALERT) == [], "the heartbeat-gap alert fired before the stall"
        time.sleep(0.5)
    rules = requests.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"][0]["rules"]
    heartbeat_rule = next(rule for rule in rules if rule["name"] == ALERT)
    assert heartbeat_rule["health"] == "ok" and heartbeat_rule["state"] == "inactive"

    stall = requests.post(f"{monitored['control']}/faults", json={"stall_s": STALL_S}, timeout=5)
    assert stall.status_code == 200, stall.text
    stalled_at = time.monotonic()
    wait_for(
        lambda: any(a["state"] == "firing" for a in alerts(prometheus, ALERT)),
        "the heartbeat-gap alert firing",
        timeout_s=30,
    )
    firing = next(a for a in alerts(prometheus, ALERT) if a["state"] == "firing")
    assert time.monotonic() - stalled_at >= HEARTBEAT_GAP_S - 1
    assert firing["labels"]["job"] == JOB and firing["labels"]["severity"] == "critical"
    assert firing["annotations"]["runbook_url"].endswith("#pmxconnectorheartbeatgap")
    assert float(firing["value"]) > HEARTBEAT_GAP_S


def test_the_connector_logged_json_lines(monitored: dict[str, Any]) -> None:
    poll_http(f"{monitored['connector']}/readyz", lambda r: r.status_code == 200, timeout_s=60)
    lines = (monitored["tmp"] / "run.log").read_text().splitlines()
    documents = [json.loads(line) for line in lines if line.strip()]  # every line is one JSON object
    assert any(document["logger"].startswith("connector") for document in documents)
    assert all({"time", "level", "logger", "message"} <= set(document) for document in documents)
