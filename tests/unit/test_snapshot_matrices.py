"""The few-customer path of build_snapshot (and the live answer) builds the pandas path's matrices."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from nextoffer.features.holdings import holding_matrices
from nextoffer.features.training import _matrix, _positions


def test_small_path_matches_pandas_path() -> None:
    rng = np.random.default_rng(7)
    customers = [f"C{i}" for i in range(5)]
    products = [f"P{j}" for j in range(8)]
    day = date(2026, 6, 1)
    ends = [None, date(2026, 5, 31), date(2026, 6, 1), date(2026, 7, 1), None]
    subscriptions = pd.DataFrame(
        {
            "customer_id": rng.choice([*customers, "UNKNOWN"], 40),
            "product_id": rng.choice([*products, "GONE"], 40),
            "start_date": [date(2025, 1, 1)] * 40,
            "end_date": [ends[i % len(ends)] for i in range(40)],
        }
    )
    acquired = pd.DataFrame(
        {
            "customer_id": rng.choice(customers, 15),
            "product_id": rng.choice(products, 15),
        }
    )
    features = pd.DataFrame({"customer_id": customers})

    # As the database hands them to the live answer: plain tuples, no frame.
    held, history = holding_matrices(
        list(subscriptions.itertuples(index=False, name=None)),
        list(acquired.itertuples(index=False, name=None)),
        customers,
        products,
        day,
    )

    rows, cols = _positions(features["customer_id"]), _positions(pd.Series(products))
    still = subscriptions["end_date"].isna() | (
        pd.to_datetime(subscriptions["end_date"]) >= pd.Timestamp(day)
    )
    expected_held = _matrix(subscriptions[still.to_numpy()], rows, cols)
    expected_history = _matrix(pd.concat([subscriptions, acquired]), rows, cols)
    np.testing.assert_array_equal(held.toarray(), expected_held.toarray())
    np.testing.assert_array_equal(history.toarray(), expected_history.toarray())
    assert held.toarray().sum() > 0
    assert (history.toarray() >= held.toarray()).all()
