"""What a job runs with: the store, the settings, the model registry, and who is watching."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nextoffer.config import Settings
from nextoffer.store import Engine

if TYPE_CHECKING:
    from nextoffer.pipelines.precompute import ChunkRunner
    from nextoffer.registry.mlflow_registry import ModelRegistry


@dataclass(frozen=True)
class Progress:
    """How a job reports as it goes, to a caller in this process (the CLI's bars and status).

    `total(n)`: the amount of work once known (ingest: bytes); `advance(n)`: n more done;
    `say(message)`: what a step is doing now (training).
    """

    total: Callable[[int], None] | None = None
    advance: Callable[[int], None] | None = None
    say: Callable[[str], None] | None = None


@dataclass(frozen=True)
class JobContext:
    """What every job needs: the store, the settings and the model registry.

    `registry` may be left out: it is opened from the settings the first time a job needs
    it (an ingest or a backup never does, and MLflow takes seconds to import).
    `fan_out(model_version, uplift_version)` gives precompute a way to run its chunks
    elsewhere (Celery tasks scoring with that offers version, and that uplift version when
    offers are ranked by uplift); None runs them here, one after the other.
    """

    engine: Engine
    settings: Settings
    registry: ModelRegistry | None = None
    fan_out: Callable[[int, int | None], ChunkRunner] | None = None
    progress: Progress = field(default_factory=Progress)
    _opened: list[Any] = field(default_factory=list, repr=False, compare=False)

    def models(self) -> ModelRegistry:
        """The model registry: the one given, else opened from the settings once."""
        if self.registry is not None:
            return self.registry
        if not self._opened:
            from nextoffer.registry.mlflow_registry import ModelRegistry

            # With the engine: what a job registers or promotes reaches serving's copy.
            self._opened.append(ModelRegistry.from_settings(self.settings, self.engine))
        registry: ModelRegistry = self._opened[0]
        return registry
