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
echo "lowest allowed versions installed:"
"$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
  | grep -iE '^(grpcio|protobuf|confluent-kafka|pyjwt|cryptography|requests|fastavro|prometheus.client|pydantic|pyyaml|rich) '
# the tools `make tools` installed (promtool for the alert-rule tests)
PATH="$PWD/.tools/bin:$PATH" "$venv/bin/python" -m pytest tests/unit tests/component -q -p no:cacheprovider
