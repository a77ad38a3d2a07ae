"""Offer arbitration: every eligibility rule, the score blend, retention, caps, one code path."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nextoffer.domain import offers as offers_mod
from nextoffer.domain.offers import (
    CATEGORIES,
    Catalogue,
    Customers,
    OfferPolicy,
    OfferSlate,
    arbitrate,
    contact_counts,
    eligibility,
)

CONTRACTS = ("prepaid", "month_to_month", "one_year", "two_year")
REGIONS = ("capital", "lakes", "coast")
CHANNELS = ("retail", "web", "app", "call_center", "telesales")


def product(pid: str, **kw: Any) -> dict[str, Any]:
    """A products-table row with no restriction unless the test says otherwise."""
    row: dict[str, Any] = {
        "product_id": pid,
        "name": f"Product {pid}",
        "category": "addon",
        "price": 10.0,
        "margin": 10.0,
        "contract_types": "",
        "regions": "",
        "channels": "",
        "min_tenure_months": 0,
        "requires_category": None,
        "is_retention_offer": False,
        "active": True,
    }
    row.update(kw)
    return row


def customer(
    cat: Catalogue,
    *,
    contract: str = "month_to_month",
    region: str = "capital",
    tenure: float = 36.0,
    held: tuple[str, ...] = (),
    risk: float | None = 0.1,
    held_categories: list[bool] | None = None,
) -> Customers:
    return Customers.single(
        contract_type=contract,
        region=region,
        tenure_months=tenure,
        held=cat.holdings(held),
        churn_risk=risk,
        held_categories=held_categories,
    )


def offered(
    cat: Catalogue,
    cust: Customers,
    prop: list[float] | None = None,
    *,
    channel: str | None = None,
    contacts: list[int] | None = None,
    policy: OfferPolicy | None = None,
    k: int | None = None,
) -> list[str]:
    """Product ids offered to a single customer, best first."""
    n = cat.n_products
    slate = arbitrate(
        np.array([prop if prop is not None else [0.5] * n]),
        cat,
        cust,
        channel=channel,
        contacts_in_window=None if contacts is None else np.array([contacts]),
        policy=policy or OfferPolicy(),
        k=k or n,
    )
    return [str(cat.product_ids[i]) for i in slate.product_index[0] if i >= 0]


# --- catalogue parsing -------------------------------------------------------------------


def test_from_records_parses_table_values() -> None:
    cat = Catalogue.from_records(
        [
            product(
                "A",
                price=Decimal("12.50"),
                margin=Decimal("7.25"),
                contract_types="one_year|two_year",
                regions=" capital | coast ",
                channels="",
                is_retention_offer="true",
                active="0",
                requires_category="",
            ),
            product("B", channels=["app", "web"], requires_category="mobile_plan", active=None),
        ]
    )
    assert cat.index("B") == 1
    assert cat.price[0] == 12.5 and cat.margin[0] == 7.25
    assert cat.contract_types[0] == frozenset({"one_year", "two_year"})
    assert cat.regions[0] == frozenset({"capital", "coast"})
    assert cat.channels[0] == frozenset() and cat.channels[1] == frozenset({"app", "web"})
    assert cat.requires_category == [None, "mobile_plan"]
    assert cat.is_retention.tolist() == [True, False]
    assert cat.active.tolist() == [False, True]
    with pytest.raises(KeyError):
        cat.index("missing")


def test_catalogue_rejects_bad_rows() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Catalogue.from_records([product("A"), product("A")])
    with pytest.raises(ValueError, match="categories"):
        Catalogue.from_records([product("A", category="toaster")])
    with pytest.raises(ValueError, match="margin"):
        Catalogue.from_records([product("A", margin=-1)])


# --- every eligibility rule on its own ----------------------------------------------------


def test_inactive_product_is_never_offered() -> None:
    cat = Catalogue.from_records([product("BASE"), product("OLD", active=False)])
    assert offered(cat, customer(cat)) == ["BASE"]


def test_contract_rule() -> None:
    cat = Catalogue.from_records(
        [product("BASE"), product("X", contract_types="one_year|two_year")]
    )
    assert offered(cat, customer(cat, contract="prepaid")) == ["BASE"]
    assert offered(cat, customer(cat, contract="two_year")) == ["BASE", "X"]


def test_region_rule_and_unknown_region() -> None:
    cat = Catalogue.from_records([product("BASE"), product("FIB", regions="capital|coast")])
    assert offered(cat, customer(cat, region="lakes")) == ["BASE"]
    assert offered(cat, customer(cat, region="coast")) == ["BASE", "FIB"]
    # A region no product mentions is allowed only by unrestricted products.
    assert offered(cat, customer(cat, region="atlantis")) == ["BASE"]


def test_many_regions_and_object_columns() -> None:
    # More than 32 listed regions switches the lookup to np.unique; pandas gives object arrays.
    cat = Catalogue.from_records(
        [product(f"R{i}", regions=f"town{i}|town{i + 1}") for i in range(40)] + [product("ANY")]
    )
    cust = Customers(
        contract_type=np.array(["prepaid", "prepaid", None], dtype=object),
        region=np.array(["town5", "nowhere", None], dtype=object),
        tenure_months=np.zeros(3),
        held=np.zeros((3, cat.n_products), bool),
        churn_risk=np.zeros(3),
    )
    ok = eligibility(cat, cust, None)
    assert [cat.product_ids[p] for p in np.flatnonzero(ok[0])] == ["R4", "R5", "ANY"]
    assert [cat.product_ids[p] for p in np.flatnonzero(ok[1])] == ["ANY"]
    assert [cat.product_ids[p] for p in np.flatnonzero(ok[2])] == ["ANY"]


def test_channel_rule_none_means_any_channel() -> None:
    cat = Catalogue.from_records([product("BASE"), product("APP", channels="app|call_center")])
    cust = customer(cat)
    assert offered(cat, cust, channel=None) == ["BASE", "APP"]
    assert offered(cat, cust, channel="web") == ["BASE"]
    assert offered(cat, cust, channel="app") == ["BASE", "APP"]


def test_min_tenure_rule_boundary() -> None:
    cat = Catalogue.from_records([product("BASE"), product("LOYAL", min_tenure_months=12)])
    assert offered(cat, customer(cat, tenure=11.9)) == ["BASE"]
    assert offered(cat, customer(cat, tenure=12.0)) == ["BASE", "LOYAL"]


def test_requires_category_from_holdings_or_feature_counts() -> None:
    cat = Catalogue.from_records(
        [
            product("BB", category="broadband_plan"),
            product("OLD-BB", category="broadband_plan", active=False),
            product("TV", requires_category="broadband_plan"),
        ]
    )
    assert offered(cat, customer(cat)) == ["BB"]
    # Holding an inactive broadband product still counts as holding broadband.
    assert offered(cat, customer(cat, held=("OLD-BB",))) == ["BB", "TV"]
    by_features = [c == "broadband_plan" for c in CATEGORIES]
    assert offered(cat, customer(cat, held_categories=by_features)) == ["BB", "TV"]


def test_held_products_are_never_offered() -> None:
    cat = Catalogue.from_records([product("A"), product("B"), product("C")])
    assert offered(cat, customer(cat, held=("B",)), [0.1, 0.9, 0.2]) == ["C", "A"]


def test_contact_cap_boundary() -> None:
    cat = Catalogue.from_records([product("BASE"), product("X")])
    cust = customer(cat)
    policy = OfferPolicy(contact_cap=3)
    assert offered(cat, cust, contacts=[0, 2], policy=policy) == ["BASE", "X"]
    assert offered(cat, cust, contacts=[0, 3], policy=policy) == ["BASE"]
    assert offered(cat, cust, contacts=[0, 3], policy=OfferPolicy(contact_cap=4)) == ["BASE", "X"]


def test_retention_offers_only_for_customers_at_risk() -> None:
    cat = Catalogue.from_records(
        [product("BASE"), product("RET", margin=0, is_retention_offer=True)]
    )
    assert offered(cat, customer(cat, risk=0.39)) == ["BASE"]
    assert offered(cat, customer(cat, risk=None)) == ["BASE"]  # unknown is not at risk
    assert offered(cat, customer(cat, risk=0.4)) == ["RET", "BASE"]
    everyone = OfferPolicy(retention_only_for_at_risk=False)
    assert offered(cat, customer(cat, risk=0.1), policy=everyone) == ["BASE", "RET"]


def test_min_propensity_and_nan_scores() -> None:
    cat = Catalogue.from_records([product("A"), product("B"), product("C")])
    policy = OfferPolicy(min_propensity=0.2)
    assert offered(cat, customer(cat), [0.19, math.nan, 0.2], policy=policy) == ["C"]


def test_eligibility_matrix_matches_rules() -> None:
    cat = Catalogue.from_records(
        [product("BASE"), product("APP", channels="app"), product("RET", is_retention_offer=True)]
    )
    cust = Customers(
        contract_type=np.array(["prepaid", "prepaid"]),
        region=np.array(["capital", "lakes"]),
        tenure_months=np.array([1.0, 2.0]),
        held=np.array([[True, False, False], [False, False, False]]),
        churn_risk=np.array([0.9, 0.0]),
    )
    assert eligibility(cat, cust, None).tolist() == [[False, True, True], [True, True, False]]
    assert eligibility(cat, cust, "web").tolist() == [[False, False, True], [True, False, False]]
    capped = eligibility(cat, cust, None, contacts_in_window=np.array([[0, 3, 0], [0, 0, 0]]))
    assert capped.tolist() == [[False, False, True], [True, True, False]]


# --- scoring ------------------------------------------------------------------------------


def _value_catalogue() -> Catalogue:
    margins = [5.0, 20.0, 10.0, 40.0, 1.0]
    return Catalogue.from_records([product(f"P{i}", margin=m) for i, m in enumerate(margins)])


def test_value_weight_zero_is_propensity_order_and_one_is_expected_value_order() -> None:
    cat = _value_catalogue()
    prop = [0.30, 0.10, 0.25, 0.04, 0.50]
    by_prop = offered(cat, customer(cat), prop, policy=OfferPolicy(value_weight=0.0))
    assert by_prop == ["P4", "P0", "P2", "P1", "P3"]
    by_value = offered(cat, customer(cat), prop, policy=OfferPolicy(value_weight=1.0))
    ev = {f"P{i}": p * m for i, (p, m) in enumerate(zip(prop, cat.margin, strict=True))}
    assert by_value == sorted(ev, key=lambda pid: -ev[pid])
    assert by_value == ["P2", "P1", "P3", "P0", "P4"]


def test_scores_are_scale_free_in_money() -> None:
    cat = _value_catalogue()
    cents = Catalogue.from_records(
        [product(f"P{i}", margin=float(m) * 100) for i, m in enumerate(cat.margin)]
    )
    rng = np.random.default_rng(1)
    prop = rng.random((50, cat.n_products))
    cust = Customers(
        contract_type=np.full(50, "prepaid"),
        region=np.full(50, "capital"),
        tenure_months=np.zeros(50),
        held=np.zeros((50, cat.n_products), bool),
        churn_risk=np.zeros(50),
    )
    a = arbitrate(prop, cat, cust, channel=None, contacts_in_window=None, k=5)
    b = arbitrate(prop, cents, cust, channel=None, contacts_in_window=None, k=5)
    assert np.array_equal(a.product_index, b.product_index)
    np.testing.assert_allclose(a.score, b.score)
    np.testing.assert_allclose(b.expected_value, 100 * a.expected_value)


def test_worked_example_from_docs() -> None:
    # docs/offers.md: reference margin 10; A margin 20, B margin 5, RET free; value_weight 0.5.
    cat = Catalogue.from_records(
        [
            product("A", margin=20.0),
            product("B", margin=5.0),
            product("C", margin=10.0),
            product("RET", margin=0.0, is_retention_offer=True),
        ]
    )
    assert cat.reference_margin == 10.0
    prop = np.array([[0.10, 0.25, 0.0, 0.08]])
    at_risk = customer(cat, risk=0.6, held=("C",))
    slate = arbitrate(prop, cat, at_risk, channel=None, contacts_in_window=None, k=3)
    assert [cat.product_ids[i] for i in slate.product_index[0]] == ["B", "RET", "A"]
    np.testing.assert_allclose(slate.score[0], [0.25 * 0.5**0.5, 0.16, 0.10 * 2**0.5])
    np.testing.assert_allclose(slate.expected_value[0], [1.25, 0.0, 2.0])
    low = customer(cat, risk=0.1, held=("C",))
    slate = arbitrate(prop, cat, low, channel=None, contacts_in_window=None, k=3)
    assert slate.product_index[0].tolist() == [1, 0, -1]


def test_retention_boost_moves_retention_offer_up_only_for_at_risk() -> None:
    cat = Catalogue.from_records(
        [product("NORMAL", margin=10.0), product("RET", margin=0.0, is_retention_offer=True)]
    )
    assert cat.reference_margin == 10.0  # so both have the same value factor
    prop = [0.12, 0.10]  # the normal offer scores slightly better
    everyone = OfferPolicy(retention_only_for_at_risk=False)
    assert offered(cat, customer(cat, risk=0.1), prop, policy=everyone) == ["NORMAL", "RET"]
    assert offered(cat, customer(cat, risk=0.4), prop, policy=everyone) == ["RET", "NORMAL"]
    no_boost = OfferPolicy(retention_boost=1.0)
    assert offered(cat, customer(cat, risk=0.9), prop, policy=no_boost) == ["NORMAL", "RET"]


def test_retention_value_policy() -> None:
    cat = Catalogue.from_records(
        [product("NORMAL", margin=10.0), product("RET", margin=0.0, is_retention_offer=True)]
    )
    cheap = OfferPolicy(retention_value=2.5, value_weight=1.0, retention_boost=1.0)
    assert offered(cat, customer(cat, risk=0.9), [0.12, 0.10]) == ["RET", "NORMAL"]
    assert offered(cat, customer(cat, risk=0.9), [0.12, 0.10], policy=cheap) == ["NORMAL", "RET"]


def test_padding_when_fewer_eligible_than_k() -> None:
    cat = Catalogue.from_records([product("A"), product("B", active=False), product("C")])
    slate = arbitrate(
        np.array([[0.2, 0.9, 0.4]]),
        cat,
        customer(cat),
        channel=None,
        contacts_in_window=None,
        k=5,
    )
    assert slate.product_index.tolist() == [[2, 0, -1, -1, -1]]
    assert np.isnan(slate.score[0, 2:]).all() and np.isnan(slate.propensity[0, 2:]).all()
    assert slate.reasons(0, 3) == []
    assert [o.product_id for o in slate.offers(0)] == ["C", "A"]


def test_ties_go_to_catalogue_order() -> None:
    cat = Catalogue.from_records([product(p) for p in "ABCDE"])
    assert offered(cat, customer(cat), [0.3, 0.5, 0.3, 0.5, 0.3], k=4) == ["B", "D", "A", "C"]


@pytest.mark.parametrize("n", [20, 200])
def test_top_k_strategies_agree_with_ties(n: int) -> None:
    rng = np.random.default_rng(n)
    score = np.round(rng.random((500, n)), 1)
    score[rng.random(score.shape) < 0.3] = -np.inf
    expected = np.argsort(-score, axis=1, kind="stable")[:, :7]
    assert np.array_equal(offers_mod._top_k(score, 7), expected)


# --- one code path for one customer and for many ------------------------------------------


def random_world(
    rng: np.random.Generator, n_customers: int, n_products: int
) -> tuple[Catalogue, Customers, np.ndarray, np.ndarray, np.ndarray]:
    records = []
    for i in range(n_products):
        records.append(
            product(
                f"P{i:04d}",
                category=CATEGORIES[i % len(CATEGORIES)],
                margin=float(rng.choice([0.0, 2.0, 5.0, 10.0, 30.0])),
                contract_types="|".join(c for c in CONTRACTS if rng.random() < 0.6),
                regions="|".join(r for r in REGIONS if rng.random() < 0.5),
                channels="|".join(c for c in CHANNELS if rng.random() < 0.7),
                min_tenure_months=int(rng.choice([0, 0, 6, 12, 24])),
                requires_category=[None, None, *CATEGORIES][
                    int(rng.integers(0, 2 + len(CATEGORIES)))
                ],
                is_retention_offer=bool(rng.random() < 0.15),
                active=bool(rng.random() < 0.9),
            )
        )
    cat = Catalogue.from_records(records)
    cust = Customers(
        contract_type=rng.choice(CONTRACTS, n_customers),
        region=rng.choice((*REGIONS, "islands"), n_customers),
        tenure_months=rng.uniform(0, 40, n_customers),
        held=rng.random((n_customers, n_products)) < 0.1,
        churn_risk=np.where(rng.random(n_customers) < 0.1, np.nan, rng.random(n_customers)),
    )
    prop = np.round(rng.random((n_customers, n_products)) ** 2, 2)  # rounded: plenty of ties
    prop[rng.random(prop.shape) < 0.02] = np.nan
    contacts = rng.poisson(0.8, (n_customers, n_products))
    codes = np.where(rng.random(prop.shape) < 0.3, rng.integers(0, 2, prop.shape), -1)
    return cat, cust, prop, contacts, codes


def row_of(cust: Customers, i: int) -> Customers:
    return Customers(
        contract_type=cust.contract_type[i : i + 1],
        region=cust.region[i : i + 1],
        tenure_months=cust.tenure_months[i : i + 1],
        held=cust.held[i : i + 1],
        churn_risk=cust.churn_risk[i : i + 1],
    )


@pytest.mark.parametrize("n_products", [40, 150])
def test_batch_equals_row_by_row(n_products: int) -> None:
    rng = np.random.default_rng(n_products)
    cat, cust, prop, contacts, codes = random_world(rng, 1000, n_products)
    texts = ("popular with customers like you", "often bought together")
    kwargs: dict[str, Any] = {"channel": "app", "k": 10, "reason_texts": texts}
    batch = arbitrate(prop, cat, cust, contacts_in_window=contacts, reason_codes=codes, **kwargs)
    assert (batch.product_index >= 0).sum() > 1000  # the world offers plenty
    for i in range(cust.n_customers):
        one = arbitrate(
            prop[i : i + 1],
            cat,
            row_of(cust, i),
            contacts_in_window=contacts[i : i + 1],
            reason_codes=codes[i : i + 1],
            **kwargs,
        )
        assert np.array_equal(one.product_index[0], batch.product_index[i])
        assert np.array_equal(one.score[0], batch.score[i], equal_nan=True)
        assert np.array_equal(one.propensity[0], batch.propensity[i], equal_nan=True)
        assert [one.reasons(0, j) for j in range(10)] == [batch.reasons(i, j) for j in range(10)]


# --- reasons ------------------------------------------------------------------------------


def test_reasons_short_non_empty_and_mention_retention_when_boosted() -> None:
    rng = np.random.default_rng(7)
    cat, cust, prop, contacts, codes = random_world(rng, 300, 40)
    texts = ("popular with customers like you", "often bought together")
    slate = arbitrate(
        prop,
        cat,
        cust,
        channel=None,
        contacts_in_window=contacts,
        k=5,
        reason_codes=codes,
        reason_texts=texts,
    )
    boosted = 0
    for i in range(cust.n_customers):
        for j in range(slate.k):
            p = int(slate.product_index[i, j])
            reasons = slate.reasons(i, j)
            if p < 0:
                assert reasons == []
                continue
            assert 1 <= len(reasons) <= 3
            assert all(isinstance(r, str) and r for r in reasons)
            if cat.is_retention[p]:
                assert cust.churn_risk[i] >= 0.4
                assert reasons[0] == "retention offer: high churn risk"
                boosted += 1
    assert boosted > 0
    ids, table = slate.reason_table()
    for i in range(cust.n_customers):
        for j in range(slate.k):
            expected = slate.reasons(i, j)
            assert (ids[i, j] == -1) if not expected else list(table[ids[i, j]]) == expected


def test_reasons_content() -> None:
    cat = Catalogue.from_records(
        [
            product("BB", category="broadband_plan", margin=10.0),
            product("TV", requires_category="broadband_plan", margin=4.0),
            product("PHONE", category="device", margin=60.0),
            product("X", margin=10.0),
        ]
        + [product(f"F{i}", margin=10.0) for i in range(6)]
    )
    prop = np.array([[0.0, 0.9, 0.05, 0.01] + [0.02] * 6])
    slate = arbitrate(
        prop,
        cat,
        customer(cat, held=("BB",)),
        channel=None,
        contacts_in_window=None,
        k=3,
        reason_codes=np.array([[-1, 0, -1, -1] + [-1] * 6]),
        reason_texts=("popular with customers like you",),
    )
    assert [o.product_id for o in slate.offers(0)] == ["TV", "PHONE", "F0"]
    assert slate.reasons(0, 0) == [
        "high predicted interest (top 10 % of this customer's scores)",
        "popular with customers like you",
        "complements your broadband",
    ]
    assert slate.reasons(0, 1) == ["high value: margin 60.00"]
    assert slate.reasons(0, 2) == ["best remaining match for this customer"]


def test_input_validation() -> None:
    cat = Catalogue.from_records([product("A"), product("B")])
    cust = customer(cat)
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        arbitrate(np.array([[0.5, 1.5]]), cat, cust, channel=None, contacts_in_window=None, k=1)
    with pytest.raises(ValueError, match="propensity"):
        arbitrate(np.array([[0.5]]), cat, cust, channel=None, contacts_in_window=None, k=1)
    with pytest.raises(ValueError, match="reason_codes"):
        arbitrate(
            np.array([[0.5, 0.2]]),
            cat,
            cust,
            channel=None,
            contacts_in_window=None,
            k=1,
            reason_codes=np.array([[3, 3]]),
        )
    with pytest.raises(ValueError):
        OfferPolicy(value_weight=1.5)
    with pytest.raises(ValueError):
        OfferPolicy(contact_cap=0)


def test_contact_counts() -> None:
    counts = contact_counts(np.array([0, 0, 2, 0]), np.array([1, 1, 0, 2]), 3, 3)
    assert counts.tolist() == [[0, 2, 1], [0, 0, 0], [1, 0, 0]]
    assert contact_counts(np.array([], int), np.array([], int), 2, 2).sum() == 0
    with pytest.raises(ValueError):
        contact_counts(np.array([3]), np.array([0]), 3, 3)


# --- property: nothing ineligible ever comes out ------------------------------------------


def naive_eligible(
    cat: Catalogue,
    cust: Customers,
    i: int,
    p: int,
    channel: str | None,
    contacts: np.ndarray,
    policy: OfferPolicy,
) -> bool:
    """The rules of docs/offers.md, written out literally for one customer and product."""
    held_cats = {str(cat.categories[q]) for q in np.flatnonzero(cust.held[i])}
    required = cat.requires_category[p]
    return bool(
        cat.active[p]
        and (not cat.contract_types[p] or cust.contract_type[i] in cat.contract_types[p])
        and (not cat.regions[p] or cust.region[i] in cat.regions[p])
        and (channel is None or not cat.channels[p] or channel in cat.channels[p])
        and cust.tenure_months[i] >= cat.min_tenure_months[p]
        and (required is None or required in held_cats)
        and not cust.held[i, p]
        and contacts[i, p] < policy.contact_cap
        and (
            not cat.is_retention[p]
            or not policy.retention_only_for_at_risk
            or cust.churn_risk[i] >= policy.high_churn_risk
        )
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_customers=st.integers(1, 30),
    n_products=st.integers(1, 90),
    k=st.integers(1, 12),
    channel=st.sampled_from([None, *CHANNELS]),
    value_weight=st.floats(0.0, 1.0),
    cap=st.integers(1, 3),
    only_at_risk=st.booleans(),
    min_propensity=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_no_output_offer_is_ever_ineligible(
    seed: int,
    n_customers: int,
    n_products: int,
    k: int,
    channel: str | None,
    value_weight: float,
    cap: int,
    only_at_risk: bool,
    min_propensity: float,
) -> None:
    rng = np.random.default_rng(seed)
    cat, cust, prop, contacts, _ = random_world(rng, n_customers, n_products)
    policy = OfferPolicy(
        value_weight=value_weight,
        contact_cap=cap,
        retention_only_for_at_risk=only_at_risk,
        min_propensity=min_propensity,
    )
    slate: OfferSlate = arbitrate(
        prop, cat, cust, channel=channel, contacts_in_window=contacts, policy=policy, k=k
    )
    ok = eligibility(cat, cust, channel, contacts_in_window=contacts, policy=policy)
    for i in range(n_customers):
        for p in range(n_products):
            assert ok[i, p] == naive_eligible(cat, cust, i, p, channel, contacts, policy)
        chosen = [int(p) for p in slate.product_index[i] if p >= 0]
        assert len(set(chosen)) == len(chosen)
        assert (slate.product_index[i, len(chosen) :] == -1).all()
        allowed = {p for p in range(n_products) if ok[i, p] and prop[i, p] >= min_propensity}
        assert set(chosen) <= allowed
        assert len(chosen) == min(k, len(allowed))  # never pads while something is allowed
        scores = slate.score[i, : len(chosen)]
        assert (np.diff(scores) <= 0).all()
