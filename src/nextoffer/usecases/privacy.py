"""Customers' privacy rights: erasure (forget) and access (export), and the erasure ledger.

Erasure deletes rather than pseudonymises: an event keyed by a digest of the id is still
personal data while the key exists, and nothing needs a forgotten customer's history
(models are retrained from what is left, aggregates such as impact results hold no ids).
The ledger keeps a keyed digest of each id, written outside the database first, so a
crash half way leaves a ledger entry that the next restore, import or `reapply` completes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nextoffer.cache import Cache
from nextoffer.cache import keys as cache_keys
from nextoffer.cache.base import CacheUnavailableError
from nextoffer.domain.errors import InputError, NotFoundError
from nextoffer.domain.privacy import customer_digest, mention_pattern
from nextoffer.serving.scrub import scrub_tree
from nextoffer.serving.tokens import resolve_privacy_key
from nextoffer.storage import erasure_log
from nextoffer.store import erasure
from nextoffer.store.erasure import Erased
from nextoffer.usecases.context import Services

if TYPE_CHECKING:
    from nextoffer.storage import ObjectStore

log = logging.getLogger(__name__)

# Cached per customer under `<prefix><stamp>:<id>`: every stamp's entry goes.
_STAMPED_PREFIXES = (cache_keys.OFFERS_PREFIX, "churn:")


@dataclass
class Forgotten:
    """What `forget_customers` did; it names no customer, only counts."""

    requested: int
    digests: list[str]
    """The ledger's digests of the requested ids (for the audit trail)."""
    rows: dict[str, int] = field(default_factory=dict)
    customers: int = 0
    cache_keys: int = 0
    file_lines: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the CLI and logs."""
        tables = ", ".join(f"{name} {count:,}" for name, count in sorted(self.rows.items()))
        notes = "".join(f" · {n}" for n in self.notes)
        return (
            f"forget: {self.requested} customer(s) erased · {sum(self.rows.values()):,} rows "
            f"({tables or 'none'}) · {self.cache_keys} cached answers · {self.file_lines} "
            f"spooled or quarantined lines · recorded in the erasure ledger{notes}"
        )


def _check_ids(customer_ids: Sequence[str]) -> list[str]:
    ids = list(dict.fromkeys(customer_ids))
    if not ids or any(not i or i != i.strip() for i in ids):
        raise InputError("forget: give one or more customer ids, without surrounding spaces")
    return ids


def forget_customers(
    services: Services, customer_ids: Sequence[str], *, even_unknown: bool = False
) -> Forgotten:
    """Erase customers everywhere: database, cached answers, spool and quarantine files.

    All or nothing for the ids: NotFoundError when one of them is stored nowhere (unless
    `even_unknown`: then its digest goes to the ledger, and imports will drop it). Order:
    the ledger outside the database, the database (rows and ledger table, one
    transaction), the cache, the files. The audit trail is the caller's to write.
    """
    ids = _check_ids(customer_ids)
    settings, engine = services.settings, services.engine
    unknown = set(ids) - erasure.known_ids(engine, ids)
    if unknown and not even_unknown:
        raise NotFoundError(
            "there is no customer with id " + ", ".join(sorted(unknown)[:5])
            if len(unknown) <= 5
            else f"{len(unknown)} of the ids name no stored customer"
        )
    key = resolve_privacy_key(settings)
    now = services.clock()
    digests = sorted({customer_digest(key, i) for i in ids})
    result = Forgotten(requested=len(ids), digests=digests)
    # Outside the database first: a restore or a crash can then never lose the erasure.
    erasure_log.append_local(settings.var_dir, digests, now)
    try:
        erasure_log.publish(_backup_store(services), digests, now)
    except Exception as exc:  # the local copy holds it; the next restore publishes nothing
        result.notes.append(f"backup store not reachable ({type(exc).__name__}): local copy only")
    services.exposures.flush()  # answers of this process not yet written
    erased = erasure.erase_customers(engine, ids, key, now)
    result.rows, result.customers = erased.rows, erased.customers
    result.cache_keys = _forget_cached(
        services.cache, ids, erased.sessions, result.notes, settings.offers_cache_ttl_s
    )
    pattern = mention_pattern(ids)
    result.file_lines = scrub_tree(settings.spool_dir, pattern) + scrub_tree(
        settings.quarantine_dir, pattern
    )
    log.info(result.summary())
    return result


def _forget_cached(
    cache: Cache, ids: list[str], sessions: set[str], notes: list[str], ttl_s: int
) -> int:
    """Drop every cached entry keyed by the customers or their sessions."""
    suffixes = tuple(f":{i}" for i in ids)
    try:
        doomed = [cache_keys.user_features(i) for i in ids]
        doomed += [cache_keys.user_segment(i) for i in ids]
        doomed += [cache_keys.session_variant(s) for s in sessions if s]
        for prefix in _STAMPED_PREFIXES:
            doomed += [k for k in cache.keys_with_prefix(prefix) if k.endswith(suffixes)]
        return cache.delete(*doomed) if doomed else 0
    except CacheUnavailableError:
        notes.append(f"cache unavailable: these customers' cached answers expire within {ttl_s} s")
        return 0


def export_customer(services: Services, customer_id: str) -> dict[str, Any]:
    """Every stored row about the customer, by table, as JSON-ready data (right of access)."""
    rows = erasure.customer_rows(services.engine, customer_id)
    if not rows:
        raise NotFoundError(f"there is no customer with id {customer_id}")
    return {
        "customer_id": customer_id,
        "exported_at": services.clock().isoformat(),
        "tables": rows,
    }


def reapply_ledger(services: Services, *, every: bool = False) -> Erased:
    """Erase again whoever the ledger names (after a point-in-time restore, say)."""
    from nextoffer.pipelines.erasures import reapply_erasures

    store = None
    with contextlib.suppress(Exception):
        store = _backup_store(services)
    return reapply_erasures(services.engine, services.settings, store, every=every)


def _backup_store(services: Services) -> ObjectStore:
    # Imported when used: the platform imports this module, and must stay quick to import.
    from nextoffer.ops.backup import backup_store

    return backup_store(services.settings)


def reapply_at_start(services: Services) -> None:
    """Before serving: erase again whoever the ledger names and the database still holds.

    A point-in-time restore ends with a server the operator starts by hand; this is where
    nextoffer first meets such a database. Only the local copy of the ledger is read (no
    network call at start-up); a database that is down is left to the next start, import
    or `nextoffer customers reapply`.
    """
    from nextoffer.pipelines.erasures import reapply_erasures

    try:
        reapply_erasures(services.engine, services.settings)
    except Exception as exc:  # serving must start even with the database down
        log.warning("erasure ledger not re-applied at start: %s", type(exc).__name__)
