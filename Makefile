# The two commands that matter: `make run` and `make test`. Both start from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= examples/gateway.yaml
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck check bench e2e-deps clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	mkdir -p data
	$(BIN)/mcp-gateway demo-secrets --config $(CONFIG) --out data/demo-secrets.env
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/mcp-gateway serve --config $(CONFIG) --env-file data/demo-secrets.env

test: $(STAMP) e2e-deps
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

e2e-deps:
	cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error

lint: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

check: $(STAMP)
	$(BIN)/mcp-gateway check --config $(CONFIG)

bench: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/mcp_tools_call.py

clean:
	rm -rf $(VENV) data tests/e2e/node_modules
