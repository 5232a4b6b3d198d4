"""The single-threaded example in docs/simulator.md runs as written (so the documented API stays true)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "simulator.md"


def test_the_pure_components_example_runs() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Pure components for single-threaded simulations") :]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("```\n", start)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), {})  # noqa: S102 - our own documentation
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith("snapshot")
    assert any(line.startswith("update") for line in lines)
    assert lines[-1].startswith("200 ")
