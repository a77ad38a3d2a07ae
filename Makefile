# One virtualenv, installed from hashed lock files; every target below uses it.
# `make run` needs only the runtime lock (requirements/runtime.txt, the image's: no test,
# lint or browser tools); `make check` and the rest add the dev tools from the full lock
# (requirements/lock.txt, every extra). `make runtime-lock` resolves the runtime lock under
# the full one, so its pins are the full lock's own: either install on top of the other
# changes no version, and the full install also stands for the runtime one (both stamps).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check
# uv, pinned with its hashes (requirements/uv.txt), lives once per user and version beside
# pip's and uv's own caches: a fresh clone needs neither pip nor uv installed in .venv to run.
UV_VERSION := $(shell sed -n 's/^uv==\([0-9.]*\).*/\1/p' requirements/uv.txt)
UV_ENV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/nextoffer/uv-$(UV_VERSION)
UV := $(UV_ENV)/bin/uv
UV_INSTALL := $(UV) pip install --quiet --python $(BIN)/python

.PHONY: install install-runtime run check prepare lint test bench lock clean airflow

$(UV):
	$(PYTHON) -m venv $(UV_ENV)
	$(UV_ENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --only-binary=:all: -r requirements/uv.txt

# uv installs the runtime lock: from a warm cache in seconds where pip takes a minute. Every
# pin is in the locks with its hash: wheels only and no resolver work, as in the Dockerfile;
# the build lock's setuptools builds nextoffer itself without an isolated build environment.
# No pip in .venv here (ensurepip is the slowest step left); `make install` adds it.
$(BIN)/.installed-runtime: requirements/runtime.txt requirements/build.txt pyproject.toml | $(UV)
	[ -x $(BIN)/python ] || $(PYTHON) -m venv --without-pip $(VENV)
	$(UV_INSTALL) --require-hashes --no-deps --only-binary=:all: -r requirements/runtime.txt -r requirements/build.txt
	$(UV_INSTALL) --no-deps --no-build-isolation -e .
	touch $@

$(BIN)/.installed: requirements/lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --require-hashes -r requirements/lock.txt
	$(PIP_INSTALL) --no-deps -e .
	touch $@ $(BIN)/.installed-runtime

install-runtime: $(BIN)/.installed-runtime  ## create .venv with what running needs (the runtime lock)

install: $(BIN)/.installed  ## create .venv and install nextoffer with every extra (dev tools too)

# The clock starts before the install (0 s when the stamp is current); the quickstart prints
# every stage's seconds, from here to the first answer of the served API.
run:  ## install the runtime lock, then generate → migrate → ingest → features → train → precompute → impact → serve
	@started=$$(date +%s.%N); \
	$(MAKE) --no-print-directory install-runtime && \
	$(BIN)/nextoffer quickstart --clock-start $$started --install-done $$(date +%s.%N)

prepare:  ## what the tests need beyond .venv: system tools (apt-get), services, .venv-airflow
	scripts/prepare

# CI=true (unless set): with everything prepared, a test that still lacks something fails
# instead of skipping, here as in .ci/run.
check: prepare install  ## everything CI checks: lint, format, types, import layers, every test
	CI="$${CI:-true}" PATH="$(CURDIR)/$(BIN):$$PATH" scripts/check

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

runtime-lock:  ## re-resolve requirements/runtime.txt, build.txt (the image's hashed locks) and uv.txt (needs uv)
	uv pip compile pyproject.toml --extra postgres --extra redis --extra worker --generate-hashes --python-version 3.11 --universal -c requirements/lock.txt -o requirements/runtime.txt
	uv pip compile requirements/build.in --generate-hashes --python-version 3.11 --universal -o requirements/build.txt
	uv pip compile requirements/uv.in --generate-hashes --python-version 3.11 --universal -o requirements/uv.txt

dashboards: install  ## regenerate deploy/grafana/dashboards/*.json from deploy/grafana/generate.py
	$(BIN)/python deploy/grafana/generate.py

deploy-check: install  ## only the deployment checks (compose, promtool, amtool, hadolint, live Prometheus)
	$(BIN)/pytest tests/deploy -q

.PHONY: env-example
env-example: install  ## regenerate .env.example from the Settings model (deploy/env_example.py)
	$(BIN)/python deploy/env_example.py
