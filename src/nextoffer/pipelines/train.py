"""The training job: train, evaluate, register (promote only if better), score churn.

Seed: telco-product-recommender's weekly retraining — train → evaluate → register in
MLflow if improved → update inference. Here "update inference" is the champion alias
(serving loads whatever it points at) and a fresh churn score for every customer.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nextoffer.config import Settings
from nextoffer.models.churn import ChurnModel
from nextoffer.models.offer_model import OfferModel
from nextoffer.models.uplift import UpliftModel
from nextoffer.pipelines.base import Say, silent
from nextoffer.pipelines.score_churn import score_all_customers
from nextoffer.pipelines.train_churn import ChurnTraining, ChurnTrainingConfig, train_churn
from nextoffer.pipelines.train_offers import OfferTraining, OfferTrainingConfig, train_offers
from nextoffer.pipelines.train_uplift import PRIMARY_METRIC as UPLIFT_PRIMARY_METRIC
from nextoffer.pipelines.train_uplift import (
    NotEnoughRandomisedDataError,
    UpliftTraining,
    UpliftTrainingConfig,
    train_uplift,
)
from nextoffer.registry.mlflow_registry import Decision, ModelRegistry
from nextoffer.registry.protocol import (
    MODEL_KINDS,
    TAG_CHAMPION_RESCORED,
    TAG_DATA_FINGERPRINT,
    RegisterOptions,
)
from nextoffer.scoring.champions import (
    load_churn_champion,
    load_offer_champion,
    load_uplift_champion,
)
from nextoffer.store import Engine
from nextoffer.store.reads.fingerprint import data_fingerprint
from nextoffer.store.runs import utcnow

KINDS = MODEL_KINDS
log = logging.getLogger(__name__)
# Fewer test customers than this cannot tell a ranker from popularity (a handful of hits
# either way): the popularity floor then does not apply, only the all-zero/NaN check does.
MIN_USERS_FOR_FLOOR = 50


@dataclass(frozen=True)
class TrainOverrides:
    """Pinned settings instead of searched ones (from `nextoffer train --params FILE`).

    `{"offers": {"recommenders": {"ease": {"regularization": 500}}, "ranker": {...}},
      "churn": {"num_leaves": 15, ...}}`
    """

    recommenders: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ranker: Mapping[str, Any] | None = None
    churn: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainOverrides:
        """Read the `--params` JSON; unknown keys are an error, not silently ignored."""
        unknown = set(data) - {"offers", "churn"}
        offers = dict(data.get("offers") or {})
        unknown |= {f"offers.{k}" for k in set(offers) - {"recommenders", "ranker"}}
        if unknown:
            raise ValueError(f"unknown keys in training params: {', '.join(sorted(unknown))}")
        return cls(
            recommenders=dict(offers.get("recommenders") or {}),
            ranker=offers.get("ranker"),
            churn=data.get("churn"),
        )


@dataclass
class TrainResult:
    """Everything one training job did."""

    run_id: str
    offers: OfferTraining | None
    churn: ChurnTraining | None
    decisions: dict[str, Decision]
    churn_scored: dict[str, int]
    churn_model_version: int | None
    seconds: float
    uplift: UpliftTraining | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    """Kinds not trained, and why (uplift without enough randomised data)."""

    def counts(self) -> dict[str, Any]:
        """The run's counts, as its job records them in `job_runs`."""
        return {
            **{f"{kind}_version": d.version for kind, d in self.decisions.items()},
            **{f"{kind}_promoted": d.promoted for kind, d in self.decisions.items()},
            **{f"churn_scored_{band}": n for band, n in self.churn_scored.items()},
            **{f"{kind}_skipped": reason for kind, reason in self.skipped.items()},
        }


