# The two commands that matter: `make run` and `make test`. Both start from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= examples/gateway.yaml
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck layers check bench e2e-deps clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The demo's model routes go to the mock model API (started here, stopped with the gateway) unless
# UPSTREAM_ANTHROPIC_API_KEY holds a real Anthropic key; CLAUDE_PROVIDER overrides the choice.
MOCK_MODEL_API_PORT ?= 8100
run: $(STAMP)
	mkdir -p data
	$(BIN)/mcp-gateway demo-secrets --config $(CONFIG) --out data/demo-secrets.env
	@$(BIN)/python -m examples.servers.mock_model_api --port $(MOCK_MODEL_API_PORT) & mock=$$!; \
	trap 'kill $$mock 2>/dev/null' EXIT; \
	if [ -z "$$CLAUDE_PROVIDER" ]; then \
	  if [ -n "$$UPSTREAM_ANTHROPIC_API_KEY" ]; then CLAUDE_PROVIDER=anthropic; else CLAUDE_PROVIDER=mock-model-api; fi; \
	fi; \
	echo "Claude models are routed to: $$CLAUDE_PROVIDER"; \
	CLAUDE_PROVIDER=$$CLAUDE_PROVIDER MOCK_MODEL_API_URL=http://127.0.0.1:$(MOCK_MODEL_API_PORT) \
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/mcp-gateway serve --config $(CONFIG) --env-file data/demo-secrets.env \
	  --show-demo-secrets

test: $(STAMP) e2e-deps
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

# Without the npm registry (a laptop offline) the tests that need these skip loudly; in CI they must install.
# The dashboard's browser test drives Debian's chromium (never a browser download of Playwright's own).
e2e-deps:
	cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error || { \
	  if [ "$$CI" = true ]; then exit 1; fi; \
	  echo "WARNING: npm ci failed in tests/e2e: the end-to-end tests that need Node programs will skip"; }
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing (apt-get install chromium, as root): the dashboard's browser test will skip"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

check: $(STAMP)
	$(BIN)/mcp-gateway check --config $(CONFIG)

bench: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/mcp_tools_call.py
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/llm_proxy_bench.py

clean:
	rm -rf $(VENV) data tests/e2e/node_modules
