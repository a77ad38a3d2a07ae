"""How a file's header becomes the frame validation sees: renames, attributes, mapping inputs.

Decided once per file from its header (and its mapping entry, if any), before any row is
read, so a header that cannot load fails at once with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from nextoffer.domain.attributes import ATTRIBUTE_NAME, AttributeRole, snake_case
from nextoffer.domain.errors import InputError
from nextoffer.ingest.attributes import Declared
from nextoffer.ingest.entities import Entity
from nextoffer.ingest.mapping import DATE

if TYPE_CHECKING:
    from nextoffer.ingest.mapping import FileMapping


@dataclass(frozen=True)
class Layout:
    """The columns of a file as read, by name in the frame (after the mapping's renames)."""

    read: tuple[str, ...]
    """Header columns to read, as the file names them."""
    rename: dict[str, str]
    """Header name → frame name, where the mapping renames one."""
    standard: tuple[str, ...]
    """The entity's columns, in its order; absent ones are read as empty text."""
    extras: tuple[str, ...]
    """Other frame columns kept: custom attributes and what the mapping reads."""
    attributes: dict[str, str]
    """Attribute columns: frame name → stored attribute name (snake_case)."""
    declared: dict[str, Declared]
    """Stored attribute name → what the mapping declares of it (empty when nothing)."""

    def complete(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A block as read (header names) → frame names, entity columns first."""
        frame = frame.rename(columns=self.rename) if self.rename else frame
        for name in self.standard:
            if name not in frame.columns:
                frame[name] = ""
        return frame[[*self.standard, *self.extras]]

    def primary(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The entity's columns and the attribute columns under their stored names."""
        chosen = frame[[*self.standard, *self.attributes]]
        return chosen.rename(columns=self.attributes) if self.attributes else chosen


def plan_layout(
    entity: Entity, header: list[str], mapping: FileMapping | None, where: str
) -> Layout:
    """The layout of a file of `entity` with `header`; InputError for a header that cannot load.

    Without a mapping, extra columns of an entity with open columns (customers) are custom
    attributes, and of other entities ignored, as the import format says.
    """
    renames = dict(mapping.rename) if mapping else {}
    framed = [renames.get(h, h) for h in header]
    twice = sorted({n for n in framed if framed.count(n) > 1})
    if twice:
        raise InputError(f"{where}: more than one column is called {', '.join(twice)}")
    standard = entity.column_names
    inputs = _mapping_inputs(mapping) if mapping else set()
    absent = sorted(n for n in inputs if n not in framed)
    if absent:
        raise InputError(f"{where}: the mapping reads column(s) {', '.join(absent)}, not found")
    supplied = set(mapping.defaults) | set(mapping.derive) if mapping else set()
    missing = [c for c in entity.required_columns if c not in framed and c not in supplied]
    if missing:
        raise InputError(
            f"{where}: missing required column(s) {', '.join(missing)} for {entity.name}"
        )
    if mapping:
        _check_targets(mapping, framed, standard, where)
    attributes, declared = (
        _attribute_columns(framed, standard, inputs, mapping, where)
        if entity.open_columns
        else ({}, {})
    )
    kept = [n for n in framed if n in standard or n in inputs or n in attributes]
    read = tuple(h for h, n in zip(header, framed, strict=True) if n in kept)
    extras = tuple(n for n in framed if n in kept and n not in standard)
    return Layout(
        read=read,
        rename={h: n for h, n in zip(header, framed, strict=True) if h != n and n in kept},
        standard=tuple(standard),
        extras=extras,
        attributes=attributes,
        declared=declared,
    )


def _mapping_inputs(mapping: FileMapping) -> set[str]:
    """Columns the mapping itself reads (not stored as such): holdings, labels, tenure."""
    inputs: set[str] = set()
    if mapping.holdings is not None:
        inputs |= set(mapping.holdings.products)
        start = mapping.holdings.start_date
        if start is not None and not DATE.match(start):
            inputs.add(start)
    if mapping.churn_label is not None:
        inputs.add(mapping.churn_label.column)
    inputs |= {rule.from_tenure_months for rule in mapping.derive.values()}
    return inputs


def _check_targets(
    mapping: FileMapping, framed: list[str], standard: list[str], where: str
) -> None:
    for section, names in (("values", mapping.values), ("defaults", mapping.defaults)):
        unknown = sorted(n for n in names if n not in framed and n not in standard)
        if unknown:
            raise InputError(f"{where}: mapping {section}: no column {', '.join(unknown)}")
    derived = sorted(n for n in mapping.derive if n not in standard)
    if derived:
        raise InputError(f"{where}: mapping derive: {', '.join(derived)} is not a standard column")


def _attribute_columns(
    framed: list[str],
    standard: list[str],
    inputs: set[str],
    mapping: FileMapping | None,
    where: str,
) -> tuple[dict[str, str], dict[str, Declared]]:
    """Every other column (and inputs declared as attributes), with its stored name."""
    declarations = mapping.attributes if mapping else {}
    attributes: dict[str, str] = {}
    declared: dict[str, Declared] = {}
    for name in framed:
        said = declarations.get(name)
        if name in standard or (name in inputs and said is None):
            continue
        stored = snake_case(name)
        if said is not None and said.role is AttributeRole.IGNORE:
            # Never read; registered as ignored so that plain files drop it too.
            if ATTRIBUTE_NAME.match(stored) and stored not in standard:
                declared[stored] = Declared(said.kind, said.role)
            continue
        if not ATTRIBUTE_NAME.match(stored):
            raise InputError(
                f"{where}: column {name!r} cannot be a custom attribute (its name would be "
                f"{stored!r}): rename it in a mapping"
            )
        if stored in standard:
            raise InputError(
                f"{where}: column {name!r} would be custom attribute {stored!r}, a standard "
                f"column of the file: rename it, or give it role ignore, in a mapping"
            )
        if stored in attributes.values():
            other = next(k for k, v in attributes.items() if v == stored)
            raise InputError(
                f"{where}: columns {other!r} and {name!r} would both be attribute {stored!r}"
            )
        attributes[name] = stored
        declared[stored] = Declared(said.kind, said.role) if said else Declared()
    return attributes, declared
