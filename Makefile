# Two entry points: `make run` and `make test`. Both are safe to re-run. Building the engine
# (llama-cpp-python) takes minutes, so it is redone only when its version, its build flags or
# the CPU they were chosen for change; the rest of the venv when the project's dependencies do
# (pyproject.toml up to its [tool.*] sections: a linter setting rebuilds nothing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# scripts/engine_cmake_args.py is the one place that decides how llama.cpp is compiled
# (never -march=native on x86-64: that emits AMX kernels that crash on some CPUs).
ENGINE_CMAKE_ARGS := $(shell $(PYTHON) scripts/engine_cmake_args.py)
ENGINE_SIGNATURE := $(shell $(PYTHON) scripts/engine_cmake_args.py --signature)
LLAMA_CPP_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
ENGINE_STAMP := $(VENV)/.engine-$(shell echo "$(LLAMA_CPP_VERSION) $(ENGINE_CMAKE_ARGS) $(ENGINE_SIGNATURE)" | sha1sum | cut -c1-16)
STAMP := $(VENV)/.stamp-$(shell sed '/^\[tool\./,$$d' pyproject.toml | sha1sum | cut -c1-16)
NODE_STAMP := node_modules/.stamp-$(shell sha1sum package.json | cut -c1-16)

.PHONY: run test lint typecheck unit bench clean

# llama-cpp-python is built on its own and uncached: pip's wheel cache ignores CMAKE_ARGS and
# would hand back a wheel compiled with other flags.
$(ENGINE_STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	CMAKE_ARGS="$(ENGINE_CMAKE_ARGS)" $(BIN)/pip install --quiet --no-cache-dir --force-reinstall \
	  --no-deps --no-binary llama-cpp-python "llama-cpp-python==$(LLAMA_CPP_VERSION)"
	rm -f $(VENV)/.engine-*
	touch $@

$(STAMP): $(ENGINE_STAMP)
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
