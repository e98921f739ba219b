# All targets use the project's own virtual environment (.venv), created by `make setup`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
BENTOML := $(VENV)/bin/bentoml
# The project's command line (`btcusdt`, also installed as $(VENV)/bin/btcusdt).
CLI := $(PY) -m cli
HTTP_PORT ?= 3000
GRPC_PORT ?= 3010
# Runner batching, gRPC metrics port (3011)...: edit it or point BENTOML_CONFIG at your own copy.
BENTOML_CONFIG ?= $(CURDIR)/configuration.yaml
BENTOML_HOME ?= $(HOME)/bentoml
export BENTOML_DO_NOT_TRACK := True

.PHONY: setup run data retrain prepare train promote models backtest serve serve-grpc loadtest bench build \
	containerize containerize-check test test-fast lint typecheck clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

setup: $(VENV)/.installed  ## create .venv and install everything (pinned by requirements.lock)

# The main job: train the default model on the bundled candles if the store has none, then serve
# it over HTTP on localhost:$(HTTP_PORT) (Ctrl-C stops it).
run: setup  ## train the default model if the store has none, then serve it on localhost:3000
	@if $(PY) -c "import sys; from artifact import list_models; sys.exit(0 if list_models() else 1)"; then \
		echo "model store $(BENTOML_HOME) already holds a btcusdt_mlp model: serving it"; \
	else \
		echo "no btcusdt_mlp model in $(BENTOML_HOME): training the default model"; \
		$(CLI) train; \
	fi
	$(MAKE) --no-print-directory serve

prepare: setup
	$(CLI) prepare

data: setup  ## fetch the new closed BTCUSDT 1h candles from Binance into data/live/ (DATA_ARGS="--archive DIR ...")
	$(CLI) data update --out data/live/BTCUSDT-1h.parquet $(DATA_ARGS)

retrain: setup  ## the retrain cycle: data, train, gate, bento, promote (RETRAIN_ARGS="--margin 0.01 ...")
	$(CLI) retrain --out data/live/BTCUSDT-1h.parquet $(RETRAIN_ARGS)

train: setup  ## train + evaluate + save a candidate model (options: TRAIN_ARGS="--max-epochs 20 ...")
	$(CLI) train $(TRAIN_ARGS)

promote: setup  ## promote TAG=btcusdt_mlp:<version> to production (refused if it fails the gate)
	@test -n "$(TAG)" || { echo "usage: make promote TAG=btcusdt_mlp:<version>"; exit 2; }
	$(CLI) promote $(TAG)

models: setup  ## list model versions with stage and holdout metrics
	$(CLI) models

backtest: setup  ## out-of-sample backtest of the production/newest model (BACKTEST_ARGS="--walk-forward ...")
	$(CLI) backtest $(BACKTEST_ARGS)

# Each server runs with its own BENTOML_HOME under .work/servers/ that links the model store of
# BENTOML_HOME: BentoML keeps its metrics files in $$BENTOML_HOME/prometheus_multiproc_dir and
# wipes them at start, so `make serve` and `make serve-grpc` sharing one home would export each
# other's counts.
SERVER_HOMES ?= $(CURDIR)/.work/servers
server_home = mkdir -p $(SERVER_HOMES)/$(1) $(BENTOML_HOME)/models && \
	ln -sfn $(abspath $(BENTOML_HOME))/models $(SERVER_HOMES)/$(1)/models

serve: setup  ## HTTP server on HTTP_PORT (model: BTC_SERVE_MODEL_TAG, else production, else newest)
	@$(call server_home,http)
	BENTOML_HOME=$(SERVER_HOMES)/http BENTOML_CONFIG=$(BENTOML_CONFIG) \
	$(BENTOML) serve service:svc --port $(HTTP_PORT)

# PROMETHEUS_MULTIPROC_DIR: BentoML 1.4.39 starts the gRPC metrics server without it (500s).
serve-grpc: setup  ## gRPC server on GRPC_PORT; Prometheus metrics at http://127.0.0.1:3011/
	@$(call server_home,grpc)
	BENTOML_HOME=$(SERVER_HOMES)/grpc BENTOML_CONFIG=$(BENTOML_CONFIG) \
	PROMETHEUS_MULTIPROC_DIR=$(SERVER_HOMES)/grpc/prometheus_multiproc_dir \
	$(BENTOML) serve-grpc service:svc --port $(GRPC_PORT)

# Starts its own server on free loopback ports (or LOADTEST_ARGS="--url http://127.0.0.1:3000");
# CSVs + summary in reports/loadtest/<time>/; exits non-zero on any failure or 5xx.
loadtest: setup  ## bounded headless locust run (LOADTEST_ARGS="--workload grpc --users 32 ...")
	BENTOML_HOME=$(BENTOML_HOME) $(CLI) loadtest $(LOADTEST_ARGS)

bench: setup  ## the benchmarks recorded in docs/BENCHMARKS.md (a model in BENTOML_HOME; ~15 min)
	BENTOML_HOME=$(BENTOML_HOME) $(CLI) bench

BENTO ?= btcusdt_direction:latest

build: setup  ## bento of the production model (else the newest; MODEL_TAG=... to choose), checked
	$(CLI) build $(if $(MODEL_TAG),--model-tag $(MODEL_TAG))

# With Docker: plain `bentoml containerize`. Without (root + buildah/podman, see docs/deployment.md): the same
# generated Dockerfile built by buildah into .work/containers, FROM a debootstrap'ed stand-in base.
containerize: setup  ## OCI image of BENTO (default: the newest bento)
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
		BENTOML_CONFIG=$(BENTOML_CONFIG) $(BENTOML) containerize $(BENTO); \
	else \
		$(CLI) containerize-check --bento $(BENTO) --build-only --keep; \
	fi

containerize-check: setup  ## image of BENTO run by podman: probes, predict over HTTP + gRPC, non-root
	$(CLI) containerize-check --bento $(BENTO)

test: setup  ## the whole test suite
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow and not integration and not container"

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
