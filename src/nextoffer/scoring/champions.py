"""Load the champion models from the registry (or one chosen version), into memory.

Used by serving (the models it answers with) and by pipelines (precompute, churn scoring).
Serving loads from the registry's serving copy (`load_copy`), pipelines from MLflow.
The model classes pull in pandas, scikit-learn and LightGBM, so they are imported when a
model is loaded, not when this module is: a serving process imports it at start-up.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from nextoffer.models.churn import ChurnModel
    from nextoffer.models.lean_churn import ServedChurnModel
    from nextoffer.models.lean_offers import ServedOfferModel
    from nextoffer.models.offer_model import OfferModel
    from nextoffer.models.uplift import UpliftModel
    from nextoffer.registry.mlflow_registry import ModelRegistry
    from nextoffer.registry.protocol import ModelRegistryProtocol
    from nextoffer.registry.serving_mirror import ServingFiles

M = TypeVar("M")
# Covariant: a champion of the full offers model is a champion of what serving may hold.
M_co = TypeVar("M_co", covariant=True)


@dataclass(frozen=True)
class Champion(Generic[M_co]):
    """A loaded champion model and the registry version it came from."""

    model: M_co
    version: int

    @property
    def label(self) -> str:
        """How scores and answers name the model: 'churn v3'."""
        return f"v{self.version}"


def load_offer_champion(registry: ModelRegistry) -> Champion[OfferModel]:
    """The offers champion, loaded into memory."""
    from nextoffer.models.offer_model import OfferModel

    return _load(registry, "offers", OfferModel.load)


def load_offer_version(registry: ModelRegistry, version: int) -> Champion[OfferModel]:
    """One registered offers version, loaded into memory.

    Precompute chunks load the version their coordinator chose, not the champion: the
    alias may move while a run is under way, and one run must use one model.
    """
    from nextoffer.models.offer_model import OfferModel

    return Champion(_download_and_load(registry, "offers", version, OfferModel.load), version)


def load_churn_champion(registry: ModelRegistry) -> Champion[ChurnModel]:
    """The churn champion, loaded into memory."""
    from nextoffer.models.churn import ChurnModel

    return _load(registry, "churn", ChurnModel.load)


def load_uplift_champion(registry: ModelRegistry) -> Champion[UpliftModel]:
    """The uplift champion, loaded into memory."""
    from nextoffer.models.uplift import load_uplift_model

    return _load(registry, "uplift", load_uplift_model)


def load_uplift_version(registry: ModelRegistry, version: int) -> Champion[UpliftModel]:
    """One registered uplift version (a precompute run's, chosen by its coordinator)."""
    from nextoffer.models.uplift import load_uplift_model

    return Champion(_download_and_load(registry, "uplift", version, load_uplift_model), version)


def offer_loader() -> Callable[[Path], ServedOfferModel]:
    """What loads an offers model directory for serving: the lean model (no LightGBM)."""
    from nextoffer.models.lean_offers import load_served

    return load_served


def churn_loader() -> Callable[[Path], ServedChurnModel]:
    """What loads a churn model directory for serving: the lean model (no LightGBM).

    Pipelines that score in bulk load the full `ChurnModel` (`load_churn_champion`).
    """
    from nextoffer.models.lean_churn import load_served

    return load_served


def uplift_loader() -> Callable[[Path], UpliftModel]:
    """What loads an uplift model directory."""
    from nextoffer.models.uplift import load_uplift_model

    return load_uplift_model


def load_copy(
    files: ServingFiles, url: str, version: int, loader: Callable[[Path], M]
) -> Champion[M]:
    """A version from serving's copy of it (see registry.serving_mirror): no MLflow involved."""
    return Champion(files.load(url, loader), version)


def load_registered(
    registry: ModelRegistryProtocol, kind: str, version: int, loader: Callable[[Path], M]
) -> Champion[M]:
    """A version downloaded from the registry itself (MLflow: imported by the registry)."""
    return Champion(_download_and_load(registry, kind, version, loader), version)


def _load(registry: ModelRegistry, kind: str, loader: Callable[[Path], M]) -> Champion[M]:
    """Download the champion's files, load them, and remove the download."""
    info = registry.champion(kind)
    # An explicit version: the alias may move between reading it and downloading.
    model = _download_and_load(registry, kind, None if info is None else info.version, loader)
    assert info is not None  # download raised otherwise
    return Champion(model, info.version)


def _download_and_load(
    registry: ModelRegistryProtocol, kind: str, version: int | None, loader: Callable[[Path], M]
) -> M:
    """Download a version's files, load them, and remove the download."""
    path = registry.download(kind, version)
    try:
        return loader(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
