"""Product rules in the one eligibility step: required products and attributes, exclusions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nextoffer.domain.offers import (
    CATEGORIES,
    Catalogue,
    Customers,
    arbitrate,
    eligibility,
)
from nextoffer.domain.rules import attribute_matches, parse_conditions
from nextoffer.scoring.offers import customers_for
from tests.unit.test_offers import product


def offered(cat: Catalogue, customers: Customers) -> list[list[str]]:
    """The eligible product ids of each customer, in catalogue order."""
    ok = eligibility(cat, customers, None)
    return [[str(p) for p in cat.product_ids[row]] for row in ok]


def one(
    cat: Catalogue, held: tuple[str, ...] = (), attributes: dict[str, Any] | None = None
) -> Customers:
    return Customers.single(
        contract_type="month_to_month",
        region="capital",
        tenure_months=36,
        held=cat.holdings(held),
        churn_risk=0.1,
        attributes=attributes,
    )


# A broadband ladder as an operator would load it: one broadband line at a time, fibre as
# an upgrade of DSL (never the other way), where fibre is available.
BROADBAND = [
    product("BB-DSL", category="broadband_plan", exclusion_group="broadband"),
    product(
        "BB-FIB",
        category="broadband_plan",
        exclusion_group="broadband",
        upgrades_from="BB-DSL",
        requires_attribute="fiber_available=true",
    ),
    product("BB-5G", category="broadband_plan", exclusion_group="broadband"),
    product("TV-BOX", category="addon", requires_products="BB-DSL|BB-FIB"),
    product("MOB", category="mobile_plan"),
]


def test_from_records_parses_the_rule_columns() -> None:
    cat = Catalogue.from_records(BROADBAND)
    assert cat.exclusion_group == ["broadband", "broadband", "broadband", None, None]
    assert cat.upgrades_from[1] == frozenset({"BB-DSL"})
    assert cat.requires_products[3] == frozenset({"BB-DSL", "BB-FIB"})
    assert cat.requires_attribute[1] == (("fiber_available", "true"),)
    assert cat.requires_attribute[0] == ()
    # Rows without the rule columns (an older products table): no rule at all.
    plain = Catalogue.from_records([product("A"), product("B")])
    assert plain.requires_products == [frozenset(), frozenset()]
    assert plain.exclusion_group == [None, None]
    assert not plain.exclusion_rule.active and not plain.attribute_rule.active


def test_requires_attribute_terms_parse_and_bad_terms_raise() -> None:
    assert parse_conditions("fiber_available=true | Lines=2") == (
        ("fiber_available", "true"),
        ("lines", "2"),
    )
    assert parse_conditions({"area": "Urban"}) == (("area", "Urban"),)
    assert parse_conditions("") == () and parse_conditions(None) == ()
    with pytest.raises(ValueError, match="name=value"):
        Catalogue.from_records([product("A", requires_attribute="fiber_available")])
    with pytest.raises(ValueError, match="name=value"):
        parse_conditions("=true")


def test_requires_products_means_any_of_the_list() -> None:
    cat = Catalogue.from_records(BROADBAND)
    fibre = {"fiber_available": True}
    assert "TV-BOX" not in offered(cat, one(cat, (), fibre))[0]
    assert "TV-BOX" not in offered(cat, one(cat, ("MOB",), fibre))[0]
    assert "TV-BOX" in offered(cat, one(cat, ("BB-DSL",), fibre))[0]
    assert "TV-BOX" in offered(cat, one(cat, ("BB-FIB",), fibre))[0]
    # Holding an inactive listed product counts, as for requires_category.
    rows = [*BROADBAND, product("BB-OLD", category="broadband_plan", active=False)]
    rows[3] = product("TV-BOX", category="addon", requires_products="BB-OLD")
    old = Catalogue.from_records(rows)
    assert "TV-BOX" in offered(old, one(old, ("BB-OLD",)))[0]
    # A listed id the catalogue does not have can never be held.
    ghost = Catalogue.from_records([product("A"), product("B", requires_products="NOPE")])
    assert offered(ghost, one(ghost, ("A",)))[0] == []


def test_exclusion_group_blocks_other_members_except_upgrade_paths() -> None:
    cat = Catalogue.from_records(BROADBAND)
    fibre = {"fiber_available": True}
    # Nothing held in the group: every member may be offered.
    assert offered(cat, one(cat, (), fibre))[0] == ["BB-DSL", "BB-FIB", "BB-5G", "MOB"]
    # A DSL customer: fibre is its upgrade path, 5G is excluded.
    assert offered(cat, one(cat, ("BB-DSL",), fibre))[0] == ["BB-FIB", "TV-BOX", "MOB"]
    # A fibre customer is never offered DSL (no downgrade path) nor 5G.
    assert offered(cat, one(cat, ("BB-FIB",), fibre))[0] == ["TV-BOX", "MOB"]
    # A 5G customer: fibre upgrades DSL only, so nothing of the group.
    assert offered(cat, one(cat, ("BB-5G",), fibre))[0] == ["MOB"]


def test_requires_attribute_boolean_number_category_date_and_missing() -> None:
    cat = Catalogue.from_records(
        [
            product("FIB", requires_attribute="fiber_available=true"),
            product("NO-FIB", requires_attribute="fiber_available=no"),
            product("FAMILY", requires_attribute="lines=2"),
            product("URBAN", requires_attribute="area=Urban|fiber_available=1"),
            product("NEW", requires_attribute="since=2024-01-01"),
        ]
    )

    def eligible(**attributes: Any) -> list[str]:
        return offered(cat, one(cat, (), attributes))[0]

    assert eligible(fiber_available=1.0) == ["FIB"]
    assert eligible(fiber_available=True, area="urban ") == ["FIB", "URBAN"]
    assert eligible(fiber_available=0.0, lines=2.0) == ["NO-FIB", "FAMILY"]
    assert eligible(fiber_available="Yes", area="URBAN") == ["FIB", "URBAN"]
    assert eligible(area="urban") == []  # fiber_available missing: URBAN fails too
    assert eligible(fiber_available=math.nan) == []
    assert eligible(fiber_available=None) == []
    days = float((pd.Timestamp("2024-01-01") - pd.Timestamp("1970-01-01")).days)
    assert eligible(since=days) == ["NEW"]
    # No attributes at all: every product with an attribute rule is out.
    assert offered(cat, one(cat))[0] == []


def test_attribute_matches_columns() -> None:
    floats = np.array([1.0, 0.0, np.nan, 2.0])
    assert attribute_matches(floats, "true").tolist() == [True, False, False, False]
    assert attribute_matches(floats, "No").tolist() == [False, True, False, False]
    assert attribute_matches(floats, "2").tolist() == [False, False, False, True]
    assert attribute_matches(floats, "many").tolist() == [False] * 4
    text = np.array(["Urban", None, "rural", "1", float("nan")], dtype=object)
    assert attribute_matches(text, "urban").tolist() == [True, False, False, False, False]
    assert attribute_matches(text, "yes").tolist() == [False, False, False, True, False]
    assert attribute_matches(np.array([], dtype=object), "x").tolist() == []


def test_batch_equals_one_customer_at_a_time_with_rules() -> None:
    cat = Catalogue.from_records(BROADBAND)
    rng = np.random.default_rng(3)
    n = 400
    held = rng.random((n, cat.n_products)) < 0.3
    fibre = rng.choice([1.0, 0.0, np.nan], n)
    batch = Customers(
        contract_type=np.full(n, "month_to_month", dtype=object),
        region=np.full(n, "capital", dtype=object),
        tenure_months=np.full(n, 36.0),
        held=held,
        churn_risk=np.full(n, 0.1),
        attributes={"fiber_available": fibre},
    )
    together = eligibility(cat, batch, None)
    for i in range(n):
        single = Customers.single(
            contract_type="month_to_month",
            region="capital",
            tenure_months=36,
            held=held[i],
            attributes={"fiber_available": float(fibre[i])},
        )
        assert eligibility(cat, single, None)[0].tolist() == together[i].tolist()
    # And every rule holds in the batch: no two broadband lines, TV-BOX only with a line.
    group = [cat.index(p) for p in ("BB-DSL", "BB-FIB", "BB-5G")]
    for i in range(n):
        held_group = held[i, group].any()
        for j in group:
            if together[i, j] and held_group:
                # Only fibre, only for DSL holders.
                assert cat.product_ids[j] == "BB-FIB" and held[i, cat.index("BB-DSL")]
        if together[i, cat.index("TV-BOX")]:
            assert held[i, cat.index("BB-DSL")] or held[i, cat.index("BB-FIB")]


def test_arbitrate_never_offers_an_excluded_product_and_says_upgrade() -> None:
    cat = Catalogue.from_records(BROADBAND)
    dsl = one(cat, ("BB-DSL",), {"fiber_available": 1.0})
    prop = np.full((1, cat.n_products), 0.5)
    slate = arbitrate(prop, cat, dsl, channel=None, contacts_in_window=None, k=5)
    offers = {o.product_id: o for o in slate.offers(0)}
    assert set(offers) == {"BB-FIB", "TV-BOX", "MOB"}
    assert "upgrade from your Product BB-DSL" in offers["BB-FIB"].reasons
    assert "complements your broadband" in offers["TV-BOX"].reasons
    # The reason table (the batch path) reads the same strings.
    ids, table = slate.reason_table()
    by_slot = {
        str(cat.product_ids[slate.product_index[0, j]]): table[ids[0, j]]
        for j in range(3)
        if ids[0, j] >= 0
    }
    assert by_slot["BB-FIB"] == offers["BB-FIB"].reasons


def test_customers_reject_attribute_of_wrong_length() -> None:
    cat = Catalogue.from_records(BROADBAND)
    with pytest.raises(ValueError, match="one value per customer"):
        Customers(
            contract_type=np.array(["prepaid", "prepaid"], dtype=object),
            region=np.array(["capital", "capital"], dtype=object),
            tenure_months=np.zeros(2),
            held=np.zeros((2, cat.n_products), np.bool_),
            churn_risk=np.zeros(2),
            attributes={"fiber_available": np.ones(3)},
        )


def test_customers_for_reads_attr_columns_and_sizes_held_categories() -> None:
    features = pd.DataFrame(
        {
            "contract_type": ["prepaid", "one_year"],
            "region": ["capital", "lakes"],
            "tenure_months": [3, 40],
            "mobile_held": [1, 0],
            "broadband_held": [0, 2],
            "addons_held": [0, 0],
            "devices_held": [0, 0],
            "bundles_held": [None, 1],
            "attr_fiber_available": [1.0, np.nan],
            "attr_area": ["urban", None],
        }
    )
    customers = customers_for(features, np.zeros((2, 3), np.bool_), np.array([0.1, 0.9]))
    assert customers.held_categories is not None
    assert customers.held_categories.shape == (2, len(CATEGORIES))
    held = {c for c, on in zip(CATEGORIES, customers.held_categories[1], strict=True) if on}
    assert held == {"broadband_plan", "bundle"}
    assert customers.attributes is not None
    assert set(customers.attributes) == {"fiber_available", "area"}
    assert customers.attributes["fiber_available"][0] == 1.0
    assert math.isnan(customers.attributes["fiber_available"][1])
    assert customers.attributes["area"].tolist() == ["urban", None]


def literal_rules_ok(
    rows: list[dict[str, Any]], held: set[str], attributes: dict[str, float], j: int
) -> bool:
    """The four rules of docs/offers.md, written out for one customer and product."""
    row = rows[j]
    needs = {p for p in row["requires_products"].split("|") if p}
    if needs and not needs & held:
        return False
    for term in filter(None, row["requires_attribute"].split("|")):
        name, wanted = term.split("=")
        target = (
            {"true": 1.0, "false": 0.0}[wanted] if wanted in ("true", "false") else float(wanted)
        )
        # A missing attribute (NaN) equals nothing.
        if attributes.get(name, math.nan) != target:
            return False
    group = row["exclusion_group"]
    if group:
        others = {r["product_id"] for r in rows if r["exclusion_group"] == group} - {
            row["product_id"]
        }
        upgrades = {p for p in row["upgrades_from"].split("|") if p}
        if others & held and not upgrades & held:
            return False
    return row["product_id"] not in held


@pytest.mark.parametrize("seed", range(5))
def test_random_catalogues_match_the_literal_rules(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"P{i}" for i in range(12)]

    def some(k: int) -> str:
        return "|".join(rng.choice(ids, size=k, replace=False)) if k else ""

    rows = []
    for pid in ids:
        terms = [f"a{i}={rng.choice(['true', 'false', '2'])}" for i in range(rng.integers(0, 3))]
        rows.append(
            product(
                pid,
                requires_products=some(int(rng.integers(0, 3)) * int(rng.random() < 0.4)),
                requires_attribute="|".join(dict.fromkeys(terms)) if rng.random() < 0.4 else "",
                exclusion_group=str(rng.choice(["", "g1", "g2"])),
                upgrades_from=some(int(rng.integers(0, 3))),
            )
        )
    cat = Catalogue.from_records(rows)
    n = 300
    held = rng.random((n, len(ids))) < 0.25
    attrs = {f"a{i}": rng.choice([0.0, 1.0, 2.0, np.nan], n) for i in range(3)}
    customers = Customers(
        contract_type=np.full(n, "month_to_month", dtype=object),
        region=np.full(n, "capital", dtype=object),
        tenure_months=np.full(n, 36.0),
        held=held,
        churn_risk=np.full(n, 0.1),
        attributes=attrs,
    )
    ok = eligibility(cat, customers, None)
    assert 0.05 < ok.mean() < 0.95  # the rules both pass and block
    for i in range(n):
        mine = {ids[j] for j in np.flatnonzero(held[i])}
        values = {name: float(column[i]) for name, column in attrs.items()}
        expected = [literal_rules_ok(rows, mine, values, j) for j in range(len(ids))]
        assert ok[i].tolist() == expected, i
