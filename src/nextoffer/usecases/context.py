"""What the use cases work with: one process's services, built by the platform."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from nextoffer.cache import Cache
from nextoffer.config import Settings
from nextoffer.observe.metrics import ApiMetrics
from nextoffer.serving.audit import AuditTrail
from nextoffer.serving.events import EventWriter
from nextoffer.serving.experiment_book import ExperimentBook
from nextoffer.serving.exposures import ExposureRecorder
from nextoffer.serving.offers import OfferService
from nextoffer.serving.state import ServingState

if TYPE_CHECKING:
    from nextoffer.registry.protocol import ModelRegistryProtocol
    from nextoffer.store import Engine

Clock = Callable[[], datetime]
"""The current time, aware UTC; tests pass a fixed one."""


class JobStarter(Protocol):
    """Starts a job by its catalogue name, here or on a worker; returns the run id."""

    def start(self, kind: str, params: dict[str, Any], started_by: str) -> str:
        """Start `kind` and return its run id once the run is recorded."""
        ...

    def shutdown(self) -> None:
        """Stop taking jobs."""
        ...


@dataclass
class Services:
    """Every service a use case may need, for one process (API, console, CLI, worker)."""

    settings: Settings
    engine: Engine
    read_engine: Engine
    """For read-only queries that may lag a little: the replica (NEXTOFFER_DATABASE_READ_URL,
    falling back to the primary while it is down), else `engine` itself."""
    cache: Cache
    registry: ModelRegistryProtocol
    clock: Clock
    state: ServingState
    offers: OfferService
    events: EventWriter
    experiments: ExperimentBook
    metrics: ApiMetrics
    jobs: JobStarter
    exposures: ExposureRecorder
    """Answers served and held back, queued here and written in batches off the request."""
    audit: AuditTrail
    """Reads of one customer's data and changes, queued here and written in batches."""
