# propensity: every target is a thin call of the `propensity` CLI in .venv (the bench*
# targets: of `python -m benchmarks`, from the repository; benchmarks/ is not installed).
# `make run` and `make test` set the environment up first when it is missing.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
CLI := $(BIN)/propensity
PACKAGES := core features model training serving cli benchmarks
BENCH := $(BIN)/python -m benchmarks

CUSTOMERS ?= 20000
SEED ?= 42
# the demo's campaign with a known effect (make data writes it, make run reads it out)
DEMO_CAMPAIGN := demo-retention
DEMO_TRUTH := data/demo/campaign_truth.parquet
PORT ?= 3000
CONSOLE_PORT ?= 8080
AS_OF ?=
# tune knobs: the target, at most TRIALS trials, optionally a time budget in seconds
TARGET ?= churn
TRIALS ?= 30
TIMEOUT ?=
PYTEST_ARGS ?=
# init: the event log (a CSV or Parquet file or folder), optional customers and
# subscriptions tables, the config to write (default ./propensity.yaml, never
# overwritten); check: the config to check (default PROPENSITY_CONFIG or
# ./propensity.yaml)
EVENTS ?=
CUSTOMERS_TABLE ?=
SUBSCRIPTIONS ?=
OUT ?=
CONFIG ?=
# bench-api: requests per figure (empty: the bench's default)
REQUESTS ?=
# api-key: who holds the new key, what it may call (score, outreach, ingest, admin)
NAME ?=
SCOPES ?= score
# campaign-report: the campaign id, text|json|html, an output file (empty: stdout)
ID ?=
FORMAT ?= text
OUT ?=
# outcomes: only score dates on or after FROM (empty: all); FORMAT text|json as above
FROM ?=
# tracking-server (team mode): the Postgres database (credentials from PGUSER/PGPASSWORD
# or ~/.pgpass, not the URI), the artifact folder it serves, extra `mlflow server` flags
PG_URI ?= postgresql+psycopg2://127.0.0.1:5432/mlflow
ARTIFACTS ?= $(CURDIR)/mlartifacts
TRACKING_ARGS ?= --host 127.0.0.1 --port 5000
# bench-features knobs (empty: the bench's defaults)
LARGE_CUSTOMERS ?=
SKIP_LARGE ?=
MEMORY_LIMIT ?=
LARGE_MEMORY_LIMIT ?=

export BENTOML_HOME ?= $(CURDIR)/bentoml_home
export BENTOML_DO_NOT_TRACK := True
export DO_NOT_TRACK := 1
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
# The demo's pseudonym key (privacy.pseudonymise): made once into .secrets/ (git-ignored,
# outside the repository's files) and handed to the CLI through the environment; set
# PROPENSITY_PSEUDONYM_KEY yourself (from a secret manager) anywhere else.
ifeq ($(origin PROPENSITY_PSEUDONYM_KEY),undefined)
PSEUDONYM_KEY_FILE := .secrets/pseudonym.key
export PROPENSITY_PSEUDONYM_KEY := $(shell test -s $(PSEUDONYM_KEY_FILE) || \
	(mkdir -p .secrets && umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > $(PSEUDONYM_KEY_FILE)); \
	cat $(PSEUDONYM_KEY_FILE))
endif
# idle OpenMP threads sleep instead of spinning (LightGBM, scikit-learn and DuckDB share the cores)
export OMP_WAIT_POLICY ?= passive

.DEFAULT_GOAL := help
.PHONY: help setup data init check train tune score nightly score-status outcomes ingest serve run bento api-key ui console campaigns campaign-report uplift uplift-report tracking-server bench bench-features bench-quality bench-api bench-batch bench-incremental bench-readout bench-spark bench-privacy bench-footprint bench-console bench-soak bench-uplift test test-faults lint format clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install the pinned environment (once), and Debian's chromium for the browser tests
	@command -v chromium >/dev/null 2>&1 || { \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's chromium (the console's browser tests)"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null 2>&1 && \
			  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } || \
			echo "chromium could not be installed: the browser tests will skip, saying why"; \
		else echo "no chromium and no apt-get as root: the browser tests will skip, saying why"; fi; }

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

