"""Attribute reads: the registered attributes, and customers' values as typed columns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from nextoffer.domain.attributes import (
    FEATURE_ROLES,
    AttributeKind,
    AttributeRole,
    AttributeSpec,
)
from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.schema import Customer, CustomerAttributeSchema

if TYPE_CHECKING:
    import pandas as pd

IdRange = tuple[str, str]
_EPOCH = date(1970, 1, 1)


def attribute_schema(bind: Bind) -> list[AttributeSpec]:
    """Every registered attribute, by name."""
    with connect(bind) as conn:
        return [
            AttributeSpec(str(name), AttributeKind(kind), AttributeRole(role))
            for name, kind, role in conn.execute(_SCHEMA)
        ]


# Built once: every live answer reads the schema, and building a statement costs more.
_SCHEMA = select(
    CustomerAttributeSchema.name, CustomerAttributeSchema.kind, CustomerAttributeSchema.role
).order_by(CustomerAttributeSchema.name)


def customer_attributes(bind: Bind, customer_id: str) -> dict[str, Any]:
    """One customer's stored attributes ({} for none or an unknown id)."""
    query = select(Customer.attributes).where(Customer.customer_id == customer_id)
    with connect(bind) as conn:
        found = conn.execute(query).scalar()
    return dict(found) if isinstance(found, dict) else {}


def attribute_frame(
    bind: Bind,
    customer_ids: Sequence[str] | None = None,
    *,
    between: IdRange | None = None,
    schema: Sequence[AttributeSpec] | None = None,
) -> pd.DataFrame:
    """customer_id and one `attr_<name>` column per feature or display attribute, by id.

    Types: number → float64; boolean → float64 1.0/0.0; date → float64 days since
    1970-01-01; category → object (str). Missing values are NaN (None for categories), and
    so are stored values that do not fit the attribute's kind (its kind was changed).
    Labels and ignored attributes never appear. `schema` saves reading it again.
    """
    import pandas as pd

    known = attribute_schema(bind) if schema is None else schema
    specs = [s for s in known if s.role in FEATURE_ROLES]
    columns = ["customer_id", *(s.column for s in specs)]
    if not specs:
        return pd.DataFrame({c: [] for c in columns})
    query = select(Customer.customer_id, Customer.attributes).order_by(Customer.customer_id)
    if customer_ids is not None:
        query = query.where(Customer.customer_id.in_(list(customer_ids)))
    if between is not None:
        query = query.where(Customer.customer_id.between(*between))
    with connect(bind) as conn:
        rows = conn.execute(query).all()
    ids = [str(r[0]) for r in rows]
    stored = [r[1] if isinstance(r[1], dict) else {} for r in rows]
    out = pd.DataFrame({"customer_id": pd.Series(ids, dtype=object)})
    for spec in specs:
        raw = pd.Series([values.get(spec.name) for values in stored], dtype=object)
        out[spec.column] = typed_column(spec.kind, raw)
    return out


def typed_column(kind: AttributeKind, raw: pd.Series) -> pd.Series:
    """Stored JSON values of one attribute as the column type models read (see above)."""
    import numpy as np
    import pandas as pd

    if kind is AttributeKind.CATEGORY:
        text = [None if v is None else str(v) for v in raw]
        return pd.Series(text, index=raw.index, dtype=object)
    if kind is AttributeKind.BOOLEAN:
        flags = raw.map(lambda v: 1.0 if v is True else 0.0 if v is False else np.nan)
        return flags.astype(np.float64)
    if kind is AttributeKind.DATE:
        days = pd.to_datetime(raw, format="%Y-%m-%d", errors="coerce")
        return ((days - pd.Timestamp(_EPOCH)).dt.days).astype(np.float64)
    return pd.to_numeric(raw.map(_number), errors="coerce").astype(np.float64)


def _number(value: Any) -> float | None:
    # bool is an int to Python, but true is no number of anything.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def typed_value(kind: AttributeKind, value: Any) -> Any:
    """One stored JSON value as `typed_column` types it, without pandas (the live API's row)."""
    if kind is AttributeKind.CATEGORY:
        return None if value is None else str(value)
    if kind is AttributeKind.BOOLEAN:
        return 1.0 if value is True else 0.0 if value is False else math.nan
    if kind is AttributeKind.DATE:
        try:
            day = datetime.strptime(str(value), "%Y-%m-%d").date()
        except ValueError:
            return math.nan
        return float((day - _EPOCH).days)
    number = _number(value)
    return math.nan if number is None or math.isnan(number) else number
