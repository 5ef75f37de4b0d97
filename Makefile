# bearerguard — every target sets up its own .venv, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: test lint pytest demo bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[sqla]'
	touch $@

$(VENV)/.bench-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

## test: lint, type-check and run the whole suite (what CI runs)
test: lint pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks fuzz examples
	$(BIN)/ruff format --check src tests benchmarks fuzz examples
	$(BIN)/mypy
	$(BIN)/mypy examples/demo.py

pytest: $(VENV)/.test-installed
	$(BIN)/pytest --cov --cov-report=term:skip-covered $(ARGS)

## demo: run the example resource server on 127.0.0.1:5000 (ARGS=--check to self-test)
demo: $(VENV)/.demo-installed
	$(BIN)/python examples/demo.py $(ARGS)

## fuzz: coverage-guided fuzzing of the request path (FUZZ_SECONDS, default 60)
FUZZ_SECONDS ?= 60
fuzz: $(VENV)/.test-installed
	mkdir -p .fuzz-corpus
	$(BIN)/python fuzz/fuzz_protector.py -max_total_time=$(FUZZ_SECONDS) .fuzz-corpus

## bench: the benchmark suite; table on stdout, JSON + PNG in benchmarks/results/
bench: $(VENV)/.bench-installed
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null && apt-get install -y -qq wrk >/dev/null 2>&1; } \
		|| echo "wrk not installed (needs apt-get as root): the load runs use the bundled Python client"
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
