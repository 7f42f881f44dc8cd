# The two commands: `make demo` (set up, run the loop) and `make test` (set up, pass the tests).
SHELL := bash
PYTHON ?= python3
UV_VERSION ?= 0.13.9
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")

# Where a local copy of the dataset sits beside the project (as on our CI machines), the bank example uses
# it; otherwise the data step finds data/bank-full.csv or downloads it. MLOPS_CONFIG (another dataset) wins.
SHARED_CSV := $(wildcard $(CURDIR)/../shared/data/bank-marketing/bank-full.csv)
ifeq ($(MLOPS_CONFIG),)
ifneq ($(SHARED_CSV),)
MLOPS_DATASET__SOURCE__PATH ?= $(abspath $(SHARED_CSV))
export MLOPS_DATASET__SOURCE__PATH
endif
endif

.PHONY: setup demo test test-fast test-stack chromium nginx stack-images compose-env image-requirements lint typecheck bench soak screenshots clean
EXPORT := $(UV) export --quiet --frozen --no-dev --no-hashes --no-emit-project --no-annotate

# nginx as a file target (where it is, or where Debian installs it), so a second `make setup` does nothing
NGINX_BIN := $(or $(shell command -v nginx 2>/dev/null),/usr/sbin/nginx)

setup: $(STAMP) $(NGINX_BIN)  ## build .venv from uv.lock, and nginx for the predictor (a second run does nothing)

$(STAMP): pyproject.toml uv.lock tools/compose-lint/package-lock.json
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --all-extras
	npm ci --prefix tools/compose-lint --no-audit --no-fund  # dclint, for tests/stack
	@touch $@

demo: setup  ## data step, then the pipelines through Mage; prints the result
	$(BIN)/python -m mlops demo

test: setup lint  ## the whole suite against real PostgreSQL, MLflow and Mage; fails on skipped tests
	MLOPS_TEST_FAIL_ON_SKIP=1 $(BIN)/pytest --ignore=tests/compose

test-fast: setup  ## the tests that need no PostgreSQL, MLflow or Mage (under a minute): while you edit
	MLOPS_TEST_FAIL_ON_SKIP=1 $(BIN)/pytest -q -m "not postgres and not mlflow and not mage and not slow" --ignore=tests/compose

compose-env:  ## write .env for docker compose from .env.example, generating every empty secret (never overwrites one)
	$(PYTHON) -m mlops.core.platform.compose_env

stack-images: setup  ## a Docker engine (started if none answers), base images (offline stand-ins if none can be pulled), every image
	$(BIN)/python -m mlops images

test-stack: setup chromium  ## the compose stack, built and run for real: the whole loop inside it, a browser on its UIs
	MLOPS_TEST_FAIL_ON_SKIP=1 $(BIN)/pytest tests/compose

chromium:  ## Debian's Chromium, which Playwright drives headless (it cannot download a browser of its own here)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q --no-install-recommends chromium; } \
	  || { echo "install Debian's chromium (apt-get install chromium): the browser checks drive it" >&2; exit 2; }

nginx: $(NGINX_BIN)  ## Debian's nginx, the buffering proxy the predictor starts in front of gunicorn (serving.proxy: nginx)

$(NGINX_BIN):
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] \
	  || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q --no-install-recommends nginx-light; } \
	  || { echo "install Debian's nginx (apt-get install nginx-light), or set serving.proxy: none behind a proxy of your own" >&2; exit 2; }

image-requirements: setup  ## images/*/requirements.txt from uv.lock (tests/stack checks they are current)
	$(EXPORT) --extra orchestration --extra spark -o images/mage/requirements.txt
	$(EXPORT) --extra app -o images/streamlit/requirements.txt
	$(BIN)/python -m mlops.core.serving.payload requirements > images/predictor/requirements.txt
	$(BIN)/python -m mlops.core.serving.payload mlflow-server > images/mlflow/requirements.txt

lint: setup
	$(BIN)/ruff check mlops tests benchmarks
	$(BIN)/ruff format --check mlops tests benchmarks
	$(BIN)/mypy mlops/core

bench: setup  ## benchmarks (not tests): print tables, write benchmarks/results/*.json
	$(BIN)/python -m benchmarks

soak: setup  ## reliability soak: 1,000+ fuzz cases, load without loss, fault drills -> benchmarks/results/reliability.json
	$(BIN)/python -m benchmarks soak

screenshots: setup chromium  ## start the app against the running services; headless Chromium PNGs of each page into images/
	$(BIN)/python -m mlops.app.screenshots --out images

clean:
	rm -rf .mlops build