data/demo/events.parquet: | $(STAMP)
	$(CLI) demo-data --customers $(CUSTOMERS) --seed $(SEED) --out data/demo

data: setup ## (re)generate the demo data in data/demo (CUSTOMERS=20000 SEED=42)
	$(CLI) demo-data --customers $(CUSTOMERS) --seed $(SEED) --out data/demo

init: setup ## profile your own data and write a starter config (EVENTS="path [path ...]" CUSTOMERS_TABLE= SUBSCRIPTIONS= OUT=propensity.yaml; never overwrites)
	@test -n "$(EVENTS)" || { echo "usage: make init EVENTS=path/to/events.csv [OUT=dir/propensity.yaml]"; exit 2; }
	$(CLI) init $(foreach e,$(EVENTS),--events $(e)) $(if $(CUSTOMERS_TABLE),--customers $(CUSTOMERS_TABLE)) \
		$(if $(SUBSCRIPTIONS),--subscriptions $(SUBSCRIPTIONS)) $(if $(OUT),--out $(OUT))

check: setup ## validate config and data, print what train would do (CONFIG=; exit 1: a target cannot be trained)
	$(CLI) $(if $(CONFIG),--config $(CONFIG)) check

train: setup data/demo/events.parquet ## build features and labels, train the listed targets, register, promote (exit 7: a target skipped)
	$(CLI) train

tune: setup data/demo/events.parquet ## search LightGBM params for one target on the backtest origins, registers nothing (TARGET=churn TRIALS=30 TIMEOUT=)
	$(CLI) tune --target $(TARGET) --trials $(TRIALS) $(if $(TIMEOUT),--timeout $(TIMEOUT))

score: setup ## score every eligible customer (AS_OF=YYYY-MM-DD, default: the day after the last event)
	$(CLI) score $(if $(AS_OF),--as-of $(AS_OF))

nightly: setup ## the nightly run: score, drift report, sink, outcomes, MLflow run (AS_OF=YYYY-MM-DD; exit 3 drift alert, 4 sink failed, 8 outcome alert, 9 too few scored, 10 online store not updated)
	$(CLI) score $(if $(AS_OF),--as-of $(AS_OF))

score-status: setup ## the last scoring run's status (exit code: the run's)
	$(CLI) score status

outcomes: setup ## newly matured score dates against realised labels, logged to MLflow (FROM=YYYY-MM-DD FORMAT=text|json; exit 8 alert)
	$(CLI) outcomes $(if $(FROM),--as-of-from $(FROM)) --format $(FORMAT)

ingest: setup ## consume real-time events from the Redis Stream STREAM (default: ingest.stream) into the event log and the online store
	$(CLI) ingest $(if $(STREAM),--stream $(STREAM))

serve: setup ## serve the champions on localhost:$(PORT) with BentoML
	$(CLI) serve --port $(PORT)

run: setup data/demo/events.parquet ## the whole job on demo data: train, the demo campaign's readout beside its true effect, score, then the API on localhost:3000 (prints a demo API key when none exists)
	$(CLI) train
	@# before score: the nightly run applies privacy.retention_days from today's date,
	@# and the demo's contacts (2025) are older than that, so it deletes them
	@if test -f $(DEMO_TRUTH); then echo "the demo campaign's readout, its true effect beside it:"; \
		$(CLI) campaigns report $(DEMO_CAMPAIGN) --truth $(DEMO_TRUTH) || echo "(no readout: an earlier run's retention deleted the demo's contacts; make data makes them again)"; \
	else echo "(no demo campaign in data/demo: make data makes one)"; fi
	@$(CLI) score || { rc=$$?; test $$rc -eq 3 -o $$rc -eq 8 && \
		echo "(drift or outcome alert above, exit $$rc: the scores are written; serving them)"; }
	@test -n "$$PROPENSITY_API_KEYS" || test -n "$$($(CLI) api-key list)" || \
		{ echo "API key for the demo (shown once; send it as 'Authorization: Bearer <key>'):"; \
		  $(CLI) api-key new --name demo --scopes score,outreach,admin; }
	$(CLI) serve --port $(PORT)

