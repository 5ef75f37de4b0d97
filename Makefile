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

# The test extras hold the demo's (sqla): after make test, nothing to install.
$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	if [ ! $(VENV)/.test-installed -nt pyproject.toml ]; then $(BIN)/pip install --quiet -e '.[sqla]'; fi
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

# Two workers (the CI machine has two cores; most tests wait on servers), one
# file per worker at a time: a file's fixtures and servers stay together.
JOBS ?= 2
pytest: $(VENV)/.test-installed $(VENV)/.nginx
	$(BIN)/pytest -n $(JOBS) --dist loadfile --cov --cov-report=term:skip-covered $(ARGS)

# nginx for the mutual-TLS proxy tests (tests/test_mtls_nginx.py run it as
# their own process). Debian's nginx-light, installed as root with apt; its
# start as a system service is refused (policy-rc.d), so nothing listens on
# port 80. Elsewhere a one-line reason, and those tests skip.
$(VENV)/.nginx: | $(BIN)/python
	@if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  own_policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends nginx-light >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends nginx-light >/dev/null 2>&1; }; \
	  [ -n "$$own_policy" ] && rm -f /usr/sbin/policy-rc.d; \
	  if [ -x /usr/sbin/nginx ]; then echo "nginx: installed nginx-light for the mTLS proxy tests"; touch $@; else echo "nginx: apt-get install nginx-light failed; the nginx mTLS tests will skip"; fi; \
	else echo "nginx: not installed and cannot install it (needs root and apt-get); the nginx mTLS tests will skip"; fi

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
