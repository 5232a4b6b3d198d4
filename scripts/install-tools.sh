#!/usr/bin/env bash
# Install the non-Python tools the test suite needs into a project-local folder (idempotent).
# Nothing is needed yet beyond the Python packages; later tools (promtool) are added here.
set -euo pipefail
tools="$1"
mkdir -p "$tools/bin"
