# northwind-elt. `make run` and `make test` are all the set-up a fresh clone needs.
#   make run [DATE=YYYY-MM-DD] [JOB=<job>|FROM=<step>]   run the day (default: today, UTC)
#   make status [DATE=...]   make stop   make test   make lint   make airflow   make docs   make help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PLUGINS_INSTALLED := .meltano/.installed
AIRFLOW_VENV := .venv-airflow
AIRFLOW_INSTALLED := $(AIRFLOW_VENV)/.installed
# The versions every environment installs (this Makefile, the Dockerfile and CI).
UV_VERSION := 0.13.9
MELTANO_VERSION := 4.4.1

export PATH := $(CURDIR)/$(BIN):$(PATH)
# Every virtualenv uv builds (the project's, Meltano's plugin venvs, Airflow's) gets its
# bytecode compiled at install: containers often set PYTHONDONTWRITEBYTECODE=1, and then
# each process would recompile its imports (about 4 s per Meltano job).
export UV_COMPILE_BYTECODE := 1
export MELTANO_PROJECT_ROOT := $(CURDIR)

DATE_ARG := $(if $(DATE),--date $(DATE))
RUN_ARGS := $(if $(FROM),--from $(FROM),$(JOB))

# In-project plugins; the first three are light enough for the unit tier, every one of them
# is tested in a virtualenv of its own by test-plugins.
UNIT_PLUGINS := extract/tap-typed-csv load/target-parquet-files extract/tap-parquet-manifest
PLUGINS := $(UNIT_PLUGINS) extract/tap-postgres-arrow load/target-postgres-arrow \
	extract/tap-ads-api load/target-s3-raw extract/tap-s3-raw

.PHONY: help install airflow-install run status stop db padam ads ads-archive test test-e2e test-unit test-plugins lint format airflow airflow-backfill docs clean

help:
	@echo "make run [DATE=YYYY-MM-DD] [JOB=<job>|FROM=<step>]  run a day of a pipeline (default: Northwind, today UTC)"
	@echo "make status [DATE=...]                            every pipeline's recent days, months and runs (or one day): what to rerun"
	@echo "make padam YEAR=2022 [RANDOM_MAIN_CONTROLLER=1]   PADAM: a year, month by month"
	@echo "make db | make stop                               start | stop the embedded Postgres"
	@echo "make test | test-unit | test-plugins | test-e2e | lint  the suite, its fast tier, each plugin alone, end to end, ruff + import contracts"
	@echo "make airflow | airflow-backfill FROM_DATE= TO_DATE=  a local Airflow on AIRFLOW_PORT, a backfill of a range"
	@echo "make docs                                         dbt docs (lineage, freshness, exposures) on DBT_DOCS_PORT"
	@echo "make ads | ads-archive [DATE=...]                  the ads pipeline: up + one load | the archive"
	@echo "make install | clean                              install everything | remove the virtualenvs"

$(INSTALLED): pyproject.toml extract/*/pyproject.toml load/*/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --compile uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[embedded,dev]' meltano==$(MELTANO_VERSION) \
		-e 'extract/tap-typed-csv[test]' -e 'load/target-parquet-files[test]' -e 'extract/tap-parquet-manifest[test]'
	touch $@

# Meltano installs every plugin, pinned in plugins/ and pipelines/*.meltano.yml, into its own virtualenv.
$(PLUGINS_INSTALLED): $(INSTALLED) meltano.yml plugins/*.meltano.yml pipelines/*.meltano.yml pyproject.toml extract/*/pyproject.toml load/*/pyproject.toml
	@mkdir -p .meltano && echo "==> meltano install: every plugin in its own virtualenv (log: .meltano/install.log)"
	@set -o pipefail; $(BIN)/meltano install 2>&1 | tee .meltano/install.log \
		| { grep --line-buffered -E "Install(ing|ed) (extractor|loader|utility)" | sed -u 's/^.*meltano  */    /' || true; } \
		|| { tail -n 30 .meltano/install.log; \
		echo "FAILED: meltano install (whole log: .meltano/install.log). Fix the cause, then rerun: make install"; exit 1; }
	touch $@

# Airflow has its own virtualenv: its dependencies must not constrain Meltano's.
$(AIRFLOW_INSTALLED): $(INSTALLED) orchestrate/requirements-airflow.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(BIN)/uv pip install --quiet --python $(AIRFLOW_VENV)/bin/python -r orchestrate/requirements-airflow.txt
	touch $@

