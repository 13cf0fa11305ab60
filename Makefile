# specstore's commands. `make run` and `make test` work on a fresh clone:
# each installs what it needs first (into .venv, never the system Python).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# datapackage-pipelines pins Flask 1.x: it gets a virtualenv of its own.
DPP_VENV ?= .venv-dpp

.PHONY: install install-dev dpp npm-tools run serve test bench lint format postgres browser clean

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

## dpp: datapackage-pipelines in its own virtualenv (.venv-dpp), with specstore's
## processors (dpp-plugin/, installed editable), for the tests and for trying it
dpp: $(DPP_VENV)/.installed

$(DPP_VENV)/.installed: requirements-dpp.txt dpp-plugin/pyproject.toml
	$(PYTHON) -m venv $(DPP_VENV)
	$(DPP_VENV)/bin/pip install --quiet "pip<24.1"
	$(DPP_VENV)/bin/pip install --quiet -r requirements-dpp.txt
	$(DPP_VENV)/bin/pip install --quiet --no-deps -e ./dpp-plugin
	touch $@

## npm-tools: verdaccio (a real npm registry, for the npm output's tests), as
## npm-tools/package-lock.json pins it; needs Node.js 20+ and npm
npm-tools: npm-tools/node_modules/.installed

npm-tools/node_modules/.installed: npm-tools/package.json npm-tools/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed (Node.js 20+): apt-get install nodejs npm"; exit 1; }
	npm ci --prefix npm-tools --no-audit --no-fund --loglevel=error
	touch $@

## test: lint, then the whole suite (SQLite, a real PostgreSQL, a real DPP, a real npm registry)
test: install-dev postgres browser dpp npm-tools lint
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
	rm -rf $(VENV) $(DPP_VENV) npm-tools/node_modules .tox .pytest_cache .ruff_cache *.egg-info
