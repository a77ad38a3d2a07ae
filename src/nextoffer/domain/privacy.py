"""Customer ids as keyed digests: what the erasure ledger and the audit trail keep instead."""

from __future__ import annotations

import hashlib
import hmac


def customer_digest(key: str, customer_id: str) -> str:
    """HMAC-SHA256 of the id under the platform's privacy key, hex.

    Keyed, so nobody holding the ledger or the audit table alone can test guessed ids;
    deterministic, so the same id always maps to the same digest (restores, audit queries).
    """
    return hmac.new(key.encode("utf-8"), customer_id.encode("utf-8"), hashlib.sha256).hexdigest()
