"""The parameters each job takes from a caller (API, console), checked before the job starts.

A job started with a parameter it does not know, or one it cannot read (`as_of=yesterday`),
would be accepted (202) and then fail in the background; checked here, the caller gets a 422
naming the parameter instead. Internal callers (the CLI, schedules, Airflow) pass their own
typed parameters straight to the runner and are not checked here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from nextoffer.domain.errors import InvalidRequestError
from nextoffer.domain.limits import date_problem
from nextoffer.registry.protocol import MODEL_KINDS

_FLAGS = frozenset({"1", "0", "true", "false", "yes", "no", "on", "off"})


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    return None


def _flag(value: Any) -> str | None:
    if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in _FLAGS):
        return None
    return "must be true or false"


def _instant(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be an ISO 8601 time, e.g. 2026-11-01T00:00:00Z"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return f"{value!r} is not an ISO 8601 time, e.g. 2026-11-01T00:00:00Z"
    return None if date_problem(parsed.date()) is None else "is outside 1900-2100"


def _day(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be an ISO 8601 date, e.g. 2026-11-01"
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        return f"{value!r} is not an ISO 8601 date, e.g. 2026-11-01"
    return None if date_problem(parsed) is None else "is outside 1900-2100"


def _models(value: Any) -> str | None:
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return f"must be a list of model kinds ({', '.join(MODEL_KINDS)})"
    unknown = [n for n in (n.strip() for n in names) if n and n not in MODEL_KINDS]
    if unknown:
        return f"names unknown model kinds {', '.join(unknown)} (kinds: {', '.join(MODEL_KINDS)})"
    return None


Check = Callable[[Any], str | None]

JOB_PARAMS: dict[str, dict[str, Check]] = {
    "etl": {"path": _text, "mapping": _text, "source": _text, "precompute": _flag},
    "ingest": {"path": _text, "new_only": _flag, "mapping": _text},
    "features": {"as_of": _instant},
    "training": {"models": _models, "score": _flag},
    "precompute": {},
    "cache_rebuild": {},
    "fallback_refresh": {},
    "kpi_refresh": {},
    "backup": {},
    "backup_prune": {"now": _instant},
    "backup_verify": {"backup_id": _text},
    "dr_drill": {"backup_id": _text, "keep": _flag},
    "impact": {"as_of": _instant},
    "control_group": {"today": _day},
    "retention": {"dry_run": _flag},
}
"""What a caller may pass to each job, and how each value is checked. A job missing here
(added to the catalogue later) takes its parameters unchecked."""


def check_params(kind: str, params: Mapping[str, Any]) -> None:
    """InvalidRequestError (422) naming the first parameter job `kind` cannot take."""
    accepted = JOB_PARAMS.get(kind)
    if accepted is None:
        return
    for name, value in params.items():
        check = accepted.get(name)
        if check is None:
            known = ", ".join(accepted) or "none"
            raise InvalidRequestError(
                f"params.{name}: the {kind} job takes no such parameter (it takes: {known})",
                kind="validation-error",
            )
        problem = check(value)
        if problem is not None:
            raise InvalidRequestError(f"params.{name} {problem}", kind="validation-error")
