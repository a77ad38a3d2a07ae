"""Customer segments: k-means on standardised value, usage, tenure and holdings features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from nextoffer.domain.vocabulary import AgeBand, ContractType

AGE_ORDER = {band.value: i for i, band in enumerate(AgeBand)}
COMMITMENT = {
    ContractType.PREPAID.value: 0.0,
    ContractType.MONTH_TO_MONTH.value: 1.0,
    ContractType.ONE_YEAR.value: 2.0,
    ContractType.TWO_YEAR.value: 3.0,
}
# Skewed amounts are log-scaled so a few heavy users do not own a whole cluster.
LOG_SCALED = ("arpu", "data_gb_month", "voice_min_month", "monetary_total")
DESCRIBED = {
    "arpu": ("high-spend", "low-spend"),
    "data_gb_month": ("data-heavy", "light-data"),
    "voice_min_month": ("voice-heavy", "light-voice"),
    "monetary_total": ("big-buyer", "rare-buyer"),
    "tenure_months": ("long-tenure", "new"),
    "age": ("older", "younger"),
    "commitment": ("long-contract", "no-contract"),
    "broadband_held": ("broadband", "mobile-only"),
    "addons_held": ("add-on-rich", "few-add-ons"),
    "devices_held": ("device-buyer", "no-device"),
    "engagement_30d": ("engaged", "disengaged"),
}


@dataclass(frozen=True)
class SegmentInfo:
    """One segment: its id, a generated name, what sets it apart, and its size."""

    segment_id: int
    name: str
    description: str
    size: int
    centroid: dict[str, float]


@dataclass(frozen=True)
class Segmentation:
    """The segment of every customer, and the segments themselves."""

    labels: pd.Series
    segments: list[SegmentInfo]


def segmentation_inputs(features: pd.DataFrame) -> pd.DataFrame:
    """The numeric view of features that clustering sees."""
    inputs = pd.DataFrame(index=features.index)
    for column in DESCRIBED:
        if column == "age":
            inputs[column] = features["age_band"].map(AGE_ORDER).fillna(0).astype(float)
        elif column == "commitment":
            inputs[column] = features["contract_type"].map(COMMITMENT).fillna(0).astype(float)
        else:
            values = features[column].astype(float).fillna(0.0)
            inputs[column] = np.log1p(values.clip(lower=0)) if column in LOG_SCALED else values
    return inputs


def fit_segments(
    features: pd.DataFrame, k: int, *, seed: int, sample_rows: int = 100_000
) -> Segmentation:
    """Cluster customers into `k` segments; ids are ordered by mean ARPU, highest first.

    The model is fitted on a seeded sample and applied to everyone, so the cost stays
    flat at 1 M customers and the same data always gives the same segments.
    """
    if len(features) == 0:
        return Segmentation(pd.Series([], dtype=np.int64), [])
    inputs = segmentation_inputs(features)
    k = min(k, len(features))
    rng = np.random.default_rng(seed)
    sample = inputs.iloc[
        np.sort(rng.choice(len(inputs), min(sample_rows, len(inputs)), replace=False))
    ]
    scaler = StandardScaler().fit(sample)
    model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(scaler.transform(sample))
    raw_labels = model.predict(scaler.transform(inputs))
    arpu = features["arpu"].astype(float).fillna(0.0).to_numpy()  # unknown ARPU counts as 0
    order = sorted(
        range(k),
        key=lambda c: (
            -float(np.mean(arpu[raw_labels == c])) if (raw_labels == c).any() else 0.0,
            c,
        ),
    )
    relabel = {old: new + 1 for new, old in enumerate(order)}
    labels = pd.Series([relabel[c] for c in raw_labels], index=features.index, dtype=np.int64)
    z_centroids = pd.DataFrame(model.cluster_centers_, columns=inputs.columns)
    segments = []
    for old in order:
        members = labels == relabel[old]
        z = z_centroids.iloc[old]
        segments.append(
            SegmentInfo(
                segment_id=relabel[old],
                name=_name(z),
                description=_describe(z),
                size=int(members.sum()),
                centroid=_means(
                    features.loc[members],
                    ("arpu", "data_gb_month", "voice_min_month", "tenure_months", "products_held"),
                ),
            )
        )
    return Segmentation(labels, segments)


def _means(members: pd.DataFrame, columns: tuple[str, ...]) -> dict[str, float]:
    """Column means, rounded; a column with no known value (e.g. no ARPU) is left out."""
    means = {c: float(members[c].astype(float).mean()) for c in columns}
    return {c: round(m, 3) for c, m in means.items() if not np.isnan(m)}


def _traits(z: pd.Series, threshold: float) -> list[str]:
    ranked = z.reindex(z.abs().sort_values(ascending=False).index)
    return [
        DESCRIBED[str(c)][0] if v > 0 else DESCRIBED[str(c)][1]
        for c, v in ranked.items()
        if abs(v) >= threshold
    ]


def _name(z: pd.Series) -> str:
    traits = _traits(z, 0.0)[:2]
    return " · ".join(traits)


def _describe(z: pd.Series) -> str:
    traits = _traits(z, 0.5)
    if not traits:
        return "close to the average customer on every measure"
    return "stands out as " + ", ".join(traits) + " (|z| ≥ 0.5 against all customers)"


@dataclass(frozen=True)
class TableSegments:
    """K-means segments of any customer table's numeric columns, to assign new rows to."""

    columns: tuple[str, ...]
    logged: tuple[str, ...]
    scaler: StandardScaler
    model: KMeans

    def assign(self, frame: pd.DataFrame) -> np.ndarray:
        """Segment ids (1..k) of `frame`'s rows; missing values count as the column mean."""
        inputs = _numeric_inputs(frame, self.columns, self.logged)
        inputs = inputs.fillna(pd.Series(self.scaler.mean_, index=list(self.columns)))
        return np.asarray(self.model.predict(self.scaler.transform(inputs)), np.int64) + 1


def fit_table_segments(
    frame: pd.DataFrame, columns: list[str], k: int, *, seed: int
) -> TableSegments:
    """Segments of an operator's table: k-means on its standardised numeric columns.

    The same recipe as `fit_segments` for tables without nextoffer's standard features
    (`nextoffer evaluate offers` on any holdings file): skewed non-negative columns are
    log-scaled, every column standardised, missing values taken as the mean.
    """
    logged = []
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce").astype(float)
        if values.min() >= 0 and values.max() > 10 * max(float(values.median()), 1e-9):
            logged.append(column)
    inputs = _numeric_inputs(frame, tuple(columns), tuple(logged))
    inputs = inputs.fillna(inputs.mean()).fillna(0.0)
    scaler = StandardScaler().fit(inputs)
    model = KMeans(n_clusters=min(k, len(frame)), n_init=4, random_state=seed)
    model.fit(scaler.transform(inputs))
    return TableSegments(tuple(columns), tuple(logged), scaler, model)


def _numeric_inputs(
    frame: pd.DataFrame, columns: tuple[str, ...], logged: tuple[str, ...]
) -> pd.DataFrame:
    inputs = pd.DataFrame(index=frame.index)
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce").astype(float)
        inputs[column] = np.log1p(values.clip(lower=0)) if column in logged else values
    return inputs
