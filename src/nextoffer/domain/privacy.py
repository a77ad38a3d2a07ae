"""Customer ids as keyed digests: what the erasure ledger and the audit trail keep instead."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Set


def customer_digest(key: str, customer_id: str) -> str:
    """HMAC-SHA256 of the id under the platform's privacy key, hex.

    Keyed, so nobody holding the ledger or the audit table alone can test guessed ids;
    deterministic, so the same id always maps to the same digest (restores, audit queries).
    """
    return hmac.new(key.encode("utf-8"), customer_id.encode("utf-8"), hashlib.sha256).hexdigest()


# What separates an id from its neighbours in raw text (CSV, JSON, log lines): spaces,
# quotes, separators and brackets. An id is "mentioned" only as a whole token, so erasing
# C1 never touches a row about C10.
_DELIMITERS = r"\s,;|\"'`:=()\[\]{}<>/\\"
_TOKEN = re.compile(rf"[^{_DELIMITERS}]+")


def id_tokens(text: str) -> set[str]:
    """Every token of `text` that could be an id (the pieces between delimiters)."""
    return set(_TOKEN.findall(text))


def mention_pattern(customer_ids: Iterable[str]) -> re.Pattern[str]:
    """A pattern finding any of `customer_ids` as a whole token (ids may hold delimiters)."""
    alternatives = "|".join(re.escape(i) for i in sorted(set(customer_ids), key=len, reverse=True))
    return re.compile(rf"(?<![^{_DELIMITERS}])(?:{alternatives})(?![^{_DELIMITERS}])")


def mentions_digest(text: str, key: str, digests: Set[str]) -> bool:
    """True when a token of `text` is an id whose digest is in `digests` (erased ids)."""
    return any(customer_digest(key, token) in digests for token in id_tokens(text))
