"""The erasure ledger applied to a database: after a restore, and before every import.

The digests kept outside the database (`storage.erasure_log`) are the truth; a database
whose ledger table lacks some of them was restored from before those erasures, so the
customers they name are erased from it again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.storage import ObjectStore, erasure_log
from nextoffer.store import Engine
from nextoffer.store.erasure import Erased, ledger_digests, reapply
from nextoffer.store.runs import utcnow

if TYPE_CHECKING:
    from nextoffer.ingest.erased import ErasedIds

log = logging.getLogger(__name__)


def outside_digests(settings: Settings, store: ObjectStore | None = None) -> set[str]:
    """The digests of the local file, and of `store` (the backup store) when given."""
    digests = erasure_log.read_local(settings.var_dir)
    if store is not None:
        published = erasure_log.read_published(store)
        missing = published - digests
        if missing:  # a new machine, or a lost VAR_DIR: the local copy is completed
            erasure_log.append_local(settings.var_dir, missing, utcnow())
        digests |= published
    return digests


def _key(settings: Settings, count: int) -> str:
    key = erasure_log.existing_key(settings.privacy_key, settings.var_dir)
    if key is None:
        raise ConfigError(
            f"the erasure ledger holds {count:,} customers but the privacy key is gone "
            "(NEXTOFFER_PRIVACY_KEY or VAR_DIR/secrets/privacy_key): restore it, or erased "
            "customers could come back"
        )
    return key


def reapply_erasures(
    engine: Engine,
    settings: Settings,
    store: ObjectStore | None = None,
    *,
    every: bool = False,
) -> Erased:
    """Erase again the customers of digests the database's ledger table lacks (`every`: all)."""
    digests = outside_digests(settings, store)
    missing = digests if every else digests - ledger_digests(engine)
    if not missing:
        return Erased()
    result = reapply(engine, missing, _key(settings, len(digests)), utcnow())
    log.warning(
        "erasure ledger: %d erasures re-applied (%d customers, %d rows were back)",
        len(missing),
        result.customers,
        sum(result.rows.values()),
    )
    return result


def apply_erasures(engine: Engine, settings: Settings) -> ErasedIds | None:
    """Re-apply the ledger where needed; then the erased ids an import must drop, or None."""
    # Imported here: it needs pandas, and serving imports this module for `reapply_erasures`.
    from nextoffer.ingest.erased import ErasedIds

    reapply_erasures(engine, settings)
    digests = ledger_digests(engine) | erasure_log.read_local(settings.var_dir)
    if not digests:
        return None
    return ErasedIds(_key(settings, len(digests)), frozenset(digests))
