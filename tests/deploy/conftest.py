"""Session fixtures of the deployment tests: a PostgreSQL server run with the shipped
configuration and first-start script, shared by the configuration tests and the postgres
exporter of the live-metrics tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY
from tests.e2e.private_servers import PG_USER, PostgresCluster, postgres_bin_dir

PASSWORDS = {
    "NEXTOFFER_DB_PASSWORD_FILE": "app-password",
    "MLFLOW_DB_PASSWORD_FILE": "mlflow-password",
    "EXPORTER_DB_PASSWORD_FILE": "exporter-password",
}


@dataclass
class ShippedPostgres:
    """A scratch cluster started with deploy/postgres/postgresql.conf and initdb script."""

    cluster: PostgresCluster
    init_output: str

    @property
    def port(self) -> int:
        """TCP port on 127.0.0.1."""
        return self.cluster.port

    def conninfo(self, database: str = "postgres", user: str = PG_USER) -> str:
        """libpq connection string (trust authentication in this test cluster)."""
        return f"host=127.0.0.1 port={self.port} user={user} dbname={database}"


@pytest.fixture(scope="session")
def shipped_postgres() -> Iterator[ShippedPostgres]:
    """PostgreSQL as deploy/compose.yaml runs it: `-c config_file=` the shipped file."""
    cluster = PostgresCluster(postgres_bin_dir()).init()
    try:
        # The file is read by the server process (user postgres), so it goes beside the data.
        config = cluster.root / "postgresql.conf"
        shutil.copy(DEPLOY / "postgres" / "postgresql.conf", config)
        shutil.chown(config, PG_USER, PG_USER)
        options = (
            f"-c config_file={config} -p {cluster.port} -k {cluster.root} "
            "-c listen_addresses=127.0.0.1 -c fsync=off"
        )
        done = subprocess.run(
            [
                "runuser",
                "-u",
                PG_USER,
                "--",
                str(cluster.bin_dir / "pg_ctl"),
                "-D",
                str(cluster.data_dir),
                "-l",
                str(cluster.log_path),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"PostgreSQL did not start with the shipped config:\n"
                f"{done.stderr}\n{cluster.log_tail()}"
            )
        yield ShippedPostgres(cluster, run_init_script(cluster))
    finally:
        cluster.destroy()


def run_init_script(cluster: PostgresCluster) -> str:
    """deploy/postgres/initdb/10-nextoffer.sh, as the image's entrypoint would run it."""
    secrets = cluster.root / "secrets"
    secrets.mkdir()
    env = {
        "PATH": f"{cluster.bin_dir}:/usr/bin:/bin",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(cluster.port),
        "PGDATA": str(cluster.data_dir),
        "POSTGRES_USER": PG_USER,
        "POSTGRES_DB": "postgres",
    }
    for variable, password in PASSWORDS.items():
        path = secrets / variable.lower()
        path.write_text(password + "\n")
        env[variable] = str(path)
    script = DEPLOY / "postgres" / "initdb" / "10-nextoffer.sh"
    done = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"{script.name} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def as_postgres(*args: str) -> str:
    """Run a PostgreSQL program as user postgres; its stdout."""
    done = subprocess.run(
        ["runuser", "-u", PG_USER, "--", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {done.stderr}")
    return done.stdout


def ensure_dir(path: Path) -> Path:
    """`path`, created, owned by postgres (who must be able to read into it)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, PG_USER, PG_USER)
    return path
