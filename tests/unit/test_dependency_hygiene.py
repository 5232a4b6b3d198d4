"""The package uses its dependencies' public API only: no import of a private (underscored) module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "connector"
OWN_PRIVATE = ("connector._pb",)  # our own generated code


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_no_private_module_of_a_dependency_is_imported() -> None:
    sources = [path for path in PACKAGE.rglob("*.py") if "_pb" not in path.parts]
    assert len(sources) > 30
    private = [
        f"{path.relative_to(PACKAGE.parent)}: {module}"
        for path in sources
        for module in imported_modules(path)
        if any(part.startswith("_") and part != "__future__" for part in module.split("."))
        and not module.startswith(OWN_PRIVATE)
    ]
    assert private == []
