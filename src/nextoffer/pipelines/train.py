"""The training job: train, evaluate, register (promote only if better), score churn.

Seed: telco-product-recommender's weekly retraining — train → evaluate → register in
MLflow if improved → update inference. Here "update inference" is the champion alias
(serving loads whatever it points at) and a fresh churn score for every customer.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nextoffer.config import Settings
from nextoffer.pipelines.score_churn import score_all_customers
from nextoffer.pipelines.train_churn import ChurnTraining, ChurnTrainingConfig, train_churn
from nextoffer.pipelines.train_offers import OfferTraining, OfferTrainingConfig, train_offers
from nextoffer.registry.mlflow_registry import Decision, ModelRegistry
from nextoffer.registry.protocol import MODEL_KINDS
from nextoffer.scoring.champions import load_churn_champion
from nextoffer.store import Engine
from nextoffer.store.runs import utcnow

KINDS = MODEL_KINDS
OFFER_K = 10


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

    def counts(self) -> dict[str, Any]:
        """The run's counts, as its job records them in `job_runs`."""
        return {
            **{f"{kind}_version": d.version for kind, d in self.decisions.items()},
            **{f"{kind}_promoted": d.promoted for kind, d in self.decisions.items()},
            **{f"churn_scored_{band}": n for band, n in self.churn_scored.items()},
        }


def run_training(
    engine: Engine,
    settings: Settings,
    registry: ModelRegistry,
    *,
    kinds: Sequence[str] = KINDS,
    overrides: TrainOverrides | None = None,
    score: bool = True,
    progress: Callable[[str], None] | None = None,
    run_id: str | None = None,
) -> TrainResult:
    """Train the chosen kinds, register each, then score churn with the churn champion.

    `run_id` names the job run this belongs to; the run is recorded by whoever started it
    (nextoffer.jobs), not here.
    """
    started = time.perf_counter()
    say = progress or (lambda _message: None)
    overrides = overrides or TrainOverrides()
    unknown = set(kinds) - set(KINDS)
    if unknown:
        known = ", ".join(KINDS)
        raise ValueError(f"unknown model kind(s) {', '.join(sorted(unknown))}; known: {known}")
    decisions: dict[str, Decision] = {}
    offers: OfferTraining | None = None
    churn: ChurnTraining | None = None
    bands: dict[str, int] = {}
    champion_version: int | None = None
    with tempfile.TemporaryDirectory() as workdir:
        if "offers" in kinds:
            offers = train_offers(
                engine,
                OfferTrainingConfig(
                    horizon_days=settings.offer_horizon_days,
                    k=OFFER_K,
                    segments=settings.segments,
                    seed=settings.random_seed,
                    ranker_customers=settings.ranker_train_customers,
                    threads=settings.train_threads,
                    recommender_params=overrides.recommenders,
                    ranker_params=overrides.ranker,
                ),
                progress=lambda m: say(f"offers: {m}"),
            )
            path = Path(workdir) / "offers"
            offers.model.save(path)
            decisions["offers"] = registry.register(
                "offers",
                path,
                params=_flatten(offers.chosen),
                metrics=offers.metrics,
                primary_metric=f"ndcg_at_{OFFER_K}",
                margin=settings.promotion_margin,
                tags={f"nextoffer.{k}": v for k, v in offers.calendar.items()},
                run_name="offers",
            )
        if "churn" in kinds:
            churn = train_churn(
                engine,
                ChurnTrainingConfig(
                    seed=settings.random_seed,
                    drift_threshold=settings.drift_threshold,
                    threads=settings.train_threads,
                    params=overrides.churn,
                ),
                progress=lambda m: say(f"churn: {m}"),
            )
            path = Path(workdir) / "churn"
            churn.model.save(path)
            decisions["churn"] = registry.register(
                "churn",
                path,
                params=_flatten({"lightgbm": churn.chosen}),
                metrics=churn.metrics,
                primary_metric="roc_auc",
                margin=settings.promotion_margin,
                tags={
                    "nextoffer.label_as_of": churn.label_as_of,
                    "nextoffer.drift_worst_feature": churn.drift.worst_feature or "",
                },
                run_name="churn",
            )
        if score and "churn" in kinds:
            say("churn: scoring every customer with the champion")
            champion = load_churn_champion(registry)
            champion_version = champion.version
            bands = score_all_customers(
                engine, champion.model, champion.label, utcnow(), settings.churn_bands
            )
        return TrainResult(
            run_id=run_id or str(uuid.uuid4()),
            offers=offers,
            churn=churn,
            decisions=decisions,
            churn_scored=bands,
            churn_model_version=champion_version,
            seconds=time.perf_counter() - started,
        )


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
