"""An experiment's units from the database, by hand, on SQLite and PostgreSQL; SRM and Holm.

The results go through `analyse_experiment`: the sample-ratio check flags a skewed
assignment, and Holm is applied over three variants.

The customer experiment `E` (control shows nothing, treat is shown offers; 30-day window):

| unit | variant | first exposure | offered | what happens | converted | churned | complaints |
|---|---|---|---|---|---|---|---|
| B1 | control | 04-01 09:00 | P1 (would have been) | P1 subscription from 04-03; churns 05-15 (after the window); 2 complaints in it | 1 | 0 | 2 |
| A1 | treat | 04-01 10:00 | P1, P2 | 3 impressions, 1 click, an accept; exposed again 04-02 with P3; buys P1 04-10 | 1 | 0 | 0 |
| A2 | treat | 04-01 11:00 | P1 | 2 impressions; buys P1 04-10; a complaint 04-05, one on 03-20 before | 1 | 0 | 1 |
| A3 | treat | 04-02 08:00 | P2 | buys P3 (not offered) 04-05 and P2 on 06-01 (after the window); churns 04-20 | 0 | 1 | 0 |
| B2 | control | 04-03 12:00 | P2 | P2 bought 08:00 the same day (before), a P2 subscription that day, a P2 downgrade 04-04 | 0 | 0 | 0 |
| B3 | control | 04-05 10:00 | P1 | an untagged accept, an accept tagged with another experiment | 0 | 0 | 0 |

Not units: Z1 (impressions and an accept tagged with E, but never served), U1 (a universal
control-group exposure), X1 (another experiment's exposure), G1 (an exposure naming a
variant E does not have). The session experiment `S`: sessions s1 (A1, treat, P1: A1's P1
purchase on 04-10 converts it; 2 impressions and a click) and s2 (A1, control, P4);
an event of A1 tagged with S but without a session is A1's own unit, which was never served.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from statsmodels.stats.multitest import multipletests

from nextoffer.domain.experiment_stats import SRM_ALPHA, Metric, UnitOutcomes, analyse_units
from nextoffer.domain.experiments import ExperimentUnit, Strategy, Variant
from nextoffer.domain.exposures import Arm, new_exposure
from nextoffer.serving.exposures import ExposureRecorder
from nextoffer.store.engine import make_engine
from nextoffer.store.experiments import create_experiment, get_experiment
from nextoffer.store.migrate import upgrade
from nextoffer.store.reads.experiment_units import experiment_units
from nextoffer.usecases.experiments import results_of
from tests.integration.experiment_world import (
    Rows,
    Served,
    add_customers,
    add_products,
    at,
    day,
    record_exposures,
)
from tests.unit.test_experiment_stats import three_variant_outcomes

WINDOW = 30
TWO = (Variant("control", Strategy.CONTROL), Variant("treat", Strategy.CHAMPION))
CUSTOMERS = ["A1", "A2", "A3", "B1", "B2", "B3", "Z1", "U1", "X1", "G1"]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = make_engine(database_url)
    upgrade(made)
    add_products(made)
    yield made
    made.dispose()


def values(column: np.ndarray | None) -> list[float]:
    """A measured column as a list (asserting it is measured)."""
    assert column is not None
    return [float(x) for x in column]


def build_world(engine: Engine, tmp: Path) -> tuple[str, str]:
    """The world of the module docstring; returns the ids of E and S."""
    add_customers(engine, CUSTOMERS)
    e = create_experiment(engine, "E", "customer", TWO).experiment_id
    s = create_experiment(engine, "S", "session", TWO).experiment_id
    other = create_experiment(engine, "other", "customer", TWO).experiment_id
    record_exposures(
        engine,
        tmp,
        e,
        [
            Served("B1", at("04-01 09:00"), "control", ("P1",), control=True),
            Served("A1", at("04-01 10:00"), "treat", ("P1", "P2")),
            Served("A1", at("04-02 10:00"), "treat", ("P3",)),
            Served("A2", at("04-01 11:00"), "treat", ("P1",)),
            Served("A3", at("04-02 08:00"), "treat", ("P2",)),
            Served("B2", at("04-03 12:00"), "control", ("P2",), control=True),
            Served("B3", at("04-05 10:00"), "control", ("P1",), control=True),
            Served("G1", at("04-01 10:00"), "gone", ("P1",)),
        ],
    )
    record_exposures(engine, tmp, other, [Served("X1", at("04-01 10:00"), "treat", ("P1",))])
    record_exposures(
        engine,
        tmp,
        s,
        [
            Served("A1", at("04-01 12:00"), "treat", ("P1",), session="s1"),
            Served("A1", at("04-01 13:00"), "control", ("P4",), control=True, session="s2"),
        ],
    )
    universal = ExposureRecorder(engine, tmp / "universal-spool", share=0.05)
    universal.record(new_exposure("U1", at("04-01 10:00"), Arm.CONTROL, ["P1"]))
    assert universal.flush().stored == 1

    rows = Rows.empty()
    for kind in ("offer_impression",) * 3 + ("offer_click", "offer_accept"):
        rows.event("A1", kind, at("04-01 10:05"), experiment=e, variant="treat")
    for _ in range(2):
        rows.event("A2", "offer_impression", at("04-01 11:05"), experiment=e, variant="treat")
    rows.bought("A2", "P1", at("04-10 12:00"))
    rows.bought("A1", "P1", at("04-10 12:00"))
    rows.event("A2", "network_complaint", at("04-05 12:00"), product=None)
    rows.event("A2", "network_complaint", at("03-20 12:00"), product=None)
    rows.bought("A3", "P3", at("04-05 12:00"))
    rows.bought("A3", "P2", at("06-01 12:00"))
    rows.churned("A3", day("04-20"))
    rows.subscribed("B1", "P1", day("04-03"))
    rows.churned("B1", day("05-15"))
    rows.event("B1", "network_complaint", at("04-02 12:00"), product=None)
    rows.event("B1", "network_complaint", at("04-25 12:00"), product=None)
    rows.bought("B2", "P2", at("04-03 08:00"))
    rows.subscribed("B2", "P2", day("04-03"))
    rows.bought("B2", "P2", at("04-04 08:00"), kind="downgrade")
    rows.event("B3", "offer_accept", at("04-06 10:00"))
    rows.event("B3", "offer_accept", at("04-06 10:00"), experiment=other, variant="control")
    for kind in ("offer_impression",) * 4 + ("offer_accept",):
        rows.event("Z1", kind, at("04-02 10:00"), experiment=e, variant="treat")
    for kind in ("offer_impression", "offer_impression", "offer_click"):
        rows.event("A1", kind, at("04-01 12:05"), experiment=s, variant="treat", session="s1")
    rows.event("A1", "offer_impression", at("04-01 12:06"), experiment=s, variant="control")
    rows.write(engine)
    return e, s


def test_units_and_outcomes_match_the_table_by_hand(engine: Engine, tmp_path: Path) -> None:
    e, s = build_world(engine, tmp_path)
    units = experiment_units(engine, e, ExperimentUnit.CUSTOMER, ["control", "treat"], WINDOW)
    assert list(units.unit_ids) == ["B1", "A1", "A2", "A3", "B2", "B3"]
    assert list(units.customer_ids) == list(units.unit_ids)
    assert [t.isoformat() for t in units.first_exposed][:2] == [
        "2026-04-01T09:00:00+00:00",
        "2026-04-01T10:00:00+00:00",
    ]
    o = units.outcomes
    assert list(o.variant) == ["control", "treat", "treat", "treat", "control", "control"]
    assert list(o.converted) == [1, 1, 1, 0, 0, 0]
    assert values(o.impressions) == [0, 3, 2, 0, 0, 0]
    assert values(o.clicks) == [0, 1, 0, 0, 0, 0]
    assert values(o.churned) == [0, 0, 0, 1, 0, 0]
    assert values(o.complaints) == [2, 0, 1, 0, 0, 0]

    by_session = experiment_units(engine, s, ExperimentUnit.SESSION, ["control", "treat"], WINDOW)
    assert list(by_session.unit_ids) == ["s1", "s2"]
    assert list(by_session.customer_ids) == ["A1", "A1"]
    assert list(by_session.outcomes.variant) == ["treat", "control"]
    assert list(by_session.outcomes.converted) == [1, 0]
    assert values(by_session.outcomes.impressions) == [2, 0]
    assert values(by_session.outcomes.clicks) == [1, 0]

    nothing = experiment_units(engine, "no-such", ExperimentUnit.CUSTOMER, ["a", "b"], WINDOW)
    assert len(nothing) == 0 and len(nothing.outcomes.converted) == 0

    # Through the results: the units per variant, and too few of them for any test.
    results = results_of(engine, get_experiment(engine, e), WINDOW)
    control, treat = results.stats.variants
    assert (control.arm.units, control.arm.converted) == (3, 1)
    assert (treat.arm.units, treat.arm.converted) == (3, 2)
    assert not results.ctr_compared  # the control shows nothing: no impressions to compare
    assert [m.metric for m in treat.metrics] == [Metric.CONVERSION, Metric.CHURN, Metric.COMPLAINTS]
    assert all(not m.enough_data for m in treat.metrics)
    assert results.responses_of("treat").impressions == 5
    assert results.responses_of("treat").clicks == 1
    assert results.responses_of("control").impressions == 0
    assert results.stats.sample_ratio.p_value is None
    assert results.stats.sample_ratio.verdict.startswith("not enough units yet")


def test_a_skewed_assignment_is_flagged(engine: Engine, tmp_path: Path) -> None:
    """300 treated customers and 200 control ones under equal weights: chi-square 20."""
    record = create_experiment(engine, "skewed", "customer", TWO)
    treated = [f"T{i:03d}" for i in range(300)]
    held = [f"H{i:03d}" for i in range(200)]
    add_customers(engine, treated + held)
    served = [Served(c, at("04-01 10:00"), "treat", ("P1",)) for c in treated]
    # The control arm's logging "lost" a third of its units.
    served += [Served(c, at("04-01 10:00"), "control", ("P1",), control=True) for c in held]
    record_exposures(engine, tmp_path, record.experiment_id, served)
    ratio = results_of(engine, record, WINDOW).stats.sample_ratio
    assert ratio.observed == (200, 300) and ratio.expected == (250.0, 250.0)
    assert ratio.statistic == pytest.approx(20.0)  # 2 x 50^2 / 250
    assert ratio.p_value is not None and ratio.p_value < SRM_ALPHA and ratio.flagged
    assert ratio.verdict.startswith("sample ratio mismatch (p < 0.001): 200 / 300 units")


def test_holm_over_three_variants_through_the_database(engine: Engine, tmp_path: Path) -> None:
    """The domain test's three arms of 2 000 customers, written as exposures and outcomes.

    Control converts by acquiring its (would-have-been) offered product, b and c by accepting;
    churn from churn labels, complaints from complaint events. The control shows nothing, so
    CTR is not compared: the Holm family is 2 variants x 3 metrics.
    """
    design = (
        Variant("control", Strategy.CONTROL),
        Variant("b", Strategy.POPULAR),
        Variant("c", Strategy.SEGMENT_POPULAR),
    )
    record = create_experiment(engine, "three", "customer", design)
    e = record.experiment_id
    truth = three_variant_outcomes()
    names = [str(v) for v in truth.variant]
    customers = [f"{v}{i:05d}" for i, v in enumerate(names)]
    add_customers(engine, customers)
    start = at("04-01 00:00")
    served = []
    rows = Rows.empty()
    assert truth.churned is not None and truth.complaints is not None
    for i, (customer, variant) in enumerate(zip(customers, names, strict=True)):
        shown = start.replace(minute=i % 60, second=i % 59)
        served.append(Served(customer, shown, variant, ("P1",), control=variant == "control"))
        if truth.converted[i]:
            if variant == "control":
                rows.bought(customer, "P1", at("04-05 12:00"))
            else:
                rows.event(
                    customer, "offer_accept", at("04-02 12:00"), experiment=e, variant=variant
                )
        if truth.churned[i]:
            rows.churned(customer, day("04-15"))
        for _ in range(int(truth.complaints[i])):
            rows.event(customer, "network_complaint", at("04-10 12:00"), product=None)
    record_exposures(engine, tmp_path, e, served)
    rows.write(engine)

    results = results_of(engine, record, WINDOW)
    expected = analyse_units(
        UnitOutcomes(
            variant=truth.variant,
            converted=truth.converted,
            churned=truth.churned,
            complaints=truth.complaints,
        ),
        ["control", "b", "c"],
    )
    tested = [m for v in results.stats.variants for m in v.metrics]
    assert len(tested) == 6
    assert [v.arm.units for v in results.stats.variants] == [2000, 2000, 2000]
    assert [v.arm.converted for v in results.stats.variants] == [200, 360, 279]
    assert [v.arm.churned for v in results.stats.variants] == [100, 200, 135]
    want = [m for v in expected.variants for m in v.metrics]
    assert [m.p_value for m in tested] == pytest.approx([m.p_value for m in want], rel=1e-9)
    raw = [m.p_value for m in tested]
    reject, adjusted, _, _ = multipletests(raw, alpha=0.05, method="holm")
    assert [m.adjusted_p for m in tested] == pytest.approx(list(adjusted), rel=1e-9)
    assert [m.significant for m in tested] == list(reject)
    # c's conversion wins alone, not after Holm; b's conversion and harmed churn survive it.
    c = results.stats.variant("c").metric(Metric.CONVERSION)
    assert c.p_value is not None and c.adjusted_p is not None
    assert c.p_value < 0.05 <= c.adjusted_p and not c.significant
    b = results.stats.variant("b")
    assert b.metric(Metric.CONVERSION).significant and b.metric(Metric.CHURN).significant
    assert b.verdict.endswith("; guardrail harmed: churn")
    assert not results.stats.sample_ratio.flagged
    assert np.isclose(
        b.metric(Metric.CONVERSION).difference or 0.0, 360 / 2000 - 200 / 2000, rtol=1e-12
    )
