"""Results and views: job-run counts named once per result, views built from attributes."""

from __future__ import annotations

from collections.abc import Callable, Sized
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    View = TypeVar("View", bound=DataclassInstance)


def from_attributes(view: type[View], source: Any, **convert: Callable[[Any], Any]) -> View:
    """A `view` dataclass whose fields are the same-named attributes of `source` (a row...).

    `convert` names the fields whose value needs converting, and the function that does.
    """
    values = {f.name: getattr(source, f.name) for f in fields(view)}
    for name, function in convert.items():
        values[name] = function(values[name])
    return view(**values)


class Counted:
    """A result whose `counts()` are the attributes named in `COUNTED`, in that order.

    A collection counts as its length and a time as ISO text, so the counts stay plain
    JSON; a `(name, attribute)` pair records an attribute under another name.
    """

    COUNTED: ClassVar[tuple[str | tuple[str, str], ...]] = ()

    def counts(self) -> dict[str, Any]:
        """The numbers a job run records for this result."""
        counts: dict[str, Any] = {}
        for entry in self.COUNTED:
            name, attribute = (entry, entry) if isinstance(entry, str) else entry
            counts[name] = _plain(getattr(self, attribute))
        return counts


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Sized) and not isinstance(value, str):
        return len(value)
    return value


class Total:
    """A read-only attribute: one count summed over the items of a list attribute.

    `rows_read = Total("files")` on a result is the sum of `rows_read` over `result.files`.
    """

    def __init__(self, items: str) -> None:
        self.items = items
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, result: object, owner: type | None = None) -> int:
        return sum(int(getattr(item, self.name)) for item in getattr(result, self.items))
