"""The running experiment as serving sees it: re-read now and then, sticky variants per unit."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field

from nextoffer.cache import Cache, CacheUnavailableError, keys
from nextoffer.domain.experiments import Variant, assign
from nextoffer.store import Engine
from nextoffer.store.experiments import ExperimentRecord, running_experiments

log = logging.getLogger(__name__)


@dataclass
class ExperimentBook:
    """The running experiment (at most one), re-read every `refresh_s` and after changes."""

    engine: Engine
    cache: Cache
    refresh_s: float
    _running: ExperimentRecord | None = None
    _read_at: float = -math.inf
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def running(self) -> ExperimentRecord | None:
        """The running experiment, if any (kept when the database is down)."""
        now = time.monotonic()
        if now - self._read_at >= self.refresh_s:
            with self._lock:
                if now - self._read_at >= self.refresh_s:
                    try:
                        found = running_experiments(self.engine)
                        self._running = found[0] if found else None
                    except Exception as exc:
                        log.warning("cannot read experiments: %s", exc)
                    self._read_at = now
        return self._running

    def invalidate(self) -> None:
        """Re-read on the next call (after create or stop)."""
        self._read_at = -math.inf

    def variant_for(
        self, customer_id: str, session_id: str | None
    ) -> tuple[ExperimentRecord, Variant] | None:
        """The sticky variant of a customer (or session) in the running experiment."""
        experiment = self.running()
        if experiment is None:
            return None
        variants = list(experiment.variants)
        if experiment.unit == "session" and session_id:
            key = keys.session_variant(session_id)
            try:
                remembered = self.cache.get(key)
            except CacheUnavailableError:
                remembered = None
            if remembered:
                name = remembered.split("|", 1)
                if name[0] == experiment.experiment_id:
                    match = [v for v in variants if v.name == name[-1]]
                    if match:
                        return experiment, match[0]
            variant = assign(experiment.experiment_id, session_id, variants)
            # Without the cache the hash still gives the same variant next time.
            with contextlib.suppress(CacheUnavailableError):
                self.cache.set(
                    key, f"{experiment.experiment_id}|{variant.name}", keys.SESSION_TTL_S
                )
            return experiment, variant
        return experiment, assign(experiment.experiment_id, customer_id, variants)
