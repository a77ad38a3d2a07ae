"""What the serving process knows of models and data: champions, catalogue, a freshness stamp."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from nextoffer.domain.errors import NextOfferError
from nextoffer.domain.offers import Catalogue
from nextoffer.scoring.champions import (
    Champion,
    load_churn_champion,
    load_offer_version,
    load_uplift_version,
)
from nextoffer.store import Engine
from nextoffer.store.reads.jobs import last_successes

if TYPE_CHECKING:
    from nextoffer.models.churn import ChurnModel
    from nextoffer.models.offer_model import OfferModel
    from nextoffer.models.uplift import UpliftModel
    from nextoffer.registry.mlflow_registry import ModelRegistry

log = logging.getLogger(__name__)
M = TypeVar("M")

# Jobs whose completion changes what a cached answer would be (an `etl` run computes
# features as part of it; an `ingest` may bring consent changes, which cached contact
# policies must not outlive). Not precompute: its rows come from the same model and
# features, and are checked against the model version.
STAMP_JOBS = ("etl", "ingest", "features", "training")


@dataclass
class ServingState:
    """Champions in memory, the catalogue, and a stamp that changes when any of them does.

    Cached answers carry the stamp in their key, so a new champion, new features or a new
    precompute make every replica's old entries unreachable at once, without a scan.
    `refresh` is cheap when nothing changed (two small queries) and is called from a
    background thread every `serving_refresh_s`.
    """

    engine: Engine
    registry: ModelRegistry
    offers: Champion[OfferModel] | None = None
    churn: Champion[ChurnModel] | None = None
    uplift: Champion[UpliftModel] | None = None
    """The uplift champion (ranks retention offers when NEXTOFFER_OFFER_RANKING=uplift)."""
    catalogue: Catalogue | None = None
    stamp: str = "none"
    registry_ok: bool = True
    database_ok: bool = True
    _pinned: dict[int, Champion[OfferModel]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _job_marks: tuple[Any, ...] = ()

    def refresh(self) -> None:
        """Reload whatever changed; keep serving the old state when a backend is down."""
        marks = self._read_job_marks()
        offers_version = self._champion_version("offers")
        churn_version = self._champion_version("churn")
        uplift_version = self._champion_version("uplift")
        with self._lock:
            if offers_version is not None and (
                self.offers is None or self.offers.version != offers_version
            ):
                self.offers = self._reload(
                    "offers", offers_version, self.offers, load_offer_version, self.registry
                )
            if churn_version is not None and (
                self.churn is None or self.churn.version != churn_version
            ):
                self.churn = self._reload(
                    "churn",
                    churn_version,
                    self.churn,
                    lambda r, _v: load_churn_champion(r),
                    self.registry,
                )
            if uplift_version is not None and (
                self.uplift is None or self.uplift.version != uplift_version
            ):
                self.uplift = self._reload(
                    "uplift", uplift_version, self.uplift, load_uplift_version, self.registry
                )
            if marks is not None and (marks != self._job_marks or self.catalogue is None):
                self._job_marks = marks
                self.catalogue = self._read_catalogue() or self.catalogue
            offers_label = self.offers.label if self.offers else "none"
            churn_label = self.churn.label if self.churn else "none"
            uplift_label = self.uplift.label if self.uplift else "none"
            # A stable digest: every replica must compute the same stamp (hash() is salted).
            digest = hashlib.sha256(repr(self._job_marks).encode()).hexdigest()[:10]
            self.stamp = f"o{offers_label}.c{churn_label}.u{uplift_label}.d{digest}"

    def pinned_offers_model(self, version: int) -> Champion[OfferModel]:
        """A specific offers version (an experiment's variant), loaded once and kept."""
        with self._lock:
            found = self._pinned.get(version)
            if found is None:
                found = load_offer_version(self.registry, version)
                self._pinned[version] = found
            return found

    def pinned_versions(self) -> list[int]:
        """The offers versions loaded for experiment variants."""
        with self._lock:
            return list(self._pinned)

    def _champion_version(self, kind: str) -> int | None:
        try:
            info = self.registry.champion(kind)
        except NextOfferError as exc:
            self._note_registry(False, exc)
            return None
        self._note_registry(True, None)
        return None if info is None else info.version

    def _note_registry(self, ok: bool, exc: Exception | None) -> None:
        if self.registry_ok and not ok:
            log.warning("model registry unreachable; serving the models in memory: %s", exc)
        self.registry_ok = ok

    @staticmethod
    def _reload(
        kind: str,
        version: int,
        current: Champion[M] | None,
        load: Callable[[ModelRegistry, int], Champion[M]],
        registry: ModelRegistry,
    ) -> Champion[M] | None:
        """The model of `version`, or the one in memory when it cannot be loaded."""
        try:
            return load(registry, version)
        except (NextOfferError, OSError, ValueError) as exc:
            log.error("cannot load %s v%s, keeping the previous model: %s", kind, version, exc)
            return current

    def _read_job_marks(self) -> tuple[Any, ...] | None:
        try:
            marks = last_successes(self.engine, STAMP_JOBS)
        except Exception as exc:
            if self.database_ok:
                log.warning("database unreachable while refreshing serving state: %s", exc)
            self.database_ok = False
            return None
        self.database_ok = True
        return tuple((job, _iso(at)) for job, at in marks.items())

    def _read_catalogue(self) -> Catalogue | None:
        # Imported here: the module pulls in pandas, which a serving process loads lazily.
        from nextoffer.features.training import load_products

        try:
            with self.engine.connect() as conn:
                records = load_products(conn)
        except Exception as exc:
            log.warning("cannot read the catalogue: %s", exc)
            return None
        return Catalogue.from_records(records) if records else None


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()
