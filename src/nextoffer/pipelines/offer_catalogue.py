"""The catalogue `evaluate offers` ranks over: product ids from the holdings, rules from a file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from nextoffer.domain.errors import InputError
from nextoffer.domain.offers import Catalogue, Customers, eligibility
from nextoffer.domain.vocabulary import ProductCategory
from nextoffer.models.candidates import ProductTable
from nextoffer.models.offer_fit import Examples

# The product rules evaluation honours; contract, region, channel and tenure rules need
# customer data a holdings file does not have, so they are left out.
RULE_COLUMNS = (
    "requires_category",
    "requires_products",
    "requires_attribute",
    "exclusion_group",
    "upgrades_from",
)
Allowed = Callable[[Examples], np.ndarray]


def catalogue_for(
    product_ids: Sequence[str], frame: pd.DataFrame | None
) -> tuple[ProductTable, Allowed | None]:
    """The ranker's product table and, given a catalogue file, its product rules as a mask."""
    if frame is None:
        records: list[dict[str, Any]] = [_record(pid, {}) for pid in product_ids]
        return ProductTable.from_records(records), None
    if "product_id" not in frame.columns:
        raise InputError("products: no product_id column")
    rows = {
        str(r["product_id"]): {str(k): v for k, v in r.items()} for r in frame.to_dict("records")
    }
    missing = [pid for pid in product_ids if pid not in rows]
    if missing:
        raise InputError(f"products: {len(missing)} held product(s) not in the file: {missing[:5]}")
    records = [_record(pid, rows[pid]) for pid in product_ids]
    try:
        catalogue = Catalogue.from_records(records)
    except ValueError as exc:
        raise InputError(f"products: {exc}") from None
    return ProductTable.from_records(records), _rules_mask(catalogue)


def _record(product_id: str, row: dict[str, Any]) -> dict[str, Any]:
    def text(name: str, default: str = "") -> str:
        value = row.get(name)
        return default if value is None or str(value).strip() == "" else str(value).strip()

    def number(name: str) -> float:
        try:
            return float(text(name, "0"))
        except ValueError:
            raise InputError(f"products: {product_id}: {name} is not a number") from None

    return {
        "product_id": product_id,
        "name": text("name", product_id),
        "category": text("category", ProductCategory.OTHER.value),
        "price": number("price"),
        "margin": number("margin"),
        "min_tenure_months": 0,
        "active": True,
        **{name: text(name) or None for name in RULE_COLUMNS},
    }


def _rules_mask(catalogue: Catalogue) -> Allowed:
    """Which products each customer of some examples may be offered under the rules."""

    def allowed(examples: Examples) -> np.ndarray:
        n = len(examples)
        attributes = {
            column.removeprefix("attr_"): examples.features[column].to_numpy()
            for column in examples.features.columns
            if column.startswith("attr_")
        }
        customers = Customers(
            contract_type=np.full(n, ""),
            region=np.full(n, ""),
            tenure_months=np.full(n, np.inf),
            held=np.asarray(examples.held.todense()) > 0,
            churn_risk=np.full(n, np.nan),
            attributes=attributes,
        )
        mask: np.ndarray = eligibility(catalogue, customers, None)
        return mask

    return allowed
