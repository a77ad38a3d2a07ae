"""Read what the offers did: the latest impact run (treated vs the universal control group)."""

from __future__ import annotations

from nextoffer.domain.errors import NotFoundError
from nextoffer.store.impact import StoredImpact, latest_impact
from nextoffer.usecases.context import Services

NO_RESULTS = (
    "no impact results yet: hold out a control group (NEXTOFFER_CONTROL_GROUP_SHARE, e.g. "
    "0.02), serve answers, wait NEXTOFFER_IMPACT_WINDOW_DAYS for their outcomes, then run the "
    "impact job (`nextoffer impact`, or POST /v1/jobs with kind impact; nightly after the ETL)"
)
"""What to do when no impact run exists: the API's 404 detail and the console's empty state."""


def find_impact(services: Services) -> StoredImpact | None:
    """The latest stored impact run, or None before the first."""
    return latest_impact(services.engine)


def get_impact(services: Services) -> StoredImpact:
    """The latest stored impact run; NotFoundError (with what to do) before the first."""
    found = find_impact(services)
    if found is None:
        raise NotFoundError(NO_RESULTS)
    return found
