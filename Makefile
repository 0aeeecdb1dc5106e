# fitrelay: `make run` starts the relay, `make test` runs every check. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NODE_DIR := tests/interop/node

.PHONY: run test check lint format types pytest pytest-partitioned test-partitioned clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the Node client interop tests will be skipped"; fi

## Run the relay (embedded PostgreSQL under ./var unless a DSN is configured).
run: $(VENV)/.installed-run
	$(BIN)/fitrelay serve $(ARGS)

## Lint, type-check and run the whole test suite, then the tests of the store, the filter
## properties (Python matching against SQL) and the protocol rules again on the partitioned
## layout of events (FITRELAY_TEST_PARTITIONED=1; `make test-partitioned` runs all of it so).
test: $(VENV)/.installed-test $(NODE_DIR)/node_modules/.package-lock.json lint types pytest \
	pytest-partitioned

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(VENV)/.installed-test
	$(BIN)/mypy

## Tests run in PYTEST_WORKERS processes (pytest-xdist; each has its own databases): most of
## a test's time is waiting on PostgreSQL and sockets, so four share two cores well.
PYTEST_WORKERS ?= 4
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS)

pytest: $(VENV)/.installed-test
	$(PYTEST) $(PYTEST_ARGS)

PARTITIONED_TESTS := tests/storage tests/property/test_filter_sql.py \
	tests/property/test_cache_consistency.py tests/property/test_search_sql.py \
	tests/server/test_protocol.py tests/indexer/test_reader_role.py

pytest-partitioned: $(VENV)/.installed-test
	FITRELAY_TEST_PARTITIONED=1 $(PYTEST) $(PYTEST_ARGS) $(PARTITIONED_TESTS)

## The whole suite on the partitioned layout of events.
test-partitioned: $(VENV)/.installed-test $(NODE_DIR)/node_modules/.package-lock.json
	FITRELAY_TEST_PARTITIONED=1 $(PYTEST) $(PYTEST_ARGS)

## Benchmark fitrelay beside nostr-relay 1.14 on the local PostgreSQL; results land in
## docs/benchmarks.md. Options: BENCH_ARGS='--quick', '--large', '--against none' (see --help).
.PHONY: bench
bench: $(VENV)/.installed-run
	BENCH_MAKE_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" \
		$(BIN)/python -m bench $(BENCH_ARGS)

## NIP-50 search over 100,000 exercises on the local PostgreSQL (see docs/search.md).
.PHONY: bench-search
bench-search: $(VENV)/.installed-run
	$(BIN)/python -m bench.search $(BENCH_ARGS)

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
