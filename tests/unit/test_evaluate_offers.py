"""`evaluate offers` metrics on a hand-made table, computed by hand, and its input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from nextoffer.domain.errors import InputError
from nextoffer.models.offer_fit import Examples, ranking_table
from nextoffer.pipelines.evaluate_offers import holdings_frame
from nextoffer.pipelines.offer_catalogue import catalogue_for


def test_ranking_table_by_hand() -> None:
    # Three customers, four products; each has one hidden product (the label).
    labels = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]], np.float32))
    scores = np.array(
        [
            [0.9, 0.8, 0.1, 0.0],  # hidden product ranked 2nd among candidates
            [0.5, 0.4, 0.3, 0.9],  # ranked 1st
            [0.1, 0.9, 0.8, 0.7],  # ranked 4th, but product 3 is held: 3rd of 3 candidates
        ]
    )
    mask = np.ones_like(scores, dtype=bool)
    mask[2, 3] = False
    table = ranking_table(scores, mask, labels, 3)
    assert table["hit_rate_at_1"] == pytest.approx(1 / 3)
    assert table["hit_rate_at_3"] == pytest.approx(1.0)
    # nDCG@3 with one relevant item: 1/log2(rank+1), ideal 1.
    expected = (1 / np.log2(3) + 1 + 1 / np.log2(4)) / 3
    assert table["ndcg_at_3"] == pytest.approx(expected)
    assert table["mrr"] == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    assert table["users"] == 3


def test_holdings_and_attributes_are_read_and_typed() -> None:
    holdings = pd.DataFrame(
        {"cust": ["a", "a", "b", "b", "b", "c"], "svc": ["x", "y", "x", "y", "z", "x"]}
    )
    attributes = pd.DataFrame(
        {
            "cust": ["a", "b", "c"],
            "SeniorCitizen": ["Yes", "No", "No"],
            "MonthlyCharges": ["10.5", "20", "7"],
            "Since": ["2020-01-01", "2021-06-30", "2019-12-31"],
        }
    )
    features, held, products, columns = holdings_frame(holdings, "cust", "svc", attributes, "cust")
    assert products == ["x", "y", "z"]
    assert held.toarray().tolist() == [[1, 1, 0], [1, 1, 1], [1, 0, 0]]
    assert features["products_held"].tolist() == [2, 3, 1]
    assert set(columns) == {"attr_senior_citizen", "attr_monthly_charges", "attr_since"}
    assert features["attr_senior_citizen"].tolist() == [1.0, 0.0, 0.0]
    assert features["attr_monthly_charges"].tolist() == [10.5, 20.0, 7.0]
    assert features["attr_since"].tolist() == [18262.0, 18808.0, 18261.0]
    with pytest.raises(InputError, match="no column 'svc2'"):
        holdings_frame(holdings, "cust", "svc2", None)


def test_product_rules_limit_what_evaluate_offers_ranks() -> None:
    holdings = pd.DataFrame(
        {
            "cust": ["a", "a", "b", "b", "c"],
            "svc": ["dsl", "phone", "fiber", "security", "phone"],
        }
    )
    features, held, products, _columns = holdings_frame(holdings, "cust", "svc", None)
    catalogue = pd.DataFrame(
        {
            "product_id": ["dsl", "fiber", "phone", "security"],
            "category": ["broadband_plan", "broadband_plan", "fixed_voice", "security"],
            "price": ["25", "45", "20", "5"],
            "margin": ["10", "20", "10", "3"],
            "exclusion_group": ["internet", "internet", "", ""],
            "upgrades_from": ["", "", "", ""],
            "requires_products": ["", "", "", "dsl|fiber"],
        }
    )
    table, allowed = catalogue_for(products, catalogue)
    assert allowed is not None and list(table.product_ids) == products
    examples = Examples(
        features=features.assign(segment_id=0),
        history=held,
        held=held,
        recent=held,
        labels=sp.csr_matrix(held.shape, dtype=np.float32),
    )
    mask = pd.DataFrame(allowed(examples), index=["a", "b", "c"], columns=products)
    # a holds DSL: fibre is in its exclusion group, security needs internet (it has it).
    assert mask.loc["a"].to_dict() == {
        "dsl": False,
        "fiber": False,
        "phone": False,
        "security": True,
    }
    # b holds fibre and security: DSL excluded, phone allowed.
    assert mask.loc["b"].to_dict() == {
        "dsl": False,
        "fiber": False,
        "phone": True,
        "security": False,
    }
    # c has no internet: either broadband plan, but no security.
    assert mask.loc["c"].to_dict() == {
        "dsl": True,
        "fiber": True,
        "phone": False,
        "security": False,
    }
    # Without a catalogue nothing is ruled out beyond holdings.
    assert catalogue_for(products, None)[1] is None
    with pytest.raises(InputError, match="not in the file"):
        catalogue_for(products, catalogue.iloc[:2])