def run_training(
    engine: Engine,
    settings: Settings,
    registry: ModelRegistry,
    *,
    kinds: Sequence[str] = KINDS,
    overrides: TrainOverrides | None = None,
    score: bool = True,
    progress: Say | None = None,
    run_id: str | None = None,
) -> TrainResult:
    """Train the chosen kinds, register each, then score churn with the churn champion.

    Uplift comes last and is skipped, with the reason in `TrainResult.skipped`, while the
    data has too few randomised retention offers (`train_uplift.NotEnoughRandomisedDataError`).

    `run_id` names the job run this belongs to; the run is recorded by whoever started it
    (nextoffer.jobs), not here.
    """
    started = time.perf_counter()
    say = progress or silent
    overrides = overrides or TrainOverrides()
    unknown = set(kinds) - set(KINDS)
    if unknown:
        known = ", ".join(KINDS)
        raise ValueError(f"unknown model kind(s) {', '.join(sorted(unknown))}; known: {known}")
    decisions: dict[str, Decision] = {}
    offers: OfferTraining | None = None
    churn: ChurnTraining | None = None
    uplift: UpliftTraining | None = None
    skipped: dict[str, str] = {}
    bands: dict[str, int] = {}
    champion_version: int | None = None
    with tempfile.TemporaryDirectory() as workdir:

        def register(
            kind: str, model: OfferModel | ChurnModel | UpliftModel, options: RegisterOptions
        ) -> Decision:
            """Save `model` and register it as a new `kind` version (champion if it is better)."""
            path = Path(workdir) / kind
            model.save(path)
            options["margin"] = settings.promotion_margin
            options["run_name"] = kind
            return registry.register(kind, path, **options)

        fingerprint = json.dumps(data_fingerprint(engine), sort_keys=True)
        if "offers" in kinds:
            config = _offer_config(settings, overrides)
            offers = train_offers(engine, config, progress=lambda m: say(f"offers: {m}"))
            primary = offer_primary_metric(settings)
            rescored = _rescore_champion(registry, "offers", offers.score)
            options = _offer_options(offers, primary, rescored, fingerprint)
            decisions["offers"] = register("offers", offers.model, options)
        if "churn" in kinds:
            churn_config = ChurnTrainingConfig(
                seed=settings.random_seed,
                drift_threshold=settings.drift_threshold,
                threads=settings.train_threads,
                params=overrides.churn,
            )
            churn = train_churn(engine, churn_config, progress=lambda m: say(f"churn: {m}"))
            rescored = _rescore_champion(registry, "churn", churn.score)
            options = _churn_options(churn, rescored, fingerprint)
            decisions["churn"] = register("churn", churn.model, options)
        if score and "churn" in kinds:
            say("churn: scoring every customer with the champion")
            champion = load_churn_champion(registry)
            champion_version = champion.version
            bands = score_all_customers(
                engine, champion.model, champion.label, utcnow(), settings.churn_bands
            )
        # Last, after churn scoring: nothing the other kinds do waits on it.
        if "uplift" in kinds:
            uplift_config = UpliftTrainingConfig(
                seed=settings.random_seed,
                threads=settings.train_threads,
                window_days=settings.impact_window_days,
            )
            try:
                uplift = train_uplift(engine, uplift_config, progress=lambda m: say(f"uplift: {m}"))
            except NotEnoughRandomisedDataError as exc:
                # Most data sets have no randomised retention offers yet: not an error.
                skipped["uplift"] = str(exc)
                say(f"uplift: skipped: {exc}")
            else:
                rescored = _rescore_champion(registry, "uplift", uplift.score)
                options = _uplift_options(uplift, rescored, fingerprint)
                decisions["uplift"] = register("uplift", uplift.model, options)
        return TrainResult(
            run_id=run_id or str(uuid.uuid4()),
            offers=offers,
            churn=churn,
            decisions=decisions,
            churn_scored=bands,
            churn_model_version=champion_version,
            seconds=time.perf_counter() - started,
            uplift=uplift,
            skipped=skipped,
        )


def _offer_config(settings: Settings, overrides: TrainOverrides) -> OfferTrainingConfig:
    """The offers run's knobs: from the settings, with the parameters `overrides` pins."""
    config = OfferTrainingConfig(
        horizon_days=settings.offer_horizon_days,
        k=settings.offer_metric_k,
        labels=settings.training_labels,
        segments=settings.segments,
        seed=settings.random_seed,
        ranker_customers=settings.ranker_train_customers,
        threads=settings.train_threads,
    )
    return replace(
        config, recommender_params=overrides.recommenders, ranker_params=overrides.ranker
    )


def offer_primary_metric(settings: Settings) -> str:
    """The metric that decides offers promotion, `_at_k` resolved to the configured k."""
    name = settings.offer_primary_metric
    return name.replace("_at_k", f"_at_{settings.offer_metric_k}")


def _rescore_champion(
    registry: ModelRegistry, kind: str, score: Callable[[Any], dict[str, float]]
) -> dict[str, float] | None:
    """The current champion's metrics on this run's test data, or None without a champion."""
    if registry.champion(kind) is None:
        return None
    loaders: dict[str, Callable[[ModelRegistry], Any]] = {
        "offers": load_offer_champion,
        "churn": load_churn_champion,
        "uplift": load_uplift_champion,
    }
    champion = loaders[kind](registry)
    try:
        return {k: float(v) for k, v in score(champion.model).items()}
    except (KeyError, ValueError) as exc:
        # A champion that cannot be scored on today's data cannot defend its title.
        log.warning("%s champion v%s could not be re-scored: %s", kind, champion.version, exc)
        return {}


