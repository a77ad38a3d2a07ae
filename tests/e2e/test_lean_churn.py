"""The lean churn model scores and explains as the full one does, on a trained world.

The lean model (`models.lean_churn`) reads a saved churn model with numpy alone; the full
`ChurnModel` (LightGBM, pandas) stays the reference: calibrated probabilities within 1e-9
and the same reasons (features, values, contributions, bands) for every customer.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextoffer.config import Settings
from nextoffer.models.churn import ChurnModel, risk_band
from nextoffer.models.lean_churn import LeanChurnModel, load_served
from nextoffer.models.trees import UnsupportedModelError
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.scoring.champions import churn_loader
from nextoffer.scoring.churn import live_reasons, model_frame, score_customers
from nextoffer.store.engine import make_engine
from nextoffer.store.reads.features import current_features, feature_rows

# MLflow's own SQLAlchemy models use a deprecated loader; nothing we can act on.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")


@pytest.fixture(scope="module")
def churn_dir(sqlite_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The world's churn champion, as the registry hands it out (read, never written)."""
    settings = Settings(
        database_url=f"sqlite:///{sqlite_world / 'nextoffer.db'}",
        var_dir=sqlite_world,
        registry_uri=f"sqlite:///{sqlite_world / 'mlflow.db'}",
        artifacts_url=f"file://{sqlite_world / 'artifacts'}",
    )
    download = ModelRegistry.from_settings(settings).download("churn", None)
    target = tmp_path_factory.mktemp("churn-model") / "model"
    shutil.copytree(download, target)
    shutil.rmtree(download, ignore_errors=True)
    yield target


@pytest.fixture(scope="module")
def features(sqlite_world: Path) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    """Every customer's stored features: as batch scoring reads them, and as serving does."""
    engine = make_engine(f"sqlite:///{sqlite_world / 'nextoffer.db'}")
    with engine.connect() as conn:
        frame = current_features(conn)
        rows = feature_rows(conn, list(frame["customer_id"]))
    engine.dispose()
    return frame, rows


def test_lean_churn_scores_and_explains_as_the_full_model(
    churn_dir: Path, features: tuple[pd.DataFrame, list[dict[str, object]]]
) -> None:
    frame, rows = features
    full = ChurnModel.load(churn_dir)
    lean = churn_loader()(churn_dir)
    assert isinstance(lean, LeanChurnModel)
    assert lean.features == full.schema.features
    assert lean.importance() == full.importance()
    assert [r["customer_id"] for r in rows] == list(frame["customer_id"])

    inputs = model_frame(full, frame)
    expected = full.predict_proba(inputs)
    got = lean.predict_proba(rows)
    assert len(got) >= 500 and np.ptp(expected) > 0.3
    assert np.max(np.abs(got - expected)) <= 1e-9
    assert list(risk_band(got)) == list(risk_band(expected))

    # SHAP contributions per feature, then the reasons built from them.
    reference = np.asarray(
        full.booster.predict(_tree_encoded(full, inputs), pred_contrib=True), dtype=float
    )[:, :-1]
    mine = lean.explainer.contributions(lean.encode(rows))
    assert np.max(np.abs(mine - reference)) <= 1e-9
    assert lean.explain(rows) == _without_float_noise(full.explain(inputs), lean.explain(rows))

    # What the API serves: scores, bands and reasons alike from either model.
    thresholds = (0.2, 0.4)
    batch = score_customers(full, frame, thresholds, explained_bands=None)
    served = score_customers(lean, frame, thresholds, explained_bands=None)
    assert list(served["band"]) == list(batch["band"])
    assert np.array_equal(served["score"].to_numpy(), batch["score"].to_numpy())
    assert list(served["top_reasons"]) == list(batch["top_reasons"])
    assert sum(len(r) for r in batch["top_reasons"]) > len(batch)
    assert live_reasons(lean, rows) == list(batch["top_reasons"])


def _tree_encoded(model: ChurnModel, inputs: pd.DataFrame) -> pd.DataFrame:
    from nextoffer.models.tabular import encode_for_trees

    encoded = encode_for_trees(inputs, model.schema)
    return encoded.set_axis([f"f{i}" for i in range(len(model.schema.features))], axis=1)


def _without_float_noise(
    full: list[list[dict[str, object]]], lean: list[list[dict[str, object]]]
) -> list[list[dict[str, object]]]:
    """The full model's reasons with the lean contributions where they agree to 1e-9."""
    out = []
    for theirs, mine in zip(full, lean, strict=True):
        assert [r["feature"] for r in theirs] == [r["feature"] for r in mine]
        row = []
        for a, b in zip(theirs, mine, strict=True):
            assert abs(float(a["contribution"]) - float(b["contribution"])) <= 1e-9  # type: ignore[arg-type]
            row.append({**a, "contribution": b["contribution"]})
        out.append(row)
    return out


def test_a_model_the_lean_cannot_walk_is_served_by_the_full_stack(
    churn_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # LightGBM itself aborts on a model text it cannot read, so the booster the lean
    # walker cannot handle (linear trees, a multi-class objective) is stood in for.
    def unsupported(directory: Path) -> LeanChurnModel:
        raise UnsupportedModelError("linear trees are not supported")

    monkeypatch.setattr(LeanChurnModel, "load", unsupported)
    with caplog.at_level(logging.WARNING, logger="nextoffer.models.lean_churn"):
        model = load_served(churn_dir)
    assert isinstance(model, ChurnModel)
    warnings = [r for r in caplog.records if r.name == "nextoffer.models.lean_churn"]
    assert len(warnings) == 1 and "full stack" in warnings[0].getMessage()
