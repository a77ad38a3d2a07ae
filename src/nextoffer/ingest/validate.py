"""Vectorised row validation: text columns in, typed good rows and reasons for bad rows out."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nextoffer.domain.attributes import AttributeSpec
from nextoffer.domain.limits import (
    BAD_ENCODING,
    CONTROL_PATTERN,
    EARLIEST_DATE,
    FLOAT_LIMIT,
    INT_LIMIT,
    MONEY_LIMIT,
    OUT_OF_RANGE,
)
from nextoffer.ingest.attributes import FALSE_TEXT, TRUE_TEXT, json_objects, parse_attribute
from nextoffer.ingest.entities import Column, Entity, Kind
from nextoffer.ingest.text_kernels import (
    arrow_text,
    key_hashes,
    mask,
    plain_numbers,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]*$"
SINGULAR = {
    "products": "product",
    "customers": "customer",
    "subscriptions": "subscription",
    "transactions": "transaction",
    "events": "event",
}


class KeySet:
    """The ids an entity already has (in the database or loaded earlier in this run)."""

    def __init__(self, ids: pd.Index | pa.Array | None = None) -> None:
        if isinstance(ids, pa.Array):
            self._ids: pa.Array = ids.cast(pa.string())
        else:
            self._ids = pa.array([] if ids is None else list(ids), type=pa.string())
        self._pending: list[pa.Array] = []

    def add(self, ids: pd.Series) -> None:
        """Remember newly loaded ids."""
        self._pending.append(pa.array(ids, type=pa.string(), from_pandas=True))

    def contains(self, values: pd.Series) -> np.ndarray:
        """Boolean mask: which values are known ids (an Arrow hash lookup, no Python loop)."""
        return self._known(pa.array(values, type=pa.string()))

    def contains_all(self, values: pd.Series, sep: str = "|") -> np.ndarray:
        """Boolean mask: rows whose every `sep`-separated id is known (id lists)."""
        lists = pc.split_pattern(pa.array(values, type=pa.string()).fill_null(""), sep)
        known = self._known(pc.list_flatten(lists))
        missing = np.zeros(len(values), dtype=bool)
        rows = np.asarray(pc.list_parent_indices(lists).to_numpy(zero_copy_only=False))
        np.logical_or.at(missing, rows, ~known)
        return ~missing

    def _known(self, values: pa.Array) -> np.ndarray:
        if self._pending:
            self._ids = pa.concat_arrays([self._ids, *self._pending])
            self._pending = []
        found = pc.is_in(values, value_set=self._ids)
        return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)

    def __len__(self) -> int:
        return len(self._ids) + sum(len(p) for p in self._pending)


class DuplicateTracker:
    """Finds natural keys seen earlier in the same file, in bounded memory (64-bit hashes).

    Seen hashes are kept as a few sorted runs that merge when two reach similar sizes
    (like an LSM tree), so each block costs a binary search per row plus amortised merges
    instead of re-sorting everything seen so far.
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def _seen(self, hashes: np.ndarray) -> np.ndarray:
        # Searching sorted hashes walks each run in order (cache-friendly), several times
        # faster than searching them in file order.
        order = np.argsort(hashes)
        ordered = hashes[order]
        seen_ordered = np.zeros(len(hashes), dtype=bool)
        for run in self._runs:
            at = np.searchsorted(run, ordered).clip(max=len(run) - 1)
            seen_ordered |= run[at] == ordered
        seen = np.empty(len(hashes), dtype=bool)
        seen[order] = seen_ordered
        return seen

    def _remember(self, hashes: np.ndarray) -> None:
        # Runs only need to be sorted for searchsorted; repeated values do no harm.
        self._runs.append(np.sort(hashes))
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            newest = self._runs.pop()
            # Two sorted runs: a stable sort (timsort) merges them in linear time.
            self._runs[-1] = np.sort(np.concatenate([self._runs[-1], newest]), kind="stable")

    def mark(self, keys: pd.DataFrame, candidates: np.ndarray) -> np.ndarray:
        """Among `candidates` rows, the ones whose key appeared before; remember the rest."""
        duplicate = np.zeros(len(keys), dtype=bool)
        idx = np.flatnonzero(candidates)
        if len(idx) == 0:
            return duplicate
        hashes = key_hashes([_key_text(keys[name].iloc[idx]) for name in keys.columns])
        earlier = pd.Series(hashes).duplicated(keep="first").to_numpy() | self._seen(hashes)
        duplicate[idx] = earlier
        self._remember(hashes)
        return duplicate


