"""The shipped Redis and PostgreSQL configuration files, loaded by real servers.

Each server is started with the file exactly as compose.yaml mounts it (plus a port of its
own), and the values that matter are read back with CONFIG GET and SHOW, then exercised:
the cache evicts, the broker refuses, FLUSHALL is gone, the public schema is closed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import ShippedPostgres, as_postgres, ensure_dir
from tests.deploy.tools import DEPLOY, free_port, program, wait_for
from tests.e2e.private_servers import PG_USER
from tests.e2e.server import NEXTOFFER

pytestmark = pytest.mark.integration

PASSWORD = "test-only-password"
MB = 1024 * 1024


def start_redis(conf: Path, workdir: Path) -> Iterator[Any]:
    """redis-server with `conf` and the password include, as compose.yaml starts it."""
    import redis

    server = program("redis-server")
    auth = workdir / "auth.conf"
    auth.write_text(f"requirepass {PASSWORD}\n")
    port = free_port()
    log = (workdir / "redis.log").open("wb")
    process = subprocess.Popen(
        [server, str(conf), "--port", str(port), "--bind", "127.0.0.1", "--include", str(auth)],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD)
    try:

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError((workdir / "redis.log").read_text())
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(up, 15, f"redis-server with {conf.name} did not answer")
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def cache_redis(tmp_path: Path) -> Iterator[Any]:
    yield from start_redis(DEPLOY / "redis" / "cache.conf", tmp_path)


@pytest.fixture
def broker_redis(tmp_path: Path) -> Iterator[Any]:
    yield from start_redis(DEPLOY / "redis" / "broker.conf", tmp_path)


def config(client: Any, name: str) -> str:
    """CONFIG GET `name` (redis-py decodes config replies to str)."""
    value: dict[str, Any] = client.config_get(name)
    found = value[name]
    return found.decode() if isinstance(found, bytes) else str(found)


def test_cache_redis_is_a_password_protected_lru_cache_with_aof(cache_redis: Any) -> None:
    import redis

    assert config(cache_redis, "maxmemory") == str(96 * MB)
    assert config(cache_redis, "maxmemory-policy") == "allkeys-lru"
    assert config(cache_redis, "maxmemory-samples") == "5"
    assert config(cache_redis, "appendonly") == "yes"
    assert config(cache_redis, "appendfsync") == "everysec"
    assert config(cache_redis, "save") == "3600 1"
    assert config(cache_redis, "protected-mode") == "yes"
    assert config(cache_redis, "requirepass") == PASSWORD
    port = cache_redis.connection_pool.connection_kwargs["port"]
    anonymous = redis.Redis(host="127.0.0.1", port=port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("anything")
    anonymous.close()
    for command in ("FLUSHALL", "FLUSHDB"):
        with pytest.raises(redis.ResponseError, match="unknown command"):
            cache_redis.execute_command(command)
    # Over its limit the cache keeps accepting writes and forgets the oldest keys.
    block = b"x" * MB
    for n in range(140):
        cache_redis.set(f"user:features:{n}", block)
    # (LRU is approximated by sampling, so which old keys went is not fixed.)
    assert cache_redis.dbsize() < 140
    assert cache_redis.get("user:features:139") == block
    assert int(cache_redis.info("stats")["evicted_keys"]) > 0
    assert int(cache_redis.info("memory")["used_memory"]) <= 96 * MB


def test_broker_redis_never_evicts_and_refuses_when_full(broker_redis: Any) -> None:
    import redis

    assert config(broker_redis, "maxmemory") == str(32 * MB)
    assert config(broker_redis, "maxmemory-policy") == "noeviction"
    assert config(broker_redis, "appendonly") == "yes"
    assert config(broker_redis, "appendfsync") == "everysec"
    assert config(broker_redis, "save") == ""
    assert config(broker_redis, "requirepass") == PASSWORD
    with pytest.raises(redis.ResponseError, match="unknown command"):
        broker_redis.execute_command("FLUSHALL")
    block = b"t" * MB
    stored = 0
    with pytest.raises(redis.ResponseError, match="used memory > 'maxmemory'"):
        for n in range(64):
            broker_redis.rpush("celery", block)
            stored = n + 1
    # Everything queued before the refusal is still there: nothing was evicted.
    assert 0 < stored < 64
    assert broker_redis.llen("celery") == stored


# --- PostgreSQL -------------------------------------------------------------------------------


def show(shipped: ShippedPostgres, name: str, database: str = "postgres") -> str:
    import psycopg

    with psycopg.connect(shipped.conninfo(database), autocommit=True) as conn:
        row = conn.execute(f"SHOW {name}").fetchone()
    assert row is not None
    return str(row[0])


def scalar(
    shipped: ShippedPostgres, sql: str, database: str = "postgres", user: str = PG_USER
) -> Any:
    import psycopg

    with psycopg.connect(shipped.conninfo(database, user), autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


EXPECTED_SETTINGS = {
    "max_connections": "120",
    "shared_buffers": "160MB",
    "effective_cache_size": "480MB",
    "work_mem": "8MB",
    "maintenance_work_mem": "64MB",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "top",
    "log_min_duration_statement": "250ms",
    "log_lock_waits": "on",
    "autovacuum_vacuum_scale_factor": "0.1",
    "autovacuum_analyze_scale_factor": "0.05",
    "wal_level": "replica",
    "archive_mode": "off",
    "password_encryption": "scram-sha-256",
    "idle_in_transaction_session_timeout": "10min",
    "track_io_timing": "on",
    "timezone": "UTC",
}


def test_postgres_runs_with_the_shipped_settings(shipped_postgres: ShippedPostgres) -> None:
    found = {name: show(shipped_postgres, name) for name in EXPECTED_SETTINGS}
    assert found == EXPECTED_SETTINGS
    # The file in use is the shipped one, not the cluster's own.
    assert show(shipped_postgres, "config_file").endswith(f"{os.sep}postgresql.conf")
    assert str(shipped_postgres.cluster.root) in show(shipped_postgres, "config_file")


def test_pool_arithmetic_fits_max_connections() -> None:
    text = (DEPLOY / "postgres" / "postgresql.conf").read_text()
    total = int(re.search(r"total ~ (\d+)", text).group(1))  # type: ignore[union-attr]
    limit = int(re.search(r"^max_connections = (\d+)", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert total < limit
    from nextoffer.store.engine import make_engine

    engine = make_engine("postgresql+psycopg://u@127.0.0.1:1/x", pool_size=10)
    # The API's engine (api/app.py: pool_size=10) may open pool_size + max_overflow.
    assert engine.pool.size() + engine.pool._max_overflow == 20  # type: ignore[attr-defined]
    engine.dispose()


def test_first_start_script_closes_the_public_schema(shipped_postgres: ShippedPostgres) -> None:
    pg = shipped_postgres
    roles = scalar(
        pg,
        "SELECT string_agg(rolname || ':' || rolreplication::text || ':' || rolconnlimit, ',' "
        "ORDER BY rolname) FROM pg_roles WHERE rolname IN "
        "('nextoffer', 'mlflow', 'postgres_exporter')",
    )
    assert roles == "mlflow:false:-1,nextoffer:true:-1,postgres_exporter:false:3"
    assert scalar(pg, "SELECT pg_has_role('postgres_exporter', 'pg_monitor', 'member')") is True
    owners = scalar(
        pg,
        "SELECT string_agg(datname || ':' || pg_get_userbyid(datdba), ',' ORDER BY datname) "
        "FROM pg_database WHERE datname IN ('nextoffer', 'mlflow')",
    )
    assert owners == "mlflow:mlflow,nextoffer:nextoffer"
    for database, stranger in (("nextoffer", "mlflow"), ("mlflow", "nextoffer")):
        assert (
            scalar(pg, f"SELECT has_database_privilege('public', '{database}', 'CONNECT')") is False
        )
        assert (
            scalar(pg, f"SELECT has_database_privilege('{stranger}', '{database}', 'CONNECT')")
            is False
        )
        assert (
            scalar(pg, "SELECT has_schema_privilege('public', 'public', 'CREATE')", database)
            is False
        )
        assert (
            scalar(pg, "SELECT has_schema_privilege('public', 'public', 'USAGE')", database)
            is False
        )
        assert (
            scalar(pg, f"SELECT has_schema_privilege('{stranger}', 'public', 'USAGE')", database)
            is False
        )
    assert scalar(pg, "SELECT has_database_privilege('postgres_exporter', 'nextoffer', 'CONNECT')")
    extensions = scalar(pg, "SELECT string_agg(extname, ',') FROM pg_extension", "nextoffer")
    assert "pg_stat_statements" in extensions
    assert scalar(pg, "SELECT count(*) >= 0 FROM pg_stat_statements", "nextoffer") is True
    hba = (pg.cluster.data_dir / "pg_hba.conf").read_text()
    assert "host replication nextoffer all scram-sha-256" in hba
    assert "app-password" not in pg.cluster.log_tail(100_000)


def test_the_app_migrates_as_its_own_role_under_these_grants(
    shipped_postgres: ShippedPostgres, tmp_path: Path
) -> None:
    url = f"postgresql+psycopg://nextoffer@127.0.0.1:{shipped_postgres.port}/nextoffer"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTOFFER_")}
    env.update(NEXTOFFER_DATABASE_URL=url, NEXTOFFER_VAR_DIR=str(tmp_path))
    done = subprocess.run(
        [NEXTOFFER, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    owner = scalar(
        shipped_postgres,
        "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'",
        "nextoffer",
    )
    assert owner == "nextoffer"


def test_production_and_large_additions_are_picked_up(
    shipped_postgres: ShippedPostgres, tmp_path: Path
) -> None:
    """The include_if_exists lines, pointed at the shipped archive.conf and large.conf."""
    cluster = shipped_postgres.cluster
    folder = ensure_dir(cluster.root / "with-includes")
    text = (DEPLOY / "postgres" / "postgresql.conf").read_text()
    for name in ("archive.conf", "large.conf"):
        shutil.copy(DEPLOY / "postgres" / name, folder / name)
        text = text.replace(f"/etc/postgresql/conf.d/{name}", str(folder / name))
    config = folder / "postgresql.conf"
    config.write_text(text)
    for path in folder.iterdir():
        shutil.chown(path, PG_USER, PG_USER)

    def value(name: str) -> str:
        # `postgres -C` prints a setting as the files give it, without starting a server.
        postgres = str(cluster.bin_dir / "postgres")
        return as_postgres(
            postgres, "-D", str(cluster.data_dir), "-c", f"config_file={config}", "-C", name
        ).strip()

    assert value("archive_mode") == "on"
    assert value("archive_timeout") == "300"
    command = value("archive_command")
    assert command.startswith("test ! -f /var/lib/postgresql/wal-archive/%f && cp %p ")
    assert command.endswith(
        "&& mv /var/lib/postgresql/wal-archive/%f.tmp /var/lib/postgresql/wal-archive/%f"
    )
    assert value("max_connections") == "200"
    assert value("maintenance_work_mem") == "1048576"  # kB: the seed's 1 GB
    assert value("shared_buffers") == "262144"  # 8 kB pages: 2 GB
