# keda-otel-scaler — every target bootstraps what it needs (venv, Debian tools) by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-tools
REPORT ?= demo-report
EVALUATE_REPORT ?= evaluate-report
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help venv native system-tools demo evaluate serve test lint typecheck layers proto unit settings-table hooks bench soak fuzz image image-test clean

help:
	@echo "make demo        simulate a PD fleet; prefill and decode scale independently (report in $(REPORT)/)"
	@echo "make evaluate    score the autoscaling recipes in virtual time (report in $(EVALUATE_REPORT)/; EVALUATE_ARGS=--full)"
	@echo "make test        lint, type-check, layering, stub freshness, the whole test suite (coverage floor)"
	@echo "make hooks       install the git pre-commit hook (ruff, format check, mypy, lint-imports)"
	@echo "make settings-table  rewrite README.md's configuration table from scaler/config.py"
	@echo "make serve       run the scaler on 4317/4318/9090"
	@echo "make bench       benchmarks -> bench/RESULTS.md"
	@echo "make soak        10 minutes at 10x a 1000-pod fleet's rate, RSS must stay flat -> bench/SOAK.md"
	@echo "make fuzz        atheris fuzzers, FUZZ_SECONDS (default 1800) per target; crashes in .fuzz-artifacts/"
	@echo "make image       build the container image;  make image-test  build, run and probe it"

$(STAMP): pyproject.toml requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

venv: $(STAMP) native

# The native OTLP ingest extension, rebuilt in place whenever its source changes.
NATIVE_SRC := $(wildcard scaler/_native/*.c scaler/_native/*.h)
NATIVE_STAMP := scaler/_native/.built
# The old library is unlinked first, not overwritten: a running server or fuzzer that has it
# mapped keeps its copy instead of crashing on a file rewritten under it.
$(NATIVE_STAMP): $(NATIVE_SRC) setup.py | $(STAMP)
	rm -f scaler/_native/*.so
	$(PY) setup.py -q build_ext --inplace
	@touch $@

native: $(NATIVE_STAMP)

# Debian packages the tests use: promtool (PromQL differential tests, Prometheus for the
# benchmarks), shellcheck (manifests), chromium + chromium-driver (headless browser tests of
# /docs and the web pages, driven by selenium; nothing is downloaded at run time).
SYSTEM_PACKAGES := prometheus shellcheck chromium chromium-driver
$(SYSTEM_STAMP): | $(STAMP)
	@if ! command -v promtool >/dev/null || ! command -v shellcheck >/dev/null \
		|| ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	fi
	@touch $@

system-tools: $(SYSTEM_STAMP)

demo: $(STAMP) $(NATIVE_STAMP)
	$(VENV)/bin/keda-otel-scaler demo --report $(REPORT)
	@echo "Report: $(REPORT)/summary.md, $(REPORT)/report.json, $(REPORT)/replicas.png"

evaluate: $(STAMP) $(NATIVE_STAMP)
	$(VENV)/bin/keda-otel-scaler evaluate --jobs $(JOBS) --report $(EVALUATE_REPORT) $(EVALUATE_ARGS)
	@echo "Report: $(EVALUATE_REPORT)/summary.md, $(EVALUATE_REPORT)/report.json, $(EVALUATE_REPORT)/pareto-*.png"

serve: $(STAMP) $(NATIVE_STAMP)
	$(VENV)/bin/keda-otel-scaler serve

CODE := scaler tests bench scripts

lint: $(STAMP)
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)

typecheck: $(STAMP)
	$(VENV)/bin/mypy $(CODE)

layers: $(STAMP)
	$(VENV)/bin/lint-imports

proto: $(STAMP)
	PYTHON=$(PY) bash scripts/gen_proto.sh scaler/_gen

# Coverage of scaler/ by the in-process tests (child processes are not measured): the floor is
# the total measured before issue 13 (93.25 %, rounded down); raise it, never lower it.
COVERAGE_FLOOR := 93

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file per worker at a time
# (--dist loadfile: a module's server fixtures start once): most tests wait on servers, child
# processes or the wall clock, so two workers on two cores take 6 minutes instead of 11.
TEST_WORKERS ?= 2

unit: $(STAMP) $(SYSTEM_STAMP) $(NATIVE_STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --cov --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

settings-table: $(STAMP)
	$(PY) scripts/settings_table.py

hooks: $(STAMP)
	$(VENV)/bin/pre-commit install

test: lint typecheck layers unit

bench: $(STAMP) $(SYSTEM_STAMP) $(NATIVE_STAMP)
	$(PY) -m bench

soak: $(STAMP) $(NATIVE_STAMP)
	$(PY) -m bench.soak

FUZZ_SECONDS ?= 1800
fuzz: $(STAMP) $(NATIVE_STAMP)
	$(PY) -m tests.fuzz all --seconds $(FUZZ_SECONDS)

image:
	bash scripts/image.sh build

image-test: $(STAMP) $(NATIVE_STAMP)
	bash scripts/image.sh test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage $(REPORT) $(EVALUATE_REPORT) build scaler/_native/*.so $(NATIVE_STAMP)
