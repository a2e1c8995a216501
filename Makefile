# streamfit: two commands matter. `make demo` runs the main job; `make test` runs the whole suite.
# Both install everything they need into .venv/ (pinned by requirements.lock) on a fresh machine.
# `make check` is the inner loop: lint, types, the import contract and the unit tests, no services.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)

.PHONY: chaos cluster-chaos cluster-test check demo test install prereqs tools lock lint unit integration e2e stack-up stack-down stack-status bench docs clean

demo: install
	$(BIN)/streamfit stack up
	$(BIN)/streamfit db migrate
	$(BIN)/streamfit selfcheck
	$(BIN)/streamfit demo --from 2013-01-01 --weeks 3 --more-days 7

# The slowest tests stay visible (--durations). The cluster topology's scenarios run last, at
# their reduced size, each with its own time cap (docs/cluster.md).
test: install tools lint
	$(BIN)/pytest --durations=25

# The inner loop (no services): lint, types, the import contract, the unit tests.
check: install tools lint
	$(BIN)/pytest -q tests/unit

# docs/settings.md is generated from the settings (a unit test fails when it is stale).
docs: install
	$(BIN)/streamfit settings --markdown > docs/settings.md

install: prereqs $(STAMP)

$(STAMP):
	@rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "uv==$(UV_VERSION)"
	# exactly the locked versions, then streamfit itself without re-resolving. Byte-compiled at
	# install: with PYTHONDONTWRITEBYTECODE set (as here) every process would otherwise compile
	# pandas and scikit-learn from source, ~2.5 s per ingest worker, CLI call and Airflow task.
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $@

prereqs:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "streamfit needs Python >= 3.11 (set PYTHON=python3.11)")'
	@command -v java >/dev/null || { echo "JDK 17 is missing: apt-get install openjdk-17-jdk-headless"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven 3 is missing: apt-get install maven"; exit 1; }

# Tools besides Python packages, from Debian's packages: docker-compose 1.29 validates
# docker-compose.yaml without a Docker engine; redis-server is the Celery broker of the cluster
# topology (STREAMFIT_STACK_TOPOLOGY=cluster), which the test suite also runs; wrk loads the HTTP
# API in the benchmarks (the load must not come from Python on the same cores); headless Chromium
# renders the report in its screenshot test.
tools:
	@missing=""; command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# Re-pin after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra spark --python-version 3.11 -o requirements.lock

lint: $(STAMP)
	$(BIN)/ruff check streamfit ingest features training scoring app dags tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

e2e: install
	$(BIN)/pytest tests/e2e

# Fault-injection scenarios at full size (200k+ events, 30 s outages); `make test` runs them reduced.
chaos: install
	CHAOS_SIZE=full $(BIN)/pytest tests/chaos -m "not cluster"

# The cluster topology's fault scenarios: they stop the single-node stack and start the cluster.
# `cluster-test` at the reduced size (the part of `make test`), `cluster-chaos` at full size.
cluster-test: install tools
	$(BIN)/pytest tests/chaos/cluster --durations=10

cluster-chaos: install tools
	CHAOS_SIZE=full $(BIN)/pytest tests/chaos/cluster --durations=10

stack-up: install
	$(BIN)/streamfit stack up

stack-down:
	$(BIN)/streamfit stack down

stack-status:
	$(BIN)/streamfit stack status

# Benchmarks print figures measured side by side in one run (needs the stack: `make stack-up`).
bench: install tools
	$(BIN)/streamfit stack up
	$(BIN)/python bench/ingest.py --json bench/results/ingest.json
	$(BIN)/python bench/features.py --json bench/results/features.json
	$(BIN)/python bench/pipeline.py --json bench/results/pipeline.json
	$(BIN)/python bench/serving.py --json bench/results/serving.json
	$(BIN)/python bench/backtest.py --json bench/results/backtest.json
	$(BIN)/python bench/gate.py --json bench/results/gate.json
	$(BIN)/python bench/fit_threads.py --json bench/results/fit_threads.json
	$(BIN)/python bench/alerts.py --margin 1 --margin 3 --json bench/results/alerts.json
	$(BIN)/python bench/spark.py --json bench/results/spark.json
	$(BIN)/python bench/spark.py --part scaled --json bench/results/spark_scaled.json
	# restarts Kafka and Cassandra plain and over TLS in turn; starts again what ran before
	$(BIN)/python bench/tls.py --json bench/results/tls.json
	# last: it alternates the single-node and the cluster stacks, and leaves none running
	$(BIN)/python bench/cluster.py --json bench/results/cluster.json

clean:
	-$(BIN)/streamfit stack down
	rm -rf .streamfit $(VENV)
