"""Write deploy/prometheus/alerts.yaml: the chart's alert rules for a Prometheus without the operator.

The rules are defined once, in helm/pmx-connector/templates/_alerts.tpl. This renders them with the
chart's default thresholds (job label "pmx-connector") through the real Helm engine and writes the
PrometheusRule's spec as a plain rule file; tests/unit/test_alert_rules.py fails when the file and
the chart disagree. Run it after changing the rules:

    .venv/bin/python scripts/render_alert_rules.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import helm_python as helm
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = REPO_ROOT / "helm" / "pmx-connector"
OUTPUT = REPO_ROOT / "deploy" / "prometheus" / "alerts.yaml"
HEADER = """\
# pmx-connector alert rules for a Prometheus without the operator (rule_files: [alerts.yaml]).
# GENERATED from helm/pmx-connector/templates/_alerts.tpl by scripts/render_alert_rules.py with the
# chart's default values (job="pmx-connector"); do not edit by hand. Runbooks: docs/operations.md.
"""


def main() -> int:
    with helm.Chart.load(str(CHART_DIR)) as chart:
        rendered = chart.render(
            {"prometheusRule": {"enabled": True}},
            name="pmx-connector",
            namespace="default",
            revision=1,
            is_install=True,
            is_upgrade=False,
        )
    rule = yaml.safe_load(rendered["pmx-connector/templates/prometheusrule.yaml"])
    OUTPUT.write_text(HEADER + yaml.safe_dump(rule["spec"], width=10_000, sort_keys=False))
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