.env:
	sed 's#^NW_DATA_DIR=.*#NW_DATA_DIR=$(CURDIR)/data#' .env.example > .env

install: $(INSTALLED) $(PLUGINS_INSTALLED)

airflow-install: $(AIRFLOW_INSTALLED)

db: install .env
	$(BIN)/nw db up

run: db
	$(BIN)/nw $(DATE_ARG) run $(RUN_ARGS)

status: $(INSTALLED) .env
	$(BIN)/nw $(DATE_ARG) status

stop: $(INSTALLED)
	$(BIN)/nw db stop

# PADAM: a year month by month (generate, prepare, export), on the embedded server.
#   make padam YEAR=2022 [RANDOM_MAIN_CONTROLLER=1] [MONTHS="11 12"]
padam: db
	@test -n "$(YEAR)" || { echo "usage: make padam YEAR=2022 [RANDOM_MAIN_CONTROLLER=1]" >&2; exit 2; }
	scripts/insert_all_data.sh $(YEAR)

# Ads: the local API and S3 server up, then one load (and, with ads-archive, the archive).
#   make ads [DATE=2024-01-15]    make ads-archive [DATE=...]
ads: install .env
	$(BIN)/nw ads up
	$(BIN)/nw $(DATE_ARG) ads load

ads-archive: install .env
	$(BIN)/nw ads up
	$(BIN)/nw $(DATE_ARG) ads archive

# Everything: unit tier, each plugin in its own virtualenv, then the end-to-end tests.
# What the end-to-end tests need, two at a time (much of it is waiting on installs), then
# them alone: run alongside the plugins' tests they got slower by as much as they saved.
test: $(INSTALLED)
	$(MAKE) --no-print-directory -j2 --output-sync=target test-unit test-plugins install airflow-install .env
	$(MAKE) --no-print-directory test-e2e

test-e2e: install airflow-install .env
	$(BIN)/pytest $(PYTEST_ARGS) tests/e2e

# In-process tests (day, manifests, gate, publish, locks, messages) and the plugins' own
# tests: under a minute, no Meltano run.
test-unit: $(INSTALLED)
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit $(addsuffix /tests,$(UNIT_PLUGINS))

# Each plugin's tests in a fresh virtualenv holding only that plugin: they stand alone.
# One target per plugin, two at a time (each is mostly a virtualenv install and start-up).
test-plugins: $(INSTALLED)
	$(MAKE) --no-print-directory $(if $(findstring j,$(MAKEFLAGS)),,-j2) $(addprefix test-plugin/,$(PLUGINS))

test-plugin/%: $(INSTALLED)
	rm -rf .venv-plugins/$(notdir $*) && $(PYTHON) -m venv .venv-plugins/$(notdir $*)
	$(BIN)/uv pip install --quiet --compile-bytecode --python .venv-plugins/$(notdir $*)/bin/python -e "$*[test]"
	cd $* && $(CURDIR)/.venv-plugins/$(notdir $*)/bin/pytest -q -p no:cacheprovider tests

# ruff, then the package's walls (import-linter contracts in pyproject.toml: layers, pipelines
# independent of each other, local stand-ins used by the entry layer only).
lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# A local Airflow on AIRFLOW_PORT from .env (UI and task API alike): `nw airflow up` starts
# the API server, waits until it answers, then the scheduler, dag processor and triggerer.
# Its metadata (SQLite), task logs and admin password stay in .airflow/.
airflow: db airflow-install
	$(BIN)/nw airflow up

# make airflow-backfill FROM_DATE=2024-01-10 TO_DATE=2024-01-11 [DAG=people_daily] (with
# `make airflow` running): runs of exactly those days, waited for; nothing else is started.
airflow-backfill: $(INSTALLED) airflow-install .env
	@test -n "$(FROM_DATE)" -a -n "$(TO_DATE)" || { echo "usage: make airflow-backfill FROM_DATE=YYYY-MM-DD TO_DATE=YYYY-MM-DD [DAG=northwind_daily]" >&2; exit 2; }
	$(BIN)/nw airflow backfill --from $(FROM_DATE) --to $(TO_DATE) $(if $(DAG),--dag $(DAG)) --wait

# dbt's docs site (lineage, tests, source freshness, exposures) on DBT_DOCS_PORT from .env.
docs: db
	$(BIN)/nw docs

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .venv-plugins .meltano .airflow transform/target transform/logs
