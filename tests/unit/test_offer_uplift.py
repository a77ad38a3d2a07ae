"""Retention offers ranked by uplift: persuadables only, one offer, uplift × value; the rest as before."""

from __future__ import annotations

import numpy as np
import pytest

from nextoffer.config import Settings
from nextoffer.domain.offers import Catalogue, Customers, OfferPolicy, arbitrate
from nextoffer.scoring.uplift import ranking_model
from tests.unit.test_offers import product

POLICY = OfferPolicy(value_weight=0.5, high_churn_risk=0.4)


def catalogue() -> Catalogue:
    return Catalogue.from_records(
        [
            product("ADD-A", margin=10.0),
            product("RET-LOYAL", margin=0.0, is_retention_offer=True),
            product("RET-BOOST", margin=0.0, is_retention_offer=True),
            product("ADD-B", margin=20.0),
        ]
    )


def customers(risk: list[float]) -> Customers:
    n = len(risk)
    return Customers(
        contract_type=np.array(["month_to_month"] * n, dtype=object),
        region=np.array(["capital"] * n, dtype=object),
        tenure_months=np.full(n, 24.0),
        held=np.zeros((n, 4), np.bool_),
        churn_risk=np.array(risk),
    )


def offered(uplift: list[float] | None, risk: list[float]) -> list[list[str]]:
    cat = catalogue()
    # Both retention offers are candidates; RET-BOOST is the likelier one.
    propensity = np.tile([0.10, 0.05, 0.08, 0.09], (len(risk), 1))
    slate = arbitrate(
        propensity,
        cat,
        customers(risk),
        channel=None,
        contacts_in_window=None,
        policy=POLICY,
        k=4,
        uplift=uplift,
    )
    return [[o.product_id for o in slate.offers(i, "v1")] for i in range(len(risk))]


def test_negative_uplift_gets_no_retention_offer_but_propensity_ranking_gives_one() -> None:
    at_risk = [0.7, 0.7, 0.7]
    by_propensity = offered(None, at_risk)
    by_uplift = offered([-0.05, 0.0, float("nan")], at_risk)
    # Propensity ranking (with the retention boost) offers both retention offers to all three.
    assert all({"RET-LOYAL", "RET-BOOST"} <= set(row) for row in by_propensity)
    # By uplift: a sleeping dog (negative), no effect (zero) and unknown get none at all.
    assert by_uplift == [["ADD-B", "ADD-A"]] * 3


def test_persuadable_gets_the_likeliest_retention_offer_scored_by_uplift_times_value() -> None:
    cat = catalogue()
    propensity = np.array([[0.10, 0.05, 0.08, 0.09], [0.10, 0.05, 0.08, 0.09]])
    slate = arbitrate(
        propensity,
        cat,
        customers([0.7, 0.7]),
        channel=None,
        contacts_in_window=None,
        policy=POLICY,
        k=4,
        uplift=[0.30, 0.01],
    )
    big, small = slate.offers(0, "v1"), slate.offers(1, "v1")
    assert [o.product_id for o in big] == ["RET-BOOST", "ADD-B", "ADD-A"]
    retention = next(o for o in big if o.product_id == "RET-BOOST")
    # Value of a retention offer: the reference margin (policy default), so the factor is 1.
    assert retention.score == pytest.approx(0.30)
    assert retention.propensity == pytest.approx(0.08)
    # A small uplift ranks below the sales offers' propensity × value.
    assert [o.product_id for o in small] == ["ADD-B", "ADD-A", "RET-BOOST"]
    assert slate.score[1, 2] == pytest.approx(0.01)


def test_other_offers_keep_propensity_times_value_and_eligibility_still_applies() -> None:
    low_risk = [0.1]
    # Not at risk: retention offers stay ineligible whatever the uplift.
    assert offered([0.5], low_risk) == offered(None, low_risk) == [["ADD-B", "ADD-A"]]
    cat = catalogue()
    with pytest.raises(ValueError, match="one value per customer"):
        arbitrate(
            np.full((2, 4), 0.1),
            cat,
            customers([0.7, 0.7]),
            channel=None,
            contacts_in_window=None,
            k=2,
            uplift=[0.1],
        )


def test_the_setting_decides_whether_the_uplift_champion_ranks() -> None:
    champion = object()
    assert ranking_model(Settings(offer_ranking="uplift"), champion) is champion
    assert ranking_model(Settings(offer_ranking="propensity"), champion) is None
    assert ranking_model(Settings(offer_ranking="uplift"), None) is None
