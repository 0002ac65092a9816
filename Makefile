# Two commands a newcomer needs: `make demo` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The test suite runs on its own stack so it never touches the demo's data.
TEST_HOME := $(CURDIR)/.local/test

.PHONY: demo test lint sqlfluff pytest dbt-test venv clean up down

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
	CLICKS_HOME=$(TEST_HOME) $(BIN)/pytest

# The dbt data and unit tests, run by `dbt build` inside seven nightly cycles over a simulated
# week that ended three days ago (Stripe accepts meter events up to 35 days old).
WEEK_START = $(shell date -u -d '-9 days' +%F)
WEEK_END = $(shell date -u -d '-3 days' +%F)
dbt-test: $(STAMP)
	export CLICKS_HOME=$(TEST_HOME) && eval "$$($(BIN)/clicks env)" && \
		$(BIN)/clicks reset --yes && \
		$(BIN)/clicks simulate --start $(WEEK_START) --days 7 --rentals 30 --seed 11 && \
		$(BIN)/clicks nightly --from $(WEEK_START) --to $(WEEK_END)

up: $(STAMP)
	$(BIN)/clicks up

down: $(STAMP)
	$(BIN)/clicks down

clean:
	-$(BIN)/clicks down
	rm -rf .local target logs