def _key_text(values: pd.Series) -> pa.Array:
    """Key values (present and valid, so text) as one Arrow string array."""
    array = pa.array(values, type=pa.large_string(), from_pandas=True)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


@dataclass
class ValidationContext:
    """What validation needs beyond the rows: the clock, known ids, keys seen in this file."""

    now: datetime
    known: dict[str, KeySet] = field(default_factory=dict)
    duplicates: DuplicateTracker = field(default_factory=DuplicateTracker)


@dataclass(frozen=True)
class ValidatedChunk:
    """Typed good rows, and the positions and reasons of the bad ones."""

    good: pd.DataFrame
    bad_positions: list[int]
    bad_reasons: list[str]


class _Reasons:
    """First reason wins: a row is reported for its first problem only."""

    def __init__(self, n: int) -> None:
        self.values = np.full(n, None, dtype=object)
        self.flagged = np.zeros(n, dtype=bool)  # kept beside the reasons: no scan per check

    def flag(self, mask: np.ndarray, message: str | _Message) -> None:
        todo = np.asarray(mask, dtype=bool) & ~self.flagged
        if not todo.any():
            return
        rows = np.flatnonzero(todo)
        self.values[rows] = message if isinstance(message, str) else message.render(rows)
        self.flagged[rows] = True

    @property
    def ok(self) -> np.ndarray:
        return ~self.flagged


def _present(text: pd.Series, arrow: pa.Array | None) -> np.ndarray:
    if arrow is None:
        return np.asarray(text != "")
    return mask(pc.not_equal(arrow, ""))


def _longer_than(text: pd.Series, arrow: pa.Array | None, limit: int) -> np.ndarray:
    if arrow is None:
        return np.asarray(text.str.len() > limit)
    return mask(pc.greater(pc.utf8_length(arrow), limit))


def _matches(text: pd.Series, arrow: pa.Array | None, pattern: str) -> np.ndarray:
    """Whether each value matches `pattern` from its start (as `str.match`: RE2 either way)."""
    if arrow is None:
        return np.asarray(text.str.match(pattern), dtype=bool)
    anchored = pattern if pattern.startswith("^") else "^" + pattern
    return mask(pc.match_substring_regex(arrow, anchored))


def _one_of(text: pd.Series, arrow: pa.Array | None, choices: Sequence[str]) -> np.ndarray:
    if arrow is None:
        return np.asarray(text.isin(choices))
    return mask(pc.is_in(arrow, value_set=pa.array(list(choices), type=arrow.type)))


@dataclass(frozen=True)
class _Message:
    """`prefix 'value' suffix`, rendered only for the rows that are flagged (rare, so cheap)."""

    prefix: str
    text: pd.Series
    suffix: str

    def render(self, rows: np.ndarray) -> list[str]:
        values = self.text.to_numpy(dtype=object)[rows]
        return [f"{self.prefix}'{_shorten(str(v))}'{self.suffix}" for v in values]


def _shorten(value: str) -> str:
    return value if len(value) <= 40 else value[:40] + "…"


