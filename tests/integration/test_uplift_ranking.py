"""NEXTOFFER_OFFER_RANKING=uplift with an uplift champion: precompute and live answers agree.

An uplift model is fitted to say "a retention offer keeps the big spenders and drives the
others away", registered as the champion, and then: customers it predicts an offer would
push out (negative uplift) get no retention offer, in precomputed and in live answers, while
the same customers do get one when offers are ranked by propensity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextoffer.cache.memory import MemoryCache
from nextoffer.config import Settings
from nextoffer.features.training import current_features, load_products
from nextoffer.models.tabular import infer_columns
from nextoffer.models.uplift import TwoModel
from nextoffer.pipelines.precompute import run_precompute, uplift_for_ranking
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.scoring.champions import load_offer_champion
from nextoffer.scoring.churn import churn_frame
from nextoffer.scoring.uplift import predict_uplift
from nextoffer.serving.offers import OfferService, Source
from nextoffer.serving.state import ServingState
from nextoffer.store import precomputed
from nextoffer.store.engine import make_engine
from tests.integration.rules_world import RulesWorld, rules_world

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> RulesWorld:
    return rules_world(tmp_path_factory)


def register_uplift(
    registry: ModelRegistry, features: pd.DataFrame, arpu: float, folder: Path
) -> np.ndarray:
    """Fit and register the uplift champion; each customer's predicted uplift."""
    frame = churn_frame(features)
    schema = infer_columns(frame.assign(retained=0), label="retained", id_col=None)
    keeps = (features["arpu"] > arpu).to_numpy()
    treated = np.arange(len(frame)) % 2
    # Treated big spenders stay, treated others leave; the control arm the other way round.
    retained = np.where(treated == 1, keeps, ~keeps).astype(int)
    model = TwoModel(schema, outcome="binary").fit(frame, treated, retained)
    model.save(folder)
    decision = registry.register(
        "uplift",
        folder,
        params={"model": "two_model"},
        metrics={"qini_auc": 0.4},
        primary_metric="qini_auc",
        floor=0.0,
    )
    assert decision.promoted
    return predict_uplift(model, features)


def retention_offered(engine: object, retention: set[str]) -> dict[str, set[str]]:
    """Each customer's precomputed retention offers."""
    rows = precomputed.page(engine, "", 1_000_000)  # type: ignore[arg-type]
    return {r.customer_id: {o["product_id"] for o in r.offers} & retention for r in rows}


def test_customers_an_offer_would_push_out_get_no_retention_offer(
    world: RulesWorld, tmp_path: Path
) -> None:
    root = world.copy(tmp_path / "world")
    by_propensity = world.settings(root)
    by_uplift = world.settings(root, offer_ranking="uplift")
    engine = make_engine(by_uplift.database_url)
    registry = ModelRegistry.from_settings(by_uplift)
    # The copy's MLflow experiment keeps the original's artifact folder: a new one writes here.
    writer = ModelRegistry(by_uplift.registry_uri, by_uplift.artifacts_url, experiment="copy")
    with engine.connect() as conn:
        features = current_features(conn)
        retention = {p["product_id"] for p in load_products(conn) if p["is_retention_offer"]}
    offers = load_offer_champion(registry)
    run_precompute(engine, by_propensity, offers)
    before = retention_offered(engine, retention)
    had = features["customer_id"].isin([c for c, got in before.items() if got])
    # Half of those offered a retention offer by propensity spend more than this.
    uplift = register_uplift(
        writer, features, float(features.loc[had, "arpu"].median()), tmp_path / "uplift"
    )
    assert uplift_for_ranking(registry, by_propensity) is None
    ids = features["customer_id"].astype(str).to_numpy()
    pushed_out = set(ids[uplift < 0])
    kept = set(ids[uplift > 0])
    champion = uplift_for_ranking(registry, by_uplift)
    assert champion is not None
    run_precompute(engine, by_uplift, offers, uplift=champion)
    after = retention_offered(engine, retention)

    # Ranked by propensity, customers the model says an offer pushes out got retention
    # offers; ranked by uplift, none of them does, and persuadables get at most one.
    victims = sorted(c for c in pushed_out if before.get(c))
    assert victims, "no customer with negative uplift had a retention offer to lose"
    assert all(not after.get(c) for c in pushed_out)
    assert any(after.get(c) for c in kept)
    assert all(len(after.get(c, set())) <= 1 for c in kept)

    # Live answers go through the same scoring: with no precomputed rows to read.
    precomputed.delete_older(engine, pd.Timestamp.now(tz="UTC").to_pydatetime())
    for settings, expect_retention in ((by_uplift, False), (by_propensity, True)):
        state = ServingState(engine, ModelRegistry.from_settings(settings))
        state.refresh()
        assert state.uplift is not None and state.uplift.version == champion.version
        service = OfferService(engine, MemoryCache(max_entries=1_000), state, settings)
        for customer in victims[:5]:
            answer = service.offers(customer, k=settings.precompute_k)
            assert answer.source is Source.LIVE
            got = {o.product_id for o in answer.offers} & retention
            assert bool(got) is expect_retention, (customer, settings.offer_ranking, got)
    engine.dispose()


def test_without_an_uplift_champion_nothing_changes(world: RulesWorld) -> None:
    settings: Settings = world.settings(offer_ranking="uplift")
    registry = ModelRegistry.from_settings(settings)
    # The small world has too few randomised retention exposures: training skipped uplift.
    assert registry.champion("uplift") is None
    assert uplift_for_ranking(registry, settings) is None
