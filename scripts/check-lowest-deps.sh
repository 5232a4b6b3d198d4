#!/usr/bin/env bash
# Install the LOWEST versions pyproject.toml allows for the runtime dependencies into .venv-lowest
# (uv's --resolution lowest-direct), then run the unit and component tests there: the declared
# lower bounds are true only if this passes. `make lowest-deps`; not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-python3}"
venv=.venv-lowest
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check uv
# lowest-direct: each dependency pyproject.toml names at its lowest allowed version; theirs as resolved.
"$venv/bin/uv" pip install --quiet --python "$venv/bin/python" --resolution lowest-direct -e '.[test]'
# Every runtime dependency must now be at exactly its declared lower bound (else the bound is not
# what gets tested: something else forces a higher version, and the bound should say so).
"$venv/bin/python" - <<'PY'
import re, sys, tomllib
from importlib.metadata import version
from packaging.version import Version
declared = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
wrong = []
for requirement in declared:
    match = re.match(r"([A-Za-z0-9_.-]+)(\[[^]]*\])?>=([0-9][^,;\s]*)", requirement)
    if match is None:
        continue
    name, lowest = match.group(1), match.group(3)
    installed = version(name)
    print(f"  {name:<20} lower bound {lowest:<10} installed {installed}")
    if Version(installed) != Version(lowest):
        wrong.append(f"{name}: declared >={lowest}, but {installed} was installed")
if wrong:
    sys.exit("lower bounds that cannot be installed as declared:\n  " + "\n  ".join(wrong))
PY
# the tools `make tools` installed (promtool for the alert-rule tests)
PATH="$PWD/.tools/bin:$PATH" "$venv/bin/python" -m pytest tests/unit tests/component -q -p no:cacheprovider
