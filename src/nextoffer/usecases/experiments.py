"""A/B experiments of offer strategies: start one (one at a time), stop it, read its results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nextoffer.domain.audit import Action, Actor
from nextoffer.domain.errors import ConflictError, InvalidRequestError
from nextoffer.domain.experiment_stats import ExperimentStats, UnitOutcomes, analyse_experiment
from nextoffer.domain.experiments import DEFAULT_ALPHA, Strategy, Variant
from nextoffer.store import Engine
from nextoffer.store import experiments as store
from nextoffer.store.experiments import ExperimentRecord
from nextoffer.store.reads.experiment_units import experiment_units
from nextoffer.usecases.context import Services


@dataclass(frozen=True)
class VariantResponses:
    """The offer impressions and clicks of a variant's units (tagged events)."""

    variant: str
    impressions: int
    clicks: int

    @property
    def ctr(self) -> float | None:
        """Clicks per impression; None without impressions."""
        return self.clicks / self.impressions if self.impressions else None


@dataclass(frozen=True)
class ExperimentResults:
    """An experiment's results per randomisation unit, as the API and the console show them."""

    experiment: ExperimentRecord
    window_days: int
    """Acquisitions, churn and complaints count this many days after a unit's first exposure."""
    stats: ExperimentStats
    """Every variant against the control: always-valid tests, Holm, the sample-ratio check."""
    ctr_compared: bool
    """False when the control variant shows nothing (strategy control): it has no
    impressions, so click-through is reported per variant (`responses`) but not tested, and
    stays out of the Holm family."""
    responses: tuple[VariantResponses, ...]
    """Per variant, in design order."""

    def responses_of(self, variant: str) -> VariantResponses:
        """The responses of the variant called `variant`; KeyError when there is none."""
        for found in self.responses:
            if found.variant == variant:
                return found
        raise KeyError(variant)


def start_experiment(
    services: Services,
    name: str,
    unit: str,
    variants: Sequence[Variant],
    started_by: str,
    *,
    actor: Actor | None = None,
) -> ExperimentRecord:
    """Start an experiment now; refused while another runs, so variants never overlap.

    A variant pinned to a model version is checked against the registry here, so a wrong
    version fails now rather than on the variant's first request. With an `actor`, the
    start goes into the audit trail.
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
    if actor is not None:
        detail = {"name": name, "unit": unit, "variants": [v.name for v in variants]}
        services.audit.change(actor, Action.EXPERIMENT_START, record.experiment_id, detail=detail)
    return record


def stop_experiment(
    services: Services, experiment_id: str, *, actor: Actor | None = None
) -> ExperimentRecord:
    """Stop assigning variants; results stay readable. Stopping twice is harmless.

    With an `actor`, the stop goes into the audit trail.
    """
    record = store.stop_experiment(services.engine, experiment_id)
    services.experiments.invalidate()
    if actor is not None:
        services.audit.change(actor, Action.EXPERIMENT_STOP, experiment_id)
    return record


def experiment_results(services: Services, experiment_id: str) -> ExperimentResults:
    """The experiment's results now; NotFoundError when there is none.

    Outcomes count `NEXTOFFER_IMPACT_WINDOW_DAYS` after each unit's first exposure.
    """
    record = store.get_experiment(services.engine, experiment_id)
    return results_of(services.engine, record, services.settings.impact_window_days)


def results_of(
    engine: Engine, record: ExperimentRecord, window_days: int, alpha: float = DEFAULT_ALPHA
) -> ExperimentResults:
    """Read the experiment's units from the database and analyse them per unit.

    Units and their variants come from the exposures the server recorded
    (`store.reads.experiment_units`), never from what clients post; the statistics are
    `domain.experiment_stats.analyse_experiment` on them.
    """
    names = [v.name for v in record.variants]
    units = experiment_units(engine, record.experiment_id, record.unit, names, window_days)
    ctr_compared = record.design.control_variant.strategy is not Strategy.CONTROL
    outcomes = units.outcomes
    tested = outcomes if ctr_compared else _without_ctr(outcomes)
    stats = analyse_experiment(tested, record.design, alpha=alpha)
    return ExperimentResults(
        experiment=record,
        window_days=window_days,
        stats=stats,
        ctr_compared=ctr_compared,
        responses=tuple(_responses(outcomes, name) for name in names),
    )


def _without_ctr(outcomes: UnitOutcomes) -> UnitOutcomes:
    return UnitOutcomes(
        variant=outcomes.variant,
        converted=outcomes.converted,
        churned=outcomes.churned,
        complaints=outcomes.complaints,
    )


def _responses(outcomes: UnitOutcomes, name: str) -> VariantResponses:
    mine = outcomes.variant == name
    clicks = 0 if outcomes.clicks is None else round(float(np.sum(outcomes.clicks[mine])))
    shown = outcomes.impressions
    impressions = 0 if shown is None else round(float(np.sum(shown[mine])))
    return VariantResponses(name, impressions=impressions, clicks=clicks)
