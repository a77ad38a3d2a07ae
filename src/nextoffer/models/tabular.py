"""Auto-typing and encoding of arbitrary customer tables for the churn model and its baseline."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd

# The cell-level spellings live with the pandas-free encoder the serving process uses.
from nextoffer.models.cells import BOOL_WORDS as BOOL_WORDS
from nextoffer.models.cells import FALSE_WORDS as FALSE_WORDS
from nextoffer.models.cells import MISSING_LEVEL as MISSING_LEVEL
from nextoffer.models.cells import NUMBER as _NUMBER
from nextoffer.models.cells import OTHER_LEVEL as OTHER_LEVEL
from nextoffer.models.cells import TRUE_WORDS as TRUE_WORDS

SCHEMA_VERSION = 1
DEFAULT_MIN_COUNT = 10
# "id", "customer_id", "Customer ID", "account-id" (any case) or camelCase "customerID" and
# "customerId"; deliberately not a bare "...id" suffix, which would catch "Paid" or "Prepaid".
_ID_NAME = re.compile(r"(?i:(?:^|[_\s\-.])id)$|[a-z0-9](?:ID|Id)$")


@dataclass(frozen=True)
class CategoricalColumn:
    """A categorical column and its fixed levels (always including "other")."""

    name: str
    levels: tuple[str, ...]


@dataclass(frozen=True)
class DroppedColumn:
    """A column left out of the model, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class TableSchema:
    """How each column of a table is typed for modelling; JSON round-trips via to/from_dict.

    Feature order is numeric, then boolean, then categorical columns, each in table order.
    """

    label: str
    id_col: str | None
    numeric: tuple[str, ...]
    boolean: tuple[str, ...]
    categorical: tuple[CategoricalColumn, ...]
    dropped: tuple[DroppedColumn, ...]
    min_count: int = DEFAULT_MIN_COUNT

    @property
    def features(self) -> tuple[str, ...]:
        """Model input columns in encoding order."""
        return self.numeric + self.boolean + tuple(c.name for c in self.categorical)

    @property
    def levels(self) -> dict[str, tuple[str, ...]]:
        """Category levels per categorical column."""
        return {c.name: c.levels for c in self.categorical}

    def summary(self) -> dict[str, Any]:
        """Column types and dropped columns, compact enough for a report."""
        return {
            "label": self.label,
            "id_col": self.id_col,
            "numeric": list(self.numeric),
            "boolean": list(self.boolean),
            "categorical": {c.name: len(c.levels) for c in self.categorical},
            "dropped": {d.name: d.reason for d in self.dropped},
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "version": SCHEMA_VERSION,
            "label": self.label,
            "id_col": self.id_col,
            "numeric": list(self.numeric),
            "boolean": list(self.boolean),
            "categorical": [{"name": c.name, "levels": list(c.levels)} for c in self.categorical],
            "dropped": [{"name": d.name, "reason": d.reason} for d in self.dropped],
            "min_count": self.min_count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of `to_dict`."""
        if data.get("version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported table schema version {data.get('version')!r}")
        return cls(
            label=str(data["label"]),
            id_col=None if data["id_col"] is None else str(data["id_col"]),
            numeric=tuple(str(c) for c in data["numeric"]),
            boolean=tuple(str(c) for c in data["boolean"]),
            categorical=tuple(
                CategoricalColumn(str(c["name"]), tuple(str(v) for v in c["levels"]))
                for c in data["categorical"]
            ),
            dropped=tuple(DroppedColumn(str(d["name"]), str(d["reason"])) for d in data["dropped"]),
            min_count=int(data["min_count"]),
        )


def _as_text(series: pd.Series) -> pd.Series:
    """Values as stripped strings, with NaN/None/"" all mapped to NaN."""
    text = series.astype("string").str.strip()
    return text.mask(text == "")


def _to_float(text: pd.Series) -> pd.Series:
    """Floats from stripped text; cells that are not plain decimal numbers → NaN."""
    try:
        # Fast path for clean columns: one cast (Arrow's, for Arrow-backed strings).
        return _nullable_to_float(text)
    except (TypeError, ValueError):
        pass
    # A vectorised regex instead of to_numeric(errors="coerce"), which parses cell by cell
    # and takes seconds per text column on a few hundred thousand rows.
    numeric = text.str.fullmatch(_NUMBER).fillna(False).astype(bool)
    values = pd.Series(np.nan, index=text.index, dtype=float)
    values[numeric] = _nullable_to_float(text[numeric])
    return values


def _nullable_to_float(text: pd.Series) -> pd.Series:
    """Cast text to float through pandas' nullable Float64; ValueError on a non-number."""
    values = text.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    return pd.Series(values, index=text.index, dtype=float)


def _classify(
    name: str, series: pd.Series, guess_ids: bool, min_count: int
) -> str | CategoricalColumn | DroppedColumn:
    """Type of one column: "numeric", "boolean", a CategoricalColumn, or why it is dropped."""
    constant = DroppedColumn(name, "constant")
    id_like = DroppedColumn(name, "looks like an id: every value is unique")
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        # Already numbers: no text round trip, which is slow on large tables.
        values = series.astype(float)
        if values.nunique(dropna=False) <= 1:
            return constant
        if guess_ids and _ID_NAME.search(name.strip()) and _all_unique(values):
            return id_like
        return "boolean" if bool(values.dropna().isin([0.0, 1.0]).all()) else "numeric"
    text = _as_text(series)
    if text.nunique(dropna=False) <= 1:
        return constant
    numbers = _to_float(text)
    is_number = not bool((numbers.isna() & text.notna()).any())
    if guess_ids and _all_unique(text) and (_ID_NAME.search(name.strip()) or not is_number):
        return id_like
    if is_number:
        return "boolean" if bool(numbers.dropna().isin([0.0, 1.0]).all()) else "numeric"
    if bool(text.dropna().str.lower().isin(BOOL_WORDS).all()):
        # "Yes" and "yes " differ as text but not as booleans.
        return constant if _encode_boolean(series).nunique(dropna=False) <= 1 else "boolean"
    counts = text.fillna(MISSING_LEVEL).value_counts()
    kept = sorted(
        str(level)
        for level, count in counts.items()
        if count >= min_count or level == MISSING_LEVEL
    )
    if not kept:  # everything would fold into "other": a constant column
        return DroppedColumn(name, f"every level is rarer than {min_count} rows")
    # "other" is always a level so that values unseen in training have somewhere to go.
    return CategoricalColumn(name, tuple(kept) if OTHER_LEVEL in kept else (*kept, OTHER_LEVEL))


def _all_unique(values: pd.Series) -> bool:
    """At least two rows, none blank, no value repeated."""
    return len(values) >= 2 and bool(values.notna().all()) and bool(values.is_unique)


def infer_columns(
    df: pd.DataFrame,
    label: str,
    id_col: str | None,
    min_count: int = DEFAULT_MIN_COUNT,
) -> TableSchema:
    """Type every column except `label` and `id_col` as numeric, boolean or categorical.

    Boolean-like columns (yes/no, y/n, true/false, t/f, 1/0 in any case, plus blanks) become
    0/1 with NaN for blanks; columns whose non-blank cells all parse as numbers become float;
    the rest are categorical with blanks as a "missing" level and levels seen fewer than
    `min_count` times folded into "other". Constant columns are dropped, and so are id-like
    columns when `id_col` is None. Types depend only on the features, never on the label.
    """
    if label not in df.columns:
        raise ValueError(f"label column {label!r} is not in the table")
    if id_col is not None and id_col not in df.columns:
        raise ValueError(f"id column {id_col!r} is not in the table")
    numeric: list[str] = []
    boolean: list[str] = []
    categorical: list[CategoricalColumn] = []
    dropped: list[DroppedColumn] = []
    if id_col is not None:
        dropped.append(DroppedColumn(id_col, "id column named by the caller"))
    for raw_name in df.columns:
        name = str(raw_name)
        if name in (label, id_col):
            continue
        kind = _classify(name, df[raw_name], id_col is None, min_count)
        if isinstance(kind, DroppedColumn):
            dropped.append(kind)
        elif isinstance(kind, CategoricalColumn):
            categorical.append(kind)
        elif kind == "boolean":
            boolean.append(name)
        else:
            numeric.append(name)
    return TableSchema(
        label=label,
        id_col=id_col,
        numeric=tuple(numeric),
        boolean=tuple(boolean),
        categorical=tuple(categorical),
        dropped=tuple(dropped),
        min_count=min_count,
    )


def parse_label(series: pd.Series) -> np.ndarray:
    """0/1 int array from yes/no, true/false, 1/0 (any case); ValueError naming other values."""
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.int64)
    if pd.api.types.is_numeric_dtype(series):
        as_float = series.astype(float)
        bad_mask = ~as_float.isin([0.0, 1.0])
        if not bool(bad_mask.any()):
            return as_float.to_numpy().astype(np.int64)
        bad_values = series[bad_mask]
    else:
        lowered = _as_text(series).str.lower()
        bad_mask = ~lowered.isin(BOOL_WORDS)
        if not bool(bad_mask.any()):
            return lowered.isin(TRUE_WORDS).to_numpy().astype(np.int64)
        bad_values = series[bad_mask]
    shown = sorted({"<blank>" if _is_blank(v) else repr(v) for v in bad_values})
    more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
    raise ValueError(
        f"label column {series.name!r} must be yes/no, true/false or 1/0; "
        f"{int(bad_mask.sum())} rows have other values: {', '.join(shown[:10])}{more}"
    )


