"""The Grafana dashboard the chart ships: its structure, that every query parses, and what it shows.

No Grafana validator runs offline, so the structure is checked by hand and every PromQL expression
is parsed by promtool (each wrapped as a recording rule, Grafana variables replaced).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.deploy_fixtures import (
    GRAFANA_VARIABLES,
    alert_rules,
    alerts_of,
    dashboard,
    dashboard_targets,
    metric_names,
    required_tool,
    write_rules,
)

GRID_COLUMNS = 24


def expressions() -> list[str]:
    return [target["expr"] for _, target in dashboard_targets(dashboard())]


def without_grafana_variables(expression: str) -> str:
    """Replace Grafana's variables (longest first: $__range before $__r...) with parseable PromQL."""
    for variable, replacement in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        expression = expression.replace(variable, replacement)
    return expression


def test_the_dashboard_is_well_formed() -> None:
    document = dashboard()
    assert document["uid"] and document["title"] and isinstance(document["schemaVersion"], int)
    panels = [inner for panel in document["panels"] for inner in [panel, *panel.get("panels", [])]]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        assert grid["h"] > 0 and grid["y"] >= 0, panel["title"]
        assert panel["title"], panel["id"]
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['title']} has no query"
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    for title, target in dashboard_targets(document):
        assert target["refId"] and target["expr"].strip(), title
    variables = {variable["name"]: variable for variable in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["job"]["type"] == "query"


def test_every_query_parses(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{number}", "expr": without_grafana_variables(expression)}
        for number, expression in enumerate(expressions())
    ]
    path = write_rules({"groups": [{"name": "dashboard", "rules": rules}]}, tmp_path / "dashboard.yaml")
    result = subprocess.run(
        [required_tool("promtool"), "check", "rules", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_a_panel_for_every_alert_signal() -> None:
    shown = set().union(*(metric_names(expression) for expression in expressions()))
    for rule in alerts_of(alert_rules()):
        missing = metric_names(rule["expr"]) - shown
        assert not missing, f"{rule['alert']} watches {missing}, which no panel shows"
        if re.search(r"\bup\{", rule["expr"]):
            assert any(re.search(r"\bup\{", expression) for expression in expressions()), rule["alert"]


def test_throughput_latency_percentiles_in_flight_backfill_and_reconnect_reasons_are_shown() -> None:
    joined = "\n".join(expressions())
    for metric in (
        "pmx_connector_events_received_total",
        "pmx_connector_records_produced_total",
        "pmx_connector_inflight_records",
        "pmx_connector_backfill_executions_total",
        "pmx_connector_backfill_requests_total",
    ):
        assert metric in joined, metric
    for quantile in ("0.5", "0.9", "0.99"):
        assert (
            f"histogram_quantile({quantile}, sum by (le) (rate(pmx_connector_event_to_ack_seconds_bucket"
            in joined
        )
    assert re.search(r"sum by \(reason\) \(increase\(pmx_connector_reconnects_total", joined)


def test_the_leader_of_each_instance_and_the_transaction_commit_rate_are_shown() -> None:
    targets = dashboard_targets(dashboard())
    leader = [target for _, target in targets if target["expr"] == 'pmx_connector_leader{job=~"$job"}']
    assert leader and leader[0]["legendFormat"] == "{{instance}}", "no panel shows which instance leads"
    assert any(
        re.search(r"\brate\(pmx_connector_transactions_committed_total\{", target["expr"])
        for _, target in targets
    ), "no panel shows the transaction commit rate"


def test_the_drop_copy_row_shows_connection_executions_reconnects_refusals_and_token_age() -> None:
    panels = dashboard()["panels"]
    rows = sorted((panel["gridPos"]["y"], panel["title"]) for panel in panels if panel["type"] == "row")
    top = next(y for y, title in rows if title == "Drop Copy")
    bottom = min((y for y, _ in rows if y > top), default=float("inf"))
    in_row = [
        target["expr"]
        for panel in panels
        if panel["type"] != "row" and top < panel["gridPos"]["y"] < bottom
        for target in panel["targets"]
    ]
    for shown in (
        r'^pmx_connector_dropcopy_connected\{job=~"\$job"\}$',
        r"\brate\(pmx_connector_dropcopy_executions_total\{",
        r"^sum by \(reason\) \(increase\(pmx_connector_dropcopy_reconnects_total\{",
        r"^sum by \(resume\) \(increase\(pmx_connector_dropcopy_resume_refusals_total\{",
        r"^time\(\) - pmx_connector_dropcopy_token_confirmed_timestamp_seconds\{",
    ):
        assert any(re.search(shown, expression) for expression in in_row), f"the Drop Copy row lacks {shown}"
    elsewhere = [e for e in expressions() if "pmx_connector_dropcopy_" in e and e not in in_row]
    assert elsewhere == [], "drop-copy panels belong in the Drop Copy row"
