"""Holdings-snapshot examples: the hidden product leaves no trace in what the models see."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nextoffer.models.candidates import ProductTable
from nextoffer.models.hide_one import hide_one

PRODUCTS = ProductTable.from_records(
    [
        {
            "product_id": p,
            "category": c,
            "price": 10,
            "margin": 5,
            "min_tenure_months": 0,
            "active": a,
        }
        for p, c, a in (
            ("mob", "mobile_plan", True),
            ("bb", "broadband_plan", True),
            ("tv", "other", True),
            ("old", "addon", False),
        )
    ]
)


def test_one_held_active_product_is_hidden_and_counts_are_recomputed() -> None:
    held = sp.csr_matrix(
        np.array(
            [
                [1, 1, 1, 0],  # three active products: one hidden
                [1, 0, 0, 1],  # one active + one inactive: fewer than two active, no label
                [0, 1, 1, 0],
            ],
            dtype=np.float32,
        )
    )
    features = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "products_held": [3, 2, 2],
            "mobile_held": [1, 1, 0],
            "broadband_held": [1, 0, 1],
            "plan_id": ["mob", "mob", "bb"],
        }
    )
    examples = hide_one(features, held, held, PRODUCTS, seed=3)
    labels = examples.labels.toarray()
    assert labels.sum(axis=1).tolist() == [1, 0, 1]
    assert labels[:, 3].sum() == 0  # an inactive product is never the hidden one
    visible = examples.held.toarray()
    # The hidden product is neither held nor in the history any more...
    assert not (visible * labels).any()
    assert not (examples.history.toarray() * labels).any()
    assert (visible + labels == held.toarray()).all()
    # ...nor counted, nor the base plan.
    assert examples.features["products_held"].tolist() == visible.sum(axis=1).tolist()
    assert examples.features["mobile_held"].tolist() == visible[:, 0].astype(int).tolist()
    assert examples.features["broadband_held"].tolist() == visible[:, 1].astype(int).tolist()
    for row in range(3):
        hidden = np.flatnonzero(labels[row])
        if len(hidden) and PRODUCTS.product_ids[hidden[0]] == features["plan_id"][row]:
            assert pd.isna(examples.features["plan_id"][row])
    # Seeded: the same seed hides the same products.
    again = hide_one(features, held, held, PRODUCTS, seed=3)
    assert (again.labels.toarray() == labels).all()
