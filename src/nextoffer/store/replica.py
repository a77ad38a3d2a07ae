"""A read engine on a PostgreSQL replica that falls back to the primary while it is down."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DisconnectionError

from nextoffer.store.engine import make_engine, safe_url

log = logging.getLogger(__name__)

READ_SETTING = "NEXTOFFER_DATABASE_READ_URL"
FALLBACK = "nextoffer_read_fallback"
"""Marks (in a pooled connection's info) a read connection that went to the primary."""
_FRESH = "nextoffer_read_fallback_fresh"
RETRY_S = 5.0
"""How long reads stay on the primary after the replica refused a connection."""

# Replay lag as a standby sees it: zero when everything received is replayed (an idle
# primary sends nothing, so the last replayed commit alone would look ever older).
_LAG_SQL = text(
    "SELECT pg_is_in_recovery(), CASE "
    "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0 "
    "ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END"
)


@dataclass(frozen=True)
class ReplicaHealth:
    """What readiness reports about the read replica."""

    ok: bool
    detail: str
    lag_s: float | None = None


class ReadReplica:
    """The engine for read-only queries: the replica, else the primary.

    A connection the replica refuses is opened on the primary instead (logged once per
    outage, counted in `fallbacks`), so answers keep working. For `RETRY_S` after a refusal
    new connections go straight to the primary; after that, a pooled primary connection is
    discarded when checked out and the replica is tried again.
    """

    def __init__(self, read_url: str, primary: Engine, *, pool_size: int = 5) -> None:
        self.primary = primary
        self.engine = make_engine(read_url, pool_size=pool_size, setting=READ_SETTING)
        self.fallbacks = 0
        self.down_since: float | None = None
        self._retry_at = 0.0
        self._lock = threading.Lock()
        event.listen(self.engine, "do_connect", self._connect)
        event.listen(self.engine, "checkout", self._checkout)

    def _connect(self, dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        if time.monotonic() >= self._retry_at:
            try:
                connection = dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                self._mark_down(exc)
            else:
                self._mark_up()
                record.info[FALLBACK] = False
                return connection
        record.info[FALLBACK] = True
        record.info[_FRESH] = True
        with self._lock:
            self.fallbacks += 1
        args, params = self.primary.dialect.create_connect_args(self.primary.url)
        if self.primary.dialect.name == "postgresql":
            params.setdefault("connect_timeout", 3)  # as make_engine's own connections
        return self.primary.dialect.connect(*args, **params)

    def _checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        # A fallback made for this very checkout is used; an older one is retried.
        fresh = record.info.pop(_FRESH, False)
        if record.info.get(FALLBACK) and not fresh and time.monotonic() >= self._retry_at:
            # The pool drops this primary connection and connects again: the replica first.
            raise DisconnectionError("retrying the read replica")

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + RETRY_S
            first = self.down_since is None
            if first:
                self.down_since = time.time()
        if first:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            log.warning(
                "read replica %s unavailable (%s): reads go to the primary",
                safe_url(self.engine.url),
                detail,
            )

    def _mark_up(self) -> None:
        with self._lock:
            was_down, self.down_since = self.down_since is not None, None
        if was_down:
            log.warning("read replica %s is back: reads go to it", safe_url(self.engine.url))

    def health(self) -> ReplicaHealth:
        """Whether reads reach the replica now, with its replay lag in seconds."""
        try:
            with self.engine.connect() as conn:
                if conn.info.get(FALLBACK):
                    return ReplicaHealth(False, f"down: reads on the primary ({self.fallbacks})")
                standby, lag = conn.execute(_LAG_SQL).one()
        except Exception as exc:
            return ReplicaHealth(False, f"down: {type(exc).__name__}")
        if not standby:
            return ReplicaHealth(True, "not a standby (reads a primary)")
        lag_s = float(lag) if lag is not None else None
        shown = "unknown" if lag_s is None else f"{lag_s:.3f} s"
        return ReplicaHealth(True, f"lag {shown}", lag_s)

    def dispose(self) -> None:
        """Close the read pool's connections."""
        self.engine.dispose()
