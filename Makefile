# northwind-elt. `make run` and `make test` are all the set-up a fresh clone needs.
#   make run [DATE=YYYY-MM-DD] [JOB=<job>|FROM=<step>]   run the day (default: today, UTC)
#   make status [DATE=...]   make stop   make test   make lint   make airflow   make docs   make help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
UV := $(BIN)/uv
PLUGINS_INSTALLED := .meltano/.installed
AIRFLOW_VENV := .venv-airflow
AIRFLOW_INSTALLED := $(AIRFLOW_VENV)/.installed
# uv installs everything else, at the versions of the lock files (`make lock`): uv.lock for
# the project's environment (Meltano included) and one per Meltano plugin, named by its
# pip_url. The same in every environment: this Makefile, the Dockerfile and CI.
UV_VERSION := 0.13.9
PLUGIN_LOCKS := $(wildcard extract/*/requirements.lock load/*/requirements.lock plugins/locks/*.lock)
# The benchmark's references (the bench extra) and its own Meltano project, which holds the
# stock tap-postgres and target-postgres it compares with: installed by `make bench-install`
# only, their plugin virtualenvs under .venv-bench/meltano.
BENCH_VENV := .venv-bench
BENCH_INSTALLED := $(BENCH_VENV)/.installed
BENCH_PROJECT := scripts/bench

export PATH := $(CURDIR)/$(BIN):$(PATH)
# Every virtualenv uv builds (the project's, Meltano's plugin venvs, Airflow's) gets its
# bytecode compiled at install: containers often set PYTHONDONTWRITEBYTECODE=1, and then
# each process would recompile its imports (about 4 s per Meltano job).
export UV_COMPILE_BYTECODE := 1
export MELTANO_PROJECT_ROOT := $(CURDIR)

# Prefix of a recipe line whose command prints nothing for seconds (venv's ensurepip, uv's
# bytecode compilation): a line every 3 s while it runs, so a cold install is never silent.
define heartbeat
start=$$(date +%s); ( while sleep 3; do echo "    ... $(1): $$(( $$(date +%s) - start )) s"; done ) & hb=$$!; trap 'kill $$hb 2>/dev/null' EXIT;
endef

DATE_ARG := $(if $(DATE),--date $(DATE))
RUN_ARGS := $(if $(FROM),--from $(FROM),$(JOB))

# In-project plugins; the first three are light enough for the unit tier, every one of them
# is tested in a virtualenv of its own by test-plugins.
UNIT_PLUGINS := extract/tap-typed-csv load/target-parquet-files extract/tap-parquet-manifest
PLUGINS := $(UNIT_PLUGINS) extract/tap-postgres-arrow load/target-postgres-arrow \
	extract/tap-ads-api load/target-s3-raw extract/tap-s3-raw

.PHONY: help report diagram install bytecode airflow-install lock bench-install bench run status stop db padam ads ads-archive test test-e2e test-distributed test-unit test-plugins lint format airflow airflow-distributed airflow-backfill docs clean

help:
	@echo "make run [DATE=YYYY-MM-DD] [JOB=<job>|FROM=<step>]  run a day of a pipeline (default: Northwind, today UTC)"
	@echo "make status [DATE=...]                            every pipeline's recent days, months and runs (or one day): what to rerun"
	@echo "make report | diagram                             the ledger as an HTML report | regenerate the README diagram"
	@echo "make padam YEAR=2022 [RANDOM_MAIN_CONTROLLER=1]   PADAM: a year, month by month"
	@echo "make db | make stop                               start | stop the embedded Postgres"
	@echo "make test | test-unit | test-plugins | test-e2e | lint  the suite, its fast tier, each plugin alone, end to end, ruff + import contracts"
	@echo "make test-distributed                             Airflow with two workers: a backfill across them, one killed"
	@echo "make airflow | airflow-backfill FROM_DATE= TO_DATE=  a local Airflow on AIRFLOW_PORT, a backfill of a range"
	@echo "make airflow-distributed [WORKERS=2]              Airflow's EdgeExecutor with workers in working copies of their own"
	@echo "make docs                                         dbt docs (lineage, freshness, exposures) on DBT_DOCS_PORT"
	@echo "make ads | ads-archive [DATE=...]                  the ads pipeline: up + one load | the archive"
	@echo "make install | clean                              install everything | remove the virtualenvs"
	@echo "make lock [UPGRADE=1]                             regenerate every lock file (uv.lock, each plugin's)"
	@echo "make bench-install | bench [BENCH_ARGS=...]       the benchmark's references | run scripts/benchmark.py"

# uv, bootstrapped by pip; uv.lock then pins both (Meltano needs pip) like everything else.
# Python 3.11's venv also seeds setuptools, which nothing needs: out, so .venv is the lock exactly.
$(UV):
	@echo "==> $(VENV): a virtualenv with uv $(UV_VERSION) (venv, then pip)"
	@$(call heartbeat,python -m venv) $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check --compile uv==$(UV_VERSION)
	$(UV) pip uninstall --quiet --python $(BIN)/python setuptools

# The project's environment, exactly as uv.lock pins it (the project editable with its
# embedded and dev extras, Meltano, uv, the unit tier's plugins: pyproject.toml's dev group),
# for every platform and Python from 3.11. --locked refuses a lock older than a pyproject.
$(INSTALLED): $(UV) uv.lock pyproject.toml extract/*/pyproject.toml load/*/pyproject.toml
	@echo "==> .venv from uv.lock"
	@$(call heartbeat,uv sync: install then bytecode) $(UV) sync --locked || { echo "FAILED: uv sync (a pyproject.toml changed after uv.lock?). Fix: make lock, then rerun: make install"; exit 1; }
	@$(MAKE) --no-print-directory bytecode
	touch $@

# Meltano installs every plugin, pinned in plugins/ and pipelines/*.meltano.yml, into its own
# virtualenv, every package of it pinned by the lock its pip_url names (`-c <lock>`).
$(PLUGINS_INSTALLED): $(INSTALLED) meltano.yml plugins/*.meltano.yml pipelines/*.meltano.yml pyproject.toml extract/*/pyproject.toml load/*/pyproject.toml $(PLUGIN_LOCKS)
	@echo "==> meltano install: every plugin in its own virtualenv (log: .meltano/install.log)"
	@$(BIN)/python -m northwind_elt.entry.meltano_install
	@$(MAKE) --no-print-directory bytecode
	touch $@

# The project and its in-project plugins are editable installs, which no installer compiles:
# where PYTHONDONTWRITEBYTECODE=1 (containers, CI) every process of a day (about twenty)
# would compile them again. A source edited later is recompiled in memory (its mtime).
# Plugin virtualenvs installed before meltano.yml asked uv to compile them are compiled here
# too (each by its own interpreter; files already compiled are skipped).
bytecode:
	@echo "==> bytecode: the project's and its plugins' sources"
	@$(call heartbeat,bytecode) $(BIN)/python -m compileall -q -j 0 northwind_elt $(foreach p,$(PLUGINS),$(wildcard $(p)/tap_* $(p)/target_*)) >/dev/null
	@for venv in $(wildcard .meltano/*/*/venv); do echo "    $$venv"; $$venv/bin/python -m compileall -q -j 0 $$venv/lib >/dev/null 2>&1 || true; done

