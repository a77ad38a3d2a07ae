"""What the pipelines share: how they report progress, the knobs every training run has."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Say = Callable[[str], None]


def silent(_message: str) -> None:
    """Report nothing: the default where no one is listening."""


@dataclass(frozen=True)
class TrainingConfig:
    """Knobs every training run has: its random seed and its threads (0: as many as cores)."""

    seed: int = 42
    threads: int = 0
