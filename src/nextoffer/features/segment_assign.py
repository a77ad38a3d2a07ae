"""Put customers who are not in the database into the current segments, without refitting.

k-means gives each customer the segment whose centroid is nearest in its standardised
inputs, and a centroid is the mean of its members; so the nearest segment mean of the
current customers' inputs, standardised the same way, is the segment the features job
would give (exactly when it fitted on every customer, i.e. up to `segment_sample_rows`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from nextoffer.features.segments import segmentation_inputs


def assign_segments(reference: pd.DataFrame, frame: pd.DataFrame) -> pd.Series:
    """Segment ids for the rows of `frame`, from `reference` (features with `segment_id`).

    Returns an integer series aligned with `frame`, or all NaN when the reference has no
    segments yet (the features job has not run).
    """
    known = reference[reference["segment_id"].notna()]
    if known.empty or frame.empty:
        return pd.Series(np.nan, index=frame.index, dtype=np.float64)
    inputs = segmentation_inputs(known)
    scaler = StandardScaler().fit(inputs)
    z = pd.DataFrame(scaler.transform(inputs), index=known.index)
    labels = known["segment_id"].astype(np.int64)
    means = z.groupby(labels.to_numpy()).mean()
    new = scaler.transform(segmentation_inputs(frame))
    distance = ((new[:, None, :] - means.to_numpy()[None, :, :]) ** 2).sum(axis=2)
    nearest = means.index.to_numpy()[np.argmin(distance, axis=1)]
    return pd.Series(nearest.astype(np.int64), index=frame.index)
