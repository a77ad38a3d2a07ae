"""Synthetic consent: a few customers withdraw telesales or grant web, a few are on do-not-call."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextoffer.synth.arrays import I64
from nextoffer.synth.writer import DAY, Column, Text

# Per mille of customers, chosen by a hash of (number, seed) so the files differ by seed
# without drawing from the chunk's random stream (which would change every other file).
WITHDRAW_TELESALES = 30
GRANT_WEB = 20
DO_NOT_CALL = 10
_NOON = 12 * 3600


@dataclass(frozen=True)
class ConsentRows:
    """The consent and do-not-call rows of one chunk, as text columns."""

    consent: dict[str, Column]
    consent_rows: int
    do_not_call: dict[str, Column]
    do_not_call_rows: int


def consent_rows(t: Text, numbers: I64, signup: I64, seed: int, width: int) -> ConsentRows:
    """Each chosen customer's change, dated at noon on their first day as a customer."""
    h = (numbers.astype(np.int64) * 2654435761 + (seed + 1) * 97531) % 1000
    telesales = h < WITHDRAW_TELESALES
    web = (h >= WITHDRAW_TELESALES) & (h < WITHDRAW_TELESALES + GRANT_WEB)
    changed = np.flatnonzero(telesales | web)
    listed = np.flatnonzero((h >= 100) & (h < 100 + DO_NOT_CALL))
    consent = {
        "customer_id": t.ids("C", numbers[changed], width),
        "channel": Text.choice(["web", "telesales"], telesales[changed].astype(np.int64)),
        "granted": Text.choice(["false", "true"], web[changed].astype(np.int64)),
        "changed_at": t.timestamps(signup[changed] * DAY + _NOON),
        "source": Text.constant("import", len(changed)),
    }
    do_not_call = {
        "customer_id": t.ids("C", numbers[listed], width),
        "listed_on": t.dates(signup[listed]),
    }
    return ConsentRows(consent, len(changed), do_not_call, len(listed))
