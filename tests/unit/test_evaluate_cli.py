"""`nextoffer evaluate recommenders` and `nextoffer evaluate churn`, run through the CLI.

The recommender fixture (`tests/fixtures/recsys/movielens_shape.csv`, see its README) has
planted genre tastes, so models that use a user's history must beat popularity. The churn
fixture (`tests/fixtures/churn/telco_yes_no.csv`) is IBM-telco shaped with yes/no flags, a
customerID and blank TotalCharges cells; the real BigML data is used when it is present.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from nextoffer.cli import app
from nextoffer.evaluation.splits import stratified_split
from nextoffer.models.catalog import DEFAULT_GRIDS, RECOMMENDERS, search_grid
from tests.unit.test_churn_model import bigml_dir

FIXTURES = Path(__file__).absolute().parent.parent / "fixtures"
MOVIELENS = FIXTURES / "recsys" / "movielens_shape.csv"
TELCO = FIXTURES / "churn" / "telco_yes_no.csv"
K = 10
METRICS = [
    f"{m}@{K}" for m in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage")
]
CHURN_METRICS = {"roc_auc", "pr_auc", "brier", "lift_top_decile"}


def invoke(*args: str) -> Result:
    """Run `nextoffer evaluate ...` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(app, ["evaluate", *args])


