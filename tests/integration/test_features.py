"""Features on a tiny hand-made world equal values computed by hand, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from nextoffer.config import Settings
from nextoffer.pipelines.etl import run_ingest
from nextoffer.pipelines.features import run_features
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import Segment, UserFeatures

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
DAYS_PER_MONTH = 365.25 / 12

WORLD = {
    "products.csv": """product_id,name,category,price,margin
MOB,Mobile,mobile_plan,30,12
BB,Fibre,broadband_plan,40,15
ADD,Extra data,addon,5,4
DEV,Phone,device,199.99,40
BUN,Bundle,bundle,60,20
""",
    "customers.csv": """customer_id,display_name,age_band,region,signup_date,contract_type,payment_method,plan_id,arpu,data_gb_month,voice_min_month
A,Ann Lee,25-34,north,2024-01-01,month_to_month,direct_debit,MOB,30,5.5,200
B,Bob Ray,45-54,south,2026-05-01,two_year,credit_card,BB,50,,
C,Cy Late,18-24,south,2026-07-01,prepaid,voucher,MOB,10,1,10
""",
    "subscriptions.csv": """subscription_id,customer_id,product_id,start_date,end_date,monthly_price
S1,A,MOB,2024-01-01,,30
S2,A,ADD,2026-05-20,2026-05-25,5
S3,A,BB,2026-06-15,,40
S4,B,BB,2026-05-01,,40
S5,B,BUN,2026-05-01,2026-06-01,60
""",
    "transactions.csv": """transaction_id,customer_id,product_id,ts,type,amount,channel
T1,A,MOB,2024-01-01T09:00:00Z,activation,30,retail
T2,A,DEV,2026-04-15T10:00:00Z,purchase,199.99,web
T3,A,ADD,2026-05-20T12:00:00Z,purchase,5,app
T4,A,ADD,2026-06-02T12:00:00Z,purchase,5,app
T5,B,BB,2026-05-01T00:00:00Z,activation,40,web
""",
    "events.csv": """event_id,customer_id,ts,event_type,product_id,channel,session_id
E1,A,2026-05-01T08:00:00Z,support_call,,call_center,
E2,A,2026-02-01T08:00:00Z,network_complaint,,call_center,
E3,A,2026-05-15T08:00:00Z,web_visit,,web,s1
E4,A,2026-04-20T08:00:00Z,app_login,,app,s2
E5,A,2026-01-10T08:00:00Z,offer_accept,ADD,app,s3
E6,A,2025-11-01T08:00:00Z,offer_accept,DEV,app,s4
E7,A,2026-06-01T00:00:00Z,web_visit,,web,s5
""",
}

# Each value worked out by hand from WORLD at AS_OF (windows are [as_of - N days, as_of)).
EXPECTED = {
    "A": {
        "tenure_months": round(882 / DAYS_PER_MONTH, 3),  # 2024-01-01 → 2026-06-01 is 882 days
        "recency_days": 11.5,  # T3, 2026-05-20 12:00
        "frequency_90d": 2,  # T2, T3 (T1 is older, T4 is after as_of)
        "monetary_90d": 204.99,
        "monetary_total": 234.99,
        "products_held": 1,  # S1 only: S2 ended, S3 starts later
        "mobile_held": 1,
        "broadband_held": 0,
        "bundles_held": 0,
        "support_contacts_90d": 1,  # E1 (E2 is older than 90 days)
        "engagement_30d": 1,  # E3 (E4 older than 30 days, E7 at as_of is excluded)
        "offers_accepted_180d": 1,  # E5 (E6 older than 180 days)
        "arpu": 30.0,
        "data_gb_month": 5.5,
        "voice_min_month": 200.0,
        "contract_type": "month_to_month",
    },
    "B": {
        "tenure_months": round(31 / DAYS_PER_MONTH, 3),
        "recency_days": 31.0,
        "frequency_90d": 1,
        "monetary_90d": 40.0,
        "monetary_total": 40.0,
        "products_held": 2,  # S4, and S5 whose last day is the as_of day
        "mobile_held": 0,
        "broadband_held": 1,
        "bundles_held": 1,
        "support_contacts_90d": 0,
        "engagement_30d": 0,
        "offers_accepted_180d": 0,
        "arpu": 50.0,
        "data_gb_month": 0.0,
        "voice_min_month": 0.0,
        "contract_type": "two_year",
    },
}


@pytest.fixture
def world(tmp_path: Path) -> Path:
    folder = tmp_path / "world"
    folder.mkdir()
    for name, text in WORLD.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_features_match_hand_computed_values(
    database_url: str, world: Path, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, var_dir=tmp_path / "var", segments=2)
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    ingested = run_ingest(engine, settings, world)
    assert ingested.rows_quarantined == 0

    result = run_features(engine, settings, as_of=AS_OF)

    assert result.customers == 2  # C signed up after as_of
    with engine.connect() as conn:
        rows = pd.DataFrame(conn.execute(select(UserFeatures)).mappings().all())
        segments = conn.execute(select(Segment.segment_id, Segment.size)).all()
    rows = rows.set_index("customer_id")
    assert sorted(rows.index) == ["A", "B"]
    for customer_id, expected in EXPECTED.items():
        for column, value in expected.items():
            actual = rows.loc[customer_id, column]
            if isinstance(value, float):
                assert actual == pytest.approx(value, abs=1e-6), (customer_id, column)
            else:
                assert actual == value, (customer_id, column)
    assert {int(s) for s in rows["segment_id"]} == {s.segment_id for s in segments}
    assert sum(s.size for s in segments) == 2


def test_features_rerun_replaces_previous_snapshot(
    database_url: str, world: Path, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, var_dir=tmp_path / "var", segments=2)
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    run_ingest(engine, settings, world)
    run_features(engine, settings, as_of=datetime(2026, 8, 1, tzinfo=UTC))
    run_features(engine, settings, as_of=AS_OF)
    with engine.connect() as conn:
        ids = sorted(conn.execute(select(UserFeatures.customer_id)).scalars())
    # C existed on 2026-08-01 but not on AS_OF: its stale row must be gone.
    assert ids == ["A", "B"]
