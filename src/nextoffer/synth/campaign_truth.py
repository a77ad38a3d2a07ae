"""The campaign's files: exposures in the import format, truth/uplift.csv and truth/impact.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nextoffer.synth.arrays import F64, I64
from nextoffer.synth.campaign import (
    ACQUIRE_CONTROL,
    ACQUIRE_TREATED,
    ACQUISITION_SHARES,
    CHURN_SHARES,
    CONTROL_SHARE,
    EXPOSURE_HOUR,
    LOST_CAUSE_SLOPE,
    PERSUADABLE_CHURN_FACTOR,
    RETENTION_RISK,
    SLEEPING_DOG_CHURN_RISE,
    TYPES,
    WINDOW_DAYS,
    CampaignOutcome,
)
from nextoffer.synth.catalog import Catalog
from nextoffer.synth.market import CHANNELS
from nextoffer.synth.segments import SEGMENTS
from nextoffer.synth.world import Timeline
from nextoffer.synth.writer import Column, Text, join

UPLIFT_COLUMNS = (
    "customer_id",
    "arm",
    "product_id",
    "is_retention",
    "acquisition_type",
    "p_acquire_treated",
    "p_acquire_control",
    "churn_type",
    "p_churn_treated",
    "p_churn_control",
)
ARMS = ["control", "treated"]


def exposure_columns(
    campaign: CampaignOutcome, customer_ids: Column, catalog: Catalog, tl: Timeline
) -> dict[str, Column]:
    """exposures.csv's columns for one chunk (`customer_ids`: the exposed customers' ids)."""
    n = len(campaign)
    day = tl.iso_day(tl.label_day)
    return {
        "exposure_id": join(customer_ids, Text.constant(day, n), "@"),
        "customer_id": customer_ids,
        "exposed_at": Text.constant(f"{day}T{EXPOSURE_HOUR:02d}:00:00Z", n),
        "arm": Text.choice(ARMS, campaign.treated.astype(np.int64)),
        "product_ids": Text.choice(catalog.ids, campaign.prod),
        "unit_id": customer_ids,
        "channel": Text.choice([c.value for c in CHANNELS], campaign.channel),
        "source": Text.constant("campaign", n),
    }


def uplift_columns(
    campaign: CampaignOutcome, customer_ids: Column, catalog: Catalog, t: Text
) -> list[Column]:
    """truth/uplift.csv's columns for one chunk, in UPLIFT_COLUMNS' order."""
    return [
        customer_ids,
        Text.choice(ARMS, campaign.treated.astype(np.int64)),
        Text.choice(catalog.ids, campaign.prod),
        Text.choice(["false", "true"], campaign.retention.astype(np.int64)),
        Text.choice(list(TYPES), campaign.acquisition_type),
        t.floats(campaign.p_acquire_treated, 4),
        t.floats(campaign.p_acquire_control, 4),
        Text.choice(list(TYPES), campaign.churn_type),
        t.floats(campaign.p_churn_treated, 6),
        t.floats(campaign.p_churn_control, 6),
    ]


def _per_segment(segment: I64, values: F64 | None = None) -> F64:
    return np.bincount(segment, weights=values, minlength=len(SEGMENTS)).astype(np.float64)


def _shares(counts: F64) -> dict[str, float]:
    total = counts.sum()
    return {
        name: round(float(c / total), 4) if total else 0.0
        for name, c in zip(TYPES, counts, strict=True)
    }


@dataclass
class CampaignTally:
    """Sums per segment over every chunk, for truth/impact.json."""

    tl: Timeline
    catalog: Catalog
    sums: dict[str, F64] = field(default_factory=dict)
    acquisition_types: F64 = field(default_factory=lambda: np.zeros((len(SEGMENTS), len(TYPES))))
    churn_types: F64 = field(default_factory=lambda: np.zeros((len(SEGMENTS), len(TYPES))))

    def add(self, campaign: CampaignOutcome, segment: I64) -> None:
        """Count one chunk's exposed customers (`segment`: their latent segments)."""
        c = campaign
        margin = self.catalog.margin[c.prod] / 100.0
        cost = self.catalog.offer_cost[c.prod] / 100.0
        ret = c.retention
        parts = {
            "treated": _per_segment(segment[c.treated]),
            "control": _per_segment(segment[~c.treated]),
            "retention_treated": _per_segment(segment[ret & c.treated]),
            "retention_control": _per_segment(segment[ret & ~c.treated]),
            "p_acquire_treated": _per_segment(segment, c.p_acquire_treated),
            "p_acquire_control": _per_segment(segment, c.p_acquire_control),
            "margin": _per_segment(
                segment, c.p_acquire_treated * (margin - cost) - c.p_acquire_control * margin
            ),
            "churn": _per_segment(segment[ret], (c.p_churn_treated - c.p_churn_control)[ret]),
        }
        for name, values in parts.items():
            self.sums[name] = self.sums.get(name, np.zeros(len(SEGMENTS))) + values
        np.add.at(self.acquisition_types, (segment, c.acquisition_type), 1)
        np.add.at(self.churn_types, (segment[ret], c.churn_type[ret]), 1)

    def _effects(self, s: slice | int) -> dict[str, Any]:
        """Counts and true effects over segments `s` (one, or all)."""

        def total(name: str) -> float:
            return float(np.sum(self.sums.get(name, np.zeros(len(SEGMENTS)))[s]))

        exposed = total("treated") + total("control")
        offered = total("retention_treated") + total("retention_control")
        churn = total("churn") / offered if offered else None
        # A churner's churn_date is uniform over the label window's inner days.
        inner_days = self.tl.end_day - self.tl.label_day - 1
        in_window = min(WINDOW_DAYS, inner_days) / inner_days
        p_t, p_c = total("p_acquire_treated"), total("p_acquire_control")
        return {
            "exposed": {"treated": int(total("treated")), "control": int(total("control"))},
            "retention_offered": {
                "treated": int(total("retention_treated")),
                "control": int(total("retention_control")),
            },
            "acquisition": (p_t - p_c) / exposed if exposed else None,
            "acquisition_treated": p_t / exposed if exposed else None,
            "acquisition_control": p_c / exposed if exposed else None,
            "margin": total("margin") / exposed if exposed else None,
            "churn_label_window": churn,
            "churn_impact_window": None if churn is None else churn * in_window,
            "churn_impact_window_all_exposed": (
                total("churn") * in_window / exposed if exposed else None
            ),
            "acquisition_types": _shares(self.acquisition_types[s].reshape(-1, len(TYPES)).sum(0)),
            "churn_types": _shares(self.churn_types[s].reshape(-1, len(TYPES)).sum(0)),
        }

    def to_json(self) -> dict[str, Any]:
        """truth/impact.json."""
        day = self.tl.iso_day(self.tl.label_day)
        return {
            "campaign_day": day,
            "exposed_at": f"{day}T{EXPOSURE_HOUR:02d}:00:00Z",
            "window_days": WINDOW_DAYS,
            "label_window_days": self.tl.end_day - self.tl.label_day,
            "control_share": CONTROL_SHARE,
            "retention_risk": RETENTION_RISK,
            "true_effect": self._effects(slice(None)),
            "segments": {seg.name: self._effects(i) for i, seg in enumerate(SEGMENTS)},
            "acquisition_response": {
                name: {"p_treated": float(t), "p_control": float(c)}
                for name, t, c in zip(TYPES, ACQUIRE_TREATED, ACQUIRE_CONTROL, strict=True)
            },
            "churn_response": {
                "persuadable": f"treated = {PERSUADABLE_CHURN_FACTOR} x control",
                "sure_thing": "treated = control",
                "lost_cause": "treated = control",
                "sleeping_dog": f"treated = min(1, control + {SLEEPING_DOG_CHURN_RISE})",
                "control": "the simulation's own churn probability",
            },
            "planted_shares": {
                "acquisition": {
                    k: dict(zip(TYPES, v, strict=True)) for k, v in ACQUISITION_SHARES.items()
                },
                "churn_at_retention_risk": {
                    k: dict(zip(TYPES, v, strict=True)) for k, v in CHURN_SHARES.items()
                },
                "lost_cause_slope": LOST_CAUSE_SLOPE,
            },
            "note": (
                "acquisition: mean over exposed customers of P(acquire the offered product "
                "within window_days | treated) - P(... | control); margin: the same of "
                "P(treated) x (margin - offer_cost) - P(control) x margin; churn_label_window: "
                "mean over retention-offered customers of P(churn in the label window | "
                "treated) - P(... | control); churn_impact_window: the same for a churn_date "
                "within window_days of the exposure"
            ),
        }