def run_json(*args: str) -> dict[str, Any]:
    """Run a command with --json and parse its standard output."""
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def assert_one_line_error(result: Result, *needles: str) -> str:
    """Exit code 1, no traceback, and a single stderr line mentioning every needle."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --- recommenders -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_models() -> dict[str, Any]:
    """Every recommender, tuned, on the stratified split (the defaults)."""
    return run_json("recommenders", "--interactions", str(MOVIELENS))


def test_recommenders_json_has_every_model_and_metric(all_models: dict[str, Any]) -> None:
    metrics = all_models["metrics"]

    assert list(metrics) == list(RECOMMENDERS)
    for name, values in metrics.items():
        assert set(METRICS) <= set(values), name
        for key in METRICS:
            assert 0.0 <= values[key] <= 1.0, (name, key, values[key])
        # Every one of the fixture's 200 users has at least 8 rows, so each has a test item.
        assert values["users"] == 200.0
    # A model that always finds something would be suspicious: the numbers are not all 1.
    assert metrics["popularity"][f"ndcg@{K}"] < 0.9


def test_recommenders_stratified_split_sizes(all_models: dict[str, Any]) -> None:
    data = all_models["data"]
    frame = pd.read_csv(MOVIELENS)

    assert data["split"] == "stratified"
    assert data["interactions"] == len(frame)
    assert data["users"] == frame["user_id"].nunique() == 200
    assert data["items"] == frame["item_id"].nunique() == 150
    assert data["train"] + data["test"] == data["interactions"]
    # Per user, floor(0.75 n) rows go to train (not round): a fixed, known total.
    per_user = frame.groupby("user_id").size()
    assert data["train"] == int(sum(math.floor(0.75 * n) for n in per_user))


def test_recommenders_tuned_settings_come_from_the_grid(all_models: dict[str, Any]) -> None:
    chosen = all_models["chosen_params"]
    validation = all_models["validation"]

    grid_values = [p["regularization"] for p in DEFAULT_GRIDS["ease"]]
    assert chosen["ease"]["regularization"] in grid_values
    assert chosen["item_knn"]["neighbours"] in [p["neighbours"] for p in DEFAULT_GRIDS["item_knn"]]
    for name in ("ease", "item_knn", "als"):
        rows = validation[name]
        assert [row["params"] for row in rows] == search_grid(name, 150)
        best = max(rows, key=lambda row: row[f"ndcg@{K}"])
        assert chosen[name] == best["params"], name
    assert chosen["popularity"] == {} and validation["popularity"] == []


def test_personalised_models_beat_popularity(all_models: dict[str, Any]) -> None:
    metrics = all_models["metrics"]
    popularity = metrics["popularity"][f"ndcg@{K}"]

    for name in ("ease", "item_knn"):
        assert metrics[name][f"ndcg@{K}"] > popularity + 0.1, (name, metrics[name])


def popularity_ndcg(
    train: pd.DataFrame, test: pd.DataFrame, item_order: list[Any], k: int, exclude_seen: bool
) -> float:
    """Pure-Python popularity + binary nDCG@k, the protocol of docs/evaluation.md.

    Items are ranked by the number of distinct training users, ties to the item that appears
    first in the file; seen items are skipped when `exclude_seen`; every test item of a user is
    relevant; users without test items are not averaged.
    """
    pairs = set(zip(train["user_id"], train["item_id"], strict=True))
    counts = Counter(item for _user, item in pairs)
    position = {item: i for i, item in enumerate(item_order)}
    ranking = sorted(item_order, key=lambda item: (-counts[item], position[item]))
    seen: defaultdict[Any, set[Any]] = defaultdict(set)
    for user, item in pairs:
        seen[user].add(item)
    relevant: defaultdict[Any, set[Any]] = defaultdict(set)
    for user, item in zip(test["user_id"], test["item_id"], strict=True):
        relevant[user].add(item)
    total = 0.0
    for user, wanted in relevant.items():
        shown = [item for item in ranking if not (exclude_seen and item in seen[user])][:k]
        dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(shown) if item in wanted)
        ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(wanted), k)))
        total += dcg / ideal
    return total / len(relevant)


def test_popularity_ndcg_matches_an_independent_computation(all_models: dict[str, Any]) -> None:
    frame = pd.read_csv(MOVIELENS)
    train, test = stratified_split(frame, ratio=0.75, seed=42)
    items = list(frame["item_id"].unique())

    expected = popularity_ndcg(train, test, items, K, exclude_seen=True)
    with_seen = popularity_ndcg(train, test, items, K, exclude_seen=False)

    reported = all_models["metrics"]["popularity"][f"ndcg@{K}"]
    assert reported == pytest.approx(expected, abs=1e-9)
    # The check can tell the protocols apart: leaving seen items in gives another number.
    assert abs(with_seen - reported) > 1e-3
    assert (len(train), len(test)) == (all_models["data"]["train"], all_models["data"]["test"])


def test_leave_one_out_evaluates_every_user_with_a_test_item() -> None:
    payload = run_json(
        "recommenders", "--interactions", str(MOVIELENS), "--split", "leave_one_out",
        "--models", "popularity,ease",
    )  # fmt: skip
    frame = pd.read_csv(MOVIELENS)
    repeat_users = int((frame.groupby("user_id").size() >= 2).sum())

    assert payload["data"]["split"] == "leave_one_out"
    assert payload["data"]["test"] == repeat_users
    for name in ("popularity", "ease"):
        values = payload["metrics"][name]
        assert values["users"] == repeat_users
        # One relevant item each: recall equals hit rate, and precision is hits / k.
        assert values[f"recall@{K}"] == pytest.approx(values[f"hit_rate@{K}"])
        assert values[f"precision@{K}"] == pytest.approx(values[f"hit_rate@{K}"] / K)


def test_time_split_evaluates_the_users_active_after_the_cutoff() -> None:
    payload = run_json(
        "recommenders", "--interactions", str(MOVIELENS), "--split", "time",
        "--models", "popularity,ease",
    )  # fmt: skip
    frame = pd.read_csv(MOVIELENS)
    cutoff = np.quantile(frame["timestamp"].to_numpy(dtype=float), 0.75)
    late = frame[frame["timestamp"] >= cutoff]

    assert payload["data"]["test"] == len(late)
    assert payload["data"]["train"] + payload["data"]["test"] == len(frame)
    for name in ("popularity", "ease"):
        assert payload["metrics"][name]["users"] == late["user_id"].nunique()


def test_table_output_names_models_headers_and_settings() -> None:
    result = invoke(
        "recommenders", "--interactions", str(MOVIELENS),
        "--models", "segment_popularity,ease",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    out = result.stdout
    header = next(line for line in out.splitlines() if "ndcg@10" in line)
    for column in ("model", "precision@10", "recall@10", "map@10", "coverage@10"):
        assert column in header
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert len(rows["segment_popularity"]) == len(METRICS)
    assert len(rows["ease"]) == len(METRICS)
    assert all(0.0 <= float(v) <= 1.0 for v in rows["ease"])
    assert "4,858 interactions · 200 users · 150 items" in out
    assert "ease: {'regularization': " in out
    assert "{" not in out[out.index("segment_popularity:") :].splitlines()[0]


def test_missing_column_is_one_line_naming_it(tmp_path: Path) -> None:
    renamed = tmp_path / "renamed.csv"
    pd.read_csv(MOVIELENS).rename(columns={"item_id": "movie"}).to_csv(renamed, index=False)

    result = invoke("recommenders", "--interactions", str(renamed), "--models", "popularity")

    line = assert_one_line_error(result, "missing column", "item_id")
    assert "movie" in line  # the columns found are listed, to spot the right name


def test_time_split_without_a_time_column_is_a_clear_error(tmp_path: Path) -> None:
    no_time = tmp_path / "no_time.csv"
    pd.read_csv(MOVIELENS).drop(columns=["timestamp"]).to_csv(no_time, index=False)

    result = invoke("recommenders", "--interactions", str(no_time), "--split", "time")

    assert_one_line_error(result, "timestamp", "time split")


def test_unknown_model_is_a_clear_error() -> None:
    result = invoke("recommenders", "--interactions", str(MOVIELENS), "--models", "ease,nope")

    assert_one_line_error(result, "unknown model", "'nope'", "ease", "item_knn")


def test_unreadable_or_missing_files_are_clear_errors(tmp_path: Path) -> None:
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary")
    empty = tmp_path / "empty.csv"
    empty.write_text("")

    assert_one_line_error(
        invoke("recommenders", "--interactions", str(tmp_path / "absent.csv")),
        "absent.csv",
        "no such file",
    )
    assert_one_line_error(
        invoke("recommenders", "--interactions", str(binary)), "image.png", "cannot read as CSV"
    )
    assert_one_line_error(invoke("recommenders", "--interactions", str(empty)), "empty")


def test_text_ratings_with_rating_weights_are_a_clear_error(tmp_path: Path) -> None:
    words = tmp_path / "words.csv"
    frame = pd.read_csv(MOVIELENS)
    frame["rating"] = frame["rating"].map({1: "awful", 2: "meh", 3: "ok", 4: "good", 5: "top"})
    frame.to_csv(words, index=False)

    result = invoke("recommenders", "--interactions", str(words), "--weights", "rating")

    assert_one_line_error(result, "rating", "must hold numbers", "'awful'")


# --- churn --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def telco() -> dict[str, Any]:
    """The telco-shaped fixture with its id column named."""
    return run_json(
        "churn", "--data", str(TELCO), "--label", "Churn", "--id-col", "customerID", "--folds", "3"
    )


def test_churn_on_yes_no_fixture_types_the_columns(telco: dict[str, Any]) -> None:
    raw = pd.read_csv(TELCO, dtype=str, keep_default_na=False)
    schema = telco["schema"]
    features = [*schema["numeric"], *schema["boolean"], *schema["categorical"]]

    assert (raw["TotalCharges"].str.strip() == "").sum() > 0  # the blanks the typing must skip
    assert set(telco["models"]) == {"lightgbm", "logistic"}
    assert telco["rows"] == len(raw) == 300
    assert telco["positives_rate"] == pytest.approx((raw["Churn"] == "Yes").mean())
    assert "customerID" not in features
    assert "customerID" in schema["dropped"]
    assert "TotalCharges" in schema["numeric"]
    assert "Partner" in schema["boolean"] and "SeniorCitizen" in schema["boolean"]
    assert set(schema["categorical"]) == {"gender", "Contract", "PaymentMethod"}
    assert sorted(features) == sorted(set(raw.columns) - {"customerID", "Churn"})
    for scores in telco["models"].values():
        assert set(scores["mean"]) == CHURN_METRICS
        assert len(scores["per_fold"]) == 3
    assert telco["models"]["lightgbm"]["mean"]["roc_auc"] > 0.6
    assert len(telco["chosen_params"]) == 3


def test_churn_detects_the_id_column_without_being_told() -> None:
    payload = run_json(
        "churn", "--data", str(TELCO), "--label", "Churn", "--folds", "3", "--no-tune"
    )
    schema = payload["schema"]

    assert schema["id_col"] is None
    assert "id" in schema["dropped"]["customerID"]
    assert "customerID" not in [*schema["numeric"], *schema["boolean"], *schema["categorical"]]
    assert payload["chosen_params"] == [{}, {}, {}]


@pytest.mark.slow
def test_churn_on_real_bigml_data(tmp_path: Path) -> None:
    directory = bigml_dir()
    frame = pd.concat(
        [
            pd.read_csv(directory / f"churn-bigml-{part}.csv", dtype=str, keep_default_na=False)
            for part in ("80", "20")
        ],
        ignore_index=True,
    )
    data = tmp_path / "bigml.csv"
    frame.to_csv(data, index=False)

    payload = run_json("churn", "--data", str(data), "--label", "Churn", "--folds", "3")

    labels = frame["Churn"].str.lower()
    assert set(labels) == {"true", "false"}
    assert payload["rows"] == len(frame)
    assert payload["positives_rate"] == pytest.approx((labels == "true").mean())
    assert payload["schema"]["boolean"] == ["International plan", "Voice mail plan"]
    assert payload["schema"]["dropped"] == {}
    lightgbm = payload["models"]["lightgbm"]["mean"]["roc_auc"]
    assert lightgbm >= 0.85
    assert lightgbm > payload["models"]["logistic"]["mean"]["roc_auc"]


def test_churn_unknown_label_column_is_a_clear_error() -> None:
    result = invoke("churn", "--data", str(TELCO), "--label", "churned")

    assert_one_line_error(result, "no column 'churned'", "Churn")


def test_churn_label_with_other_values_names_them(tmp_path: Path) -> None:
    frame = pd.read_csv(TELCO, dtype=str, keep_default_na=False)
    frame.loc[:4, "Churn"] = "maybe"
    frame.loc[5, "Churn"] = "2"
    bad = tmp_path / "bad_label.csv"
    frame.to_csv(bad, index=False)

    result = invoke("churn", "--data", str(bad), "--label", "Churn")

    assert_one_line_error(result, "label column 'Churn'", "yes/no", "6 rows", "'maybe'", "'2'")


def test_churn_missing_or_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")

    assert_one_line_error(
        invoke("churn", "--data", str(tmp_path / "absent.csv"), "--label", "Churn"),
        "no such file",
    )
    assert_one_line_error(invoke("churn", "--data", str(empty), "--label", "Churn"), "empty")
