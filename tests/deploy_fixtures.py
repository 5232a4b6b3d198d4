"""Helpers for the deployment tests: render the Helm chart, find promtool/prometheus, read PromQL.

- :func:`render_chart` renders ``helm/pmx-connector`` with the real Helm engine (helm-python-sdk)
  and parses every YAML document, which ``render`` itself does not do.
- :func:`alert_rules` is the PrometheusRule's ``spec`` (a Prometheus rule-file document).
- :func:`required_tool` finds a binary on PATH (``make test`` puts ``.tools/bin`` first): a missing
  one skips the test on a developer machine and **fails** it when ``CI`` is set.
- :func:`metric_names` lists the ``pmx_connector_*`` metric names a PromQL expression uses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Final

import helm_python as helm
import pytest
import yaml

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
CHART_DIR: Final = REPO_ROOT / "helm" / "pmx-connector"
DASHBOARD_FILE: Final = CHART_DIR / "dashboards" / "pmx-connector.json"
PLAIN_RULES_FILE: Final = REPO_ROOT / "deploy" / "prometheus" / "alerts.yaml"
RULES_TEST_FILE: Final = REPO_ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
OPERATIONS_DOC: Final = REPO_ROOT / "docs" / "operations.md"
RELEASE: Final = "pmx-connector"
NAMESPACE: Final = "trading"
# Grafana variables replaced by something PromQL parses, for the promtool parse check.
GRAFANA_VARIABLES: Final = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$job": "job"}
_METRIC_NAME: Final = re.compile(r"\b(pmx_connector_[a-z0-9_]+)\b")


def render_chart(
    values: dict[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, list[dict[str, Any]]]:
    """Render the chart: template path (``pmx-connector/templates/x.yaml``) -> its YAML documents."""
    with helm.Chart.load(str(CHART_DIR)) as chart:
        rendered = chart.render(
            values or {}, name=release, namespace=namespace, revision=1, is_install=True, is_upgrade=False
        )
    documents: dict[str, list[dict[str, Any]]] = {}
    for path, text in rendered.items():
        if path.endswith((".yaml", ".yml")) and text.strip():
            documents[path] = [document for document in yaml.safe_load_all(text) if document]
    return documents


def rendered_notes(values: dict[str, Any] | None = None) -> str:
    """The rendered NOTES.txt."""
    with helm.Chart.load(str(CHART_DIR)) as chart:
        rendered = chart.render(
            values or {}, name=RELEASE, namespace=NAMESPACE, revision=1, is_install=True, is_upgrade=False
        )
    notes: str = rendered[f"{RELEASE}/templates/NOTES.txt"]
    return notes


def all_documents(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every rendered Kubernetes object."""
    return [document for documents in render_chart(values).values() for document in documents]


def the_one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of ``kind`` (fails the test when there is not exactly one)."""
    found = [document for document in documents if document["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def alert_rules(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``spec`` of the chart's PrometheusRule (enabled), i.e. a Prometheus rule-file document."""
    merged = {**(values or {}), "prometheusRule": {"enabled": True}}
    rule = the_one(all_documents(merged), "PrometheusRule")
    spec: dict[str, Any] = rule["spec"]
    return spec


def write_rules(spec: dict[str, Any], path: Path) -> Path:
    """Write a rule-file document as YAML (wide lines, so expressions stay on one line)."""
    path.write_text(yaml.safe_dump(spec, width=10_000, sort_keys=False))
    return path


def alerts_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every alerting rule of a rule-file document."""
    return [rule for group in spec["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard the chart ships."""
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def dashboard_targets(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query target of every panel, rows included."""
    found = []
    for panel in document["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found.extend((inner["title"], target) for target in inner.get("targets", []))
    return found


def metric_names(expression: str) -> set[str]:
    """The connector's metric names an expression uses (``pmx_connector_*``)."""
    return set(_METRIC_NAME.findall(expression))


def required_tool(name: str) -> str:
    """The path of ``name`` on PATH; skip without it, but fail when ``CI`` is set."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not on PATH (make test installs it into .tools/bin: scripts/install-tools.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
