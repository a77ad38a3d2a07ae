"""The impact job on a hand-made world: every number checked by hand, on SQLite and PostgreSQL.

Then the stored run as the API (`GET /v1/impact`), the console's Impact page and
`/metrics` give it. The world, as of 2026-06-01 with a 30-day window and a 90-day period
(first exposures from 2026-03-03 to 2026-05-02 count):

| customer | arm | first exposure | offered | in the window | segment |
|---|---|---|---|---|---|
| T1 | treated | 04-01 10:00 | P1, P2 | buys P1 (margin 10, offer cost 2): +8; a later exposure offering P3, and a P3 purchase, are ignored | 0 |
| T2 | treated | 04-01 10:00 | P2 | P2 subscription and activation the same day, counted once: +4; exposed again 05-10 | 0 |
| T3 | treated | 04-02 09:00 | P1 | buys P1 on 05-10, after the window; churns 04-15 | 1 |
| T4 | treated | 04-03 12:00 | P1 | P1 bought at 08:00 the same day, before the exposure; a P1 subscription the same day; a P1 downgrade: none count | 1 |
| T5 | treated | 04-06 | P3 | nothing (no features: no segment) | -1 |
| C1 | control | 04-01 | P1 | buys P1: +10, no offer cost | 0 |
| C2 | control | 04-05 | P2 | churns 06-20, after the window | 0 |
| C3 | control | 04-05 | P1, P2 | buys P3 (not offered); churns 04-20 (two label rows) | 1 |
| X1 | treated | 05-10 | P1 | window not closed: pending | 1 |
| X2 | control | 02-01 | P1 | before the period | 0 |
| X3 | control (experiment) | 04-01 | P1 | an experiment's exposure, not the control group's | 0 |
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats
from sqlalchemy import Engine, insert
from statsmodels.stats.proportion import confint_proportions_2indep

from nextoffer.asgi import create_app
from nextoffer.cache.memory import MemoryCache
from nextoffer.config import Settings
from nextoffer.domain.impact import NO_SEGMENT
from nextoffer.domain.roles import Role
from nextoffer.jobs.calls import run_impact as run_impact_job
from nextoffer.pipelines.impact import run_impact
from nextoffer.serving.api_keys import create_api_key
from nextoffer.serving.users import create_user
from nextoffer.store.engine import make_engine
from nextoffer.store.impact import latest_impact
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import (
    ChurnLabel,
    Customer,
    Exposure,
    Product,
    Segment,
    Subscription,
    Transaction,
    UserFeatures,
)

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 2, 8, 0, tzinfo=UTC)
PRODUCTS = {"P1": ("10", "2"), "P2": ("5", "1"), "P3": ("7", "0")}
SEGMENTS = {"T1": 0, "T2": 0, "C1": 0, "C2": 0, "X2": 0, "T3": 1, "T4": 1, "C3": 1, "X1": 1}
CUSTOMERS = ["T1", "T2", "T3", "T4", "T5", "C1", "C2", "C3", "X1", "X2", "X3", "Z9"]
EXPERIMENT = "0f3c6c1e-0000-4000-8000-000000000001"


def at(text: str) -> datetime:
    """A UTC time from 'MM-DD HH:MM' in 2026."""
    return datetime.fromisoformat(f"2026-{text}").replace(tzinfo=UTC)


def day(text: str) -> date:
    """A date from 'MM-DD' in 2026."""
    return date.fromisoformat(f"2026-{text}")


def exposure(
    customer: str, when: str, arm: str, products: str, experiment: str | None = None
) -> dict[str, Any]:
    """An `exposures` row as the serving side writes it."""
    stamp = at(when)
    suffix = f"#{experiment}" if experiment else ""
    return {
        "exposure_id": f"{customer}@{stamp.date().isoformat()}{suffix}",
        "customer_id": customer,
        "exposed_at": stamp,
        "arm": arm,
        "product_ids": products,
        "experiment_id": experiment,
        "variant": "control" if experiment else None,
        "unit_id": customer,
        "channel": "app",
        "source": "api",
        "model_version": "offers:1",
    }


def features(customer: str, segment: int) -> dict[str, Any]:
    """A `user_features` row placing `customer` in `segment` (the rest is filler)."""
    return {
        "customer_id": customer,
        "as_of": AS_OF,
        "computed_at": AS_OF,
        "segment_id": segment,
        "tenure_months": 12.0,
        "contract_type": "one_year",
        "payment_method": "direct_debit",
        "region": "north",
        "age_band": "25-34",
        "plan_id": None,
        "arpu": 20.0,
        "data_gb_month": 5.0,
        "voice_min_month": 100.0,
        "recency_days": 3.0,
        "frequency_90d": 1,
        "monetary_90d": 10.0,
        "monetary_total": 100.0,
        "products_held": 1,
        "mobile_held": 1,
        "broadband_held": 0,
        "addons_held": 0,
        "devices_held": 0,
        "bundles_held": 0,
        "support_contacts_90d": 0,
        "engagement_30d": 0,
        "offers_accepted_180d": 0,
    }


def build_world(engine: Engine) -> None:
    """The world of the module docstring."""
    upgrade(engine)
    tx: list[tuple[str, str, str, str]] = [
        ("T1", "P1", "04-05 12:00", "purchase"),
        ("T1", "P3", "04-12 12:00", "purchase"),
        ("T2", "P2", "04-20 09:00", "activation"),
        ("T3", "P1", "05-10 12:00", "purchase"),
        ("T4", "P1", "04-03 08:00", "purchase"),
        ("T4", "P1", "04-05 08:00", "downgrade"),
        ("C1", "P1", "04-10 12:00", "upgrade"),
        ("C3", "P3", "04-10 12:00", "purchase"),
        ("X1", "P1", "05-12 12:00", "purchase"),
        # The data's newest transaction: its clock reads 2026-06-01 00:00.
        ("Z9", "P3", "05-31 18:30", "purchase"),
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(Product),
            [
                {
                    "product_id": p,
                    "name": f"Product {p}",
                    "category": "addon",
                    "price": Decimal(20),
                    "margin": Decimal(margin),
                    "offer_cost": Decimal(cost),
                }
                for p, (margin, cost) in PRODUCTS.items()
            ],
        )
        conn.execute(
            insert(Customer),
            [
                {
                    "customer_id": c,
                    "age_band": "25-34",
                    "region": "north",
                    "signup_date": date(2024, 1, 1),
                    "contract_type": "one_year",
                    "payment_method": "direct_debit",
                }
                for c in CUSTOMERS
            ],
        )
        conn.execute(
            insert(Segment),
            [
                {
                    "segment_id": s,
                    "name": name,
                    "description": name,
                    "size": 4,
                    "centroid": {},
                    "computed_at": AS_OF,
                }
                for s, name in ((0, "young"), (1, "families"))
            ],
        )
        conn.execute(insert(UserFeatures), [features(c, s) for c, s in SEGMENTS.items()])
        conn.execute(
            insert(Subscription),
            [
                {"subscription_id": "S1", "customer_id": "T2", "product_id": "P2",
                 "start_date": day("04-20")},
                {"subscription_id": "S2", "customer_id": "T4", "product_id": "P1",
                 "start_date": day("04-03")},
            ],
        )  # fmt: skip
        conn.execute(
            insert(Transaction),
            [
                {"transaction_id": f"X{i}", "customer_id": c, "product_id": p, "ts": at(t),
                 "type": kind, "amount": Decimal(20)}
                for i, (c, p, t, kind) in enumerate(tx)
            ],
        )  # fmt: skip
        conn.execute(
            insert(ChurnLabel),
            [
                {"customer_id": "T3", "as_of": day("03-01"), "churned": True,
                 "churn_date": day("04-15")},
                {"customer_id": "C2", "as_of": day("03-01"), "churned": True,
                 "churn_date": day("06-20")},
                {"customer_id": "C3", "as_of": day("03-01"), "churned": True,
                 "churn_date": day("04-20")},
                {"customer_id": "C3", "as_of": day("04-01"), "churned": True,
                 "churn_date": day("04-20")},
                {"customer_id": "C1", "as_of": day("03-01"), "churned": False,
                 "churn_date": None},
            ],
        )  # fmt: skip
        conn.execute(
            insert(Exposure),
            [
                exposure("T1", "04-01 10:00", "treated", "P1|P2"),
                exposure("T1", "04-10 10:00", "treated", "P3"),
                exposure("T2", "04-01 10:00", "treated", "P2"),
                exposure("T2", "05-10 10:00", "treated", "P2"),
                exposure("T3", "04-02 09:00", "treated", "P1"),
                exposure("T4", "04-03 12:00", "treated", "P1"),
                exposure("T5", "04-06 10:00", "treated", "P3"),
                exposure("C1", "04-01 10:00", "control", "P1"),
                exposure("C2", "04-05 10:00", "control", "P2"),
                exposure("C3", "04-05 10:00", "control", "P1|P2"),
                exposure("X1", "05-10 10:00", "treated", "P1"),
                exposure("X2", "02-01 10:00", "control", "P1"),
                exposure("X3", "04-01 10:00", "control", "P1", EXPERIMENT),
            ],
        )


def settings_for(database_url: str, tmp_path: Path) -> Settings:
    """Settings of a throwaway deployment on `database_url`."""
    return Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_url=f"file://{tmp_path / 'artifacts'}",
        impact_window_days=30,
        impact_period_days=90,
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = make_engine(database_url)
    build_world(made)
    yield made
    made.dispose()


# Treated T1..T5: margins 8, 4, 0, 0, 0; acquired T1, T2; churned T3.
TREATED_MARGIN = [8.0, 4.0, 0.0, 0.0, 0.0]
# Control C1..C3: margins 10, 0, 0; acquired C1; churned C3.
CONTROL_MARGIN = [10.0, 0.0, 0.0]


def test_every_number_of_the_report_by_hand(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(database_url, tmp_path)
    # The data's clock (as_of left out) is midnight after the newest transaction.
    result = run_impact(engine, settings, clock=lambda: NOW, min_per_arm=2)
    report = result.report

    assert report.as_of == "2026-06-01T00:00:00+00:00"
    assert report.exposed_from == "2026-03-03T00:00:00+00:00"
    assert report.exposed_to == "2026-05-02T00:00:00+00:00"
    assert report.computed_at == NOW.isoformat()
    assert (report.window_days, report.period_days, report.min_per_arm) == (30, 90, 2)
    assert report.pending_customers == 1  # X1; T2's second exposure is T2 compared

    o = report.overall
    assert (o.treated.customers, o.treated.acquired, o.treated.churned) == (5, 2, 1)
    assert (o.control.customers, o.control.acquired, o.control.churned) == (3, 1, 1)
    assert o.treated.margin_total == pytest.approx(12.0)
    assert o.control.margin_total == pytest.approx(10.0)
    assert o.treated.acquisition_rate == pytest.approx(2 / 5)
    assert o.control.acquisition_rate == pytest.approx(1 / 3)
    assert o.treated.margin_per_customer == pytest.approx(12 / 5)
    assert o.control.margin_per_customer == pytest.approx(10 / 3)
    assert o.treated.churn_rate == pytest.approx(1 / 5)
    assert o.control.churn_rate == pytest.approx(1 / 3)
    assert o.enough_data

    assert o.acquisition.estimate == pytest.approx(2 / 5 - 1 / 3)
    assert (o.acquisition.ci_low, o.acquisition.ci_high) == pytest.approx(
        confint_proportions_2indep(2, 5, 1, 3, method="newcomb", compare="diff")
    )
    assert o.churn.estimate == pytest.approx(1 / 5 - 1 / 3)
    assert (o.churn.ci_low, o.churn.ci_high) == pytest.approx(
        confint_proportions_2indep(1, 5, 1, 3, method="newcomb", compare="diff")
    )
    welch = stats.ttest_ind(TREATED_MARGIN, CONTROL_MARGIN, equal_var=False)
    interval = welch.confidence_interval(0.95)
    assert o.margin.estimate == pytest.approx(12 / 5 - 10 / 3)
    assert (o.margin.ci_low, o.margin.ci_high) == pytest.approx((interval.low, interval.high))

    by_id = {s.segment_id: s for s in report.segments}
    assert [s.segment_id for s in report.segments] == [0, 1, NO_SEGMENT]
    young = by_id[0]
    assert young.label == "0 · young"
    assert (young.treated.customers, young.treated.acquired) == (2, 2)
    assert (young.control.customers, young.control.acquired) == (2, 1)
    assert young.treated.margin_total == pytest.approx(12.0)
    assert young.control.margin_total == pytest.approx(10.0)
    assert young.enough_data and young.acquisition.estimate == pytest.approx(0.5)
    assert (young.margin.ci_low, young.margin.ci_high) == pytest.approx(
        tuple(stats.ttest_ind([8, 4], [10, 0], equal_var=False).confidence_interval(0.95))
    )
    families = by_id[1]
    assert (families.treated.customers, families.control.customers) == (2, 1)
    assert (families.treated.churned, families.control.churned) == (1, 1)
    assert not families.enough_data and families.acquisition.estimate is None
    assert families.acquisition.verdict.startswith("not enough data yet: 2 treated and 1 control")
    unplaced = by_id[NO_SEGMENT]
    assert unplaced.label == "no segment"
    assert (unplaced.treated.customers, unplaced.control.customers) == (1, 0)

    stored = latest_impact(engine)
    assert stored is not None
    assert stored.run_id == result.run_id and stored.report == report
    assert (stored.period_start, stored.period_end) == (date(2026, 3, 3), date(2026, 5, 2))
    assert stored.window_days == 30 and stored.computed_at == NOW

    # An explicit as-of a day later moves the period (T1..T4 and C1 stay in, X1 too early
    # still), and the newer run is the latest.
    later = run_impact(
        engine, settings, datetime(2026, 6, 10, tzinfo=UTC), clock=lambda: at("06-11 00:00"),
        min_per_arm=2,
    )  # fmt: skip
    assert later.report.exposed_to == "2026-05-11T00:00:00+00:00"
    # X1 (05-10) is compared now; its P1 purchase on 05-12 is inside its window.
    assert later.report.overall.treated.customers == 6
    assert later.report.overall.treated.acquired == 3
    assert later.report.pending_customers == 0
    found = latest_impact(engine)
    assert found is not None and found.run_id == later.run_id


def test_the_impact_job_records_its_run_with_the_default_threshold(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    result = run_impact_job(engine, settings_for(database_url, tmp_path), as_of=AS_OF)
    o = result.report.overall
    assert (o.treated.customers, o.control.customers) == (5, 3)
    assert not o.enough_data and o.acquisition.estimate is None
    assert result.counts() == {
        "treated": 5,
        "control": 3,
        "pending": 1,
        "segments": 3,
        "as_of": "2026-06-01T00:00:00+00:00",
    }
    assert "not enough data yet: 5 treated and 3 control customers" in result.summary()


def test_api_console_and_metrics_show_the_stored_run(tmp_path: Path, sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    build_world(engine)
    # Plain http in the test client: the console's cookies must not be Secure-only.
    settings = settings_for(sqlite_url, tmp_path).model_copy(
        update={"console_secure_cookies": False}
    )
    _record, key = create_api_key(engine, "impact test", Role.VIEWER)
    create_user(engine, "viewer1", "impact-viewer-password", Role.VIEWER)
    app = create_app(settings, engine=engine, cache=MemoryCache())
    with TestClient(app) as client:
        missing = client.get("/v1/impact", headers={"X-API-Key": key})
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert "NEXTOFFER_CONTROL_GROUP_SHARE" in missing.json()["detail"]
        assert client.get("/v1/impact").status_code == 401

        login(client)
        empty = client.get("/impact")
        assert 'id="impact-empty"' in empty.text
        assert "NEXTOFFER_CONTROL_GROUP_SHARE" in empty.text
        assert "nextoffer impact" in empty.text

        result = run_impact(engine, settings, AS_OF, clock=lambda: NOW, min_per_arm=2)
        stored = latest_impact(engine)
        assert stored is not None

        body = client.get("/v1/impact", headers={"X-API-Key": key}).json()
        assert body["run_id"] == result.run_id
        expected = stored.report.to_json()
        for name in ("as_of", "exposed_from", "exposed_to", "computed_at"):
            assert datetime.fromisoformat(body.pop(name)) == datetime.fromisoformat(
                expected.pop(name)
            )
        body.pop("run_id")
        assert body == expected

        page = client.get("/impact").text
        assert 'id="impact-empty"' not in page
        assert cell(page, "impact-treated") == "5"
        assert cell(page, "impact-control") == "3"
        o = stored.report.overall
        row = table_row(page, "acquisition_rate")
        assert row["treated"] == "40.00 %" and row["control"] == "33.33 %"
        assert (
            row["difference"] == f"{o.acquisition.estimate * 100:+.1f}\u00a0pts" == "+6.7\u00a0pts"
        )
        low, high = o.acquisition.ci_low, o.acquisition.ci_high
        assert row["interval"] == f"{low * 100:+.1f}\u00a0pts to {high * 100:+.1f}\u00a0pts"
        assert row["verdict"] == o.acquisition.verdict
        margin = table_row(page, "margin_per_customer")
        assert margin["treated"] == "2.40" and margin["control"] == "3.33"
        assert margin["difference"] == "-0.93"
        churn = table_row(page, "churn_rate")
        assert churn["treated"] == "20.00 %" and churn["control"] == "33.33 %"
        assert churn["difference"] == "-13.3\u00a0pts"
        assert re.search(
            r'data-segment="0" data-treated="2" data-control="2" data-enough="yes"', page
        )
        assert re.search(
            r'data-segment="1" data-treated="2" data-control="1" data-enough="no"', page
        )
        assert "not enough data yet" in page
        assert "2026-03-03\u00a000:00\u00a0UTC" in page and "2026-05-02\u00a000:00\u00a0UTC" in page
        assert 'href="/impact" class="active"' in page

        metrics = client.get("/metrics").text
        assert gauge(metrics, 'nextoffer_impact_exposed_customers{arm="treated"}') == 5
        assert gauge(metrics, 'nextoffer_impact_exposed_customers{arm="control"}') == 3
        assert math.isclose(
            gauge(metrics, "nextoffer_impact_incremental_acquisition_rate"),
            o.acquisition.estimate,
            rel_tol=1e-9,
        )
        assert math.isclose(
            gauge(metrics, "nextoffer_impact_incremental_acquisition_rate_ci_low"),
            low,
            rel_tol=1e-9,
        )
        assert math.isclose(
            gauge(metrics, "nextoffer_impact_incremental_margin_per_customer"),
            float(np.mean(TREATED_MARGIN) - np.mean(CONTROL_MARGIN)),
            rel_tol=1e-9,
        )
        assert math.isclose(
            gauge(metrics, "nextoffer_impact_churn_rate_difference_ci_high"),
            float(o.churn.ci_high or 0),
            rel_tol=1e-9,
        )
    engine.dispose()


_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: TestClient) -> None:
    """Sign in to the console as viewer1."""
    token = _TOKEN.search(client.get("/login").text)
    assert token
    done = client.post(
        "/login",
        data={"username": "viewer1", "password": "impact-viewer-password", "csrf_token": token[1]},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text


def cell(page: str, element_id: str) -> str:
    """The text of the element with `element_id`."""
    found = re.search(rf'id="{element_id}">([^<]*)<', page)
    assert found, element_id
    return found[1]


def table_row(page: str, metric: str) -> dict[str, str]:
    """The overall table's row of `metric`: treated, control, difference, interval, verdict."""
    table = page[page.index('id="impact-overall"') :]
    start = table.index(f'<tr data-metric="{metric}"')
    row = table[start : table.index("</tr>", start)]
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]
    return dict(
        zip(
            ["label", "treated", "control", "difference", "interval", "verdict"], cells, strict=True
        )
    )


def gauge(metrics: str, series: str) -> float:
    """The value of one series in a Prometheus text exposition."""
    found = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.M)
    assert found, series
    return float(found[1])