def _parse_number(
    col: Column,
    text: pd.Series,
    present: np.ndarray,
    reasons: _Reasons,
    arrow: pa.Array | None = None,
) -> pd.Series:
    plain = None if arrow is None else plain_numbers(arrow, present)
    if plain is not None:
        values = plain  # no NaN, infinity or unparseable text among them
    else:
        number = pd.to_numeric(text.where(present, None), errors="coerce")
        values = number.to_numpy(dtype=float, na_value=np.nan)
        # "NaN" parses to NaN like unparseable text does, so it is told apart before bad_type.
        lowered = text.str.lower()
        nan_text = present & lowered.isin(["nan", "-nan", "+nan"]).to_numpy()
        reasons.flag(nan_text, f"not_finite: {col.name} is NaN")
    reasons.flag(
        present & np.isnan(values), _Message(f"bad_type: {col.name} ", text, " is not a number")
    )
    reasons.flag(present & np.isinf(values), f"not_finite: {col.name} is infinite")
    if col.kind is Kind.INT:
        fractional = present & ~np.isnan(values) & (np.floor(values) != values)
        reasons.flag(
            fractional, _Message(f"bad_integer: {col.name} ", text, " is not a whole number")
        )
    if col.min_value is not None:
        below = present & (values < col.min_value)
        code = "negative_amount" if col.kind is Kind.MONEY else "out_of_range"
        reasons.flag(below, _Message(f"{code}: {col.name} ", text, f" is below {col.min_value:g}"))
    if col.kind is Kind.MONEY:
        # Half a cent rounds away from zero, as written in decimal: np.round works on the
        # binary value and half-to-even, so 1.005 would become 1.0 but 1.015 become 1.02.
        with np.errstate(over="ignore", invalid="ignore"):
            cents = np.floor(np.round(np.abs(values) * 100, 6) + 0.5)
        values = np.copysign(cents, values) / 100
    # The range is checked after rounding (1e308 * 100 is infinite), against what the
    # column holds on both databases; out-of-range values never reach the typed column.
    limit = {Kind.INT: INT_LIMIT, Kind.MONEY: float(MONEY_LIMIT)}.get(col.kind, FLOAT_LIMIT)
    with np.errstate(invalid="ignore"):
        outside = present & ~np.isnan(values) & ~(np.abs(values) <= limit)
    reasons.flag(
        outside, _Message(f"{OUT_OF_RANGE}: {col.name} ", text, f" is beyond ±{limit:.15g}")
    )
    values = np.where(outside, np.nan, values)
    if col.kind is Kind.INT:
        return pd.Series(values, index=text.index).round().astype("Int64")
    return pd.Series(values, index=text.index)


def _parse_time(
    col: Column, text: pd.Series, present: np.ndarray, reasons: _Reasons, ctx: ValidationContext
) -> pd.Series:
    if col.kind is Kind.DATE:
        parsed = pd.to_datetime(text.where(present, None), format="%Y-%m-%d", errors="coerce")
        parsed = parsed.dt.tz_localize("UTC")
        code, what = "bad_date", "a YYYY-MM-DD date"
    else:
        parsed = pd.to_datetime(
            text.where(present, None), format="ISO8601", utc=True, errors="coerce"
        )
        code, what = "bad_timestamp", "an ISO-8601 timestamp"
    missing = np.asarray(parsed.isna())
    reasons.flag(present & missing, _Message(f"{code}: {col.name} ", text, f" is not {what}"))
    # Year 1 or 1066 is a typo, not history. Later than LATEST_DATE is in the future, refused
    # as such; where the future is allowed (end dates), 2999-12-31 is how some systems
    # write "open-ended", so there is no upper bound.
    early = pd.Timestamp(EARLIEST_DATE, tz="UTC")
    before = present & ~missing & np.asarray(parsed < early)
    reasons.flag(
        before, _Message(f"{OUT_OF_RANGE}: {col.name} ", text, f" is before {early:%Y-%m-%d}")
    )
    if not col.future_ok:
        future = present & ~missing & np.asarray(parsed > pd.Timestamp(ctx.now))
        kind = "date" if col.kind is Kind.DATE else "timestamp"
        reasons.flag(future, _Message(f"future_{kind}: {col.name} ", text, " is in the future"))
    return parsed


def _stored_text(text: pd.Series, arrow: pa.Array | None, present: np.ndarray) -> pd.Series:
    """A text column as stored: empty is missing; Arrow-backed text stays so."""
    if arrow is None:
        return text.where(present, None).astype(object)
    return text if present.all() else text.where(present)


