"""The console's SQL on SQLite and PostgreSQL: counts, rates, search and keyset pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, insert

from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.reads import catalogue as catalogue_reads
from nextoffer.store.reads import churn as churn_reads
from nextoffer.store.reads import contacts as contacts_reads
from nextoffer.store.reads import customers as customers_reads
from nextoffer.store.reads import jobs as jobs_reads
from nextoffer.store.reads import kpis as kpis_reads
from nextoffer.store.reads import offers as offers_reads
from nextoffer.store.reads import quarantine as quarantine_reads
from nextoffer.store.schema import (
    ChurnLabel,
    ChurnScore,
    Customer,
    Event,
    JobRun,
    Product,
    QuarantinedRow,
    Subscription,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
NAMES = {
    "C1": "Hana Hughes",
    "C2": "hana Ito",
    "C3": "Hank Moody",
    "C4": "HANA X",
    "C5": "Bob Hana",
}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated database holding a small hand-made world."""
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Product),
            [
                {
                    "product_id": p,
                    "name": p,
                    "category": "addon",
                    "price": Decimal(5),
                    "margin": Decimal(2),
                    "active": active,
                }
                for p, active in (("P1", True), ("P2", False))
            ],
        )
        conn.execute(
            insert(Customer),
            [
                {
                    "customer_id": c,
                    "display_name": n,
                    "age_band": "25-34",
                    "region": "north",
                    "signup_date": date(2020, 1, 1),
                    "contract_type": "prepaid",
                    "payment_method": "voucher",
                    "arpu": Decimal(10 + i),
                }
                for i, (c, n) in enumerate(NAMES.items())
            ],
        )
        conn.execute(
            insert(Subscription),
            [
                {
                    "subscription_id": "S1",
                    "customer_id": "C1",
                    "product_id": "P1",
                    "start_date": date(2021, 1, 1),
                    "end_date": None,
                },
                {
                    "subscription_id": "S2",
                    "customer_id": "C2",
                    "product_id": "P1",
                    "start_date": date(2021, 1, 1),
                    "end_date": TODAY - timedelta(days=1),
                },
                {
                    "subscription_id": "S3",
                    "customer_id": "C3",
                    "product_id": "P1",
                    "start_date": date(2021, 1, 1),
                    "end_date": TODAY + timedelta(days=30),
                },
                {
                    "subscription_id": "S4",
                    "customer_id": "C1",
                    "product_id": "P2",
                    "start_date": date(2022, 1, 1),
                    "end_date": None,
                },
            ],
        )
        day1, day2, old = (
            NOW - timedelta(days=2),
            NOW - timedelta(hours=1),
            NOW - timedelta(days=40),
        )
        events = (
            [("offer_impression", day1)] * 4
            + [("offer_click", day1)] * 2
            + [("offer_accept", day1)]
            + [("offer_impression", day2)] * 6
            + [("offer_accept", day2)] * 2
            + [("offer_decline", day2)]
            + [("offer_impression", old)] * 9  # outside the 30-day window
            + [("web_visit", day2)] * 3  # not an offer event
        )
        conn.execute(
            insert(Event),
            [
                {
                    "event_id": f"E{i}",
                    "customer_id": "C1",
                    "ts": ts,
                    "event_type": kind,
                    "product_id": "P1",
                }
                for i, (kind, ts) in enumerate(events)
            ],
        )
        earlier, latest = NOW - timedelta(days=7), NOW - timedelta(hours=3)
        conn.execute(
            insert(ChurnScore),
            [
                {
                    "customer_id": c,
                    "scored_at": at,
                    "score": s,
                    "band": b,
                    "model_version": "v1",
                    "top_reasons": [],
                }
                for c, at, s, b in (
                    ("C1", earlier, 0.1, "low"),
                    ("C1", latest, 0.6, "high"),
                    ("C2", latest, 0.5, "high"),
                    ("C3", latest, 0.1, "low"),
                    ("C4", earlier, 0.9, "high"),  # an old scoring does not count
                )
            ],
        )
        conn.execute(
            insert(ChurnLabel),
            [
                {"customer_id": c, "as_of": as_of, "churned": churned}
                for c, as_of, churned in (
                    ("C1", date(2026, 5, 1), True),
                    ("C2", date(2026, 5, 1), True),
                    ("C1", date(2026, 8, 1), False),
                    ("C2", date(2026, 8, 1), True),
                    ("C3", date(2026, 8, 1), False),
                    ("C4", date(2026, 8, 1), False),
                )
            ],
        )
        conn.execute(
            insert(QuarantinedRow),
            [
                {
                    "entity": "customers" if i % 2 else "events",
                    "source": "f.csv",
                    "source_sha256": "0" * 64,
                    "line": i + 2,
                    "reason": f"bad_thing: {i}",
                    "raw": f"row {i}",
                    "run_id": "r1",
                    "quarantined_at": NOW,
                }
                for i in range(5)
            ],
        )
        conn.execute(
            insert(JobRun),
            [
                {
                    "run_id": f"R{i}",
                    "job": job,
                    "status": status,
                    "started_at": NOW - timedelta(hours=10 - i),
                    "finished_at": NOW - timedelta(hours=10 - i, minutes=-1),
                    "counts": {"n": i},
                }
                for i, (job, status) in enumerate(
                    [
                        ("ingest", "succeeded"),
                        ("train", "succeeded"),
                        ("etl", "failed"),
                        ("features", "succeeded"),
                        ("training", "succeeded"),
                    ]
                )
            ],
        )
    yield engine
    engine.dispose()


