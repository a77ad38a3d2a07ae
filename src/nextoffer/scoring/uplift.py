"""Uplift for arbitration: whether offers are ranked by it, and each customer's predicted uplift.

With NEXTOFFER_OFFER_RANKING=uplift and an uplift champion, retention offers are ranked by
the champion's predicted uplift × value and go only to customers it predicts an offer
keeps (`domain.offers.arbitrate`); otherwise nothing changes. Live answers and precompute
both ask `ranking_model` here, so they always agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from nextoffer.config import Settings

if TYPE_CHECKING:
    import pandas as pd

    from nextoffer.models.uplift import UpliftModel

M = TypeVar("M")


def ranks_by_uplift(settings: Settings) -> bool:
    """Whether retention offers are ranked by uplift where an uplift champion exists."""
    return settings.offer_ranking == "uplift"


def ranking_model(settings: Settings, champion: M | None) -> M | None:
    """The uplift champion when offers are ranked by uplift (the setting), else None."""
    return champion if ranks_by_uplift(settings) else None


def predict_uplift(model: UpliftModel, features: pd.DataFrame) -> np.ndarray:
    """Each feature-frame row's predicted uplift, from the columns the model was trained on.

    The uplift model reads the churn model's inputs (`scoring.churn.churn_frame`); custom
    attributes it was trained on are the frame's `attr_<name>` columns, NaN when absent.
    """
    from nextoffer.features.builder import MODEL_FEATURES
    from nextoffer.scoring.churn import churn_frame

    extra = [c for c in model.schema.features if c not in MODEL_FEATURES]
    frame = churn_frame(features, extra).loc[:, list(model.schema.features)]
    return np.asarray(model.predict_uplift(frame), dtype=np.float64)
