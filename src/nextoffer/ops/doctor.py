"""`nextoffer doctor`: every dependency checked, one line each, naming the setting at fault."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nextoffer.cache import make_cache
from nextoffer.cache.base import safe_cache_url, same_redis_database
from nextoffer.config import Settings
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.serving.weak_secrets import INSECURE_SETTING, secret_problems
from nextoffer.storage import open_prefix
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine, ping, safe_url

# Below this much free space under VAR_DIR, spooled events, quarantine files and local
# backups start to fail.
MIN_FREE_BYTES = 1 << 30
TIMEOUT_S = 3


@dataclass(frozen=True)
class Check:
    """One dependency's state: ok, or the setting that points at something dead and why."""

    name: str
    setting: str
    ok: bool
    detail: str
    seconds: float = 0.0
    skipped: bool = False


def run_checks(settings: Settings) -> list[Check]:
    """Check every dependency the settings name; never raises, never waits long on one."""
    database = _timed("database", "NEXTOFFER_DATABASE_URL", lambda: _database(settings))
    if database.ok:
        schema = _timed("migrations", "NEXTOFFER_DATABASE_URL", lambda: _migrations(settings))
    else:
        schema = Check("migrations", database.setting, False, "not checked: no database")
    checks = [
        database,
        schema,
        _timed("cache", "NEXTOFFER_CACHE_URL", lambda: _cache(settings)),
        _broker(settings),
        _timed("registry", "NEXTOFFER_REGISTRY_URI", lambda: _registry(settings)),
        _timed("artifact store", "NEXTOFFER_ARTIFACTS_URL", lambda: _store(settings, "artifacts")),
        _timed("backup store", "NEXTOFFER_BACKUP_URL", lambda: _store(settings, "backup")),
        _timed("disk space", "NEXTOFFER_VAR_DIR", lambda: _disk(settings.var_dir)),
        _secrets(settings),
    ]
    if settings.ingest_source:
        checks.append(_timed("ingest source", "NEXTOFFER_INGEST_SOURCE", lambda: _source(settings)))
    if settings.ingest_mapping:
        checks.append(
            _timed("ingest mapping", "NEXTOFFER_INGEST_MAPPING", lambda: _mapping(settings))
        )
    return checks


def _timed(name: str, setting: str, probe: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        detail = probe()
        ok = True
    except Exception as exc:
        detail, ok = _one_line(exc, setting), False
    return Check(name, setting, ok, detail, time.perf_counter() - started)


def _one_line(exc: BaseException, setting: str) -> str:
    line = " ".join(str(exc).split()) or type(exc).__name__
    line = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", line)
    line = line.removeprefix(f"{setting}: ")  # the doctor names the setting itself
    return line[:300]


def _database(settings: Settings) -> str:
    engine = make_engine(settings.database_url)
    try:
        ping(engine)
        return safe_url(settings.database_url)
    finally:
        engine.dispose()


def _migrations(settings: Settings) -> str:
    engine = make_engine(settings.database_url)
    try:
        current, head = migrate.current_revision(engine), migrate.head_revision()
    finally:
        engine.dispose()
    if current != head:
        raise RuntimeError(
            f"schema at {current or 'nothing'}, code at {head}: run `nextoffer db upgrade`"
        )
    return f"at head ({head})"


def _cache(settings: Settings) -> str:
    cache = make_cache(settings.cache_url)
    try:
        if not cache.ping():
            raise RuntimeError(f"no answer from {safe_cache_url(settings.cache_url)}")
    finally:
        cache.close()
    return safe_cache_url(settings.cache_url)


def _broker(settings: Settings) -> Check:
    if not settings.broker_url:
        return Check(
            "broker", "NEXTOFFER_BROKER_URL", True, "not set: jobs run inline", skipped=True
        )

    def probe() -> str:
        from kombu import Connection

        with Connection(settings.broker_url, connect_timeout=TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=1, timeout=TIMEOUT_S)
            where = str(conn.as_uri())  # the password masked
        if same_redis_database(settings.broker_url, settings.cache_url):
            raise RuntimeError("the broker shares a Redis database with NEXTOFFER_CACHE_URL")
        return where

    return _timed("broker", "NEXTOFFER_BROKER_URL", probe)


@contextmanager
def _mlflow_fails_fast() -> Iterator[None]:
    # MLflow retries an unreachable server for minutes by default; a doctor must not.
    saved = {
        k: os.environ.get(k)
        for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    }
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(TIMEOUT_S)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _registry(settings: Settings) -> str:
    with _mlflow_fails_fast():
        registry = ModelRegistry.from_settings(settings)
        champions = {kind: registry.champion(kind) for kind in ("offers", "churn")}
    found = ", ".join(
        f"{kind} v{info.version}" if info else f"{kind}: none yet"
        for kind, info in champions.items()
    )
    return f"champions: {found}"


def _store(settings: Settings, which: str) -> str:
    url = settings.artifacts_url if which == "artifacts" else settings.backup_url
    setting = "NEXTOFFER_ARTIFACTS_URL" if which == "artifacts" else "NEXTOFFER_BACKUP_URL"
    store = open_prefix(url, endpoint_url=settings.s3_endpoint_url, setting=setting)
    # Listing proves the bucket (or folder) exists and the credentials may read it.
    store.list("doctor-probe/")
    return store.describe()


def _secrets(settings: Settings) -> Check:
    problems = secret_problems(settings)
    if not problems:
        return Check("secrets", "NEXTOFFER_JWT_SECRET", True, "no known, example or weak secret")
    detail = "; ".join(problems)
    if settings.allow_insecure_secrets:
        # Allowed for development, but still named: production must never look like this.
        return Check("secrets", INSECURE_SETTING, True, f"allowed for development: {detail}")
    return Check("secrets", "NEXTOFFER_JWT_SECRET", False, f"{detail}; serve refuses to start")


def _disk(var_dir: Path) -> str:
    var_dir.mkdir(parents=True, exist_ok=True)
    probe = var_dir / ".doctor-write-test"
    probe.write_text("ok")
    probe.unlink()
    free = shutil.disk_usage(var_dir).free
    if free < MIN_FREE_BYTES:
        raise RuntimeError(f"only {free / 2**20:,.0f} MiB free under {var_dir}")
    return f"{free / 2**30:,.1f} GiB free under {var_dir}, writable"


def _mapping(settings: Settings) -> str:
    from nextoffer.ingest.mapping import load_mapping

    mapping = load_mapping(settings.ingest_mapping)
    return f"{len(mapping.files)} file entries in {mapping.source}"


def _source(settings: Settings) -> str:
    source = settings.ingest_source
    if source.startswith("s3://"):
        store = open_prefix(
            source, endpoint_url=settings.s3_endpoint_url, setting="NEXTOFFER_INGEST_SOURCE"
        )
        return f"{len(store.list())} objects at {store.describe()}"
    path = Path(source)
    if not path.is_dir():
        raise RuntimeError(f"{path}: no such folder")
    return f"{sum(1 for _ in path.iterdir())} entries in {path}"