bento: setup ## import the champions into the BentoML store and build a Bento pinning them (bentofile.yaml)
	$(CLI) bento

api-key: setup ## create an API key for NAME with SCOPES (default score), print it once, store its salted hash in api.keys_file
	@test -n "$(NAME)" || { echo "usage: make api-key NAME=who-holds-it"; exit 2; }
	$(CLI) api-key new --name $(NAME) --scopes $(SCOPES)

console: setup ## the web console alone on http://127.0.0.1:8080/console/ (CONSOLE_PORT=8080; also at /console of make serve); sign in with an API key
	$(CLI) console --port $(CONSOLE_PORT)

ui: setup ## the MLflow UI on the local store (http://127.0.0.1:5000)
	$(CLI) ui

campaigns: setup ## the confirmed campaigns of the contact log, mature or not
	$(CLI) campaigns list

campaign-report: setup ## a campaign's readout, logged to MLflow (ID=campaign FORMAT=text|json|html OUT=file)
	@test -n "$(ID)" || { echo "usage: make campaign-report ID=campaign-id [FORMAT=html OUT=file]"; exit 2; }
	$(CLI) campaigns report $(ID) --format $(FORMAT) $(if $(OUT),--out $(OUT))

uplift: setup ## uplift models from the matured campaigns: T- and X-learner vs rank by probability and random, the better registered (TARGET=one target; default every listed one)
	$(CLI) uplift train $(if $(filter command line,$(origin TARGET)),--target $(TARGET))

uplift-report: setup ## each uplift champion's held-out Qini and uplift at 10/20/30% beside rank by probability and random
	$(CLI) uplift report

tracking-server: setup ## team mode: a shared MLflow server on Postgres (PG_URI=... ARTIFACTS=dir TRACKING_ARGS=...)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --backend-store-uri $(PG_URI) \
		--artifacts-destination $(ARTIFACTS) $(TRACKING_ARGS)

bench: setup ## foundation benchmark (CUSTOMERS=200000 by default), figures in bench/results/
	$(BENCH) foundation $(if $(filter command line,$(origin CUSTOMERS)),--customers $(CUSTOMERS))

bench-features: setup ## features: engine vs hand-written SQL on 3 jobs (CUSTOMERS=200000 LARGE_CUSTOMERS=1000000 SKIP_LARGE=1 MEMORY_LIMIT=1GB LARGE_MEMORY_LIMIT=1GB)
	$(BENCH) features $(if $(filter command line,$(origin CUSTOMERS)),--customers $(CUSTOMERS)) \
		$(if $(LARGE_CUSTOMERS),--large-customers $(LARGE_CUSTOMERS)) $(if $(SKIP_LARGE),--skip-large) \
		$(if $(MEMORY_LIMIT),--memory-limit $(MEMORY_LIMIT)) \
		$(if $(LARGE_MEMORY_LIMIT),--large-memory-limit $(LARGE_MEMORY_LIMIT))

bench-batch: setup ## the nightly job at scale (CUSTOMERS=1000000 by default: ~100M events; MEMORY_LIMIT=1GB), figures in bench/results/batch.json
	$(BENCH) batch $(if $(filter command line,$(origin CUSTOMERS)),--customers $(CUSTOMERS)) \
		$(if $(MEMORY_LIMIT),--memory-limit $(MEMORY_LIMIT))

bench-incremental: setup ## the nightly feature step from the incremental state vs the full rebuild (CUSTOMERS=1000000 by default; MEMORY_LIMIT=1GB), then real-time ingest (INGEST_ONLY=1 for that alone, INGEST_CUSTOMERS=20000), figures in bench/results/incremental.json
	$(BENCH) incremental $(if $(filter command line,$(origin CUSTOMERS)),--customers $(CUSTOMERS)) $(if $(INGEST_ONLY),--ingest-only) $(if $(INGEST_CUSTOMERS),--ingest-customers $(INGEST_CUSTOMERS)) \
		$(if $(MEMORY_LIMIT),--memory-limit $(MEMORY_LIMIT))

