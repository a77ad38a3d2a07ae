"""Erased customers in new import files: rows naming an erased id are dropped, not loaded.

The ledger holds keyed digests only, so each incoming id is hashed with the same key and
compared. A dropped row is counted and forgotten: its raw text is neither quarantined nor
kept anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextoffer.domain.privacy import customer_digest, mentions_digest

ID_COLUMN = "customer_id"


@dataclass(frozen=True)
class ErasedIds:
    """The erasure ledger's digests and the key that made them."""

    key: str
    digests: frozenset[str]

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """True for each row of `frame` whose customer id is erased (ids hashed once each)."""
        if ID_COLUMN not in frame.columns or not self.digests:
            return np.zeros(len(frame), dtype=bool)
        ids = frame[ID_COLUMN].astype("string").str.strip()
        unique = ids.dropna().unique()
        erased = {i for i in unique if customer_digest(self.key, str(i)) in self.digests}
        if not erased:
            return np.zeros(len(frame), dtype=bool)
        return ids.isin(erased).fillna(False).to_numpy(dtype=bool)

    def in_text(self, text: str) -> bool:
        """True when raw text (a row that could not be parsed) names an erased id."""
        return bool(self.digests) and mentions_digest(text, self.key, self.digests)
