# specstore's commands. `make run` and `make test` work on a fresh clone:
# each installs what it needs first (into .venv, never the system Python).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# datapackage-pipelines pins Flask 1.x: it gets a virtualenv of its own.
DPP_VENV ?= .venv-dpp
# schemathesis pins a newer hypothesis than the suite's: a virtualenv of its own too.
SCHEMATHESIS_VENV ?= .venv-schemathesis

# The example's data server: 8000, or a free port when 8000 is taken (set it to insist).
EXAMPLE_PORT ?=

.PHONY: bench-compare help install install-dev dpp dpp-serve schemathesis npm-tools run serve example test check bench lint format postgres postgres-bin redis browser clean
.DEFAULT_GOAL := help

## help: these commands, each with what it does
help:
	@sed -n 's/^## \([a-z-]*\): /  make \1\t/p' $(MAKEFILE_LIST) | expand -t 24

## install: create .venv and install specstore into it (the system Python is left alone)
install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -r requirements.txt -e .
	touch $@

## install-dev: install, plus the test and lint tools
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install --quiet -c constraints.txt -r requirements-dev.txt
	touch $@

## run: migrate the database and serve on HOST:PORT (default 127.0.0.1:5000), fetching from this machine too (for the example)
run: install
	INPUT_ADDRESS_ALLOW=$${INPUT_ADDRESS_ALLOW-127.0.0.1/32} $(BIN)/python server.py

## example: with `make run` going (on PORT), serve examples/datapackage on a free port (8000 if free, or EXAMPLE_PORT), upload examples/spec.yaml for it and follow it to the end
example: install
	@EXAMPLE_PORT=$(EXAMPLE_PORT) scripts/example

## serve: the production server: migrations, then gunicorn with gunicorn.conf.py
serve: install
	$(BIN)/specstore db upgrade
	$(BIN)/gunicorn -c gunicorn.conf.py server:app

## dpp: datapackage-pipelines in its own virtualenv (.venv-dpp) with specstore's processors (dpp-plugin/)
dpp: $(DPP_VENV)/.installed

$(DPP_VENV)/.installed: requirements-dpp.txt dpp-plugin/pyproject.toml dpp-plugin/datapackage_pipelines_specstore/compat.py
	$(PYTHON) -m venv $(DPP_VENV)
	$(DPP_VENV)/bin/pip install --quiet "pip<24.1"
	$(DPP_VENV)/bin/pip install --quiet -r requirements-dpp.txt
	$(DPP_VENV)/bin/pip install --quiet --no-deps -e ./dpp-plugin
	# celery 4 on Python 3.11 (see dpp-plugin/datapackage_pipelines_specstore/compat.py)
	echo "import datapackage_pipelines_specstore.compat" > \
	  "$$($(DPP_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/datapackage_pipelines_specstore_compat.pth"
	touch $@

## dpp-serve: DPP's server mode on this machine (Redis, beat, workers, dashboard on 127.0.0.1:5050) for `make run` with DPP_PIPELINES_DIR=./dpp-pipelines
dpp-serve: install dpp redis
	$(BIN)/specstore dpp-serve --venv $(DPP_VENV) --root dpp-pipelines

## schemathesis: schemathesis in its own virtualenv (.venv-schemathesis), for the API's conformance test
schemathesis: $(SCHEMATHESIS_VENV)/.installed

$(SCHEMATHESIS_VENV)/.installed: requirements-schemathesis.txt
	$(PYTHON) -m venv $(SCHEMATHESIS_VENV)
	$(SCHEMATHESIS_VENV)/bin/pip install --quiet -r requirements-schemathesis.txt
	touch $@

## npm-tools: what the tests take from the npm registry (verdaccio, datahub-client), as npm-tools/package-lock.json pins them
npm-tools: npm-tools/node_modules/.installed

npm-tools/node_modules/.installed: npm-tools/package.json npm-tools/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed (Node.js 20+): apt-get install nodejs npm"; exit 1; }
	npm ci --prefix npm-tools --no-audit --no-fund --loglevel=error
	touch $@

## test: lint, then the whole suite (SQLite, a real PostgreSQL, a real DPP, a real npm registry)
test: install-dev postgres-bin redis browser dpp schemathesis npm-tools lint
	SPECSTORE_DPP_VENV=$(abspath $(DPP_VENV)) \
	SPECSTORE_SCHEMATHESIS_VENV=$(abspath $(SCHEMATHESIS_VENV)) $(BIN)/pytest

## check: the fast subset for the inner loop: lint, then the unit and API tests on SQLite (no PostgreSQL, DPP, npm or browser needed)
check: install-dev lint
	$(BIN)/pytest -m "not system and not postgres"

## bench: specstore under gunicorn on PostgreSQL, driven by wrk (bench/results.md), then one CSV published on each engine and backend (bench/data-results.md)
bench: install-dev postgres-bin dpp
	@scripts/ensure-bench-tools
	$(BIN)/python bench/run.py
	$(BIN)/python bench/data.py

## bench-compare: this checkout against commit BASE, turn about in one run (a drifting machine's speed falls on both)
bench-compare: install-dev postgres-bin
	@test -n "$(BASE)" || { echo "give the commit to compare with: make bench-compare BASE=<commit>"; exit 2; }
	@scripts/ensure-bench-tools
	$(BIN)/python bench/compare.py --base "$(BASE)"

## lint: ruff's checks and its format check
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## format: reformat the code and fix what ruff can
format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## postgres: a throw-away PostgreSQL server on 127.0.0.1:55432 (PGPORT) to try specstore on, until Ctrl-C
postgres:
	@scripts/throwaway-postgres

## postgres-bin: make sure the PostgreSQL server binaries the tests start are installed
postgres-bin:
	@scripts/ensure-postgres

## redis: make sure Debian's redis-server is installed (DPP's server mode needs Redis)
redis:
	@scripts/ensure-redis

## browser: Debian's Chromium and chromedriver, for the dashboard test
browser:
	@scripts/ensure-browser

## clean: remove the virtualenvs and installed tools
clean:
	rm -rf $(VENV) $(DPP_VENV) $(SCHEMATHESIS_VENV) npm-tools/node_modules .tox .pytest_cache .ruff_cache *.egg-info
