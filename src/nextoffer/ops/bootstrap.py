"""`nextoffer bootstrap`: database, buckets, schema and a first admin key, safe to run again."""

from __future__ import annotations

from dataclasses import dataclass, field

from nextoffer.config import Settings
from nextoffer.domain.roles import Role
from nextoffer.ops import pgtools
from nextoffer.serving.api_keys import create_api_key, list_api_keys
from nextoffer.storage import open_prefix
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine, wait_for_database

DATABASE_SETTING = "NEXTOFFER_DATABASE_URL"


@dataclass
class BootstrapResult:
    """What bootstrap did; `admin_key` is set only when it created one (shown once)."""

    steps: list[str] = field(default_factory=list)
    admin_key: str | None = None


def create_database_if_missing(database_url: str) -> bool:
    """PostgreSQL: create the URL's database through the server's `postgres` database."""
    url = pgtools.parse_url(database_url, DATABASE_SETTING)
    if url.get_backend_name() != "postgresql" or not url.database:
        return False
    if pgtools.database_exists(url, DATABASE_SETTING):
        return False
    pgtools.create_database(url, DATABASE_SETTING)
    return True


def bootstrap(settings: Settings, admin_name: str = "bootstrap admin") -> BootstrapResult:
    """Create what a fresh deployment lacks; each step leaves alone what exists."""
    result = BootstrapResult()
    if create_database_if_missing(settings.database_url):
        result.steps.append("created the database")
    for url, setting in (
        (settings.artifacts_url, "NEXTOFFER_ARTIFACTS_URL"),
        (settings.backup_url, "NEXTOFFER_BACKUP_URL"),
    ):
        store = open_prefix(url, endpoint_url=settings.s3_endpoint_url, setting=setting)
        if store.ensure():
            result.steps.append(f"created {store.describe()}")
    engine = make_engine(settings.database_url)
    try:
        wait_for_database(engine, settings.db_wait_timeout_s)
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        after = migrate.current_revision(engine)
        if before != after:
            result.steps.append(f"migrated the schema {before or 'from nothing'} → {after}")
        admins = [k for k in list_api_keys(engine) if k.role == Role.ADMIN and not k.revoked]
        if not admins:
            _record, key = create_api_key(engine, admin_name, Role.ADMIN)
            result.admin_key = key
            result.steps.append("created the first admin key")
    finally:
        engine.dispose()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return result