def _is_blank(value: object) -> bool:
    """True for None, NaN and whitespace-only strings."""
    if isinstance(value, str):
        return value.strip() == ""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _require_columns(df: pd.DataFrame, columns: Iterable[str]) -> None:
    """ValueError naming the feature columns that `df` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"table lacks columns the schema needs: {', '.join(missing)}")


def _encode_boolean(series: pd.Series) -> pd.Series:
    """1.0/0.0 for boolean-like cells; anything else (blank or unexpected) → NaN."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        values = series.astype(float)
        return values.where(values.isin([0.0, 1.0]))
    lowered = _as_text(series).str.lower()
    encoded = np.select(
        [lowered.isin(TRUE_WORDS).to_numpy(), lowered.isin(FALSE_WORDS).to_numpy()],
        [1.0, 0.0],
        default=np.nan,
    )
    return pd.Series(encoded, index=series.index, dtype=float)


def _encode_numeric(series: pd.Series) -> pd.Series:
    """Float values; blanks and cells that are not numbers → NaN (scoring must not crash)."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    return _to_float(_as_text(series))


def _encode_categorical(series: pd.Series, levels: tuple[str, ...]) -> pd.Categorical[Any]:
    """Fixed-level categorical: blank → "missing" when it is a level, unseen → "other"."""
    text = _as_text(series).fillna(MISSING_LEVEL)
    categories = pd.Index(list(levels), dtype=object)
    codes = categories.get_indexer(pd.Index(text.to_numpy(dtype=object)))
    # A schema written by hand may lack "other": unseen values then become NaN (code -1).
    codes[codes < 0] = levels.index(OTHER_LEVEL) if OTHER_LEVEL in levels else -1
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories))


def encode_for_trees(df: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Model input for LightGBM: floats (NaN = missing) and fixed-level pandas Categoricals."""
    _require_columns(df, schema.features)
    columns: dict[str, Any] = {}
    for name in schema.numeric:
        columns[name] = _encode_numeric(df[name]).to_numpy()
    for name in schema.boolean:
        columns[name] = _encode_boolean(df[name]).to_numpy()
    for column in schema.categorical:
        columns[column.name] = _encode_categorical(df[column.name], column.levels)
    return pd.DataFrame(columns, index=df.index, columns=list(schema.features))


