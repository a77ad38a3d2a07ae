"""The daily control-group sync: the `control_group` table made to match the current share."""

from __future__ import annotations

import logging
from datetime import date

from nextoffer.config import Settings
from nextoffer.domain.control_group import control_mask
from nextoffer.store import Engine
from nextoffer.store import exposures as store
from nextoffer.store.exposures import ControlGroupSync
from nextoffer.store.runs import utcnow

log = logging.getLogger(__name__)


def run_control_group(
    engine: Engine, settings: Settings, today: date | None = None
) -> ControlGroupSync:
    """Record every customer entering or leaving the control group at today's share.

    Membership is the salted hash against `control_group_share`, as serving decides it;
    the table keeps when each member entered, so a changed share never reshuffles history:
    a smaller share lets the customers above it leave (`left_on`), a larger one adds new
    members from today. Serving also records a member on their first held-out answer.
    """
    today = today or utcnow().date()
    ids = store.customer_ids(engine)
    mask = control_mask(ids, settings.control_group_share, settings.control_group_salt)
    members = [c for c, held in zip(ids, mask.tolist(), strict=True) if held]
    with engine.begin() as conn:
        result = store.sync_control_group(conn, members, settings.control_group_share, today)
    log.info(
        "control group at share %g: %d of %d customers (%d entered, %d re-entered, %d left)",
        settings.control_group_share,
        result.members,
        len(ids),
        result.entered,
        result.reentered,
        result.left,
    )
    return result