# Every lock file, from the pyproject.toml files and the plugins' pip_url (scripts/lock.py says
# which lock pins what), keeping every pin that still fits; UPGRADE=1 takes the newest versions.
# Then `make install` installs what changed.
lock: $(UV)
	$(BIN)/python scripts/lock.py $(if $(UPGRADE),--upgrade)

# The benchmark's references from uv.lock (dlt's and s3fs's fsspec pins agree there), then
# the stock plugins of its Meltano project, each pinned by its lock.
$(BENCH_INSTALLED): $(INSTALLED) uv.lock $(BENCH_PROJECT)/meltano.yml $(wildcard $(BENCH_PROJECT)/*.lock)
	@echo "==> $(BENCH_VENV) from uv.lock (the bench extra)"
	@UV_PROJECT_ENVIRONMENT=$(BENCH_VENV) $(UV) sync --locked --python $(BIN)/python --no-dev --extra bench \
		|| { echo "FAILED: uv sync of $(BENCH_VENV). Fix the cause (make lock if a pyproject.toml changed), then rerun: make bench-install"; exit 1; }
	@echo "==> meltano install: the stock plugins of $(BENCH_PROJECT)/meltano.yml, into $(BENCH_VENV)/meltano"
	MELTANO_PROJECT_ROOT=$(CURDIR)/$(BENCH_PROJECT) MELTANO_SYS_DIR_ROOT=$(CURDIR)/$(BENCH_VENV)/meltano \
		$(BIN)/meltano --cwd $(BENCH_PROJECT) install
	touch $@

bench-install: $(BENCH_INSTALLED)

# scripts/benchmark.py on the embedded server, e.g. make bench BENCH_ARGS="--scale small --rounds 1 --only day"
bench: db $(BENCH_INSTALLED)
	$(BIN)/python scripts/benchmark.py $(BENCH_ARGS)

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

# Airflow's distributed mode on this machine: two workers (own working copies and scratch), the
# lake in the embedded S3, the state in Postgres; a backfill of 4 days of two pipelines during
# which a worker is killed (tests/distributed). Minutes: it waits for Airflow's heartbeat timeout.
test-distributed: install airflow-install .env
	$(BIN)/pytest $(PYTEST_ARGS) tests/distributed

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
	$(BIN)/uv pip install --quiet --compile-bytecode --python .venv-plugins/$(notdir $*)/bin/python -e "$*[test]" -c $*/requirements.lock
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

# The distributed mode on this machine (.env: NW_AIRFLOW_EXECUTOR=edge and the shared services;
# README "Past one machine"): the controller and WORKERS workers, each in its own working copy.
airflow-distributed: db airflow-install
	$(BIN)/nw s3 up
	$(BIN)/nw airflow up --workers $(or $(WORKERS),2)

# make airflow-backfill FROM_DATE=2024-01-10 TO_DATE=2024-01-11 [DAG=people_daily] (with
# `make airflow` running): runs of exactly those days, waited for; nothing else is started.
airflow-backfill: $(INSTALLED) airflow-install .env
	@test -n "$(FROM_DATE)" -a -n "$(TO_DATE)" || { echo "usage: make airflow-backfill FROM_DATE=YYYY-MM-DD TO_DATE=YYYY-MM-DD [DAG=northwind_daily]" >&2; exit 2; }
	$(BIN)/nw airflow backfill --from $(FROM_DATE) --to $(TO_DATE) $(if $(DAG),--dag $(DAG)) --wait

# The run ledger as a one-page HTML report (rows, seconds, failures per step and day).
report: $(INSTALLED) .env
	$(BIN)/nw report

# The README's pipeline diagram, from the registry (a unit test fails when it drifts).
diagram: $(INSTALLED)
	$(BIN)/python scripts/diagram.py

# dbt's docs site (lineage, tests, source freshness, exposures) on DBT_DOCS_PORT from .env.
docs: db
	$(BIN)/nw docs

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(BENCH_VENV) .venv-plugins .meltano .airflow transform/target transform/logs
