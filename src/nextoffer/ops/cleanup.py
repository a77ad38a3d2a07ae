"""`nextoffer cleanup`: old run records, old quarantine rows and files, stale cache entries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from nextoffer.cache import keys
from nextoffer.cache.base import Cache
from nextoffer.store import Engine
from nextoffer.store.maintenance import prune_history


@dataclass(frozen=True)
class CleanupResult:
    """How much was (or, on a dry run, would be) removed."""

    runs: int
    quarantined_rows: int
    quarantine_files: int
    cache_entries: int
    dry_run: bool


def cleanup(
    engine: Engine,
    cache: Cache,
    quarantine_dir: Path,
    *,
    now: datetime,
    keep_runs_days: int,
    keep_quarantine_days: int,
    current_stamp: str | None,
    dry_run: bool = False,
) -> CleanupResult:
    """Remove what has outlived its use; the newest run of every job is always kept.

    Runs still queued or running are never touched (their rows are the job lock's record).
    Cached offers whose stamp is not `current_stamp` can never be read again (the stamp is
    in the key), so they are dropped early instead of waiting for their TTL.
    """
    runs_before = now - timedelta(days=keep_runs_days)
    quarantine_before = now - timedelta(days=keep_quarantine_days)
    runs, rows = prune_history(
        engine, runs_before=runs_before, quarantine_before=quarantine_before, dry_run=dry_run
    )
    files = [
        path
        for path in (quarantine_dir.glob("*.csv") if quarantine_dir.is_dir() else [])
        if datetime.fromtimestamp(path.stat().st_mtime, tz=now.tzinfo) < quarantine_before
    ]
    if not dry_run:
        for path in files:
            path.unlink(missing_ok=True)
    stale = 0
    if current_stamp is not None:
        stale = _drop_stale_offers(cache, current_stamp, dry_run)
    return CleanupResult(runs, rows, len(files), stale, dry_run)


def _drop_stale_offers(cache: Cache, current_stamp: str, dry_run: bool) -> int:
    """Offers cached under any stamp but the current one."""
    keep = f"{keys.OFFERS_PREFIX}{current_stamp}."
    stale = [k for k in cache.keys_with_prefix(keys.OFFERS_PREFIX) if not k.startswith(keep)]
    if stale and not dry_run:
        cache.delete(*stale)
    return len(stale)
