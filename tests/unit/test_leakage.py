"""An input that alone gives the training label away is dropped, with one warning naming it."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from nextoffer.models.candidates import RankerInputs
from nextoffer.models.leakage import drop_leaking
from nextoffer.models.offer_fit import Examples


def test_a_column_written_after_the_fact_is_dropped_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rng = np.random.default_rng(0)
    n, products = 2000, 3
    taken = rng.integers(0, products, n)
    took = rng.random(n) < 0.3  # 30 % took one product
    labels = sp.csr_matrix(
        (np.ones(int(took.sum()), np.float32), (np.flatnonzero(took), taken[took])),
        shape=(n, products),
    )
    features = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "tenure_months": rng.uniform(0, 60, n),  # unrelated: kept
            # A "days since last purchase" exported after the window: marks the takers.
            "recency_days": np.where(took, rng.uniform(0, 5, n), rng.uniform(30, 400, n)),
            # Related but not decisive (AUC about 0.7): kept.
            "engagement_30d": took * 1.0 + rng.normal(0, 1.0, n),
        }
    )
    empty = sp.csr_matrix((n, products), dtype=np.float32)
    examples = Examples(features, empty, empty, empty, labels)
    inputs = RankerInputs(numeric=("tenure_months", "recency_days", "engagement_30d"))

    with caplog.at_level(logging.WARNING, logger="nextoffer.models.leakage"):
        kept, dropped = drop_leaking(examples, inputs, took_anything=True)

    assert dropped == ["recency_days"]
    assert kept.numeric == ("tenure_months", "engagement_30d")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "recency_days" in warnings[0]
