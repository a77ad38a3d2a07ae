"""An operator's wide export, mapped, trained on and served; and measured with evaluate offers.

The export (tests/integration/test_ingest_mapping.py) is the generator's world as a CRM
gives it: one row per customer, Yes/No product columns, extra attribute columns, no
transactions. Training must find the holdings snapshot by itself, the API must answer from
the model it registers, and on the same export `evaluate offers` must rank the ranker above
segment popularity.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from nextoffer.asgi import create_app
from nextoffer.cache.memory import MemoryCache
from nextoffer.cli import app as cli_app
from nextoffer.config import Settings
from nextoffer.domain.roles import Role
from nextoffer.jobs.calls import run_features, run_ingest, run_training
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.serving.api_keys import create_api_key
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from tests.integration.test_ingest_mapping import make_export


def test_a_mapped_export_trains_and_serves(database_url: str, tmp_path: Path) -> None:
    export = make_export(tmp_path, customers=1200, seed=7)
    settings = Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=f"file://{tmp_path / 'artifacts'}",
        train_threads=1,
    )
    engine = make_engine(database_url)
    upgrade(engine)
    run_ingest(engine, settings, export.folder, mapping=export.mapping)
    run_features(engine, settings)
    registry = ModelRegistry.from_settings(settings)

    trained = run_training(engine, settings, registry)

    offers = trained.offers
    assert offers is not None and offers.source == "snapshot"
    # The mapped attributes of role feature are ranker inputs; the label and display are not.
    inputs = offers.model.inputs
    assert "attr_senior_citizen" in inputs.numeric
    assert "attr_household" in inputs.categorical
    # Inferred from the file's first block, which holds an "n/a": typed as a category.
    assert "attr_monthly_charges" in inputs.categorical
    assert not {"attr_churn", "attr_gender"} & {*inputs.numeric, *inputs.categorical}
    assert trained.decisions["offers"].promoted and trained.decisions["churn"].promoted

    # The API answers from that champion: offers the customer does not hold.
    _record, key = create_api_key(engine, "export test", Role.VIEWER)
    customer = str(export.rows.iloc[0]["customerID"])
    held = {p for p in export.product_columns if export.rows.iloc[0][p] == "Yes"}
    app = create_app(settings, engine=engine, cache=MemoryCache())
    with TestClient(app) as client:
        answer = client.get(f"/v1/customers/{customer}/offers", headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["offers"], body
    assert not {o["product_id"] for o in body["offers"]} & held
    assert body["model_version"] != "popular"  # the trained champion, not the fallback
    engine.dispose()


def test_evaluate_offers_on_the_export_ranks_the_ranker_above_segment_popularity(
    tmp_path: Path,
) -> None:
    # The same export as `evaluate offers` reads it: long holdings plus the attributes.
    export = make_export(tmp_path, customers=1200, seed=7)
    rows = export.rows
    holdings = rows.melt(id_vars=["customerID"], value_vars=export.product_columns)
    holdings = holdings[holdings["value"] == "Yes"][["customerID", "variable"]]
    holdings.to_csv(tmp_path / "holdings.csv", index=False)
    attributes = rows[["customerID", "SeniorCitizen", "Household", "tenure", "Contract"]]
    attributes.to_csv(tmp_path / "attributes.csv", index=False)
    done = CliRunner().invoke(
        cli_app,
        [
            "evaluate",
            "offers",
            "--holdings",
            str(tmp_path / "holdings.csv"),
            "--customer-col",
            "customerID",
            "--product-col",
            "variable",
            "--attributes",
            str(tmp_path / "attributes.csv"),
            "--folds",
            "3",
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    models = result["models"]
    assert result["folds"] == 3 and result["evaluated"] > 500
    assert set(models) >= {
        "ranker",
        "popularity",
        "segment_popularity",
        "lightgbm_propensity",
        "bpr",
        "ease",
    }
    ranker, segments = (
        models["ranker"]["hr@1"]["mean"],
        models["segment_popularity"]["hr@1"]["mean"],
    )
    assert ranker > segments, models
    assert pd.notna(models["ranker"]["mrr"]["std"])
