"""The lean offers model scores as the full one does, and the live answer goes through it.

The lean model (`models.lean_offers`) reads a saved model with numpy and scipy only; the
full `OfferModel` (LightGBM, pandas, implicit) stays the reference: the same candidate
inputs, the same propensities to 1e-9 before the float32 cast, the same offers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextoffer.cache.memory import MemoryCache
from nextoffer.config import Settings
from nextoffer.domain.offers import Catalogue
from nextoffer.features.training import Snapshot, build_snapshot, current_features
from nextoffer.models.base import Interactions
from nextoffer.models.candidates import choose_inputs
from nextoffer.models.lean_offers import LeanOfferModel, load_served
from nextoffer.models.offer_model import OfferModel, RankerData
from nextoffer.pipelines.precompute import run_precompute
from nextoffer.pipelines.train import TrainOverrides
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.scoring.champions import Champion, load_offer_champion
from nextoffer.scoring.offers import (
    LiveInputs,
    customers_for,
    customers_from_rows,
    policy_from_settings,
    score_live,
    score_snapshot,
)
from nextoffer.serving.offers import OfferService, Source
from nextoffer.serving.state import ServingState
from nextoffer.store import precomputed
from nextoffer.store.engine import make_engine
from nextoffer.store.reads.features import PRODUCT_COLUMNS, feature_rows, product_records
from tests.trained_world import trained_world

# MLflow's own SQLAlchemy models use a deprecated loader; nothing we can act on.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")

CUSTOMERS = 1500
LIVE = 40


@dataclass
class World:
    settings: Settings
    registry: ModelRegistry
    model_dir: Path
    snapshot: Snapshot


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("lean-world")
    pinned = TrainOverrides(churn={"num_leaves": 7, "num_boost_round": 50})
    settings, engine, registry = trained_world(root, CUSTOMERS, pinned)
    download = registry.download("offers", None)
    model_dir = root / "offers-model"
    shutil.copytree(download, model_dir)
    shutil.rmtree(download, ignore_errors=True)
    products = list(OfferModel.load(model_dir).products.product_ids)
    with engine.connect() as conn:
        features = current_features(conn)
        snapshot = build_snapshot(
            conn,
            datetime.now(UTC),
            products,
            segments=settings.segments,
            seed=settings.random_seed,
            features=features,
        )
    engine.dispose()
    yield World(settings, registry, model_dir, snapshot)


def _rows(features: pd.DataFrame) -> list[dict[str, object]]:
    return [{str(k): v for k, v in r.items()} for r in features.to_dict("records")]


def _assert_scores_alike(full: OfferModel, lean: LeanOfferModel, snapshot: Snapshot) -> None:
    """Same candidate inputs, propensities within 1e-9 (float64), same float32 matrix."""
    inputs, rows, cols, _ = full.ranker_rows(snapshot.features, snapshot.history, snapshot.held)
    assert full.booster is not None
    expected = full.booster.predict(inputs, num_iteration=full.best_iteration)
    for j, booster in full.product_boosters.items():
        expected[cols == j] = booster.predict(inputs[cols == j])
    records = _rows(snapshot.features)
    lean_inputs, lean_rows, lean_cols = lean.ranker_rows(records, snapshot.history, snapshot.held)
    assert np.array_equal(lean_inputs, inputs, equal_nan=True)
    assert np.array_equal(lean_rows, rows) and np.array_equal(lean_cols, cols)
    got = lean.propensity64(records, snapshot.history, snapshot.held)[rows, cols]
    assert len(got) > 500 and np.ptp(expected) > 0.1
    assert np.max(np.abs(got - expected)) <= 1e-9
    reference, _ = full.propensity(snapshot.features, snapshot.history, snapshot.held)
    mine = lean.propensity(records, snapshot.history, snapshot.held)
    assert np.array_equal(mine, reference, equal_nan=True)


def test_the_champion_scores_the_same_lean_and_full(world: World) -> None:
    full = OfferModel.load(world.model_dir)
    lean = load_served(world.model_dir)
    assert isinstance(lean, LeanOfferModel)
    assert lean.importance() == full.importance()
    _assert_scores_alike(full, lean, world.snapshot)

    # And the same offers after arbitration, for every customer.
    engine = make_engine(world.settings.database_url)
    with engine.connect() as conn:
        catalogue = Catalogue.from_records(product_records(conn, PRODUCT_COLUMNS))
    engine.dispose()
    policy = policy_from_settings(world.settings)
    snapshot = world.snapshot
    n = len(snapshot.features)
    contacts = np.zeros((n, catalogue.n_products), np.int32)
    risk = np.linspace(0, 1, n)
    expected = score_snapshot(full, catalogue, policy, snapshot, contacts, risk, k=5)
    inputs = LiveInputs(_rows(snapshot.features), snapshot.held, snapshot.history, contacts, risk)
    got = score_live(Champion(lean, 1), catalogue, policy, inputs, k=5)
    assert [got.offers[i] for i in range(n)] == [expected.offers(i, "v1") for i in range(n)]
    assert sum(len(o) for o in got.offers) > n
    # Arbitration's view of the customers is the same from dicts as from the frame.
    held = snapshot.held.toarray() > 0
    left = customers_for(snapshot.features, held, risk)
    right = customers_from_rows(inputs.rows, held, risk)
    assert np.array_equal(left.held_categories, right.held_categories)
    assert np.array_equal(left.tenure_months, right.tenure_months, equal_nan=True)
    assert list(left.contract_type) == list(right.contract_type)


def test_every_recommender_kind_and_per_product_boosters_score_the_same(
    world: World, tmp_path: Path
) -> None:
    # A part of the world keeps the made-up ranker's training short.
    whole = world.snapshot
    part = slice(0, 600)
    snapshot = Snapshot(
        whole.as_of, whole.features.iloc[part], whole.history[part], whole.held[part]
    )
    products = OfferModel.load(world.model_dir).products
    features = snapshot.features
    history = Interactions(snapshot.history, features["segment_id"].to_numpy(np.int64))
    params = {
        "popularity": {},
        "segment_popularity": {},
        "item_knn": {"neighbours": 20},
        "ease": {"regularization": 50.0},
        "als": {"factors": 8, "iterations": 5},
        "bpr": {"factors": 8, "iterations": 20},
    }
    inputs = choose_inputs(features, snapshot.held, max_held=8)
    model = OfferModel.fit_recommenders(
        products, history, history, params, features, inputs, shortlist_per_model=6
    )
    x, rows, cols, _ = model.ranker_rows(features, snapshot.history, snapshot.held)
    rng = np.random.default_rng(3)
    # Made-up labels the inputs explain in part, so the trees split on every kind of input.
    logit = x[:, len(inputs.numeric)] * 0.0 + (cols % 3 == 0) - 0.5 * (x[:, -1] > 3)
    labels = (rng.random(len(rows)) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    data = RankerData(x, labels, np.ones(len(rows)), rows, cols)
    ranker = {"per_product_rounds": 5, "num_leaves": 15, "min_child_samples": 10}
    model.fit_ranker(data, data, ranker, threads=1, fixed_rounds=20)
    assert model.product_boosters
    model.save(tmp_path / "model")
    lean = LeanOfferModel.load(tmp_path / "model")
    _assert_scores_alike(OfferModel.load(tmp_path / "model"), lean, snapshot)


def test_the_churn_booster_walks_as_lightgbm_predicts(world: World) -> None:
    from nextoffer.models.churn import ChurnModel, _encode
    from nextoffer.models.trees import Forest
    from nextoffer.scoring.churn import model_frame

    download = world.registry.download("churn", None)
    try:
        churn = ChurnModel.load(download)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    encoded = _encode(model_frame(churn, world.snapshot.features), churn.schema)
    # What LightGBM sees of a frame: numbers, and category codes with missing as NaN.
    columns = [
        encoded[c].cat.codes.replace(-1, np.nan) if encoded[c].dtype == "category" else encoded[c]
        for c in encoded.columns
    ]
    x = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    expected = churn.booster.predict(x, num_iteration=churn.best_iteration)
    forest = Forest.from_text(churn.booster.model_to_string(), num_iteration=churn.best_iteration)
    assert np.max(np.abs(forest.predict(x) - expected)) <= 1e-9
    assert np.ptp(expected) > 0.1


def test_live_answers_equal_precomputed_ones(world: World) -> None:
    settings = world.settings
    engine = make_engine(settings.database_url)
    run_precompute(engine, settings, load_offer_champion(world.registry))
    state = ServingState(engine, world.registry)
    state.refresh()
    assert state.offers is not None and isinstance(state.offers.model, LeanOfferModel)
    customers = [str(c) for c in world.snapshot.customer_ids[:: CUSTOMERS // LIVE]]
    service = OfferService(engine, MemoryCache(max_entries=1_000), state, settings)
    stored = {c: service.offers(c, k=settings.precompute_k) for c in customers}
    assert {a.source for a in stored.values()} == {Source.PRECOMPUTED}
    precomputed.delete_older(engine, datetime.now(UTC))
    # A fresh cache: the live answers are scored now, by the lean model.
    service = OfferService(engine, MemoryCache(max_entries=1_000), state, settings)
    live = {c: service.offers(c, k=settings.precompute_k) for c in customers}
    assert {a.source for a in live.values()} == {Source.LIVE}
    assert {c: a.offers for c, a in live.items()} == {c: a.offers for c, a in stored.items()}
    assert sum(len(a.offers) for a in live.values()) > len(customers)
    # A second answer reads the cached feature row (JSON) and scores the same.
    service.forget(customers[0])
    again = service.offers(customers[0], k=settings.precompute_k)
    assert again.source is Source.LIVE and again.offers == live[customers[0]].offers
    engine.dispose()


LIVE_IN_A_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from nextoffer.cache.memory import MemoryCache
    from nextoffer.config import Settings
    from nextoffer.domain.offers import Catalogue
    from nextoffer.scoring.champions import Champion, offer_loader
    from nextoffer.serving.offers import OfferService
    from nextoffer.serving.state import ServingState
    from nextoffer.store.engine import make_engine
    from nextoffer.store.reads.features import PRODUCT_COLUMNS, product_records

    url, model_dir, customer = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    settings = Settings(database_url=url)
    engine = make_engine(url)
    state = ServingState(engine, None)
    state.offers = Champion(offer_loader()(model_dir), 1)
    state.catalogue = Catalogue.from_records(product_records(engine, PRODUCT_COLUMNS))
    service = OfferService(engine, MemoryCache(max_entries=10), state, settings)
    answer = service.offers(customer, k=3)
    heavy = ("pandas", "sklearn", "lightgbm", "implicit", "mlflow", "pyarrow")
    print(json.dumps({
        "source": answer.source.value,
        "offers": [o.product_id for o in answer.offers],
        "loaded": sorted(m for m in heavy if m in sys.modules),
    }))
    """
)


def test_a_live_answer_imports_no_pandas_lightgbm_or_implicit(world: World) -> None:
    customer = str(world.snapshot.customer_ids[7])
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LIVE_IN_A_FRESH_PROCESS,
            world.settings.database_url,
            str(world.model_dir),
            customer,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["source"] == "live"
    assert report["offers"]
    assert report["loaded"] == []
    # The feature rows it read are what the features job stored for that customer.
    engine = make_engine(world.settings.database_url)
    with engine.connect() as conn:
        row = feature_rows(conn, [customer])[0]
    engine.dispose()
    assert row["customer_id"] == customer