@dataclass(frozen=True)
class LinearEncoding:
    """Statistics fitted on training rows for the linear encoding; JSON via to/from_dict."""

    medians: dict[str, float]
    means: dict[str, float]
    scales: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"medians": self.medians, "means": self.means, "scales": self.scales}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of `to_dict`."""
        return cls(
            medians={str(k): float(v) for k, v in data["medians"].items()},
            means={str(k): float(v) for k, v in data["means"].items()},
            scales={str(k): float(v) for k, v in data["scales"].items()},
        )


def fit_linear_encoding(df: pd.DataFrame, schema: TableSchema) -> LinearEncoding:
    """Median, mean and scale of each numeric and boolean column, from `df`."""
    trees = encode_for_trees(df, schema)
    medians: dict[str, float] = {}
    means: dict[str, float] = {}
    scales: dict[str, float] = {}
    for name in schema.numeric + schema.boolean:
        values = trees[name]
        median = float(values.median()) if values.notna().any() else 0.0
        filled = values.fillna(median)
        std = float(filled.std(ddof=0))
        medians[name] = median
        means[name] = float(filled.mean())
        # A column constant on these rows would divide by zero; leave it centred at 0.
        scales[name] = std if std > 0 else 1.0
    return LinearEncoding(medians=medians, means=means, scales=scales)


def encode_for_linear(
    df: pd.DataFrame, schema: TableSchema, encoding: LinearEncoding | None = None
) -> tuple[pd.DataFrame, LinearEncoding]:
    """Dense float matrix for linear models, and the statistics used (fitted on `df` if None).

    Numeric and boolean columns are median-imputed and standardised; categoricals are one-hot
    over the schema's levels (columns named "column=level").
    """
    if encoding is None:
        encoding = fit_linear_encoding(df, schema)
    trees = encode_for_trees(df, schema)
    columns: dict[str, np.ndarray] = {}
    for name in schema.numeric + schema.boolean:
        filled = trees[name].fillna(encoding.medians[name]).to_numpy(dtype=float)
        columns[name] = (filled - encoding.means[name]) / encoding.scales[name]
    for column in schema.categorical:
        codes = trees[column.name].cat.codes.to_numpy()
        for index, level in enumerate(column.levels):
            columns[f"{column.name}={level}"] = (codes == index).astype(float)
    return pd.DataFrame(columns, index=df.index), encoding
