"""A registry opened on first use: a serving process that never promotes never imports MLflow."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Unpack

from nextoffer.registry.protocol import (
    Decision,
    ModelRegistryProtocol,
    ModelVersionInfo,
    RegisterOptions,
)


class LazyRegistry:
    """Builds the real registry (`open_registry()`) the first time a method is called.

    Serving reads champions from the database (registry.serving_mirror); only operator
    actions through the API (versions, promote, rollback, a job run in this process) need
    MLflow itself, and pay its import then.
    """

    def __init__(self, open_registry: Callable[[], ModelRegistryProtocol]) -> None:
        self._open = open_registry
        self._registry: ModelRegistryProtocol | None = None
        self._lock = threading.Lock()

    @property
    def opened(self) -> bool:
        """True once the real registry has been built."""
        return self._registry is not None

    def get(self) -> ModelRegistryProtocol:
        """The real registry, built now if need be."""
        with self._lock:
            if self._registry is None:
                self._registry = self._open()
            return self._registry

    @property
    def experiment(self) -> str:
        """The experiment runs are logged in."""
        return self.get().experiment

    def register(self, kind: str, model_dir: Path, **options: Unpack[RegisterOptions]) -> Decision:
        """See ModelRegistryProtocol.register."""
        return self.get().register(kind, model_dir, **options)

    def champion(self, kind: str) -> ModelVersionInfo | None:
        """See ModelRegistryProtocol.champion."""
        return self.get().champion(kind)

    def versions(self, kind: str) -> list[ModelVersionInfo]:
        """See ModelRegistryProtocol.versions."""
        return self.get().versions(kind)

    def download(self, kind: str, version: int | None = None, dst: Path | None = None) -> Path:
        """See ModelRegistryProtocol.download."""
        return self.get().download(kind, version, dst)

    def promote(self, kind: str, version: int, reason: str) -> Decision:
        """See ModelRegistryProtocol.promote."""
        return self.get().promote(kind, version, reason)

    def rollback(self, kind: str) -> Decision:
        """See ModelRegistryProtocol.rollback."""
        return self.get().rollback(kind)

    def prune(self, kind: str) -> list[int]:
        """See ModelRegistryProtocol.prune."""
        return self.get().prune(kind)
