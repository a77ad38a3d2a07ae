"""The champions load with MLflow's own pyfunc loader, in a fresh process, and score as nextoffer does.

Also: importing the registry writes no environment and imports no MLflow; building one
switches MLflow's telemetry off before MLflow is first imported.
"""

from __future__ import annotations

import json
import os
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

from nextoffer.config import Settings
from nextoffer.features.training import build_snapshot, current_features
from nextoffer.models.tabular import infer_columns
from nextoffer.models.uplift import XLearner
from nextoffer.pipelines.train import TrainOverrides
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.scoring.champions import (
    load_churn_champion,
    load_offer_champion,
    load_uplift_champion,
)
from nextoffer.scoring.churn import churn_frame, model_frame
from nextoffer.scoring.uplift import predict_uplift
from nextoffer.store.engine import make_engine
from tests.trained_world import trained_world

# MLflow's own SQLAlchemy models use a deprecated loader; nothing we can act on.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")

CUSTOMERS = 1500
SCORED = 200
PINNED = TrainOverrides(churn={"num_leaves": 7, "num_boost_round": 100})

# Run by a fresh interpreter: MLflow's loader only, with the tracking URI as its argument.
# It writes the scores of the champions for the customers in the input files.
LOAD_WITH_MLFLOW = textwrap.dedent(
    """
    import json
    import sys

    import mlflow
    import pandas as pd

    tracking_uri, folder = sys.argv[1], sys.argv[2]
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    loaded = [name for name in sys.modules if name.startswith("nextoffer.registry")]
    for kind in ("offers", "churn", "uplift"):
        model = mlflow.pyfunc.load_model(f"models:/nextoffer-{kind}@champion")
        frame = pd.read_parquet(f"{folder}/{kind}-input.parquet")
        pd.DataFrame(model.predict(frame)).to_parquet(f"{folder}/{kind}-output.parquet")
    # nextoffer's registry (its downloader and loader) played no part.
    loaded += [name for name in sys.modules if name.startswith("nextoffer.registry")]
    print(json.dumps(sorted(set(loaded))))
    """
)


@dataclass
class Trained:
    settings: Settings
    registry: ModelRegistry
    features: pd.DataFrame


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("pyfunc-world")
    settings, engine, registry = trained_world(root, CUSTOMERS, PINNED)
    with engine.connect() as conn:
        features = current_features(conn)
    engine.dispose()
    # Too few randomised retention offers in a small world to train one: fit an uplift
    # model on made-up arms (treated prepaid customers respond) and register it by hand.
    frame = churn_frame(features)
    treated = np.arange(len(frame)) % 2
    responded = (treated == 1) & (features["contract_type"] == "prepaid").to_numpy()
    schema = infer_columns(frame.assign(y=0), label="y", id_col=None)
    XLearner(schema, outcome="binary").fit(frame, treated, responded).save(root / "uplift")
    registry.register(
        "uplift", root / "uplift", params={}, metrics={"qini_auc": 0.3}, primary_metric="qini_auc"
    )
    features = features.iloc[:SCORED].reset_index(drop=True)
    yield Trained(settings, registry, features)


