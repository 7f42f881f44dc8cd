# The two commands: `make demo` (set up, run the loop) and `make test` (set up, pass the tests).
SHELL := bash
PYTHON ?= python3
UV_VERSION ?= 0.13.9
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")

# Where a local copy of the dataset sits beside the project (as on our CI machines), use it;
# otherwise the data step finds data/bank-full.csv or downloads it.
SHARED_CSV := $(wildcard $(CURDIR)/../shared/data/bank-marketing/bank-full.csv)
ifneq ($(SHARED_CSV),)
MLOPS_DATASET__SOURCE__PATH ?= $(abspath $(SHARED_CSV))
export MLOPS_DATASET__SOURCE__PATH
endif

.PHONY: setup demo test lint typecheck bench soak screenshots clean

setup: $(STAMP)  ## build .venv from uv.lock (a second run does nothing)

$(STAMP): pyproject.toml uv.lock tools/compose-lint/package-lock.json
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen
	npm ci --prefix tools/compose-lint --no-audit --no-fund  # dclint, for tests/stack
	@touch $@

demo: setup  ## data step, then the pipelines through Mage; prints the result
	$(BIN)/python -m mlops demo

test: setup lint  ## the whole suite against real PostgreSQL, MLflow and Mage; fails on skipped tests
	MLOPS_TEST_FAIL_ON_SKIP=1 $(BIN)/pytest

lint: setup
	$(BIN)/ruff check mlops tests benchmarks
	$(BIN)/ruff format --check mlops tests benchmarks
	$(BIN)/mypy mlops/core

bench: setup  ## benchmarks (not tests): print tables, write benchmarks/results/*.json
	$(BIN)/python -m benchmarks

soak: setup  ## reliability soak: 1,000+ fuzz cases, load without loss, fault drills -> benchmarks/results/reliability.json
	$(BIN)/python -m benchmarks soak

screenshots: setup  ## start the app against the running services; headless Chromium PNGs of each page into images/
	$(BIN)/python -m mlops.app.screenshots --out images

clean:
	rm -rf .mlops build
