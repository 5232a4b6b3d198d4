#!/usr/bin/env bash
# Install the non-Python tools the test suite needs into a project-local folder (idempotent).
#
# - promtool and prometheus come from Debian's `prometheus` package, unpacked with dpkg-deb (no
#   dependencies, no maintainer scripts, no services) and symlinked into TOOLS/bin, which
#   `make test` puts first on PATH. Without apt (not Debian), it says so and leaves the tests to
#   skip (they fail instead when CI is set).
# - the Apache Kafka broker (org.apache.kafka:kafka_2.13 and its runtime dependencies, the version
#   in scripts/kafka-broker.pom.xml) comes from Maven Central with Maven into TOOLS/kafka/libs
#   (Maven's own cache in TOOLS/m2); tests/kafka_cluster.py runs it with the machine's Java.
#   Without mvn it says so, and the real-Kafka tests skip (they fail instead when CI is set).
# - Apicurio Registry (io.apicurio:apicurio-registry-app, its "-all" distribution: a Quarkus runner
#   jar and its libs, in-memory storage, the Confluent-compatible API under /apis/ccompat/v7), from
#   Maven Central with Maven into TOOLS/apicurio; tests/registry_fixtures.py runs it with Java.
#   2.6.x: the 3.x line needs Java 21, the machines have 17.
# Each part is skipped when already installed.
set -euo pipefail
tools="$1"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$tools/bin"
tools="$(cd "$tools" && pwd)"

install_prometheus() {
  if [ -x "$tools/bin/promtool" ] && [ -x "$tools/bin/prometheus" ] \
      && "$tools/bin/promtool" --version >/dev/null 2>&1; then
    return 0
  fi
  if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    echo "warning: apt-get/dpkg-deb not found: install promtool and prometheus (2.x) on PATH yourself" >&2
    return 0
  fi
  echo "installing promtool and prometheus (Debian package 'prometheus', unpacked) into $tools ..."
  local download
  download="$(mktemp -d "$tools/download.XXXXXX")"
  if ! (cd "$download" && apt-get download -qq prometheus >/dev/null 2>&1); then
    # A fresh machine has no package lists yet.
    if [ "$(id -u)" = "0" ]; then
      apt-get update -qq >/dev/null
    else
      echo "error: 'apt-get download prometheus' failed; run 'apt-get update' as root, then retry" >&2
      rm -rf "$download"
      return 1
    fi
    (cd "$download" && apt-get download -qq prometheus >/dev/null)
  fi
  rm -rf "$tools/prometheus"
  dpkg-deb -x "$download"/prometheus_*.deb "$tools/prometheus"
  rm -rf "$download"
  ln -sfn ../prometheus/usr/bin/promtool "$tools/bin/promtool"
  ln -sfn ../prometheus/usr/bin/prometheus "$tools/bin/prometheus"
  "$tools/bin/promtool" --version | head -n 1
}

install_kafka() {
  local pom="$here/kafka-broker.pom.xml" version
  version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
  if [ -f "$tools/kafka/libs/kafka_2.13-$version.jar" ]; then
    return 0
  fi
  if ! command -v mvn >/dev/null; then
    echo "warning: mvn not found: the real-Kafka tests cannot run (install Maven and a JDK 17+)" >&2
    return 0
  fi
  echo "fetching the Apache Kafka broker $version (kafka_2.13 and its dependencies) with Maven into $tools/kafka ..."
  local staging="$tools/kafka/libs.partial"
  rm -rf "$staging"
  mkdir -p "$tools/kafka"
  mvn -B -q -f "$pom" -Dmaven.repo.local="$tools/m2" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$staging"
  rm -rf "$tools/kafka/libs"
  mv "$staging" "$tools/kafka/libs"
  echo "kafka $version: $(ls "$tools/kafka/libs" | wc -l) jars"
}

APICURIO_VERSION=2.6.13.Final

install_apicurio() {
  local jar="$tools/apicurio/apicurio-registry-app-$APICURIO_VERSION-runner.jar"
  if [ -f "$jar" ]; then
    return 0
  fi
  if ! command -v mvn >/dev/null; then
    echo "warning: mvn not found: the real Schema Registry tests cannot run (install Maven and a JDK 17+)" >&2
    return 0
  fi
  echo "fetching Apicurio Registry $APICURIO_VERSION (about 140 MB) with Maven into $tools/apicurio ..."
  local staging="$tools/apicurio.partial"
  rm -rf "$staging"
  mkdir -p "$staging/download" "$staging/app"
  mvn -B -q -f "$here/kafka-broker.pom.xml" -Dmaven.repo.local="$tools/m2" dependency:copy \
    -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
    -DoutputDirectory="$staging/download"
  tar -xzf "$staging/download"/apicurio-registry-app-*-all.tar.gz -C "$staging/app"
  rm -rf "$tools/apicurio" "$tools/m2/io/apicurio"  # the archive is not needed once unpacked
  mv "$staging/app" "$tools/apicurio"
  rm -rf "$staging"
  echo "apicurio $APICURIO_VERSION: $(ls "$tools/apicurio/lib" | wc -l) jars"
}

install_prometheus
install_kafka
install_apicurio