def test_champions_load_with_mlflow_pyfunc_in_a_fresh_process(
    trained: Trained, tmp_path: Path
) -> None:
    offers = load_offer_champion(trained.registry).model
    churn = load_churn_champion(trained.registry).model
    uplift = load_uplift_champion(trained.registry).model
    engine = make_engine(trained.settings.database_url)
    with engine.connect() as conn:
        snapshot = build_snapshot(
            conn,
            datetime.now(UTC),
            list(offers.products.product_ids),
            segments=trained.settings.segments,
            seed=trained.settings.random_seed,
            features=trained.features,
            only_listed=True,
        )
    engine.dispose()
    assert len(snapshot.features) == SCORED
    # nextoffer's scores: the propensities its offer scorer arbitrates, the churn risk.
    expected_offers = offers.propensity(snapshot.features, snapshot.history, snapshot.held)[0]
    expected_churn = churn.predict_proba(model_frame(churn, snapshot.features))
    expected_uplift = predict_uplift(uplift, snapshot.features)

    # The same customers as the signatures ask for them: numbers as float64, holdings as
    # lists of product ids.
    products = np.array(offers.products.product_ids)
    inputs = offers.inputs
    offers_input = snapshot.features.loc[:, [*inputs.numeric, *inputs.categorical]]
    offers_input = offers_input.astype({c: "float64" for c in inputs.numeric})
    offers_input["held"] = [list(products[row.indices]) for row in snapshot.held]
    offers_input["history"] = [list(products[row.indices]) for row in snapshot.history]
    offers_input.to_parquet(tmp_path / "offers-input.parquet")
    schema = churn.schema
    churn_input = model_frame(churn, snapshot.features)
    churn_input = churn_input.astype({c: "float64" for c in (*schema.numeric, *schema.boolean)})
    churn_input.to_parquet(tmp_path / "churn-input.parquet")
    # The uplift model reads the churn model's columns.
    uplift_input = churn_frame(snapshot.features).loc[:, list(uplift.schema.features)]
    numbers = (*uplift.schema.numeric, *uplift.schema.boolean)
    uplift_input = uplift_input.astype({c: "float64" for c in numbers})
    uplift_input.to_parquet(tmp_path / "uplift-input.parquet")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NEXTOFFER_"))}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITH_MLFLOW, trained.registry.tracking_uri, str(tmp_path)],
        env={**env, "MLFLOW_DISABLE_TELEMETRY": "true"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

    got_offers = pd.read_parquet(tmp_path / "offers-output.parquet")
    assert list(got_offers.columns) == list(products)
    np.testing.assert_allclose(
        got_offers.to_numpy(), expected_offers.astype(np.float64), atol=1e-9, rtol=0
    )
    # Every customer has candidates: the comparison is not NaN against NaN only.
    assert np.isfinite(got_offers.to_numpy()).any(axis=1).all()
    got_churn = pd.read_parquet(tmp_path / "churn-output.parquet")
    assert list(got_churn.columns) == ["churn_probability"]
    np.testing.assert_allclose(
        got_churn["churn_probability"].to_numpy(), expected_churn, atol=1e-9, rtol=0
    )
    got_uplift = pd.read_parquet(tmp_path / "uplift-output.parquet")
    assert list(got_uplift.columns) == ["uplift"]
    np.testing.assert_allclose(got_uplift["uplift"].to_numpy(), expected_uplift, atol=1e-9, rtol=0)
    # The made-up effect is there: prepaid customers respond, the others do not.
    prepaid = (snapshot.features["contract_type"] == "prepaid").to_numpy()
    assert expected_uplift[prepaid].mean() > expected_uplift[~prepaid].mean() + 0.3


def test_the_run_keeps_our_files_and_the_version_is_a_models_from_code_pyfunc(
    trained: Trained, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    registry = trained.registry
    champion = registry.champion("offers")
    assert champion is not None
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    version = client.get_model_version("nextoffer-offers", str(champion.version))
    assert version.run_id == champion.run_id

    # The run keeps the model's own files only, where backups and nextoffer's loader look.
    artifacts = Path(registry.artifacts_url.removeprefix("file://")) / registry.experiment
    files = artifacts / champion.run_id / "artifacts" / "model"
    assert (files / "offer_model.json").is_file() and not (files / "MLmodel").exists()
    got = registry.download("offers", dst=tmp_path / "offers")
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in files.iterdir())

    # The version is MLflow's logged model of that run: models from code, nothing pickled.
    where = client.get_model_version_download_uri("nextoffer-offers", str(champion.version))
    model = Path(where.removeprefix("file://"))
    mlmodel = (model / "MLmodel").read_text()
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in mlmodel
    assert "model_code_path:" in mlmodel and (model / "offers_model.py").is_file()
    assert list(model.rglob("offer_model.json"))
    assert not list(model.rglob("*.pkl")) and "python_model.pkl" not in mlmodel
    # MLflow 3 keeps it as a logged model of the run: <experiment>/models/<model id>/artifacts.
    assert model.parent.parent == artifacts / "models"
    assert client.get_logged_model(model.parent.name).source_run_id == champion.run_id


def test_registry_import_sets_nothing_and_telemetry_is_off_before_mlflow(tmp_path: Path) -> None:
    probe = textwrap.dedent(
        """
        import json, os, sys

        seen = {}

        class Watch:
            # Records the environment at the moment MLflow is first imported.
            def find_spec(self, name, path=None, target=None):
                if name == "mlflow" and "mlflow" not in seen:
                    seen["mlflow"] = os.environ.get("MLFLOW_DISABLE_TELEMETRY")
                return None

        sys.meta_path.insert(0, Watch())
        before = dict(os.environ)
        import nextoffer.registry.mlflow_registry as reg
        imported = "mlflow" in sys.modules
        unchanged = dict(os.environ) == before
        reg.ModelRegistry(f"sqlite:///{sys.argv[1]}/mlflow.db", f"file://{sys.argv[1]}/art")
        from mlflow.telemetry import get_telemetry_client

        print(json.dumps({
            "imported_on_import": imported,
            "env_unchanged_on_import": unchanged,
            "telemetry_at_first_import": seen.get("mlflow"),
            "client": get_telemetry_client() is not None,
        }))
        """
    )
    env = {
        k: v for k, v in os.environ.items() if k not in {"MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}
    }
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "imported_on_import": False,
        "env_unchanged_on_import": True,
        "telemetry_at_first_import": "true",
        "client": False,
    }


def test_prune_deletes_the_pyfunc_copy_too(trained: Trained, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    settings = trained.settings
    registry = ModelRegistry(settings.registry_uri, settings.artifacts_url, keep_versions=1)
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    places: dict[int, Path] = {}
    for number in range(2):
        folder = tmp_path / f"model-{number}"
        folder.mkdir()
        (folder / "meta.json").write_text("{}")
        # Never better than the champion: the champion and the other tests are unaffected.
        decision = registry.register(
            "churn", folder, params={}, metrics={"roc_auc": 0.0}, primary_metric="roc_auc"
        )
        assert not decision.promoted
        uri = client.get_model_version_download_uri("nextoffer-churn", str(decision.version))
        places[decision.version] = Path(uri.removeprefix("file://"))
    first, second = sorted(places)
    assert not places[first].exists() and (places[second] / "MLmodel").is_file()
    assert [v.version for v in registry.versions("churn") if v.artifacts_deleted] == [first]
