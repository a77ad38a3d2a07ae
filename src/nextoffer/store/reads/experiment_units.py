"""An experiment's units, one row each: variant, first exposure and outcomes, for the statistics.

A unit (a customer, or a session for a session experiment) enters the experiment when an
answer tagged with the experiment is served to it: the server writes an exposure with the
unit's variant, for the control variant too (with the answer it would have had). Units
are read from `exposures`, never from client events, so a unit shown nothing cannot be
counted as shown, and both arms are measured the same way. A few set-based reads (the
units' first exposures, their tagged responses, then the exposed customers' acquisitions,
churn dates and complaints) are joined with pandas: one pass however many units, the same
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, and_, func, select

from nextoffer.domain.experiment_stats import UnitOutcomes
from nextoffer.domain.experiments import ExperimentUnit
from nextoffer.domain.vocabulary import EventType
from nextoffer.store.reads._sql import Bind, connect
from nextoffer.store.reads.features import frame
from nextoffer.store.reads.outcomes import (
    acquired_offered,
    acquisition_rows,
    churn_rows,
    churned_in_window,
    with_windows,
)
from nextoffer.store.schema import Event, Exposure

if TYPE_CHECKING:
    import pandas as pd

UNIT = "unit_id"
_RESPONSES = tuple(
    t.value for t in (EventType.OFFER_IMPRESSION, EventType.OFFER_CLICK, EventType.OFFER_ACCEPT)
)


@dataclass(frozen=True, eq=False)
class ExperimentUnits:
    """One entry per unit, in the order the units were first exposed.

    `outcomes` holds each unit's variant (by name) and what it did, for
    `domain.experiment_stats.analyse_experiment`; the other columns say which unit and
    customer each entry is and when it was first exposed.
    """

    unit_ids: npt.NDArray[np.str_]
    customer_ids: npt.NDArray[np.str_]
    first_exposed: npt.NDArray[Any]
    """Aware UTC timestamps."""
    outcomes: UnitOutcomes

    def __len__(self) -> int:
        """The number of units."""
        return len(self.outcomes)


def experiment_units(
    bind: Bind,
    experiment_id: str,
    unit: ExperimentUnit,
    variants: Sequence[str],
    window_days: int,
) -> ExperimentUnits:
    """Every unit exposed in the experiment, with its variant and outcomes.

    A unit's variant, customer and offered products come from its first exposure tagged
    with the experiment (for the control variant, the products it would have been shown);
    exposures naming a variant not in `variants` are left out. Per unit:

    - impressions, clicks: the unit's `offer_impression` / `offer_click` events tagged with
      the experiment (the server tags an event with the assignment of its customer, or of
      its session in a session experiment, so they are the unit's own);
    - converted: a tagged `offer_accept` of the unit, or an acquisition of an offered
      product in the window after the first exposure (`store.reads.outcomes`: a
      transaction of type activation, purchase or upgrade, or a subscription starting in
      it), the same rule as the impact job's;
    - churned: the customer's churn date in the window;
    - complaints: the customer's `network_complaint` events in the window.

    The window is (first exposure, first exposure + `window_days`]. A window still open
    counts what has happened so far, in every arm alike.
    """
    window = timedelta(days=window_days)
    tagged = Exposure.experiment_id == experiment_id
    unit_key = func.coalesce(Exposure.unit_id, Exposure.customer_id)
    first_of_unit = (
        select(unit_key.label(UNIT), func.min(Exposure.exposed_at).label("first_at"))
        .where(tagged)
        .group_by(unit_key)
        .subquery()
    )
    first_of_customer = (
        select(Exposure.customer_id, func.min(Exposure.exposed_at).label("first_at"))
        .where(tagged)
        .group_by(Exposure.customer_id)
        .subquery()
    )
    with connect(bind) as conn:
        exposures = frame(
            conn,
            select(
                unit_key.label(UNIT),
                Exposure.customer_id,
                Exposure.exposure_id,
                Exposure.exposed_at,
                Exposure.variant,
                Exposure.product_ids,
            )
            .join(
                first_of_unit,
                and_(
                    unit_key == first_of_unit.c[UNIT],
                    Exposure.exposed_at == first_of_unit.c.first_at,
                ),
            )
            .where(tagged),
        )
        if exposures.empty:
            return _no_units()
        first_at = min(exposures["exposed_at"])
        horizon = max(exposures["exposed_at"]) + window
        event_unit = _event_unit(unit)
        responses = frame(
            conn,
            select(event_unit.label(UNIT), Event.event_type, func.count().label("n"))
            .where(Event.experiment_id == experiment_id, Event.event_type.in_(_RESPONSES))
            .group_by(event_unit, Event.event_type),
        )
        complaints = frame(
            conn,
            select(Event.customer_id, Event.ts.label("at"))
            .join(first_of_customer, Event.customer_id == first_of_customer.c.customer_id)
            .where(
                Event.event_type == EventType.NETWORK_COMPLAINT.value,
                Event.ts > first_of_customer.c.first_at,
                Event.ts <= horizon,
            ),
        )
        bought, subscribed = acquisition_rows(conn, first_of_customer, first_at, horizon)
        churn = churn_rows(conn, first_of_customer, first_at, horizon)
    return _units(
        exposures, responses, complaints, bought, subscribed, churn, list(variants), window
    )


def _event_unit(unit: ExperimentUnit) -> ColumnElement[str]:
    # A session experiment's event without a session is the customer's, as its assignment.
    if unit is ExperimentUnit.SESSION:
        return func.coalesce(Event.session_id, Event.customer_id)
    return Event.customer_id.expression


def _no_units() -> ExperimentUnits:
    empty = np.array([], dtype=np.float64)
    return ExperimentUnits(
        unit_ids=np.array([], dtype=str),
        customer_ids=np.array([], dtype=str),
        first_exposed=np.array([], dtype=object),
        outcomes=UnitOutcomes(
            variant=np.array([], dtype=str),
            converted=empty,
            clicks=empty,
            impressions=empty,
            churned=empty,
            complaints=empty,
        ),
    )


def _units(
    exposures: pd.DataFrame,
    responses: pd.DataFrame,
    complaints: pd.DataFrame,
    bought: pd.DataFrame,
    subscribed: pd.DataFrame,
    churn: pd.DataFrame,
    variants: list[str],
    window: timedelta,
) -> ExperimentUnits:
    import pandas as pd

    exposures = exposures[exposures["variant"].isin(variants)]
    if exposures.empty:
        return _no_units()
    # Two exposures of one unit at the very same instant: the smaller id, for one variant.
    first = (
        exposures.sort_values([UNIT, "exposure_id"]).drop_duplicates(UNIT).reset_index(drop=True)
    )
    first[UNIT] = first[UNIT].astype(str)
    first["customer_id"] = first["customer_id"].astype(str)
    first = with_windows(first, window)
    first = first.sort_values(["exposed_at", UNIT], kind="stable").reset_index(drop=True)
    ids = first[UNIT].to_numpy(dtype=str)

    responses = responses.assign(**{UNIT: responses[UNIT].astype(str)})

    def per_unit(event_type: EventType) -> npt.NDArray[np.float64]:
        rows = responses[responses["event_type"] == event_type.value]
        column = rows.groupby(UNIT)["n"].sum().reindex(ids, fill_value=0)
        return np.asarray(column.to_numpy(dtype=np.float64))

    accepted = per_unit(EventType.OFFER_ACCEPT) > 0
    acquired = set(acquired_offered(first, bought, subscribed, key=UNIT)[UNIT].astype(str))
    converted = accepted | np.array([u in acquired for u in ids])
    churned = churned_in_window(first, churn, key=UNIT)

    complained = complaints.merge(
        first[[UNIT, "customer_id", "exposed_at", "ends_at"]], on="customer_id"
    )
    complained["at"] = pd.to_datetime(complained["at"], utc=True)
    inside = (complained["at"] > complained["exposed_at"]) & (
        complained["at"] <= complained["ends_at"]
    )
    per_complaint = complained.loc[inside].groupby(UNIT).size()
    return ExperimentUnits(
        unit_ids=ids,
        customer_ids=first["customer_id"].to_numpy(dtype=str),
        first_exposed=first["exposed_at"].to_numpy(dtype=object),
        outcomes=UnitOutcomes(
            variant=first["variant"].to_numpy(dtype=str),
            converted=converted.astype(np.float64),
            clicks=per_unit(EventType.OFFER_CLICK),
            impressions=per_unit(EventType.OFFER_IMPRESSION),
            churned=np.array([u in churned for u in ids], dtype=np.float64),
            complaints=np.asarray(per_complaint.reindex(ids, fill_value=0), dtype=np.float64),
        ),
    )
