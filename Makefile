# Two set-up commands for a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint fmt demo up clean chaos bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

test: lint
	$(BIN)/pytest -q

# The full chaos run (>= 1,000 jobs, 4 nodes, every fault kind several times; minutes).
# `make test` runs its short form. CHAOS_SEED=N picks another fault plan; CHAOS_STORE=s3
# keeps outputs and inputs in S3 (a moto server the suite starts) instead of Redis.
chaos: $(STAMP)
	CHAOS_FULL=1 $(BIN)/pytest -q -s tests/chaos

# The benchmark table (bench/README.md): ratios against baselines measured in the same run;
# a few minutes; exit 1 when a target is missed. BENCH_ARGS=--quick for a smoke run.
bench: $(STAMP)
	$(PY) -m bench.fleet_bench $(BENCH_ARGS)

demo: $(STAMP)
	bash scripts/demo.sh

up: $(STAMP)
	$(BIN)/comfyfleet up --nodes 2

clean:
	rm -rf $(VENV) dist build out .mypy_cache .ruff_cache .pytest_cache

# Many more schemathesis examples per operation than `make test` runs (tests/fuzz).
.PHONY: fuzz
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(BIN)/pytest -q -s tests/fuzz -o timeout=1800
