#!/usr/bin/env bash
# Install the non-Python tools the test suite needs into a project-local folder (idempotent).
#
# promtool and prometheus come from Debian's `prometheus` package, unpacked with dpkg-deb (no
# dependencies, no maintainer scripts, no services) and symlinked into TOOLS/bin, which
# `make test` puts first on PATH. Fast when already installed. Without apt (not Debian), it says
# so and leaves the tests to skip (they fail instead when CI is set).
set -euo pipefail
tools="$1"
mkdir -p "$tools/bin"
tools="$(cd "$tools" && pwd)"

if [ -x "$tools/bin/promtool" ] && [ -x "$tools/bin/prometheus" ] \
    && "$tools/bin/promtool" --version >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "warning: apt-get/dpkg-deb not found: install promtool and prometheus (2.x) on PATH yourself" >&2
  exit 0
fi

echo "installing promtool and prometheus (Debian package 'prometheus', unpacked) into $tools ..."
download="$(mktemp -d "$tools/download.XXXXXX")"
trap 'rm -rf "$download"' EXIT
if ! (cd "$download" && apt-get download -qq prometheus >/dev/null 2>&1); then
  # A fresh machine has no package lists yet.
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq >/dev/null
  else
    echo "error: 'apt-get download prometheus' failed; run 'apt-get update' as root, then retry" >&2
    exit 1
  fi
  (cd "$download" && apt-get download -qq prometheus >/dev/null)
fi
rm -rf "$tools/prometheus"
dpkg-deb -x "$download"/prometheus_*.deb "$tools/prometheus"
ln -sfn ../prometheus/usr/bin/promtool "$tools/bin/promtool"
ln -sfn ../prometheus/usr/bin/prometheus "$tools/bin/prometheus"
"$tools/bin/promtool" --version | head -n 1