bench-readout: setup ## a campaign readout of 1,000,000 contacted customers (~100M events) vs hand-written DuckDB SQL, the Hillstrom readouts and uplift comparison (CUSTOMERS=1000000 MEMORY_LIMIT=1GB); bench/results/readout.json
	$(BENCH) readout $(if $(filter command line,$(origin CUSTOMERS)),--customers $(CUSTOMERS)) \
		$(if $(MEMORY_LIMIT),--memory-limit $(MEMORY_LIMIT))

bench-spark: setup ## the reference feature job (CUSTOMERS=200000, ~20M events, 3 cutoffs) and scoring: Spark local vs DuckDB and in-process; bench/results/spark.json
	$(BENCH) spark $(if $(filter command line,$(origin CUSTOMERS)),--customers $(CUSTOMERS))

bench-privacy: setup ## features with pseudonyms vs plain ids and hand-written SQL, forget vs a bare rewrite (CUSTOMERS=200000); bench/results/privacy.json
	$(BENCH) privacy $(if $(filter command line,$(origin CUSTOMERS)),--customers $(CUSTOMERS))

bench-quality: setup ## model quality on ../shared/data (CDNOW, Online Retail) vs recency, BG/NBD and the reference figures
	$(BENCH) quality

bench-uplift: setup ## uplift on Hillstrom (visit, women's e-mail vs none): Qini and uplift@30% of T-/X-learner vs rank by probability and random; bench/results/uplift.json
	$(BENCH) uplift

bench-api: setup ## API latency and throughput on a real bentoml serve vs a bare echo service and the in-process call (REQUESTS=2000)
	$(BENCH) api $(if $(REQUESTS),--requests $(REQUESTS))

bench-soak: setup ## 10 minutes of mixed load on every endpoint (2 workers) with a nightly run in the middle: errors, p99 drift, RSS growth (SOAK_SECONDS=600); bench/results/soak.json
	$(BENCH) soak $(if $(SOAK_SECONDS),--seconds $(SOAK_SECONDS))

bench-console: setup ## each console page's server-side render time on 1,000,000 scored customers (CUSTOMERS=1000000); bench/results/console.json
	$(BENCH) console $(if $(filter command line,$(origin CUSTOMERS)),--customers $(CUSTOMERS))

bench-footprint: setup ## what serving weighs: a runtime venv of serving/requirements.txt, the API's import, a served worker, the Bento (CUSTOMERS=5000); bench/results/footprint.json
	$(BENCH) footprint $(if $(filter command line,$(origin CUSTOMERS)),--customers $(CUSTOMERS))

# seconds per fault of the load-with-faults tests (docs/reliability.md): short in
# `make test`, the issue's 60 s in `make test-faults`
TEST_FAULT_SECONDS ?= 10
FAULT_SECONDS ?= 60

test: setup ## run the test suite: integration tests in turn on one worker, unit tests beside them on another
	FAULT_SECONDS=$(TEST_FAULT_SECONDS) $(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-faults: setup ## load with faults: 32 clients on a 2-worker server while the store swaps, keys rotate, Postgres drops, a worker dies (FAULT_SECONDS=60 each)
	FAULT_SECONDS=$(FAULT_SECONDS) $(BIN)/python -m pytest -m faults -s $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: setup ## the quick loop: the tests that start no process (tests/unit), 2 workers, a sixth of the routine property examples
	PROPERTY_SCALE=0.15 $(BIN)/python -m pytest tests/unit -n 2 --dist worksteal $(PYTEST_ARGS)

lint: setup ## ruff lint and format check
	$(BIN)/ruff check $(PACKAGES) tests
	$(BIN)/ruff format --check $(PACKAGES) tests

format: setup ## ruff format and autofix
	$(BIN)/ruff format $(PACKAGES) tests
	$(BIN)/ruff check --fix $(PACKAGES) tests

clean: ## remove generated state (demo data, scores, MLflow store, BentoML home)
	rm -rf data scores bentoml_home bench/work bench/results
	find mlruns -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
