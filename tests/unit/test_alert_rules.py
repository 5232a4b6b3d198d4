"""The alert rules: promtool checks and unit tests against what the chart ships, and their shape.

The rules are defined once (helm/pmx-connector/templates/_alerts.tpl); deploy/prometheus/alerts.yaml
is rendered from them (scripts/render_alert_rules.py), and a test here proves the two are the same.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy_fixtures import (
    OPERATIONS_DOC,
    PLAIN_RULES_FILE,
    RULES_TEST_FILE,
    alert_rules,
    alerts_of,
    required_tool,
    write_rules,
)

SEVERITIES = {"critical", "warning", "info"}
PAGING_GAP_REASONS = {"rest_exhausted", "beyond_retention", "dropcopy_resume_refused"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [required_tool("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_the_chart_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = write_rules(alert_rules(), tmp_path / "alerts.yaml")
    result = promtool("check", "rules", "--lint-fatal", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts_of(alert_rules()))} rules found" in result.stdout


def test_the_chart_rules_pass_the_promtool_unit_tests(tmp_path: Path) -> None:
    write_rules(alert_rules(), tmp_path / "alerts.yaml")
    shutil.copy(RULES_TEST_FILE, tmp_path / "alerts_test.yaml")
    result = promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_fail_when_a_threshold_moves(tmp_path: Path) -> None:
    """The promtool tests really pin the thresholds: doubling one makes them fail."""
    write_rules(
        alert_rules({"alerts": {"heartbeatGap": {"thresholdSeconds": 240}}}), tmp_path / "alerts.yaml"
    )
    shutil.copy(RULES_TEST_FILE, tmp_path / "alerts_test.yaml")
    result = promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "PmxConnectorHeartbeatGap" in result.stdout + result.stderr


def test_the_plain_rules_file_is_the_chart_rendering() -> None:
    plain = yaml.safe_load(PLAIN_RULES_FILE.read_text())
    assert plain == alert_rules(), "deploy/prometheus/alerts.yaml is stale: run scripts/render_alert_rules.py"


def test_every_alert_has_for_severity_summary_description_and_a_runbook_section() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", OPERATIONS_DOC.read_text(), flags=re.MULTILINE)
    }
    for rule in alerts_of(alert_rules()):
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        _, _, anchor = annotations["runbook_url"].partition("#")
        assert anchor == name.lower(), name
        assert anchor in anchors, f"docs/operations.md has no section {name}"


def test_only_execution_gaps_page() -> None:
    by_name = {rule["alert"]: rule for rule in alerts_of(alert_rules())}
    paging = by_name["PmxConnectorGapDetected"]
    assert paging["labels"]["severity"] == "critical"
    selectors = re.findall(r'reason=~"([^"]+)"', paging["expr"])
    assert selectors and all(set(selector.split("|")) == PAGING_GAP_REASONS for selector in selectors)
    informational = by_name["PmxConnectorCancelRejectsUnrecoverable"]
    assert informational["labels"]["severity"] == "info"
    assert 'reason="cancel_rejects_unrecoverable"' in informational["expr"]


def test_every_alert_has_a_firing_and_a_silent_promtool_case() -> None:
    cases: list[dict[str, Any]] = [
        case
        for test in yaml.safe_load(RULES_TEST_FILE.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in alerts_of(alert_rules()):
        name = rule["alert"]
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name} never expected to fire"
        assert any(not case.get("exp_alerts") for case in mine), f"{name} never expected to stay silent"


def test_the_job_label_and_thresholds_come_from_values() -> None:
    rules = alert_rules({"alerts": {"job": "pmx-a", "heartbeatGap": {"thresholdSeconds": 7, "for": "0s"}}})
    heartbeat = next(rule for rule in alerts_of(rules) if rule["alert"] == "PmxConnectorHeartbeatGap")
    assert "> 7 " in heartbeat["expr"] and heartbeat["for"] == "0s"
    for rule in alerts_of(rules):
        assert 'job="pmx-a"' in rule["expr"], rule["alert"]
        assert 'job="pmx-connector"' not in rule["expr"], rule["alert"]


def test_the_leader_alerts_take_their_for_from_values() -> None:
    rules = alert_rules({"alerts": {"noLeader": {"for": "7m"}, "twoLeaders": {"for": "3m"}}})
    by_name = {rule["alert"]: rule for rule in alerts_of(rules)}
    assert by_name["PmxConnectorNoLeader"]["for"] == "7m"
    assert "more than 7m" in by_name["PmxConnectorNoLeader"]["annotations"]["description"]
    assert by_name["PmxConnectorTwoLeaders"]["for"] == "3m"
    assert "more than 3m" in by_name["PmxConnectorTwoLeaders"]["annotations"]["description"]


def test_the_per_instance_stream_and_checkpoint_alerts_leave_standbys_out() -> None:
    """A standby opens no stream and writes no checkpoint; an instance without the metric still counts."""
    by_name = {rule["alert"]: rule for rule in alerts_of(alert_rules())}
    for name in ("PmxConnectorStreamDown", "PmxConnectorCheckpointStale", "PmxConnectorDropCopyDown"):
        assert by_name[name]["expr"].endswith(
            ' unless on (instance) pmx_connector_leader{job="pmx-connector"} == 0'
        ), name


def test_the_drop_copy_alerts_take_their_for_and_window_from_values() -> None:
    values = {"dropCopyDown": {"for": "20m"}, "dropCopyTokenRefused": {"window": "1h"}}
    rules = alert_rules({"alerts": values})
    by_name = {rule["alert"]: rule for rule in alerts_of(rules)}
    down = by_name["PmxConnectorDropCopyDown"]
    assert down["for"] == "20m" and "more than 20m" in down["annotations"]["description"]
    refused = by_name["PmxConnectorDropCopyTokenRefused"]
    assert "[1h]" in refused["expr"] and "offset 1h" in refused["expr"]
    assert "in the last 1h" in refused["annotations"]["description"]


def test_a_drop_copy_outage_or_token_refusal_does_not_page() -> None:
    """Nothing is lost while the token or the resume time is accepted; a refused time pages as a gap."""
    by_name = {rule["alert"]: rule for rule in alerts_of(alert_rules())}
    assert by_name["PmxConnectorDropCopyDown"]["labels"]["severity"] == "warning"
    refused = by_name["PmxConnectorDropCopyTokenRefused"]
    assert refused["labels"]["severity"] == "info"
    assert set(re.findall(r'resume=~?"([^"]+)"', refused["expr"])) == {"token"}
