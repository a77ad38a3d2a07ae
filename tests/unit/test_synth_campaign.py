"""The planted campaign: randomised arms, outcomes that follow the truth files, loadable exposures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nextoffer.config import Settings
from nextoffer.jobs.calls import run_ingest
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.synth.campaign import (
    ACQUIRE_CONTROL,
    ACQUIRE_TREATED,
    ACQUISITION_SHARES,
    CONTROL_SHARE,
    PERSUADABLE_CHURN_FACTOR,
    RETENTION_RISK,
    SLEEPING_DOG_CHURN_RISE,
    TYPES,
    WINDOW_DAYS,
)
from nextoffer.synth.generator import GenerateResult, generate_world
from tests.helpers import dump_rows

CUSTOMERS = 6000
SEED = 3
LABEL_AS_OF = "2026-08-03"
ACQUIRING = ("activation", "purchase", "upgrade")
ALPHA = 0.001
"""Each statistical check fails a correct generator once in a thousand seeds."""


def _read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> GenerateResult:
    """A few-thousand-customer world, in two chunks."""
    return generate_world(
        tmp_path_factory.mktemp("campaign"), CUSTOMERS, SEED, chunk_customers=3000
    )


@pytest.fixture(scope="module")
def exposed(world: GenerateResult) -> pd.DataFrame:
    """truth/uplift.csv with each customer's outcomes, read from the import files alone.

    `acquired`: the offered product in the window (a transaction or a subscription start);
    `churned`: in the label window; `p_acquire`/`p_churn`: the planted ones of its arm.
    """
    out = world.out_dir
    truth = pd.read_csv(out / "truth" / "uplift.csv", keep_default_na=False)
    exposures = _read(out, "exposures.csv")
    at = pd.to_datetime(exposures["exposed_at"], utc=True).iloc[0]
    stop = at + pd.Timedelta(days=WINDOW_DAYS)
    txn = _read(out, "transactions.csv")
    ts = pd.to_datetime(txn["ts"], utc=True)
    txn = txn[txn["type"].isin(ACQUIRING) & (ts > at) & (ts <= stop)]
    subs = _read(out, "subscriptions.csv")
    start = pd.to_datetime(subs["start_date"], utc=True)
    subs = subs[(start > at) & (start <= stop)]
    took = pd.concat([txn[["customer_id", "product_id"]], subs[["customer_id", "product_id"]]])
    took = took.drop_duplicates().assign(acquired=True)
    labels = _read(out, "churn_labels.csv")[["customer_id", "churned"]]
    frame = truth.merge(took, on=["customer_id", "product_id"], how="left")
    frame = frame.merge(labels, on="customer_id", how="left", validate="one_to_one")
    frame["acquired"] = frame["acquired"].notna()
    frame["churned"] = frame["churned"] == "true"
    treated = frame["arm"] == "treated"
    frame["p_acquire"] = np.where(treated, frame["p_acquire_treated"], frame["p_acquire_control"])
    frame["p_churn"] = np.where(treated, frame["p_churn_treated"], frame["p_churn_control"])
    return frame


def _impact(world: GenerateResult) -> dict[str, Any]:
    return dict(json.loads((world.out_dir / "truth" / "impact.json").read_text()))


def _files(out: Path) -> dict[str, bytes]:
    names = ("exposures.csv", "products.csv", "truth/uplift.csv", "truth/impact.json")
    return {name: (out / name).read_bytes() for name in names}


def test_the_campaign_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = _files(generate_world(tmp_path / "a", 600, 9, chunk_customers=250).out_dir)
    again = _files(generate_world(tmp_path / "b", 600, 9, chunk_customers=250).out_dir)
    other = _files(generate_world(tmp_path / "c", 600, 10, chunk_customers=250).out_dir)
    assert first == again
    for name in ("exposures.csv", "truth/uplift.csv", "truth/impact.json"):
        assert first[name] != other[name], name


def test_everyone_active_on_the_campaign_day_is_randomised_once(
    world: GenerateResult, exposed: pd.DataFrame
) -> None:
    out = world.out_dir
    exposures = _read(out, "exposures.csv")
    labelled = set(_read(out, "churn_labels.csv")["customer_id"])
    assert exposures["customer_id"].is_unique
    assert set(exposures["customer_id"]) <= labelled  # signed up before the campaign day
    assert len(exposures) >= 0.99 * len(labelled)  # all but those with nothing to offer
    assert (exposures["exposure_id"] == exposures["customer_id"] + f"@{LABEL_AS_OF}").all()
    assert (exposures["exposed_at"] == f"{LABEL_AS_OF}T07:00:00Z").all()
    assert (exposures["unit_id"] == exposures["customer_id"]).all()
    assert set(exposures["source"]) == {"campaign"}
    assert set(exposures["channel"]) <= {"web", "app", "call_center", "telesales"}
    assert (exposures[["experiment_id", "variant", "model_version"]] == "").all().all()
    same = exposures.merge(exposed, on="customer_id", validate="one_to_one")
    assert (same["arm_x"] == same["arm_y"]).all()
    assert (same["product_ids"] == same["product_id"]).all()  # one offer, control's unshown
    control = int((exposures["arm"] == "control").sum())
    assert stats.binomtest(control, len(exposures), CONTROL_SHARE).pvalue > ALPHA


def test_retention_offers_go_to_customers_at_risk(
    world: GenerateResult, exposed: pd.DataFrame
) -> None:
    out = world.out_dir
    products = _read(out, "products.csv").set_index("product_id")
    retention_product = products.loc[exposed["product_id"], "is_retention_offer"] == "true"
    assert (retention_product.to_numpy() == exposed["is_retention"]).all()
    costs = products["offer_cost"].astype(float)
    assert (costs[products["is_retention_offer"] == "true"] > 0).all()
    assert (costs[products["is_retention_offer"] == "false"] == 0).all()
    # The control arm's churn probability is the simulation's own, the truth file's.
    truth = pd.read_csv(out / "truth" / "customers.csv").set_index("customer_id")
    own = truth.loc[exposed["customer_id"], "churn_probability"].to_numpy()
    assert np.allclose(exposed["p_churn_control"], own, atol=1e-6)
    offered = exposed[exposed["is_retention"]]
    assert len(offered) > 0.1 * len(exposed)
    assert (offered["p_churn_control"] >= RETENTION_RISK).all()
    assert (exposed.loc[~exposed["is_retention"], "churn_type"] == "").all()
    others = exposed[~exposed["is_retention"]]
    assert np.allclose(others["p_churn_treated"], others["p_churn_control"])


def test_planted_probabilities_follow_the_types(exposed: pd.DataFrame) -> None:
    for i, name in enumerate(TYPES):
        rows = exposed[exposed["acquisition_type"] == name]
        assert np.allclose(rows["p_acquire_treated"], ACQUIRE_TREATED[i])
        assert np.allclose(rows["p_acquire_control"], ACQUIRE_CONTROL[i])
    offered = exposed[exposed["is_retention"]]
    control = offered["p_churn_control"].to_numpy()
    expected = {
        "persuadable": PERSUADABLE_CHURN_FACTOR * control,
        "sure_thing": control,
        "lost_cause": control,
        "sleeping_dog": np.minimum(control + SLEEPING_DOG_CHURN_RISE, 1.0),
    }
    for name, treated in expected.items():
        mask = (offered["churn_type"] == name).to_numpy()
        assert mask.any(), name
        assert np.allclose(offered["p_churn_treated"].to_numpy()[mask], treated[mask], atol=2e-6)


def test_acquisitions_per_arm_and_type_match_the_planted_probabilities(
    exposed: pd.DataFrame,
) -> None:
    for (arm, kind), rows in exposed.groupby(["arm", "acquisition_type"]):
        p = rows["p_acquire"].iloc[0]
        test = stats.binomtest(int(rows["acquired"].sum()), len(rows), p)
        assert test.pvalue > ALPHA, (arm, kind, len(rows), rows["acquired"].mean(), p)
    # Over everyone at once: the realised count against the sum of the planted probabilities.
    p = exposed["p_acquire"]
    z = (exposed["acquired"].sum() - p.sum()) / np.sqrt((p * (1 - p)).sum())
    assert abs(z) < stats.norm.ppf(1 - ALPHA / 2)


def test_the_arms_differ_by_the_true_effect_within_sampling_error(
    world: GenerateResult, exposed: pd.DataFrame
) -> None:
    impact = _impact(world)
    effect = impact["true_effect"]
    truth = (exposed["p_acquire_treated"] - exposed["p_acquire_control"]).mean()
    assert effect["acquisition"] == pytest.approx(truth, abs=1e-9)
    treated = exposed.loc[exposed["arm"] == "treated", "acquired"]
    control = exposed.loc[exposed["arm"] == "control", "acquired"]
    assert effect["exposed"] == {"treated": len(treated), "control": len(control)}
    diff = treated.mean() - control.mean()
    se = np.sqrt(treated.var() / len(treated) + control.var() / len(control))
    assert abs(diff - effect["acquisition"]) < stats.norm.ppf(1 - ALPHA / 2) * se
    assert effect["acquisition"] > 3 * se  # a small world has the power to see it
    segments = impact["segments"]
    assert sum(s["exposed"]["control"] for s in segments.values()) == len(control)
    assert all(s["acquisition"] > 0 for s in segments.values())
    assert impact["window_days"] == WINDOW_DAYS
    assert impact["campaign_day"] == LABEL_AS_OF
    assert impact["control_share"] == CONTROL_SHARE


def test_churn_of_retention_offers_follows_the_planted_probabilities(
    world: GenerateResult, exposed: pd.DataFrame
) -> None:
    offered = exposed[exposed["is_retention"]]
    for (arm, kind), rows in offered.groupby(["arm", "churn_type"]):
        p = rows["p_churn"]
        z = (rows["churned"].sum() - p.sum()) / np.sqrt((p * (1 - p)).sum())
        assert abs(z) < stats.norm.ppf(1 - ALPHA / 2), (arm, kind, len(rows))
    effect = _impact(world)["true_effect"]
    truth = (offered["p_churn_treated"] - offered["p_churn_control"]).mean()
    assert effect["churn_label_window"] == pytest.approx(truth, abs=1e-5)
    assert effect["churn_label_window"] < 0  # the retention campaign works on average
    # Customers offered anything else churn with the simulation's probability in both arms.
    others = exposed[~exposed["is_retention"]]
    p = others["p_churn"]
    z = (others["churned"].sum() - p.sum()) / np.sqrt((p * (1 - p)).sum())
    assert abs(z) < stats.norm.ppf(1 - ALPHA / 2)


def test_churn_risk_ranks_lost_causes_first(exposed: pd.DataFrame) -> None:
    offered = exposed[exposed["is_retention"]].copy()
    risk = offered["p_churn_control"]
    lost = offered["churn_type"] == "lost_cause"
    assert stats.spearmanr(risk, lost).statistic > 0.3
    # The riskiest fifth gains less from the offer than the offered customers on average.
    offered["uplift"] = offered["p_churn_control"] - offered["p_churn_treated"]
    top = offered[risk >= risk.quantile(0.8)]
    assert top["uplift"].mean() < offered["uplift"].mean()


def test_type_shares_follow_the_segments(world: GenerateResult) -> None:
    truth = pd.read_csv(world.out_dir / "truth" / "customers.csv")
    uplift = pd.read_csv(world.out_dir / "truth" / "uplift.csv")
    frame = uplift.merge(truth, on="customer_id")
    segments = _impact(world)["segments"]
    for name, shares in ACQUISITION_SHARES.items():
        counts = frame.loc[frame["latent_segment"] == name, "acquisition_type"].value_counts()
        observed = [int(counts.get(t, 0)) for t in TYPES]
        expected = np.array(shares) * sum(observed)
        assert stats.chisquare(observed, expected).pvalue > ALPHA, name
        realised = segments[name]["acquisition_types"]
        assert realised == {
            t: round(n / sum(observed), 4) for t, n in zip(TYPES, observed, strict=True)
        }


def test_exposures_ingest_with_nothing_quarantined(sqlite_url: str, tmp_path: Path) -> None:
    out = generate_world(tmp_path / "world", 400, 5).out_dir
    engine = make_engine(sqlite_url)
    upgrade(engine)
    result = run_ingest(engine, Settings(database_url=sqlite_url, var_dir=tmp_path / "var"), out)
    assert result.rows_quarantined == 0
    loaded = {f.entity: f.rows_loaded for f in result.files}
    csv_rows = _read(out, "exposures.csv")
    assert loaded["exposures"] == len(csv_rows) > 300
    stored = dump_rows(engine, "exposures")
    row = csv_rows.iloc[0]
    assert stored[row["exposure_id"]] == {
        "exposure_id": row["exposure_id"],
        "customer_id": row["customer_id"],
        "exposed_at": datetime(2026, 8, 3, 7, tzinfo=UTC),
        "arm": row["arm"],
        "product_ids": row["product_ids"],
        "experiment_id": None,
        "variant": None,
        "unit_id": row["customer_id"],
        "channel": row["channel"],
        "source": "campaign",
        "model_version": None,
    }
    assert {r["arm"] for r in stored.values()} == {"treated", "control"}
    products = dump_rows(engine, "products")
    assert float(products["RET-LOYALTY"]["offer_cost"]) == 5.0
    assert float(products["ADD-MUSIC"]["offer_cost"]) == 0.0
    engine.dispose()
