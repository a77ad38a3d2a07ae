"""Platt calibration of probabilities: numpy only, shared by training and serving."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

# Raw probabilities are clipped before the logit so that a 0 or 1 cannot give ±inf.
EPS = 1e-6


@dataclass(frozen=True)
class PlattCalibration:
    """Platt scaling on the log-odds of the raw model: p = sigmoid(slope * logit(raw) + intercept).

    Two numbers, so it saves as JSON; slope 1 and intercept 0 is the identity.
    """

    slope: float
    intercept: float
    rows: int

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw LightGBM probabilities."""
        return sigmoid(self.slope * logit(raw) + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "method": "platt",
            "slope": self.slope,
            "intercept": self.intercept,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of `to_dict`."""
        if data.get("method") != "platt":
            raise ValueError(f"unsupported calibration method {data.get('method')!r}")
        return cls(float(data["slope"]), float(data["intercept"]), int(data["rows"]))


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities clipped away from 0 and 1."""
    clipped = np.clip(np.asarray(p, dtype=float), EPS, 1.0 - EPS)
    log_odds: np.ndarray = np.log(clipped / (1.0 - clipped))
    return log_odds


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function; written with exp of a non-positive number so it never overflows."""
    z = np.asarray(z, dtype=float)
    e = np.exp(-np.abs(z))
    p: np.ndarray = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return p
