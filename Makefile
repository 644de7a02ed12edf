# EWI: two commands on a fresh machine.
#   make demo   set everything up, run the whole pipeline on synthetic data, serve the dashboard
#   make test   set everything up and run every test (ruff included)

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export EWI_HOME ?= $(CURDIR)/.ewi
DEMO_DATA := $(EWI_HOME)/demo-data
DEMO_PORT ?= 8050

.PHONY: help install system-deps oidc-provider demo test lint unit bench eval airflow clean stop mutation

help:
	@echo "make demo   - install, generate two years of synthetic data, run the pipeline, serve the dashboard"
	@echo "make test   - install and run all tests (ruff, unit, integration)"
	@echo "make bench  - performance benchmarks"
	@echo "make mutation - mutation testing of the identifier detector, the auth code and disclosure control"
	@echo "make stop   - stop the embedded warehouse"

$(STAMP): requirements.lock pyproject.toml
	@echo "==> [setup] creating virtualenv $(VENV) with pinned requirements"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# Debian packages the tests drive: Chromium (browser tests, through Playwright; no browser
# download), docker-compose (validates the compose file; no engine runs here) and poppler-utils
# (pdftotext and pdftoppm read and render the weekly briefing PDF), R with the surveillance package
# (tests/test_glrnb.py and tests/test_farrington.py compare the alert methods with R itself).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	command -v pdftotext >/dev/null 2>&1 || missing="$$missing poppler-utils"; \
	command -v Rscript >/dev/null 2>&1 || missing="$$missing r-base-core"; \
	Rscript -e 'library(surveillance)' >/dev/null 2>&1 || missing="$$missing r-cran-surveillance"; \
	if [ -n "$$missing" ]; then \
	  echo "==> [setup] installing Debian packages:$$missing"; \
	  (apt-get update -qq && apt-get install -y -qq $$missing >/dev/null) || \
	  echo "!! could not install$$missing: the tests that need them will be skipped"; \
	fi

# Python with ruff and import-linter (.importlinter); the dbt models' SQL with sqlfluff and its dbt
# templater (rules in .sqlfluff). The templater compiles the project as dbt does, which asks the
# warehouse (is_incremental), so the embedded warehouse of this EWI_HOME is started first (`make stop`).
lint: install
	$(BIN)/ruff check ewi dags tests
	$(BIN)/lint-imports --no-cache --no-logo
	@echo "==> [lint] SQL: sqlfluff with the dbt templater"
	$(BIN)/ewi warehouse init >/dev/null
	eval "$$($(BIN)/ewi warehouse dbt-env)" && $(BIN)/sqlfluff lint dbt_project

# The OpenID Connect provider the single sign-on tests start (npm oidc-provider, pinned by
# tests/oidc/package-lock.json); without node the tests say so and are skipped.
oidc-provider:
	@if command -v npm >/dev/null 2>&1; then \
	  echo "==> [setup] npm ci in tests/oidc (the test OpenID Connect provider)"; \
	  (cd tests/oidc && npm ci --no-audit --no-fund --silent) || echo "!! npm ci failed: the single sign-on tests will install or skip"; \
	else echo "!! node/npm not installed: the single sign-on tests will be skipped"; fi

test: install system-deps oidc-provider lint
	@echo "==> [test] pytest"
	mkdir -p $(EWI_HOME)
	# the lint step started this EWI_HOME's embedded warehouse: stop it whatever pytest answers
	$(BIN)/pytest -q --basetemp=$(EWI_HOME)/pytest-tmp; rc=$$?; $(BIN)/ewi warehouse stop >/dev/null 2>&1; exit $$rc

demo: install
	@echo "==> [demo] warehouse: migrations and area register"
	$(BIN)/ewi warehouse init
	@echo "==> [demo] generating two years of synthetic extracts into $(DEMO_DATA)"
	rm -rf $(DEMO_DATA)
	$(BIN)/ewi synth --out $(DEMO_DATA) --weeks 104 --seed 7
	@echo "==> [demo] stopping the local Airflow of an earlier demo, if it still runs (demo-run runs the DAGs itself)"
	$(BIN)/ewi airflow down
	@echo "==> [demo] running the pipeline through Airflow (ingest DAG, then transform DAG)"
	$(BIN)/ewi airflow demo-run --landing $(DEMO_DATA)
	@echo "==> [demo] starting a local Airflow that ingests whatever lands in $(EWI_HOME)/landing (ewi airflow down stops it)"
	-$(BIN)/ewi airflow up
	@echo "==> [demo] serving the dashboard (another port if $(DEMO_PORT) is taken; this EWI_HOME's running one is reused)"
	$(BIN)/ewi dashboard --demo-users --port $(DEMO_PORT)

# A real local Airflow (api-server, scheduler, dag-processor, triggerer) watching the landing folder
airflow: install
	$(BIN)/ewi airflow up

bench: install
	$(BIN)/python -m ewi.bench

# Do the tests notice a broken privacy rule? Small changes to the identifier detector, the dashboard's
# users and sessions and the disclosure-control macro, one at a time, each followed by the tests that
# cover it (docs/benchmarks.md, Mutation testing). Not part of `make test`: it takes ~25 minutes, niced.
mutation: install
	mkdir -p $(EWI_HOME)
	nice -n 10 $(BIN)/python -m ewi.mutation

# Alert methods on simulated series and on synth's injected rises; writes docs/alert_evaluation.md
eval: install
	$(BIN)/python -m ewi.alerts.evaluation

stop:
	-$(BIN)/ewi airflow down
	-$(BIN)/ewi warehouse stop

clean: stop
	rm -rf $(VENV) .ewi dbt_project/target dbt_project/logs
