"""`nextoffer score --customers FILE --out FILE`: the champions' answer for a file, nothing stored.

Customers cut out of the world's own import files, with all their rows and the features
job's instant, get exactly what the platform computed for them: the same segment, churn
risk and precomputed top offers. Bad rows are reported with the quarantine's reason and
left out; neither the rows nor anything else reaches the platform's database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from nextoffer.cli import app as cli_app
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import (
    ChurnScore,
    Customer,
    PrecomputedOffers,
    QuarantinedRow,
    UserFeatures,
)
from tests.integration.rules_world import RulesWorld, rules_world, violations

ENTITIES = ("customers", "subscriptions", "transactions", "events")


def pairs(rows: Iterable[Any]) -> dict[Any, Any]:
    """{first column: second column} of a result's rows."""
    return {row[0]: row[1] for row in rows}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> RulesWorld:
    return rules_world(tmp_path_factory)


def offers_of(row: Mapping[Any, Any]) -> list[str]:
    """The offer_1..offer_3 product ids of an output row (missing ones left out)."""
    found = (row.get(f"offer_{i}") for i in (1, 2, 3))
    return [str(p) for p in found if isinstance(p, str)]


def cut(world: RulesWorld, customers: list[str], folder: Path) -> dict[str, Path]:
    """The world's import files restricted to `customers`, as the import format."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for entity in ENTITIES:
        frame = pd.read_csv(world.data / f"{entity}.csv", dtype=str, keep_default_na=False)
        files[entity] = folder / f"my_{entity}.csv"
        frame[frame["customer_id"].isin(customers)].to_csv(files[entity], index=False)
    return files


def test_scores_equal_what_the_platform_computed_and_nothing_is_stored(
    world: RulesWorld, tmp_path: Path
) -> None:
    engine = make_engine(world.settings().database_url)
    with engine.connect() as conn:
        ids = [str(c) for c in conn.execute(select(Customer.customer_id)).scalars()]
        as_of = conn.execute(select(func.max(UserFeatures.as_of))).scalar_one()
        segments = pairs(conn.execute(select(UserFeatures.customer_id, UserFeatures.segment_id)))
        risk = pairs(conn.execute(select(ChurnScore.customer_id, ChurnScore.score)))
        stored: dict[str, Any] = pairs(
            conn.execute(select(PrecomputedOffers.customer_id, PrecomputedOffers.offers))
        )
        counts = {
            t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (Customer, QuarantinedRow, UserFeatures)
        }
    chosen = sorted(ids)[100:130]
    files = cut(world, chosen, tmp_path / "in")
    # One bad row: an age band the format does not know.
    with files["customers"].open("a", encoding="utf-8") as handle:
        # (The empty field is the optional timezone column.)
        handle.write("C09999999,Bad Row,40-49,capital,2020-01-01,prepaid,voucher,,30,1,1,,false\n")
    out = tmp_path / "scored.parquet"

    args = ["score", "--out", str(out), "--as-of", as_of.strftime("%Y-%m-%dT%H:%M:%S")]
    for entity, path in files.items():
        args += [f"--{entity}", str(path)]
    done = CliRunner().invoke(cli_app, args, env=world.env())

    assert done.exit_code == 0, done.output
    assert "rejected: customers line 32: bad_enum: age_band '40-49'" in done.output
    assert "30 customers scored" in done.output and "nothing stored" in done.output
    scored = pd.read_parquet(out)
    assert list(scored["customer_id"]) == chosen
    for row in scored.to_dict("records"):
        customer = str(row["customer_id"])
        assert row["segment_id"] == segments[customer]
        assert row["churn_risk"] == pytest.approx(risk[customer], abs=1e-6)
        offers = stored[customer]
        offers = json.loads(offers) if isinstance(offers, str) else offers
        assert offers_of(row) == [o["product_id"] for o in offers[:3]], customer
        assert row["offer_1_score"] == pytest.approx(offers[0]["score"])
    with engine.connect() as conn:
        after = {
            t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (Customer, QuarantinedRow, UserFeatures)
        }
        assert (
            conn.execute(
                select(Customer.customer_id).where(Customer.customer_id == "C09999999")
            ).first()
            is None
        )
    assert after == counts
    engine.dispose()


def test_new_customers_from_a_file_get_offers_within_the_rules(
    world: RulesWorld, tmp_path: Path
) -> None:
    """Customers the platform has never seen: holdings only, rules applied to what they hold."""
    customers = pd.DataFrame(
        {
            "customer_id": ["N001", "N002", "N003", "N004"],
            "signup_date": ["2019-03-01", "2024-06-01", "2021-01-15", "2018-09-30"],
            "contract_type": ["two_year", "month_to_month", "one_year", "two_year"],
            "payment_method": ["credit_card", "direct_debit", "cheque", "voucher"],
            "region": ["capital", "capital", "lakes", "coast"],
            "fiber_available": ["true", "false", "false", "true"],
        }
    )
    subscriptions = pd.DataFrame(
        {
            "subscription_id": ["NS1", "NS2", "NS3", "NS4", "NS5", "NS6"],
            "customer_id": ["N001", "N001", "N002", "N003", "N004", "N004"],
            "product_id": ["MOB-M", "BB-DSL-50", "MOB-S", "BB-5G-HOME", "MOB-L", "BB-FIB-1G"],
            "start_date": ["2020-01-01"] * 6,
            "end_date": [""] * 6,
        }
    )
    customers.to_csv(tmp_path / "customers.csv", index=False)
    subscriptions.to_csv(tmp_path / "subscriptions.csv", index=False)
    out = tmp_path / "scored.csv"
    args = ["score", "--customers", str(tmp_path / "customers.csv"), "--out", str(out)]
    args += ["--subscriptions", str(tmp_path / "subscriptions.csv")]

    done = CliRunner().invoke(cli_app, args, env=world.env())

    assert done.exit_code == 0, done.output
    scored = pd.read_csv(out)
    assert list(scored["customer_id"]) == ["N001", "N002", "N003", "N004"]
    assert scored["churn_band"].isin(["low", "medium", "high"]).all()
    held: dict[str, set[str]] = {}
    for customer, product in zip(
        subscriptions["customer_id"], subscriptions["product_id"], strict=True
    ):
        held.setdefault(str(customer), set()).add(str(product))
    offered = {str(r["customer_id"]): offers_of(r) for r in scored.to_dict("records")}
    assert all(offered.values())
    for customer, products in offered.items():
        assert not set(products) & held[customer], customer
    assert violations(offered, held, {"N001", "N004"}) == []
