"""`nextoffer evaluate offers` on the generated world's holdings: the ranker against baselines.

The holdings at the end of the simulation (one row per customer and product held) and the
customers file without names and plan are what an operator would hand over; the generator
is the default one, unchanged by the evaluation code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from nextoffer.cli import app
from nextoffer.synth.generator import generate_world

CUSTOMERS = 4000
FOLDS = 3


def test_the_ranker_beats_popularity_and_the_per_product_baseline(tmp_path: Path) -> None:
    world = tmp_path / "world"
    generate_world(world, CUSTOMERS, seed=42)
    subscriptions = pd.read_csv(world / "subscriptions.csv", dtype=str, keep_default_na=False)
    held = subscriptions[subscriptions["end_date"] == ""][["customer_id", "product_id"]]
    held.to_csv(tmp_path / "holdings.csv", index=False)
    customers = pd.read_csv(world / "customers.csv", dtype=str, keep_default_na=False)
    customers.drop(columns=["display_name", "plan_id"]).to_csv(
        tmp_path / "attributes.csv", index=False
    )

    done = CliRunner().invoke(
        app,
        [
            "evaluate",
            "offers",
            "--holdings",
            str(tmp_path / "holdings.csv"),
            "--attributes",
            str(tmp_path / "attributes.csv"),
            "--folds",
            str(FOLDS),
            "--json",
        ],
    )

    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    hr1 = {name: scores["hr@1"]["mean"] for name, scores in result["models"].items()}
    assert set(hr1) == {
        "ranker",
        "lightgbm_propensity",
        "popularity",
        "segment_popularity",
        "item_knn",
        "ease",
        "als",
        "bpr",
    }
    for baseline in ("popularity", "segment_popularity"):
        assert hr1["ranker"] >= 1.15 * hr1[baseline], hr1
    assert hr1["ranker"] >= hr1["lightgbm_propensity"], hr1
    assert result["evaluated"] > 0.5 * CUSTOMERS * 0.6  # most customers hold 2+ products
