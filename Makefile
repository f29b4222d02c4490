# hpcsnap: the two commands a user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8642
DATA   ?= ./data

.PHONY: run test check install system-deps bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Serve the platform on embedded defaults (SQLite + local storage + local executor).
run: install
	$(BIN)/hpcsnap serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

## Install what the tests need, run linters, then every test.
test: install system-deps check
	$(BIN)/python -m pytest -q -p no:cacheprovider

check: install
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy

system-deps:
	@bash scripts/system-deps.sh

## Benchmarks against cp, rsync, find and restic (see bench/README.md); BENCH_ARGS to tune.
bench: install
	bash bench/setup.sh
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
