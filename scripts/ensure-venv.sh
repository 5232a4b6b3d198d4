#!/usr/bin/env bash
# Create the project's virtual environment if it is missing. On a fresh Debian machine the
# interpreter may lack the venv module (package python3-venv): install it when running as root.
set -euo pipefail
python="$1"
venv="$2"
[ -x "$venv/bin/python" ] && exit 0
if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "installing python3-venv (apt-get) ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "error: '$python -m venv' is not available; install the python3-venv package" >&2
    exit 1
  fi
fi
echo "creating $venv ..."
"$python" -m venv "$venv"
