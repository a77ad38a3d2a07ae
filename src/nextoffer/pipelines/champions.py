"""Load the champion models from the registry, without knowing their versions."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
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
    """The offers champion, loaded into memory (its download is removed afterwards)."""
    info = registry.champion("offers")
    path = registry.download("offers", None if info is None else info.version)
    try:
        model = OfferModel.load(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    assert info is not None  # download raised otherwise
    return Champion(model, info.version)


def load_churn_champion(registry: ModelRegistry) -> Champion[ChurnModel]:
    """The churn champion, loaded into memory (its download is removed afterwards)."""
    info = registry.champion("churn")
    path = registry.download("churn", None if info is None else info.version)
    try:
        model = ChurnModel.load(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    assert info is not None
    return Champion(model, info.version)
