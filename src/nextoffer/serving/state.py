"""What the serving process knows of models and data: champions, catalogue, a freshness stamp.

Champions come from the `serving_champions` table and the registry's serving copy of their
files (registry.serving_mirror), so serving imports no MLflow. While the table is empty (a
database from before it, or nothing trained yet) champions are read through the registry
(MLflow), logged once, until a registration or `nextoffer models sync` records them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nextoffer.domain.errors import NextOfferError
from nextoffer.domain.offers import Catalogue
from nextoffer.registry.protocol import ModelRegistryProtocol
from nextoffer.registry.serving_mirror import ServingFiles
from nextoffer.scoring.champions import (
    Champion,
    churn_loader,
    load_copy,
    load_registered,
    offer_loader,
    uplift_loader,
)
from nextoffer.store import Engine
from nextoffer.store.reads.features import PRODUCT_COLUMNS, product_records
from nextoffer.store.reads.jobs import last_successes
from nextoffer.store.serving_champions import ServingChampionRow, read_serving_champions

if TYPE_CHECKING:
    from nextoffer.models.lean_churn import ServedChurnModel
    from nextoffer.models.lean_offers import ServedOfferModel
    from nextoffer.models.uplift import UpliftModel

log = logging.getLogger(__name__)
M = TypeVar("M")

# Jobs whose completion changes what a cached answer would be (an `etl` run computes
# features as part of it; an `ingest` may bring consent changes, which cached contact
# policies must not outlive). Not precompute: its rows come from the same model and
# features, and are checked against the model version.
STAMP_JOBS = ("etl", "ingest", "features", "training")

Source = tuple[int, str | None]
"""Where a champion comes from: (version, URL of its serving copy, or None: the registry)."""


@dataclass
class ServingState:
    """Champions in memory, the catalogue, and a stamp that changes when any of them does.

    Cached answers carry the stamp in their key, so a new champion, new features or a new
    precompute make every replica's old entries unreachable at once, without a scan.
    `refresh` is cheap when nothing changed (two small queries) and is called from a
    background thread every `serving_refresh_s`. `files` reads the registry's serving copies
    (None: every model comes through `registry`).
    """

    engine: Engine
    registry: ModelRegistryProtocol
    files: ServingFiles | None = None
    offers: Champion[ServedOfferModel] | None = None
    churn: Champion[ServedChurnModel] | None = None
    uplift: Champion[UpliftModel] | None = None
    """The uplift champion (ranks retention offers when NEXTOFFER_OFFER_RANKING=uplift)."""
    uplift_in_use: bool = True
    """Whether answers rank by uplift: if not, its champion (a full-stack model: LightGBM,
    pandas) is never loaded, which keeps a serving process lean."""
    catalogue: Catalogue | None = None
    stamp: str = "none"
    registry_ok: bool = True
    database_ok: bool = True
    _pinned: dict[int, Champion[ServedOfferModel]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _job_marks: tuple[Any, ...] = ()
    _through_registry: set[str] = field(default_factory=set)

    def refresh(self) -> None:
        """Reload whatever changed; keep serving the old state when a backend is down."""
        marks = self._read_job_marks()
        rows = self._read_champion_rows() if marks is not None else None
        offers = self._source("offers", rows)
        churn = self._source("churn", rows)
        uplift = self._source("uplift", rows) if self.uplift_in_use else None
        with self._lock:
            self.offers = self._update("offers", self.offers, offers, offer_loader)
            self.churn = self._update("churn", self.churn, churn, churn_loader)
            self.uplift = self._update("uplift", self.uplift, uplift, uplift_loader)
            if marks is not None and (marks != self._job_marks or self.catalogue is None):
                self._job_marks = marks
                self.catalogue = self._read_catalogue() or self.catalogue
            offers_label = self.offers.label if self.offers else "none"
            churn_label = self.churn.label if self.churn else "none"
            uplift_label = self.uplift.label if self.uplift else "none"
            # A stable digest: every replica must compute the same stamp (hash() is salted).
            digest = hashlib.sha256(repr(self._job_marks).encode()).hexdigest()[:10]
            self.stamp = f"o{offers_label}.c{churn_label}.u{uplift_label}.d{digest}"

    def pinned_offers_model(self, version: int) -> Champion[ServedOfferModel]:
        """A specific offers version (an experiment's variant), loaded once and kept."""
        with self._lock:
            found = self._pinned.get(version)
            if found is None:
                files = self.files
                url = files.url("offers", version) if files is not None else None
                # A version registered before serving copies existed has none: the registry.
                if files is not None and url is not None and not files.has("offers", version):
                    url = None
                found = self._load("offers", (version, url), offer_loader())
                self._pinned[version] = found
            return found

    def pinned_versions(self) -> list[int]:
        """The offers versions loaded for experiment variants."""
        with self._lock:
            return list(self._pinned)

    def _read_champion_rows(self) -> dict[str, ServingChampionRow] | None:
        try:
            return read_serving_champions(self.engine)
        except Exception as exc:
            log.warning("cannot read the serving champions: %s", exc)
            return None

    def _source(self, kind: str, rows: dict[str, ServingChampionRow] | None) -> Source | None:
        """Where `kind`'s champion is now; None when unknown (keep the model in memory).

        Once the table holds any row it holds every champion (the registry records all
        kinds with its first row): a kind without one has none.
        """
        if rows is None:
            return None
        if rows:
            self._note_registry(True, None)
            row = rows.get(kind)
            if row is None:
                return None
            return row.version, row.files_url if self.files is not None else None
        if kind not in self._through_registry:
            self._through_registry.add(kind)
            log.warning(
                "no serving champions recorded (a database from before migration 0011, or "
                "nothing trained yet): reading the %s champion through the model registry; "
                "`nextoffer models sync` records them",
                kind,
            )
        version = self._champion_version(kind)
        return None if version is None else (version, None)

    def _update(
        self,
        kind: str,
        current: Champion[M] | None,
        source: Source | None,
        loader: Callable[[], Callable[[Path], M]],
    ) -> Champion[M] | None:
        """The champion from `source`: the one in memory when it is the same or cannot load."""
        if source is None or (current is not None and current.version == source[0]):
            return current
        try:
            return self._load(kind, source, loader())
        except (NextOfferError, OSError, ValueError) as exc:
            log.error("cannot load %s v%s, keeping the previous model: %s", kind, source[0], exc)
            return current

    def _load(self, kind: str, source: Source, loader: Callable[[Path], M]) -> Champion[M]:
        version, url = source
        if url is not None and self.files is not None:
            return load_copy(self.files, url, version, loader)
        return load_registered(self.registry, kind, version, loader)

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
        try:
            records = product_records(self.engine, PRODUCT_COLUMNS)
        except Exception as exc:
            log.warning("cannot read the catalogue: %s", exc)
            return None
        return Catalogue.from_records(records) if records else None


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()
