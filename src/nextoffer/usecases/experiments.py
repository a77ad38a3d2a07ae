"""Run A/B experiments of offer strategies: start one, stop it (one runs at a time)."""

from __future__ import annotations

from collections.abc import Sequence

from nextoffer.domain.errors import ConflictError, InvalidRequestError
from nextoffer.domain.experiments import Variant
from nextoffer.store import experiments as store
from nextoffer.store.experiments import ExperimentRecord
from nextoffer.usecases.context import Services


def start_experiment(
    services: Services, name: str, unit: str, variants: Sequence[Variant], started_by: str
) -> ExperimentRecord:
    """Start an experiment now; refused while another runs, so variants never overlap.

    A variant pinned to a model version is checked against the registry here, so a wrong
    version fails now rather than on the variant's first request.
    """
    if store.running_experiments(services.engine):
        raise ConflictError("an experiment is already running; stop it first")
    pinned = [v.model_version for v in variants if v.model_version is not None]
    if pinned:
        known = {v.version for v in services.registry.versions("offers")}
        for version in pinned:
            if version not in known:
                raise InvalidRequestError(f"no offers model version {version}")
    record = store.create_experiment(
        services.engine, name, unit, list(variants), created_by=started_by
    )
    services.experiments.invalidate()
    return record


def stop_experiment(services: Services, experiment_id: str) -> ExperimentRecord:
    """Stop assigning variants; results stay readable. Stopping twice is harmless."""
    record = store.stop_experiment(services.engine, experiment_id)
    services.experiments.invalidate()
    return record
