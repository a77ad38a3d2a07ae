"""The stored, cached and served shape of an offer is one shape, whichever way it is made."""

from __future__ import annotations

import dataclasses
import json

from nextoffer.domain.offers import Offer, dump_offers, load_offers


def test_to_dict_is_the_dataclass_in_field_order_and_round_trips() -> None:
    offer = Offer(
        product_id="P007",
        name="Fibre 1 Gbit · ü",
        category="broadband",
        score=0.1234567891,
        propensity=1e-9,
        expected_value=12.0,
        reasons=("similar customers took it", "fits the current plan"),
        model_version="v3",
    )
    data = offer.to_dict()
    assert data == dataclasses.asdict(offer)
    assert list(data) == [f.name for f in dataclasses.fields(Offer)]
    assert load_offers(dump_offers([offer])) == [offer]
    # What precompute stores and the cache rebuild copies as is: the same text once decoded
    # and encoded again, so a rebuilt answer is byte for byte the API's own.
    text = dump_offers([offer, offer])
    assert json.dumps(json.loads(text), separators=(",", ":")) == text
