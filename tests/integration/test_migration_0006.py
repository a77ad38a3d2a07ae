"""Migration 0006 on a database with data: rows survive, new columns empty, downgrade fills."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, text

from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import current_revision, downgrade, upgrade


def _seed(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO products (product_id, name, category, price, margin, upfront_price,"
                " contract_types, min_tenure_months, regions, channels, is_retention_offer,"
                " active) VALUES ('P1', 'Plan', 'mobile_plan', 10, 5, 0, '', 0, '', '',"
                " false, true)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO customers (customer_id, display_name, age_band, region,"
                " signup_date, contract_type, payment_method, plan_id, arpu) VALUES"
                " ('C1', 'Ann', '25-34', 'north', '2024-01-01', 'prepaid', 'voucher', 'P1', 12)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO subscriptions (subscription_id, customer_id, product_id, start_date)"
                " VALUES ('S1', 'C1', 'P1', '2024-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO churn_labels (customer_id, as_of, churned) VALUES"
                " ('C1', '2024-06-01', false)"
            )
        )


def test_upgrade_keeps_rows_and_downgrade_fills_what_became_optional(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine, "0005")
    _seed(engine)

    upgrade(engine, "0006")
    assert current_revision(engine) == "0006"
    with engine.begin() as conn:
        row = conn.execute(
            text("SELECT display_name, arpu, attributes FROM customers WHERE customer_id = 'C1'")
        ).one()
        assert (row.display_name, float(row.arpu), row.attributes) == ("Ann", 12.0, None)
        rules = conn.execute(
            text(
                "SELECT requires_products, requires_attribute, exclusion_group, upgrades_from"
                " FROM products"
            )
        ).one()
        assert tuple(rules) == (None, None, None, None)
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM churn_labels")).scalar_one() == 1
        # What 0006 allows: a customer with neither name nor ARPU, and a registered attribute.
        conn.execute(
            text(
                "INSERT INTO customers (customer_id, age_band, region, signup_date,"
                " contract_type, payment_method) VALUES"
                " ('C2', 'unknown', 'unknown', '2024-02-01', 'month_to_month', 'cheque')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO customer_attribute_schema (name, kind, role, updated_at)"
                " VALUES ('senior', 'boolean', 'feature', :now)"
            ),
            {"now": datetime(2026, 1, 1, tzinfo=UTC)},
        )

    downgrade(engine, "0005")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT customer_id, display_name, arpu FROM customers ORDER BY customer_id")
        ).all()
    assert [(r.customer_id, r.display_name, float(r.arpu)) for r in rows] == [
        ("C1", "Ann", 12.0),
        ("C2", "C2", 0.0),
    ]
    upgrade(engine, "0006")
    assert current_revision(engine) == "0006"
    engine.dispose()
