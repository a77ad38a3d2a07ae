"""A trained little world and the real API server as a subprocess, for e2e and fault tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
NEXTOFFER = str(Path(sys.executable).with_name("nextoffer"))
WORLD_CUSTOMERS = 1500


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def world_env(var_dir: Path, database_url: str, cache_url: str = "memory://") -> dict[str, str]:
    """Environment for nextoffer commands on one world (database, registry, files)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTOFFER_")}
    env.update(
        NEXTOFFER_VAR_DIR=str(var_dir),
        NEXTOFFER_DATABASE_URL=database_url,
        NEXTOFFER_CACHE_URL=cache_url,
        NEXTOFFER_REGISTRY_URI=f"sqlite:///{var_dir / 'mlflow.db'}",
        NEXTOFFER_ARTIFACTS_URL=f"file://{var_dir / 'artifacts'}",
        NEXTOFFER_TRAIN_THREADS="2",
        NEXTOFFER_LOG_LEVEL="WARNING",
    )
    return env


def run_cli(env: Mapping[str, str], *args: str, stdin: str | None = None) -> str:
    """Run `nextoffer ARGS`; return stdout, fail with stderr on a non-zero exit."""
    done = subprocess.run(
        [NEXTOFFER, *args],
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"nextoffer {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def build_world(var_dir: Path, database_url: str, customers: int = WORLD_CUSTOMERS) -> None:
    """Generate, migrate, ingest, features, train and precompute: the README's main job."""
    env = world_env(var_dir, database_url)
    run_cli(
        env,
        "quickstart",
        "--customers",
        str(customers),
        "--data",
        str(var_dir / "data"),
        "--no-serve",
    )


def create_key(env: Mapping[str, str], role: str) -> str:
    """A new API key of `role` (the CLI prints only the key on stdout)."""
    return run_cli(env, "keys", "create", "--role", role).strip()


@dataclass
class ApiServer:
    """`nextoffer serve` on a free port; stop() ends it. Logs go to a file for failures."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ApiServer:
        """Start and wait until /health answers."""
        env = dict(self.env)
        env["NEXTOFFER_API_PORT"] = str(self.port)
        env["NEXTOFFER_API_HOST"] = "127.0.0.1"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [NEXTOFFER, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"server did not start in {timeout_s} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's output."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def copy_world(source: Path, target: Path) -> Path:
    """A private copy of a built SQLite world (tests that write get their own)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("spool", "prometheus"))
    return target
