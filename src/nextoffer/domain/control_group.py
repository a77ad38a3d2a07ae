"""The universal control group: a sticky, salted-hash share of customers held out of every offer."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from nextoffer.domain.experiments import assignment_point

# The same draw as experiment assignment (53 uniform bits of SHA-256 of "salt:id"), so one
# customer's point is the same in serving, in bulk (exports, the sync job) and in tests.
_UNIFORM_BITS: Final = 53


def control_point(customer_id: str, salt: str) -> float:
    """Where a customer falls in [0, 1) for the control group: SHA-256 of "salt:customer_id"."""
    return assignment_point(salt, customer_id)


def in_control_group(customer_id: str, share: float, salt: str) -> bool:
    """True when the customer is held out of every offer at this share.

    The point never changes for a given salt, so a growing share only adds customers and a
    shrinking one only lets customers go: no one is reshuffled.
    """
    return share > 0 and control_point(customer_id, salt) < share


def control_points(customer_ids: Sequence[str], salt: str) -> npt.NDArray[np.float64]:
    """`control_point` of many customers at once (exports, the daily sync)."""
    if not customer_ids:
        return np.empty(0, dtype=np.float64)
    prefix = f"{salt}:".encode()
    # Hashing stays per id (hashlib has no batch call); the arithmetic is vectorised.
    heads = b"".join(hashlib.sha256(prefix + c.encode()).digest()[:8] for c in customer_ids)
    words = np.frombuffer(heads, dtype=">u8").astype(np.uint64)
    return (words >> np.uint64(64 - _UNIFORM_BITS)).astype(np.float64) / float(1 << _UNIFORM_BITS)


def control_mask(customer_ids: Sequence[str], share: float, salt: str) -> npt.NDArray[np.bool_]:
    """For each customer, whether it is in the control group at this share."""
    if share <= 0:
        return np.zeros(len(customer_ids), dtype=bool)
    return control_points(customer_ids, salt) < share
