"""ALS scores without implicit (the lean serving model) are implicit's, bit for bit."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nextoffer.models.als import ALSRecommender
from nextoffer.models.base import Interactions


def test_portable_user_factors_equal_implicits_recalculate_user() -> None:
    rng = np.random.default_rng(0)
    train = sp.random(300, 40, density=0.1, random_state=1, format="csr", dtype=np.float32)
    train.data[:] = rng.integers(1, 4, train.nnz)
    history = sp.random(120, 40, density=0.08, random_state=2, format="csr", dtype=np.float32)
    history.data[:] = rng.integers(1, 3, history.nnz)
    dense = history.toarray()
    dense[5] = 0  # an empty history: zero factors, then the popularity share
    history = sp.csr_matrix(dense)
    for factors in (4, 16):
        model = ALSRecommender(factors=factors, iterations=3, alpha=7.0).fit(Interactions(train))
        expected = model.score_block(history, None)
        model.portable = True
        got = model.score_block(history, None)
        assert np.array_equal(got, expected)
        assert np.array_equal(got[5], model.popularity)
        assert np.ptp(got) > 0
