# syntax=docker/dockerfile:1
# One image for every nextoffer role, chosen by the command: `serve` (the API), `worker`,
# `beat`, one-shot jobs (`bootstrap`, `db upgrade`, ...) and `mlflow server` (the same MLflow
# version the app is built against). See docs/deploy.md.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: two virtualenvs filled from hashed locks --------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/build.txt requirements/runtime.txt requirements/
# --require-hashes: a file on the index that differs from the one locked fails the build.
# --only-binary: nothing is compiled, so the image needs no compiler and builds the same way
# every time. The runtime virtualenv has no pip or setuptools of its own: the build one's pip
# installs into it (`--python`), so neither ships in the image.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: \
        -r requirements/build.txt \
    && python -m venv --without-pip /opt/nextoffer \
    && /opt/build/bin/pip --python /opt/nextoffer/bin/python install --no-cache-dir \
        --require-hashes --only-binary=:all: --no-deps -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation \
        --wheel-dir /tmp/wheels . \
    && /opt/build/bin/pip --python /opt/nextoffer/bin/python install --no-cache-dir \
        --no-deps /tmp/wheels/nextoffer-*.whl

# --- airflow: Airflow (compose profile `airflow`) with nextoffer's virtualenv beside it ----
# The DAGs in dags/ run each step with NEXTOFFER_PYTHON, so Airflow and nextoffer never share
# (or fight over) one environment. The Airflow image is bookworm with the same Python 3.11
# under /usr/local, which the copied virtualenv points at. Build: `--target airflow`.
FROM apache/airflow:3.3.2-python3.11 AS airflow
USER 0
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/nextoffer /opt/nextoffer
ENV NEXTOFFER_PYTHON=/opt/nextoffer/bin/python
# The image's own user: uid 50000, group 0.
USER 50000:0

# --- runtime (the default target): the virtualenv, an OpenMP runtime, a user without
# privileges -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="nextoffer" \
      org.opencontainers.image.description="Next-best-offer platform for telecom operators" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/nextoffer/nextoffer"
# libgomp1: LightGBM's wheel links the system OpenMP runtime, which slim images lack.
# postgresql-client (15 on bookworm, the server's major version in deploy/compose.yaml):
# pg_dump, pg_restore and pg_basebackup for `nextoffer backup` on the worker.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 postgresql-client \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so volume ownership and `user:` in compose files can rely on it.
RUN groupadd --system --gid 10001 nextoffer \
    && useradd --system --uid 10001 --gid nextoffer --home-dir /var/lib/nextoffer \
        --shell /usr/sbin/nologin nextoffer \
    && install -d -o nextoffer -g nextoffer -m 0750 /var/lib/nextoffer
COPY --from=build /opt/nextoffer /opt/nextoffer
# The root filesystem can be read-only: state goes to NEXTOFFER_VAR_DIR (a volume), caches of
# libraries to /tmp (a tmpfs in compose). Bytecode was compiled at install time.
ENV PATH=/opt/nextoffer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NEXTOFFER_VAR_DIR=/var/lib/nextoffer \
    NEXTOFFER_API_HOST=0.0.0.0 \
    NEXTOFFER_API_PORT=8000 \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/cache
USER 10001:10001
WORKDIR /var/lib/nextoffer
EXPOSE 8000 9101
# The API's liveness (no backend touched). Worker, beat and one-shot jobs override this in
# deploy/compose.yaml with a probe of their own.
HEALTHCHECK --interval=30s --timeout=10s --start-period=40s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('NEXTOFFER_API_PORT', '8000') + '/health', timeout=5)"]
ENTRYPOINT ["nextoffer"]
CMD ["serve"]
