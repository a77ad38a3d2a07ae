"""Which custom attributes models use, as feature columns (`attr_<name>`)."""

from __future__ import annotations

from collections.abc import Iterable

from nextoffer.domain.attributes import AttributeKind, AttributeRole, AttributeSpec


def feature_attributes(schema: Iterable[AttributeSpec]) -> tuple[list[str], list[str]]:
    """(numeric columns, categorical columns) of the attributes whose role is `feature`.

    Numbers, booleans (1/0) and dates (days since 1970) are numeric; categories are
    categorical. Display, label and ignored attributes are never features.
    """
    numeric: list[str] = []
    categorical: list[str] = []
    for spec in sorted(schema, key=lambda s: s.name):
        if spec.role is not AttributeRole.FEATURE:
            continue
        (categorical if spec.kind is AttributeKind.CATEGORY else numeric).append(spec.column)
    return numeric, categorical