def _offer_options(
    offers: OfferTraining,
    primary: str,
    rescored: dict[str, float] | None,
    fingerprint: str,
) -> RegisterOptions:
    """What the registry records of an offers run; `primary` on the test data decides."""
    if primary not in offers.metrics:
        raise ValueError(
            f"NEXTOFFER_OFFER_PRIMARY_METRIC {primary!r} is not measured; measured: "
            f"{', '.join(sorted(offers.metrics))}"
        )
    popularity = offers.table.get("popularity", {}).get(primary)
    if offers.table["ranker"].get("users", 0.0) < MIN_USERS_FOR_FLOOR:
        log.warning(
            "offers: only %d test customers; the popularity floor is not applied",
            int(offers.table["ranker"].get("users", 0.0)),
        )
        popularity = None
    tags = {f"nextoffer.{name}": value for name, value in offers.calendar.items()}
    tags.update(
        {
            TAG_DATA_FINGERPRINT: fingerprint,
            "nextoffer.labels": offers.source,
            "nextoffer.learned_from": offers.learned_from,
            "nextoffer.dropped_inputs": ",".join(offers.dropped),
        }
    )
    if rescored is not None:
        tags[TAG_CHAMPION_RESCORED] = json.dumps(rescored, sort_keys=True)
    return {
        "params": _flatten(offers.chosen),
        "metrics": offers.metrics,
        "primary_metric": primary,
        "tags": tags,
        "champion_metrics": {primary: rescored.get(primary, 0.0)} if rescored is not None else None,
        "floor": popularity,
    }


def _churn_options(
    churn: ChurnTraining, rescored: dict[str, float] | None, fingerprint: str
) -> RegisterOptions:
    """What the registry records of a churn run; the test ROC AUC decides promotion.

    A model no better than chance (ROC AUC 0.5) is degenerate and never promoted.
    """
    tags = {
        "nextoffer.label_as_of": churn.label_as_of,
        "nextoffer.drift_worst_feature": churn.drift.worst_feature or "",
        "nextoffer.dropped_inputs": ",".join(churn.dropped),
        TAG_DATA_FINGERPRINT: fingerprint,
    }
    if rescored is not None:
        tags[TAG_CHAMPION_RESCORED] = json.dumps(rescored, sort_keys=True)
    return {
        "params": _flatten({"lightgbm": churn.chosen}),
        "metrics": churn.metrics,
        "primary_metric": "roc_auc",
        "tags": tags,
        "champion_metrics": (
            {"roc_auc": rescored.get("roc_auc", 0.0)} if rescored is not None else None
        ),
        "floor": 0.5,
    }


def _uplift_options(
    uplift: UpliftTraining, rescored: dict[str, float] | None, fingerprint: str
) -> RegisterOptions:
    """What the registry records of an uplift run; Qini AUC on the test group decides.

    The floor is 0, a random ranking's expected Qini AUC: a model no better than picking
    customers at random is degenerate and never promoted.
    """
    tags = {
        "nextoffer.chosen_model": uplift.chosen,
        "nextoffer.outcome": f"retained, {uplift.window_days}-day window",
        "nextoffer.exposed_from": uplift.exposed_from,
        "nextoffer.exposed_to": uplift.exposed_to,
        "nextoffer.learned_from": (
            f"{uplift.rows.get('train', 0):,} customers offered a retention offer at random "
            "(control group or campaign), test group excluded"
        ),
        TAG_DATA_FINGERPRINT: fingerprint,
    }
    if rescored is not None:
        tags[TAG_CHAMPION_RESCORED] = json.dumps(rescored, sort_keys=True)
    return {
        "params": _flatten({"model": uplift.chosen, "window_days": uplift.window_days}),
        "metrics": uplift.metrics,
        "primary_metric": UPLIFT_PRIMARY_METRIC,
        "tags": tags,
        "champion_metrics": (
            {UPLIFT_PRIMARY_METRIC: rescored.get(UPLIFT_PRIMARY_METRIC, 0.0)}
            if rescored is not None
            else None
        ),
        "floor": 0.0,
    }


def _flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"ease": {"regularization": 500}} → {"ease.regularization": 500}."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
