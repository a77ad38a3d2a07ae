"""The audit trail off the request path: buffered, written in batches, spooled while the DB is down.

A request only appends an entry to the buffer (`AuditTrail.record`); the exposures'
background flusher (`serving.exposures.start_flusher`) writes the buffer every
NEXTOFFER_AUDIT_FLUSH_S and replays the spool. While the database is unreachable a batch
goes to this process's spool file under `<spool dir>/audit` (the events spool's protocol)
and is written later: entries carry their own id, so a replay stores each once. A command
line writes its entry at once (`write_now`), since it does not live long enough to flush.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from nextoffer.domain.audit import Action, Actor, AuditEntry
from nextoffer.domain.privacy import customer_digest
from nextoffer.serving.accounts import Principal
from nextoffer.serving.spool import Spool, read_all
from nextoffer.serving.spool_replay import (
    ReplayCounts,
    parse_lines,
    quarantine_rows,
    replay_files,
)
from nextoffer.store import Engine
from nextoffer.store import audit as store
from nextoffer.store import events as event_store
from nextoffer.store.engine import is_database_down
from nextoffer.store.runs import utcnow

log = logging.getLogger(__name__)

SPOOL_SUBDIR = "audit"
"""The audit trail's own folder inside the events spool folder."""
SPOOL_PREFIX = "audit-"
QUARANTINE_ENTITY = "audit"
MAX_BUFFER = 200_000
"""Entries waiting for the flusher; beyond this one is dropped, and logged loudly."""


class AuditTrail:
    """Thread-safe buffer of audit entries, flushed to the `audit` table or to a spool."""

    def __init__(
        self,
        engine: Engine,
        spool_dir: Path,
        privacy_key: Callable[[], str],
        *,
        enabled: bool = True,
        process_tag: str | None = None,
        max_buffer: int = MAX_BUFFER,
    ) -> None:
        """Write through `engine`; spool to `spool_dir`; digest ids under `privacy_key()`.

        The key is asked for on the first digest, so a command that records nothing about
        a customer never creates it.
        """
        self.engine = engine
        self.enabled = enabled
        self.spool = Spool(spool_dir, process_tag=process_tag, prefix=SPOOL_PREFIX)
        self._privacy_key = privacy_key
        self._max_buffer = max_buffer
        self._buffer: list[AuditEntry] = []
        self._dropped = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    @cached_property
    def _key(self) -> str:
        return self._privacy_key()

    def digest(self, customer_id: str) -> str:
        """The customer as the trail keeps it: a keyed digest of the id, never the id."""
        return customer_digest(self._key, customer_id)

    # --- the request path -----------------------------------------------------------------

    def record(self, entry: AuditEntry) -> bool:
        """Queue `entry` for the next flush; False when auditing is off or the buffer full."""
        if not self.enabled:
            return False
        with self._lock:
            if len(self._buffer) >= self._max_buffer:
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 10_000 == 0:
                    log.error("audit buffer full: %d entries dropped", self._dropped)
                return False
            self._buffer.append(entry)
        return True

    def change(
        self,
        actor: Actor,
        action: Action,
        target: str | None = None,
        *,
        customer_id: str | None = None,
        detail: dict[str, Any] | None = None,
        at_once: bool = False,
    ) -> bool:
        """Record that `actor` did `action` to `target` (a customer only as its digest).

        `at_once` writes it now: for a command line, which does not live to flush.
        """
        digest = None if customer_id is None else self.digest(customer_id)
        entry = AuditEntry.of(actor, action, target, customer_digest=digest, detail=detail)
        return self.write_now(entry) if at_once else self.record(entry)

    def write_now(self, entry: AuditEntry) -> bool:
        """Record `entry` and flush at once (a command line, which does not live to flush)."""
        queued = self.record(entry)
        if queued:
            self.flush()
        return queued

    def pending(self) -> int:
        """Entries queued and not yet flushed."""
        with self._lock:
            return len(self._buffer)

    # --- the write path -------------------------------------------------------------------

    def flush(self) -> int:
        """Write what is queued in one transaction, or spool it; how many entries it handled.

        A batch that cannot be written (the database down, or any other error, logged) is
        spooled for a retry. Raises OSError only when the spool cannot be written either.
        """
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            try:
                with self.engine.begin() as conn:
                    store.insert_entries(conn, [e.row() for e in batch])
            except Exception as exc:
                if not is_database_down(exc):
                    log.exception("%d audit entries not written; spooled for a retry", len(batch))
                self.spool.append([e.to_json() for e in batch])
                log.warning("%d audit entries spooled to %s", len(batch), self.spool.file)
            return len(batch)

    # --- the spool ------------------------------------------------------------------------

    def spool_files(self) -> list[Path]:
        """Every audit spool file, of any process, claimed or not."""
        return self.spool.files()

    def spool_depth(self) -> int:
        """Entries waiting in spool files, for a gauge."""
        return self.spool.depth()

    def replay(self) -> ReplayCounts:
        """Write every spooled entry; unusable lines go to quarantine; replayed files go."""
        return replay_files(self.spool, self.engine, self._replay_file, "audit")

    def _replay_file(self, path: Path, fd: int, run_id: str) -> tuple[int, int, int]:
        content = read_all(fd)
        lines = parse_lines(content, AuditEntry.from_json)
        good = [line.value for line in lines if line.value is not None]
        bad = [(line.line, line.raw, line.reason) for line in lines if line.reason is not None]
        if lines:
            with self.engine.begin() as conn:
                if good:
                    store.insert_entries(conn, [e.row() for e in good])
                if bad:
                    rows = quarantine_rows(QUARANTINE_ENTITY, path, content, run_id, bad, utcnow())
                    event_store.insert_quarantined(conn, rows)
        self.spool.remove(path)
        return len(good), 0, len(bad)


def audit_spool_dir(events_spool_dir: Path) -> Path:
    """Where audit entries are spooled: their own folder inside the events spool folder."""
    return Path(events_spool_dir) / SPOOL_SUBDIR


def principal_of(state: Mapping[str, Any]) -> Principal | None:
    """The authenticated caller a route left in the request state (API or console)."""
    principal = state.get("principal")
    if isinstance(principal, Principal):
        return principal
    session = state.get("console_session")
    found = getattr(session, "principal", None)
    return found if isinstance(found, Principal) else None


def client_address(scope: Mapping[str, Any]) -> str | None:
    """The client's address as the server saw it (after trusted proxy headers, if any)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def request_actor(scope: Mapping[str, Any]) -> Actor | None:
    """The caller of this request with its address and request id; None when anonymous."""
    state = scope.get("state") or {}
    principal = principal_of(state)
    if principal is None:
        return None
    return Actor(principal.kind, principal.id, client_address(scope), state.get("request_id"))


def command_actor() -> Actor:
    """Whoever runs a `nextoffer` command: the operating system's user, on this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        user = f"uid{os.getuid()}"
    return Actor("cli", user, socket.gethostname())
