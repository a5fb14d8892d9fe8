# northwind-elt. `make run` and `make test` are all the set-up a fresh clone needs.
#   make run [DATE=YYYY-MM-DD] [JOB=<job>|FROM=<step>]   run the day (default: today, UTC)
#   make status [DATE=...]   make stop   make test   make lint
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PLUGINS_INSTALLED := .meltano/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export MELTANO_PROJECT_ROOT := $(CURDIR)

DATE_ARG := $(if $(DATE),--date $(DATE))
RUN_ARGS := $(if $(FROM),--from $(FROM),$(JOB))

.PHONY: install run status stop db test lint format clean

$(INSTALLED): pyproject.toml extract/*/pyproject.toml load/*/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[embedded,dev]' meltano==4.4.1 \
		-e 'extract/tap-csv[test]' -e 'extract/target-parquet[test]' -e 'load/tap-parquet[test]'
	touch $@

# Meltano installs every plugin, pinned, into its own virtualenv under .meltano/.
$(PLUGINS_INSTALLED): $(INSTALLED) meltano.yml plugins/*.meltano.yml extract/*/pyproject.toml load/*/pyproject.toml
	$(BIN)/meltano install
	touch $@

.env:
	cp .env.example .env

install: $(INSTALLED) $(PLUGINS_INSTALLED) .env

db: install
	$(BIN)/nw db up

run: db
	$(BIN)/nw $(DATE_ARG) run $(RUN_ARGS)

status: $(INSTALLED) .env
	$(BIN)/nw $(DATE_ARG) status

stop: $(INSTALLED)
	$(BIN)/nw db stop

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .meltano transform/target transform/logs
