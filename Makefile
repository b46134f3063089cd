# Two entry points: `make run` and `make test`. Both are safe to re-run: the
# virtual environment is rebuilt only when pyproject.toml changes, because
# building llama-cpp-python from source takes minutes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-$(shell sha1sum pyproject.toml | cut -c1-16)
NODE_STAMP := node_modules/.stamp-$(shell sha1sum package.json | cut -c1-16)

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.stamp-*
	touch $@

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --silent
	rm -f node_modules/.stamp-*
	touch $@

run: $(STAMP)
	$(BIN)/slipstream serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) $(NODE_STAMP) lint typecheck
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/gateway_overhead.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
