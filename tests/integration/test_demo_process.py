"""``pmx-connector demo --duration 20`` runs the whole stack and verifies it: exit 0, missing = 0."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_reports_nothing_missing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "connector", "demo", "--duration", "20", "--rate", "100"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    row = re.search(
        r"│\s*([\d,]+)\s*│\s*([\d,]+)\s*│\s*([\d,]+)\s*│\s*([\d,]+)\s*│\s*$", result.stdout, re.MULTILINE
    )
    assert row, result.stdout
    produced, found, missing, duplicated = (int(group.replace(",", "")) for group in row.groups())
    assert produced > 1000
    assert (found, missing, duplicated) == (produced, 0, 0)
    assert "nothing missing" in result.stdout
