# Oversight — the two front-door commands are `make run` and `make test`.
# Every target that runs code depends on `install`, which builds .venv/ from the lock file
# and is a no-op when neither the lock file nor pyproject.toml changed.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Python 3.13 is required; prefer an explicit python3.13, else a python3 that is 3.13.
PYTHON ?= $(shell command -v python3.13 2>/dev/null || command -v python3 2>/dev/null)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run web worker beat mcp test faults lint format migrate seed bench soak lock clean

help:
	@echo "make run     install, migrate, seed a demo, start web + worker + beat + MCP gateway (Ctrl-C stops all)"
	@echo "make test    run the whole test suite (PostgreSQL/Redis if found, else embedded)"
	@echo "make faults  the fault-injection suite alone (tests/faults, SPEC §9.6)"
	@echo "make lint    ruff (lint + format check) and mypy"
	@echo "make web | worker | beat   start one process type (see README: configuration)"
	@echo "make mcp     the MCP gateway (config: OVERSIGHT_MCP_CONFIG, default deploy/mcp.yaml; docs/mcp.md)"
	@echo "make bench   the performance benchmark (SPEC §10); one section: make bench BENCH=punctuality"
	@echo "make soak    10 minutes of mixed traffic: 5xx, latency, timers, outbox, RSS (SOAK_SECONDS=120)"
	@echo "make lock    re-resolve requirements.lock from pyproject.toml"

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml client/pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "Python 3.13 is required (python3.13 not found)"; exit 1; fi
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else "Python 3.13 is required; $(PYTHON) is " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing dependencies from requirements.lock into $(VENV)/ ..."
	@$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	@# The Python client is its own package (client/pyproject.toml); the server's tree imports
	@# it from the checkout, as an editable install would, without building it.
	@echo "$(CURDIR)/client" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/oversight-client.pth"
	@touch $@

run: install
	$(PY) -m tools.launcher

web: install
	$(PY) -m oversight.processes web

# Every pool (timers, outbound, background) under one supervisor; one pool: make worker POOLS=timers
worker: install
	$(PY) -m oversight.processes worker $(POOLS)

beat: install
	$(PY) -m oversight.processes beat

# The MCP gateway (SPEC §13), in front of the MCP servers its config names.
mcp: install
	$(PY) -m oversight.mcp --config $(or $(OVERSIGHT_MCP_CONFIG),deploy/mcp.yaml)

test: install
	$(PY) -m tools.testenv $(PYTEST_ARGS)

faults: install
	$(PY) -m tools.testenv -m faults $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@# The settings refuse to load without a secret key unless DEBUG is on.
	DEBUG=true $(VENV)/bin/mypy .
	@# The layering of the apps (pyproject.toml: tool.importlinter).
	$(VENV)/bin/lint-imports --no-cache

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: install
	$(PY) manage.py migrate --noinput

seed: install
	$(PY) manage.py seed_demo

bench: install
	$(PY) -m tools.bench $(if $(BENCH),--only $(BENCH))

soak: install
	$(PY) -m tools.soak $(if $(SOAK_SECONDS),--seconds $(SOAK_SECONDS))

lock: install
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --universal --generate-hashes \
		--python-version 3.13 --quiet -o requirements.lock

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache
