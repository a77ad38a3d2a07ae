"""Custom customer attributes: their kinds and roles, names, and how models see them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""What a stored attribute name looks like (after `snake_case`)."""

COLUMN_PREFIX = "attr_"
"""Attribute `x` is column `attr_x` in feature frames, apart from the standard features."""


class AttributeKind(StrEnum):
    """How an attribute's values are typed: what JSON value each becomes."""

    NUMBER = "number"  # a float
    CATEGORY = "category"  # a string
    BOOLEAN = "boolean"  # true/false
    DATE = "date"  # "YYYY-MM-DD"


class AttributeRole(StrEnum):
    """What an attribute is for.

    `feature`: models use it (churn, ranker) and the console shows it; `display`: shown,
    never modelled; `label`: a target (e.g. churned), shown, never a feature; `ignore`:
    not stored at all.
    """

    FEATURE = "feature"
    DISPLAY = "display"
    LABEL = "label"
    IGNORE = "ignore"


FEATURE_ROLES = (AttributeRole.FEATURE, AttributeRole.DISPLAY)
"""Roles whose attributes appear in feature frames as `attr_<name>` (labels never do)."""


@dataclass(frozen=True)
class AttributeSpec:
    """One registered attribute: its stored name, kind and role."""

    name: str
    kind: AttributeKind
    role: AttributeRole = AttributeRole.FEATURE

    @property
    def column(self) -> str:
        """Its column in feature frames: `attr_<name>`."""
        return COLUMN_PREFIX + self.name


def display_value(kind: AttributeKind, value: Any) -> str:
    """A stored value as people read it: yes/no, a number without float noise, the text."""
    if value is None:
        return "—"
    if kind is AttributeKind.BOOLEAN and isinstance(value, bool):
        return "yes" if value else "no"
    if kind is AttributeKind.NUMBER and isinstance(value, int | float):
        return f"{value:,.10g}"
    return str(value)


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def snake_case(name: str) -> str:
    """`SeniorCitizen` → `senior_citizen`, `Payment Method` → `payment_method`, `TVBox` → `tv_box`.

    The result may still not be a valid attribute name (empty, or starting with a digit):
    check it with `ATTRIBUTE_NAME`.
    """
    spaced = _CAMEL_BOUNDARY.sub("_", name.strip())
    return _NOT_WORD.sub("_", spaced.lower()).strip("_")
