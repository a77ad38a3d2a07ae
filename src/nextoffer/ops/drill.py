"""The DR drill: restore the latest backup into scratch, rebuild a cache, serve, measure RTO/RPO."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from nextoffer.cache import MemoryCache, make_cache
from nextoffer.config import Settings
from nextoffer.domain.errors import NextOfferError
from nextoffer.ops import pgtools
from nextoffer.ops.backup import backup_store
from nextoffer.ops.manifest import BackupError, pick_manifest
from nextoffer.ops.restore import restore_backup
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.serving.offers import OfferService, Source
from nextoffer.serving.state import ServingState
from nextoffer.serving.warm import warm_cache
from nextoffer.store import precomputed
from nextoffer.store.engine import make_engine
from nextoffer.store.runs import RunHandle, utcnow

log = logging.getLogger(__name__)

# The seed's promises.
RTO_TARGET_S = 15 * 60
RPO_TARGET_S = 60 * 60


@dataclass(frozen=True)
class DrillResult:
    """What a drill measured; `rto_s` is restore + cache rebuild + first answer."""

    backup_id: str
    rpo_s: float
    """Age of the restored backup: the data a real disaster at this moment would lose."""
    restore_s: float
    cache_rebuild_s: float
    smoke_s: float
    rto_s: float
    rows: int
    cached_answers: int
    smoke_customer: str
    smoke_offers: int

    @property
    def rto_met(self) -> bool:
        """RTO under the seed's 15 minutes."""
        return self.rto_s < RTO_TARGET_S

    @property
    def rpo_met(self) -> bool:
        """Backup age under the seed's hour."""
        return self.rpo_s < RPO_TARGET_S

    def counts(self) -> dict[str, object]:
        """The job-run counts of a drill."""
        return {**asdict(self), "rto_met": self.rto_met, "rpo_met": self.rpo_met}


def drill_recovery(
    settings: Settings,
    run: RunHandle,
    *,
    backup_id: str | None = None,
    cache_url: str = "",
    keep: bool = False,
) -> DrillResult:
    """Rehearse a recovery without touching the live database, registry or cache.

    The backup (newest by default) is restored into a scratch database (PostgreSQL: a new
    database on the configured server; SQLite: a file under VAR_DIR/drill), a scratch cache
    (`cache_url`, default in-process memory) is filled from it as `nextoffer cache rebuild`
    would, and one customer's offers are asked of the serving chain, which must answer from
    that cache. The models come from the live registry, pinned to the backup's champions.
    `run` is the `dr_drill` job's run, which gets the counts (nextoffer.jobs records it).
    """
    store = backup_store(settings)
    manifest = pick_manifest(store, backup_id)
    rpo_s = (utcnow() - manifest.finished_at).total_seconds()
    scratch_url, cleanup_path = _scratch_target(settings, manifest.engine)
    started = time.perf_counter()
    try:
        restored = restore_backup(
            settings, manifest.backup_id, scratch_url, False, None, registry=False
        )
        restore_s = time.perf_counter() - started
        result = _serve_from(settings, scratch_url, cache_url, manifest.backup_id)
        rebuild_s, smoke_s, cached, customer, offers = result
    finally:
        if not keep:
            _drop(scratch_url, cleanup_path)
    drill = DrillResult(
        backup_id=manifest.backup_id,
        rpo_s=round(rpo_s, 1),
        restore_s=round(restore_s, 3),
        cache_rebuild_s=round(rebuild_s, 3),
        smoke_s=round(smoke_s, 4),
        rto_s=round(restore_s + rebuild_s + smoke_s, 3),
        rows=restored.rows,
        cached_answers=cached,
        smoke_customer=customer,
        smoke_offers=offers,
    )
    run.counts = drill.counts()
    log.info("dr drill done", extra=drill.counts())
    return drill


def _scratch_target(settings: Settings, engine_name: str) -> tuple[str, Path | None]:
    name = f"nextoffer_drill_{uuid.uuid4().hex[:10]}"
    if engine_name == "postgresql":
        live = pgtools.parse_url(settings.database_url, "NEXTOFFER_DATABASE_URL")
        if live.get_backend_name() != "postgresql":
            raise BackupError("a PostgreSQL backup is drilled on a PostgreSQL server")
        return live.set(database=name).render_as_string(hide_password=False), None
    path = (settings.var_dir / "drill" / f"{name}.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}", path


def _drop(url: str, path: Path | None) -> None:
    if path is not None:
        for leftover in path.parent.glob(f"{path.name}*"):
            leftover.unlink(missing_ok=True)
        return
    with contextlib.suppress(NextOfferError):
        pgtools.drop_database(url, "NEXTOFFER_DATABASE_URL")


def _serve_from(
    settings: Settings, database_url: str, cache_url: str, backup_id: str
) -> tuple[float, float, int, str, int]:
    engine = make_engine(database_url)
    cache = make_cache(cache_url) if cache_url else MemoryCache(max_entries=10_000_000)
    try:
        started = time.perf_counter()
        state = ServingState(engine, ModelRegistry.from_settings(settings))
        state.refresh()
        warmed = warm_cache(engine, cache, state, settings)
        rebuild_s = time.perf_counter() - started
        customer = precomputed.first_customer(engine)
        if customer is None:
            raise BackupError(f"backup {backup_id} holds no precomputed offers to serve")
        service = OfferService(engine, cache, state, settings)
        started = time.perf_counter()
        answer = service.offers(customer, k=settings.default_offers_k)
        smoke_s = time.perf_counter() - started
        if answer.source != Source.CACHE or answer.degraded:
            raise BackupError(
                f"smoke query: customer {customer} was answered from {answer.source.value}"
                f"{' (degraded)' if answer.degraded else ''}, not from the rebuilt cache"
            )
        return rebuild_s, smoke_s, warmed.offers, customer, len(answer.offers)
    finally:
        cache.close()
        engine.dispose()
