# One virtualenv, installed from the hashed lock file; every target below uses it.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install run check lint test bench lock clean

$(BIN)/.installed: requirements/lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements/lock.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(BIN)/.installed  ## create .venv and install nextoffer with every extra

run: install  ## the main job on embedded defaults: generate → migrate → ingest → features
	$(BIN)/nextoffer quickstart

check: install  ## everything CI checks: lint, format, types, import layers, tests
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/check

bench: install  ## benchmarks; JSON results under bench/results/
	$(BIN)/python -m bench.etl
	$(BIN)/python -m bench.train --customers 100000
	$(BIN)/python -m bench.serve

lock:  ## re-resolve requirements/lock.txt (needs uv)
	uv pip compile pyproject.toml --all-extras --generate-hashes --python-version 3.11 --universal -o requirements/lock.txt

clean:
	rm -rf var test-artifacts .mypy_cache .ruff_cache .pytest_cache
