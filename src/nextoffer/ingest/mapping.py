"""The mapping file (`--mapping`, NEXTOFFER_INGEST_MAPPING): how an operator's export is read.

Per source file: column renames, value maps, defaults, a derived signup date, custom
attribute declarations, wide holdings (one column per product) and a churn label column.
The format is documented, with a worked example, in docs/data-format.md.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nextoffer.domain.attributes import AttributeKind, AttributeRole
from nextoffer.domain.errors import InputError
from nextoffer.ingest.entities import BY_NAME, CUSTOMERS, Entity
from nextoffer.ingest.sources import entity_for

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _Strict(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class AttributeDeclaration(_Strict):
    """`attributes.<column>`: the attribute's kind and role (either may be left out)."""

    kind: AttributeKind | None = None
    role: AttributeRole | None = None


class TenureRule(_Strict):
    """`derive.<date column>`: the day `from_tenure_months` months before `as_of`."""

    from_tenure_months: str
    as_of: str = Field(pattern=DATE.pattern)


class HoldingColumn(_Strict):
    """`holdings.products.<column>`: one wide column of the export.

    Either `product` (the column says whether that product is held: a value in `holds`)
    or `values` (the column names the product held: value → product id; values in `none`
    mean none; any other value is taken as a product id, so an unmapped one is quarantined).
    """

    product: str | None = None
    holds: tuple[str, ...] | None = None
    values: dict[str, str] | None = None
    none: tuple[str, ...] = ("No", "no", "None", "none")

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if (self.product is None) == (self.values is None):
            raise ValueError("give either `product` (with `holds`) or `values`")
        return self


class Holdings(_Strict):
    """`holdings`: wide holdings columns turned into subscriptions (one per held product)."""

    start_date: str | None = None
    """A YYYY-MM-DD date or a column name; default: the customer's signup_date."""
    products: dict[str, HoldingColumn]


class ChurnLabelRule(_Strict):
    """`churn_label`: a column saying whether the customer churned, as churn_labels rows."""

    column: str
    as_of: str = Field(pattern=DATE.pattern)
    churned: tuple[str, ...] | None = None
    """Values meaning churned; default: any true spelling (yes, true, 1...)."""


class FileMapping(_Strict):
    """How one source file is read (the entry `files.<entity>` of the mapping file)."""

    entity: str
    path: str | None = None
    """A file name or glob (`telco_*.csv`); default: the entity's usual file names."""
    rename: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    defaults: dict[str, str] = Field(default_factory=dict)
    derive: dict[str, TenureRule] = Field(default_factory=dict)
    attributes: dict[str, AttributeDeclaration] = Field(default_factory=dict)
    holdings: Holdings | None = None
    churn_label: ChurnLabelRule | None = None

    @model_validator(mode="after")
    def _fits_entity(self) -> Self:
        if self.entity not in BY_NAME:
            raise ValueError(f"unknown entity {self.entity!r} (one of {', '.join(BY_NAME)})")
        customer_only = [
            name
            for name, given in (
                ("attributes", self.attributes),
                ("holdings", self.holdings),
                ("churn_label", self.churn_label),
            )
            if given
        ]
        if customer_only and self.entity != CUSTOMERS.name:
            raise ValueError(f"{', '.join(customer_only)}: only a customers file has these")
        if self.holdings is not None and self.holdings.start_date == "":
            raise ValueError("holdings.start_date: a YYYY-MM-DD date or a column name")
        return self

    @property
    def target(self) -> Entity:
        """The entity the file is loaded as."""
        return BY_NAME[self.entity]

    def fingerprint(self) -> str:
        """A hash of this entry: a file loaded with another mapping counts as new content."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def matches(self, path: Path) -> bool:
        """True when `path` is a file this entry reads."""
        if self.path is not None:
            return fnmatch.fnmatchcase(path.name, self.path)
        found = entity_for(path)
        return found is not None and found.name == self.entity


class IngestMapping(BaseModel):
    """A whole mapping file: where it came from and its entries."""

    model_config = ConfigDict(frozen=True)

    source: str
    files: tuple[FileMapping, ...]

    def entry_for(self, path: Path) -> FileMapping | None:
        """The entry that reads `path`: one naming it by `path` first, then by entity."""
        named = [f for f in self.files if f.path is not None and f.matches(path)]
        if named:
            return named[0]
        return next((f for f in self.files if f.path is None and f.matches(path)), None)


class _TextLoader(yaml.SafeLoader):  # type: ignore[misc]  # yaml has no type hints
    """YAML with every scalar kept as text: `Yes`, `No`, `01` and dates stay as written."""


# YAML 1.1 reads Yes/No/On/Off as booleans, 2026-01-01 as a date and 007 as 7: in a file of
# operator values every one of those is a value to match as written.
_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_mapping(text: str, source: str) -> IngestMapping:
    """A mapping from YAML text; InputError naming `source` and the first problem."""
    try:
        data = yaml.load(text, Loader=_TextLoader)  # noqa: S506 - a safe loader, text only
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML ({_first_line(exc)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or not data["files"]:
        raise InputError(f"{source}: expected `files:` with one entry per source file")
    unknown = sorted(set(data) - {"files", "version"})
    if unknown:
        raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}")
    if str(data.get("version", "1")) != "1":
        raise InputError(f"{source}: version {data['version']} is not supported (1 is)")
    entries = []
    for entity, entry in data["files"].items():
        where = f"files.{entity}"
        if not isinstance(entry, dict):
            raise InputError(f"{source}: {where}: expected a mapping of settings")
        try:
            entries.append(FileMapping.model_validate({**entry, "entity": entity}))
        except ValidationError as exc:
            first = exc.errors()[0]
            path = ".".join(str(p) for p in first["loc"])
            at = f"{where}.{path}" if path else where
            raise InputError(f"{source}: {at}: {first['msg']}") from None
    return IngestMapping(source=source, files=tuple(entries))


def load_mapping(path: str | Path) -> IngestMapping:
    """The mapping file at `path`; InputError when it cannot be read or is not valid."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{file}: cannot read the mapping file ({exc.strerror})") from None
    return parse_mapping(text, str(file))


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


def entry_from_dict(data: dict[str, Any]) -> FileMapping:
    """An entry as `FileMapping.model_dump` wrote it (a staged file passed between tasks)."""
    return FileMapping.model_validate(data)