def test_offer_rates_count_the_window_by_day(engine: Engine) -> None:
    rates = offers_reads.offer_rates(engine, NOW, days=30)
    assert (rates.impressions, rates.clicks, rates.accepts, rates.declines) == (10, 2, 3, 1)
    assert rates.acceptance == pytest.approx(0.3)
    assert rates.ctr == pytest.approx(0.2)
    assert len(rates.days) == 31 and rates.days[-1].day == TODAY
    by_day = {d.day: d for d in rates.days if d.impressions}
    assert by_day[TODAY - timedelta(days=2)].acceptance == pytest.approx(0.25)
    assert by_day[TODAY].acceptance == pytest.approx(2 / 6)
    assert sum(1 for d in rates.days if d.acceptance is None) == 29


def test_totals_and_churn_summary(engine: Engine) -> None:
    assert kpis_reads.totals(engine) == kpis_reads.Totals(
        customers=5, products=2, active_products=1
    )
    churn = churn_reads.churn_summary(engine)
    assert churn.bands == {"high": 2, "low": 1}
    assert churn.high_risk == 2
    assert churn.revenue_at_risk == pytest.approx(10 + 11)  # ARPU of C1 and C2
    assert churn.label_as_of == date(2026, 8, 1)
    assert (churn.labelled, churn.churned, churn.churn_rate) == (4, 1, 0.25)


def test_name_search_ignores_case_and_pages_by_key(engine: Engine) -> None:
    found = {h.customer_id for h in customers_reads.search_customers(engine, "hana")}
    assert found == {"C1", "C2", "C4"}  # not C3 (Hank) nor C5 (Hana is not first)
    assert [h.customer_id for h in customers_reads.search_customers(engine, "HANA h")] == ["C1"]
    assert [h.customer_id for h in customers_reads.search_customers(engine, "hank m")] == ["C3"]
    assert customers_reads.search_customers(engine, "100%") == []
    first = customers_reads.search_customers(engine, "hana", limit=2)
    last = first[-1]
    rest = customers_reads.search_customers(
        engine, "hana", after=(last.display_name, last.customer_id), limit=2
    )
    assert len(first) == 2 and len(rest) == 1
    assert {h.customer_id for h in first + rest} == found


def test_customer_reads(engine: Engine) -> None:
    profile = customers_reads.profile(engine, "C2")
    assert profile is not None and profile.display_name == "hana Ito"
    assert customers_reads.profile(engine, "nobody") is None
    assert customers_reads.customer_exists(engine, "C1") and not customers_reads.customer_exists(
        engine, "C9"
    )
    assert sorted(h.product_id for h in customers_reads.holdings(engine, "C1", TODAY)) == [
        "P1",
        "P2",
    ]
    assert customers_reads.holdings(engine, "C2", TODAY) == []  # ended yesterday
    events = customers_reads.recent_events(engine, "C1", limit=3)
    assert [e.ts for e in events] == sorted((e.ts for e in events), reverse=True)
    assert events[0].ts == NOW - timedelta(hours=1)