def _check_column(
    col: Column, text: pd.Series, reasons: _Reasons, ctx: ValidationContext
) -> pd.Series:
    """Check one column and return it typed (None/NaN/NaT where empty).

    Text read from a file is Arrow-backed and checked with Arrow kernels; text columns of
    the good rows stay Arrow-backed (missing: NA), so nothing becomes a Python string.
    """
    arrow = arrow_text(text)
    present = _present(text, arrow)
    if col.required:
        code = "missing_id" if col.kind is Kind.ID else "missing_value"
        reasons.flag(~present, f"{code}: {col.name} is empty")
    if col.default is not None and not present.all():
        text = text.where(present, col.default)
        arrow = arrow_text(text)
        present = _present(text, arrow)
    if col.kind in (Kind.ID, Kind.TEXT):
        too_long = present & _longer_than(text, arrow, col.max_length)
        reasons.flag(too_long, f"too_long: {col.name} is longer than {col.max_length} characters")
        if col.pattern is not None:
            bad = present & ~_matches(text, arrow, col.pattern)
            reasons.flag(
                bad, _Message(f"bad_rule: {col.name} ", text, f" is not {col.pattern_hint}")
            )
        if col.kind is Kind.ID:
            bad = present & ~_matches(text, arrow, ID_PATTERN)
            reasons.flag(bad, _Message(f"bad_id: {col.name} ", text, " has spaces or symbols"))
            if col.references is not None and col.references in ctx.known:
                unknown = present & ~ctx.known[col.references].contains(text)
                noun = SINGULAR.get(col.references, col.references)
                reasons.flag(unknown, _Message(f"unknown_{noun}: {col.name} ", text, " not found"))
        if col.default is not None:  # a default ("" included) is stored as it is
            return text if arrow is not None else text.astype(object)
        return _stored_text(text, arrow, present)
    if col.kind in (Kind.INT, Kind.FLOAT, Kind.MONEY):
        return _parse_number(col, text, present, reasons, arrow)
    if col.kind in (Kind.DATE, Kind.TIMESTAMP):
        return _parse_time(col, text, present, reasons, ctx)
    if col.kind is Kind.BOOL:
        lowered = text.str.strip().str.lower()
        truthy = np.asarray(lowered.isin(TRUE_TEXT))
        falsy = np.asarray(lowered.isin(FALSE_TEXT))
        reasons.flag(
            present & ~truthy & ~falsy,
            _Message(f"bad_boolean: {col.name} ", text, " is not true/false"),
        )
        flags = pd.Series(pd.NA, index=text.index, dtype="boolean")
        flags[truthy] = True
        flags[falsy] = False
        return flags
    if col.kind is Kind.ENUM:
        bad = present & ~_one_of(text, arrow, col.choices)
        reasons.flag(
            bad,
            _Message(f"bad_enum: {col.name} ", text, f" is not one of {'|'.join(col.choices)}"),
        )
        return _stored_text(text, arrow, present)
    if col.kind is Kind.ID_LIST:
        too_long = present & np.asarray(text.str.len() > col.max_length)
        reasons.flag(too_long, f"too_long: {col.name} is longer than {col.max_length} characters")
        ids = re.compile(ID_PATTERN)
        bad = np.array(
            [bool(t) and not all(ids.match(part) for part in t.split("|")) for t in text],
            dtype=bool,
        )
        reasons.flag(
            bad, _Message(f"bad_id: {col.name} ", text, " has an id with spaces or symbols")
        )
        if col.references is not None and col.references in ctx.known:
            unknown = present & ~ctx.known[col.references].contains_all(text)
            noun = SINGULAR.get(col.references, col.references)
            reasons.flag(
                unknown, _Message(f"unknown_{noun}: {col.name} ", text, " has an id not found")
            )
        return text.where(present, None).astype(object)
    if col.kind is Kind.ENUM_LIST:
        allowed = set(col.choices)
        bad = np.array([bool(t) and not set(t.split("|")) <= allowed for t in text], dtype=bool)
        reasons.flag(
            bad,
            _Message(
                f"bad_enum: {col.name} ", text, f" has values outside {'|'.join(col.choices)}"
            ),
        )
        return text.astype(object)
    raise AssertionError(f"unhandled kind {col.kind}")


