# specstore's commands. `make run` and `make test` work on a fresh clone:
# each installs what it needs first (into .venv, never the system Python).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# datapackage-pipelines pins Flask 1.x: it gets a virtualenv of its own.
DPP_VENV ?= .venv-dpp

.PHONY: install install-dev dpp run serve test bench lint format postgres browser clean

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

## serve: the production server: migrations, then gunicorn with gunicorn.conf.py
serve: install
	$(BIN)/specstore db upgrade
	$(BIN)/gunicorn -c gunicorn.conf.py server:app

## dpp: datapackage-pipelines in its own virtualenv (.venv-dpp), for the tests and for trying it
dpp: $(DPP_VENV)/.installed

$(DPP_VENV)/.installed: requirements-dpp.txt
	$(PYTHON) -m venv $(DPP_VENV)
	$(DPP_VENV)/bin/pip install --quiet "pip<24.1"
	$(DPP_VENV)/bin/pip install --quiet -r requirements-dpp.txt
	touch $@

## test: lint, then the whole suite (SQLite, a real PostgreSQL and a real DPP)
test: install-dev postgres browser dpp lint
	SPECSTORE_DPP_VENV=$(abspath $(DPP_VENV)) $(BIN)/pytest

## bench: specstore under gunicorn on PostgreSQL, driven by wrk; writes bench/results.md
bench: install-dev postgres
	@scripts/ensure-wrk
	$(BIN)/python bench/run.py

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## postgres: make sure the PostgreSQL server binaries the tests start are installed
postgres:
	@scripts/ensure-postgres

## browser: Debian's Chromium and chromedriver, for the dashboard test
browser:
	@scripts/ensure-browser

clean:
	rm -rf $(VENV) $(DPP_VENV) .tox .pytest_cache .ruff_cache *.egg-info
