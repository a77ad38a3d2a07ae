"""Load the champion models from the registry, without knowing their versions."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from nextoffer.models.churn import ChurnModel
from nextoffer.models.offer_model import OfferModel
from nextoffer.registry.mlflow_registry import ModelRegistry

M = TypeVar("M")


@dataclass(frozen=True)
class Champion(Generic[M]):
    """A loaded champion model and the registry version it came from."""

    model: M
    version: int

    @property
    def label(self) -> str:
        """How scores and answers name the model: 'churn v3'."""
        return f"v{self.version}"


def load_offer_champion(registry: ModelRegistry) -> Champion[OfferModel]:
    """The offers champion, loaded into memory."""
    return _load(registry, "offers", OfferModel.load)


def load_churn_champion(registry: ModelRegistry) -> Champion[ChurnModel]:
    """The churn champion, loaded into memory."""
    return _load(registry, "churn", ChurnModel.load)


def _load(registry: ModelRegistry, kind: str, loader: Callable[[Path], M]) -> Champion[M]:
    """Download the champion's files, load them, and remove the download."""
    info = registry.champion(kind)
    # An explicit version: the alias may move between reading it and downloading.
    path = registry.download(kind, None if info is None else info.version)
    try:
        model = loader(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    assert info is not None  # download raised otherwise
    return Champion(model, info.version)