def _flag_controls(frame: pd.DataFrame, reasons: _Reasons) -> None:
    """Flag NUL, control characters and line breaks in any column, before anything else.

    PostgreSQL stores no NUL, and a later reason quoting the value must not carry one.
    """
    for name in frame.columns:
        text = frame[name]
        if text.dtype == object or pd.api.types.is_string_dtype(text):
            bad = np.asarray(text.astype(str).str.contains(CONTROL_PATTERN, regex=True), dtype=bool)
            message = f"{BAD_ENCODING}: {name} holds NUL, a control character or a line break"
            reasons.flag(bad, message)


RowCheck = Callable[[dict[str, pd.Series]], tuple[np.ndarray, str]]


def _margin_within_price(typed: dict[str, pd.Series]) -> tuple[np.ndarray, str]:
    return np.asarray(
        typed["margin"] > typed["price"]
    ), "margin_exceeds_price: margin is above price"


def _end_after_start(typed: dict[str, pd.Series]) -> tuple[np.ndarray, str]:
    end, start = typed["end_date"], typed["start_date"]
    return np.asarray(
        end.notna() & (end < start)
    ), "end_before_start: end_date is before start_date"


def _churn_date_consistent(typed: dict[str, pd.Series]) -> tuple[np.ndarray, str]:
    churned = typed["churned"].fillna(False).to_numpy(dtype=bool)
    has_date = typed["churn_date"].notna().to_numpy()
    before = np.asarray((typed["churn_date"] < typed["as_of"]).fillna(False), dtype=bool)
    bad = (has_date & ~churned) | before
    return bad, "inconsistent_churn: churn_date needs churned=true and must not precede as_of"


ROW_CHECKS: dict[str, tuple[RowCheck, ...]] = {
    "products": (_margin_within_price,),
    "subscriptions": (_end_after_start,),
    "churn_labels": (_churn_date_consistent,),
}


def validate_chunk(
    entity: Entity,
    frame: pd.DataFrame,
    ctx: ValidationContext,
    attributes: Sequence[AttributeSpec] = (),
    *,
    check_controls: bool = True,
) -> ValidatedChunk:
    """Validate text rows of `entity`; the first problem of each bad row is its reason.

    `attributes` (customers): custom attribute columns of `frame`, typed by their kind and
    stored together as one JSON object per row in the column `attributes`.
    `check_controls`: False when the reader knows the rows hold no control character.
    """
    frame = frame.reset_index(drop=True)
    reasons = _Reasons(len(frame))
    if check_controls:
        _flag_controls(frame, reasons)
    typed = {col.name: _check_column(col, frame[col.name], reasons, ctx) for col in entity.columns}
    if attributes:
        parsed = [parse_attribute(spec, frame[spec.name]) for spec in attributes]
        for item in parsed:
            text = frame[item.spec.name]
            if item.outside is not None:
                outside = _Message(f"{OUT_OF_RANGE}: attribute {item.spec.name} ", text, "")
                reasons.flag(item.outside, replace(outside, suffix=" is out of range"))
            prefix = f"{item.code}: attribute {item.spec.name} "
            reasons.flag(item.bad, _Message(prefix, text, f" {item.problem}"))
        typed["attributes"] = json_objects(parsed, len(frame))
    for check in ROW_CHECKS.get(entity.name, ()):
        mask, message = check(typed)
        reasons.flag(mask, message)
    key_frame = pd.DataFrame({k: frame[k] for k in entity.key})
    duplicate = ctx.duplicates.mark(key_frame, reasons.ok)
    if duplicate.any():
        key_text = key_frame.astype(str).agg("/".join, axis=1)
        reasons.flag(
            duplicate,
            _Message(
                f"duplicate: {'/'.join(entity.key)} ", key_text, " appears earlier in this file"
            ),
        )
    good_mask = reasons.ok
    good = pd.DataFrame(typed).loc[good_mask].reset_index(drop=True)
    bad_positions = np.flatnonzero(~good_mask).tolist()
    return ValidatedChunk(good, bad_positions, [str(reasons.values[p]) for p in bad_positions])