def test_uptake_counts_holders_today(engine: Engine) -> None:
    assert catalogue_reads.product_uptake(engine, ["P1", "P2", "P9"], TODAY) == {
        "P1": 2,  # C1, and C3 whose end is still ahead
        "P2": 1,
        "P9": 0,
    }
    view = catalogue_reads.product(engine, "P2")
    assert view is not None and view.active is False
    assert catalogue_reads.product(engine, "nope") is None


def test_quarantine_pages_and_download_cover_every_row_once(engine: Engine) -> None:
    assert quarantine_reads.quarantine_counts(engine) == {"customers": 2, "events": 3}
    seen: list[int] = []
    before = None
    while True:
        page = quarantine_reads.quarantine_page(engine, before_id=before, limit=2)
        if not page:
            break
        seen += [r.id for r in page]
        before = page[-1].id
    assert seen == sorted(seen, reverse=True) and len(seen) == 5
    assert [r.id for r in quarantine_reads.quarantine_rows(engine, chunk=2)] == sorted(seen)
    assert {r.entity for r in quarantine_reads.quarantine_page(engine, entity="customers")} == {
        "customers"
    }
    assert len(list(quarantine_reads.quarantine_rows(engine, entity="events", chunk=2))) == 3


def test_runs_newest_first_by_key_and_latest_success(engine: Engine) -> None:
    first = jobs_reads.runs_page(engine, limit=3)
    assert [r.run_id for r in first] == ["R4", "R3", "R2"]
    assert first[0].duration_s == pytest.approx(60)
    rest = jobs_reads.runs_page(engine, before=(first[-1].started_at, first[-1].run_id), limit=3)
    assert [r.run_id for r in rest] == ["R1", "R0"]
    etl = jobs_reads.latest_run(engine, jobs_reads.ETL_JOBS)
    assert etl is not None and etl.run_id == "R2" and etl.status == "failed"
    ok = jobs_reads.latest_run(engine, jobs_reads.ETL_JOBS, "succeeded")
    assert ok is not None and ok.run_id == "R0"
    assert jobs_reads.latest_run(engine, jobs_reads.BACKUP_JOBS) is None
    assert jobs_reads.job_names(engine) == ["etl", "features", "ingest", "train", "training"]


def test_churn_bands_and_revenue_at_risk_are_one_definition(engine: Engine) -> None:
    # The gauge, the KPIs and the console all read these: the latest scoring only.
    assert churn_reads.band_counts(engine) == {"high": 2, "low": 1}
    assert churn_reads.revenue_at_risk(engine) == pytest.approx(10 + 11)
    scored_at = churn_reads.latest_scored_at(engine)
    assert scored_at == NOW - timedelta(hours=3) and scored_at.tzinfo is not None
    earlier = NOW - timedelta(days=7)
    assert churn_reads.band_counts(engine, earlier) == {"low": 1, "high": 1}
    assert churn_reads.revenue_at_risk(engine, earlier) == pytest.approx(13)  # C4
    assert churn_reads.latest_scores(engine) == {
        "C1": pytest.approx(0.6),
        "C2": pytest.approx(0.5),
        "C3": pytest.approx(0.1),
        "C4": pytest.approx(0.9),
    }
    assert churn_reads.latest_scores(engine, ("C1", "C2")) == {
        "C1": pytest.approx(0.6),
        "C2": pytest.approx(0.5),
    }


def test_contact_reads_and_holdings(engine: Engine) -> None:
    assert customers_reads.held_products(engine, "C1") == {"P1", "P2"}
    assert customers_reads.held_products(engine, "C3") == set()  # ends later: not open
    assert offers_reads.offer_event_counts(engine, NOW - timedelta(days=30)) == {
        "offer_impression": 10,
        "offer_click": 2,
        "offer_accept": 3,
        "offer_decline": 1,
    }
    accepted = contacts_reads.accepted_products(engine, NOW - timedelta(days=30))
    assert dict(accepted) == {"C1": {"P1"}}
    assert contacts_reads.accepted_products(engine, NOW, ("C2", "C9"))["C2"] == set()
    assert dict(contacts_reads.shown_counts(engine, NOW - timedelta(days=30))) == {}
