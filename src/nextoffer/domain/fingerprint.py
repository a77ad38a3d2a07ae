"""Whether a model's training data still matches the data it now serves."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Row counts may grow this much (relative) before the data no longer "matches": a nightly
# load adds a little every day, a different data set changes them wholesale.
COUNT_DRIFT = 0.5
COUNTED = ("customers", "subscriptions", "transactions")


def parse_fingerprint(text: str | None) -> dict[str, Any] | None:
    """A fingerprint tag's JSON, or None when absent or unreadable (older versions)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def mismatches(trained: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """How the data a model was trained on differs from today's; [] when it matches.

    An unknown training fingerprint (a version from before fingerprints) is reported too.
    """
    if trained is None:
        return ["trained before data fingerprints were recorded"]
    found = []
    if trained.get("catalogue") != current.get("catalogue"):
        found.append(
            f"catalogue changed ({trained.get('products')} → {current.get('products')} products)"
        )
    for name in COUNTED:
        before, now = int(trained.get(name) or 0), int(current.get(name) or 0)
        if max(before, now) and abs(now - before) > COUNT_DRIFT * max(before, 1):
            found.append(f"{name} {before:,} → {now:,}")
    return found
