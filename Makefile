# specstore's commands. `make run` and `make test` work on a fresh clone:
# each installs what it needs first (into .venv, never the system Python).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-dev run test lint format postgres clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -r requirements.txt -e .
	touch $@

install-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install --quiet -c constraints.txt -r requirements-dev.txt
	touch $@

## run: migrate the database and serve on HOST:PORT (default 127.0.0.1:5000)
run: install
	$(BIN)/python server.py

## test: lint, then the whole suite (SQLite and a real PostgreSQL it starts itself)
test: install-dev postgres lint
	$(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## postgres: make sure the PostgreSQL server binaries the tests start are installed
postgres:
	@scripts/ensure-postgres

clean:
	rm -rf $(VENV) .tox .pytest_cache .ruff_cache *.egg-info
