# One virtualenv, installed from the hashed lock file; every target below uses it.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install run check lint test bench lock clean airflow

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

# Airflow conflicts with the web stack (its own pins of FastAPI, SQLAlchemy...), so it gets
# its own virtualenv; its DAGs run nextoffer's functions in .venv through external_python.
# Pinned exactly, no extras, and no constraints file (only package registries are reachable).
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_VERSION ?= 3.3.2

$(AIRFLOW_VENV)/.installed-$(AIRFLOW_VERSION):
	rm -rf $(AIRFLOW_VENV)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --disable-pip-version-check "apache-airflow==$(AIRFLOW_VERSION)"
	touch $@

airflow: $(AIRFLOW_VENV)/.installed-$(AIRFLOW_VERSION)  ## Airflow in .venv-airflow, for dags/ and their tests

lock:  ## re-resolve requirements/lock.txt (needs uv)
	uv pip compile pyproject.toml --all-extras --generate-hashes --python-version 3.11 --universal -o requirements/lock.txt

clean:
	rm -rf var test-artifacts .mypy_cache .ruff_cache .pytest_cache

# --- deployment (issue 7): the image's hashed locks and the generated Grafana dashboards ---
.PHONY: runtime-lock dashboards deploy-check

runtime-lock:  ## re-resolve requirements/runtime.txt and build.txt (the image's hashed locks; needs uv)
	uv pip compile pyproject.toml --extra postgres --extra redis --extra worker --generate-hashes --python-version 3.11 --universal -c requirements/lock.txt -o requirements/runtime.txt
	uv pip compile requirements/build.in --generate-hashes --python-version 3.11 --universal -o requirements/build.txt

dashboards: install  ## regenerate deploy/grafana/dashboards/*.json from deploy/grafana/generate.py
	$(BIN)/python deploy/grafana/generate.py

deploy-check: install  ## only the deployment checks (compose, promtool, amtool, hadolint, live Prometheus)
	$(BIN)/pytest tests/deploy -q

.PHONY: env-example
env-example: install  ## regenerate .env.example from the Settings model (deploy/env_example.py)
	$(BIN)/python deploy/env_example.py
