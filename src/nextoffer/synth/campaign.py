"""The planted campaign on label_as_of: randomised arms, one offer each, heterogeneous effects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextoffer.domain.vocabulary import Channel
from nextoffer.synth.arrays import F64, I64, BoolA
from nextoffer.synth.catalog import Catalog
from nextoffer.synth.market import CHANNELS
from nextoffer.synth.population import Population, pick
from nextoffer.synth.segments import SEGMENTS
from nextoffer.synth.simulate import SEGMENT_CHANNELS, ChunkSimulation, ChurnOutcome, Plants
from nextoffer.synth.world import Timeline

CONTROL_SHARE = 0.10
"""Share of exposed customers held out (control): large enough for small test worlds."""
WINDOW_DAYS = 30
"""Days after exposure in which the planted acquisition happens (impact_window_days' default)."""
EXPOSURE_HOUR = 7
"""The campaign goes out at 07:00 UTC, before any of the day's transactions (08:00-21:00)."""
RETENTION_RISK = 0.21
"""Churn probability from which a retention offer is made (about the top 30 % of customers)."""
LOST_CAUSE_SLOPE = 2.0
"""How fast lost causes take over above RETENTION_RISK, per unit of logit(churn probability)."""
PERSUADABLE_CHURN_FACTOR = 0.3
"""A treated churn persuadable churns with 0.3 x the probability it would have without."""
SLEEPING_DOG_CHURN_RISE = 0.25
"""A treated sleeping dog's churn probability rises by 0.25 (the offer reminds it to leave)."""

TYPES = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
PERSUADABLE, SURE_THING, LOST_CAUSE, SLEEPING_DOG = range(len(TYPES))

ACQUIRE_TREATED = np.array([0.25, 0.40, 0.005, 0.01])
ACQUIRE_CONTROL = np.array([0.02, 0.40, 0.005, 0.12])
"""P(acquires the offered product within the window | arm), by acquisition type."""

# Shares of the types per segment (rows in SEGMENTS' order, columns in TYPES' order). The
# acquisition shares keep each segment's control rate near its organic 30-day rate for the
# offered product (2-8 %), so the control arm looks like the world without the campaign.
# Churn shares hold at RETENTION_RISK; above it lost causes grow (LOST_CAUSE_SLOPE).
# fmt: off
ACQUISITION_SHARES: dict[str, tuple[float, float, float, float]] = {
    #                    persuadable  sure  lost   dog
    "young_digital":    (0.30,       0.08, 0.56, 0.06),
    "families":         (0.25,       0.04, 0.66, 0.05),
    "business_pros":    (0.15,       0.10, 0.63, 0.12),
    "budget_prepaid":   (0.35,       0.03, 0.59, 0.03),
    "seniors":          (0.10,       0.03, 0.77, 0.10),
    "streamers_gamers": (0.30,       0.15, 0.50, 0.05),
}
CHURN_SHARES: dict[str, tuple[float, float, float, float]] = {
    "young_digital":    (0.50,       0.20, 0.15, 0.15),
    "families":         (0.45,       0.30, 0.15, 0.10),
    "business_pros":    (0.25,       0.25, 0.15, 0.35),
    "budget_prepaid":   (0.55,       0.15, 0.20, 0.10),
    "seniors":          (0.30,       0.25, 0.15, 0.30),
    "streamers_gamers": (0.45,       0.20, 0.15, 0.20),
}
# fmt: on
OUTBOUND = np.array([c is not Channel.RETAIL for c in CHANNELS])
"""Channels a campaign reaches customers through: all but the shop."""


def _table(shares: dict[str, tuple[float, float, float, float]]) -> F64:
    if list(shares) != [s.name for s in SEGMENTS]:
        raise ValueError("campaign: type shares must list the segments in order")
    table = np.array(list(shares.values()))
    if not np.allclose(table.sum(axis=1), 1.0):
        raise ValueError("campaign: type shares of a segment must add up to 1")
    return table


ACQUISITION_TABLE = _table(ACQUISITION_SHARES)
CHURN_TABLE = _table(CHURN_SHARES)


@dataclass(frozen=True)
class CampaignOutcome:
    """The exposed customers of one chunk (positions `cust`), their offer and planted truth.

    `churn_type` is -1 for customers offered a product that is not a retention offer; their
    churn probabilities are the simulation's own in both arms (the offer does not move them).
    """

    cust: I64
    treated: BoolA
    prod: I64
    retention: BoolA
    acquisition_type: I64
    p_acquire_treated: F64
    p_acquire_control: F64
    churn_type: I64
    p_churn_treated: F64
    p_churn_control: F64
    channel: I64
    acquired: BoolA

    def __len__(self) -> int:
        return len(self.cust)


def churn_type_weights(segment: I64, probability: F64) -> F64:
    """Unnormalised churn-type weights: the segment's shares, lost causes growing with risk."""
    logit = np.log(probability / (1.0 - probability))
    above = np.maximum(logit - np.log(RETENTION_RISK / (1.0 - RETENTION_RISK)), 0.0)
    weights = CHURN_TABLE[segment].copy()
    weights[:, LOST_CAUSE] *= np.exp(LOST_CAUSE_SLOPE * above)
    return np.asarray(weights)


def treated_churn(churn_type: I64, control: F64) -> F64:
    """P(churn in the label window | treated), from the type and P(churn | control)."""
    persuaded = PERSUADABLE_CHURN_FACTOR * control
    woken = np.minimum(control + SLEEPING_DOG_CHURN_RISE, 1.0)
    return np.asarray(
        np.select(
            [churn_type == PERSUADABLE, churn_type == SLEEPING_DOG], [persuaded, woken], control
        )
    )


def _channels(rng: np.random.Generator, segment: I64, prod: I64, catalog: Catalog) -> I64:
    """An outbound channel the product may be offered in, by the segment's habits."""
    allowed = catalog.channel_ok[prod] & OUTBOUND[None, :]
    allowed = np.where(allowed.any(axis=1, keepdims=True), allowed, catalog.channel_ok[prod])
    habits = SEGMENT_CHANNELS[segment] * allowed
    # A product offered only where the segment never goes: any channel it allows.
    return pick(rng, np.where(habits.sum(axis=1, keepdims=True) > 0, habits, allowed))


def run_campaign(
    rng: np.random.Generator,
    pop: Population,
    catalog: Catalog,
    tl: Timeline,
    sim: ChunkSimulation,
    churn: ChurnOutcome,
    weights: F64,
) -> tuple[CampaignOutcome, ChurnOutcome]:
    """Randomise and offer everyone active on label_as_of; plant the outcomes in `sim`.

    `weights` are the simulation's offer weights on label_as_of (0 where not eligible). A
    customer at churn risk (probability >= RETENTION_RISK) with an eligible retention offer
    is offered the likeliest one; everyone else the likeliest other product. Returns the
    campaign and the churn outcome with the retention offers' effect applied.
    """
    retention_w = np.where(catalog.retention[None, :], weights, 0.0)
    other_w = np.where(catalog.retention[None, :], 0.0, weights)
    at_risk = churn.labelled & (np.nan_to_num(churn.probability) >= RETENTION_RISK)
    retention_all = at_risk & (retention_w.sum(axis=1) > 0)
    exposed = churn.labelled & (retention_all | (other_w.sum(axis=1) > 0))
    cust = np.flatnonzero(exposed)
    m = len(cust)
    retention = retention_all[cust]
    prod = np.where(retention, retention_w[cust].argmax(axis=1), other_w[cust].argmax(axis=1))
    segment = pop.segment[cust]

    treated = rng.random(m) >= CONTROL_SHARE
    acquisition_type = pick(rng, ACQUISITION_TABLE[segment])
    p_acq_t = ACQUIRE_TREATED[acquisition_type]
    p_acq_c = ACQUIRE_CONTROL[acquisition_type]
    acquired = rng.random(m) < np.where(treated, p_acq_t, p_acq_c)

    p_churn_c = np.asarray(churn.probability[cust], dtype=np.float64)
    churn_type = np.full(m, -1, np.int64)
    ret = np.flatnonzero(retention)
    churn_type[ret] = pick(rng, churn_type_weights(segment[ret], p_churn_c[ret]))
    p_churn_t = treated_churn(churn_type, p_churn_c)
    moved = ret[treated[ret]]
    churn = sim.redraw_churn(churn, cust[moved], p_churn_t[moved])

    # Acquired on a day in [label_as_of, window end), before the customer leaves.
    first = tl.label_day
    last = np.minimum(first + WINDOW_DAYS - 1, churn.churn_day[cust] - 1)
    day = first + np.floor(rng.random(m) * (last - first + 1)).astype(np.int64)
    sim.plant(Plants(cust, prod, np.where(acquired, day, -1), first + WINDOW_DAYS))

    outcome = CampaignOutcome(
        cust=cust,
        treated=treated,
        prod=prod.astype(np.int64),
        retention=retention,
        acquisition_type=acquisition_type,
        p_acquire_treated=p_acq_t,
        p_acquire_control=p_acq_c,
        churn_type=churn_type,
        p_churn_treated=p_churn_t,
        p_churn_control=p_churn_c,
        channel=_channels(rng, segment, prod, catalog),
        acquired=acquired,
    )
    return outcome, churn
