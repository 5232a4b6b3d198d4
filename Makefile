# pmx-connector: every developer and CI task is one target here.
#
#   make demo    run the embedded Kafka, the venue simulator and the connector, with a live view
#   make test    the whole test suite (what CI runs through .ci/run)
#   make check   ruff, ruff format --check, mypy --strict, import-linter
#   make bench   the performance benchmarks (not part of make test): the transcoder, the whole path on
#                dev-kafka (bench-results.json), then 10 failover trials of a hot standby on a real
#                three-node Kafka (failover-results.json; needs make tools)
#   make soak    SOAK_SCHEDULES (default 100,000) simulated fault schedules, the chaos scenario on the
#                hostile venue for SOAK_SECONDS (default 900) of order flow, then FUZZ_SECONDS
#                (default 600) of libFuzzer on the native transcoder (not part of make test; hours)
#   make protos  regenerate connector/_pb from protos/
#   make kafka   a real three-node Apache Kafka (KRaft) on loopback, until Ctrl-C (fresh data each time)
#   make lowest-deps  the unit and component tests on the lowest dependency versions pyproject.toml allows
#   make tools   the non-Python tools the tests need, into .tools/ (Prometheus; the Kafka broker via Maven)
#
# `make test` and `make demo` create .venv and install the project into it when needed; the
# install is keyed on a hash of pyproject.toml, so it is skipped when nothing changed. The install
# builds the native transcoder (native/, Rust, through setuptools-rust); it is rebuilt when its
# sources change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
TOOLS  := .tools

SOAK_SECONDS ?= 900
SOAK_SCHEDULES ?= 100000
FUZZ_SECONDS ?= 600
NATIVE_SOURCES := native/Cargo.toml native/Cargo.lock $(shell find native/core native/python -name '*.rs' -o -name Cargo.toml 2>/dev/null)
NATIVE := $(VENV)/.native-built

.PHONY: venv test check bench soak protos demo clean tools kafka lowest-deps

$(STAMP): pyproject.toml
	@scripts/ensure-venv.sh "$(PYTHON)" "$(VENV)"
	@echo "installing pmx-connector and its test dependencies into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@ $(NATIVE)

$(NATIVE): $(STAMP) $(NATIVE_SOURCES)
	@echo "building the native transcoder (connector._native) ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(STAMP) $(NATIVE)

tools: venv
	@scripts/install-tools.sh "$(TOOLS)"

test: venv tools
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python -m pytest

check: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: venv tools
	$(BIN)/python -m tests.perf.transcoder_bench
	$(BIN)/python -m tests.perf.bench
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python -m tests.perf.failover --trials 10
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/python -m tests.perf.outage

soak: venv
	$(BIN)/python -m tests.simulation --schedules $(SOAK_SCHEDULES)
	$(BIN)/python -m tests.chaos --duration $(SOAK_SECONDS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_CORPUS=$(CURDIR)/native/fuzz/corpus/transcode \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_transcoder_fuzz.py

protos: venv
	$(BIN)/python scripts/generate_protos.py

demo: venv
	$(BIN)/pmx-connector demo

lowest-deps:
	scripts/check-lowest-deps.sh "$(PYTHON)"

kafka: venv tools
	$(BIN)/python -m tests.kafka_cluster

clean:
	rm -rf $(VENV) .venv-lowest $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .hypothesis
