# Two commands a newcomer needs: `make demo` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The test suite runs on its own stack so it never touches the demo's data.
TEST_HOME := $(CURDIR)/.local/test

.PHONY: demo test lint sqlfluff pytest dbt-test bench venv clean up down

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clicks demo

test: $(STAMP)
	$(MAKE) --no-print-directory lint
	CLICKS_HOME=$(TEST_HOME) $(BIN)/clicks up --quiet
	$(MAKE) --no-print-directory sqlfluff pytest dbt-test

lint: $(STAMP)
	$(BIN)/ruff check loaders tests benchmarks
	$(BIN)/ruff format --check loaders tests benchmarks

# sqlfluff's dbt templater compiles every model, so it needs the profile's database up.
sqlfluff: $(STAMP)
	eval "$$(CLICKS_HOME=$(TEST_HOME) $(BIN)/clicks env)" && \
		DBT_PROFILES_DIR=$(CURDIR) $(BIN)/sqlfluff lint models tests/dbt

pytest: $(STAMP)
	CLICKS_HOME=$(TEST_HOME) $(BIN)/pytest -m "not fortnight"

# dbt's schema, data and unit tests, run by `dbt build` inside fourteen nightly cycles over a
# simulated fortnight, each checked against the simulator's truth (tests/pytest/test_fortnight.py).
dbt-test: $(STAMP)
	CLICKS_HOME=$(TEST_HOME) $(BIN)/pytest -m fortnight

bench: $(STAMP)
	CLICKS_HOME=$(CURDIR)/.local/bench $(BIN)/python -m benchmarks.bench_landing

up: $(STAMP)
	$(BIN)/clicks up

down: $(STAMP)
	$(BIN)/clicks down

clean:
	-$(BIN)/clicks down
	rm -rf .local target logs
