"""One shape for an offer from the slate to the API, and a serving path free of heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from nextoffer.api.schemas import OffersOut
from nextoffer.domain.offers import Catalogue, Customers, Offer, arbitrate, dump_offers
from nextoffer.serving.offers import ExperimentTag, OffersAnswer, Source


def _slate_offers(model_version: str) -> list[Offer]:
    cat = Catalogue.from_records(
        [
            {"product_id": "A", "name": "Alpha", "category": "addon", "margin": 3.0},
            {"product_id": "B", "name": "Beta", "category": "addon", "margin": 7.0},
        ]
    )
    customers = Customers.single(
        contract_type="prepaid", region="x", tenure_months=12.0, held=[False, False]
    )
    slate = arbitrate(
        np.array([[0.123456789, 0.0987654321]]),
        cat,
        customers,
        channel=None,
        contacts_in_window=None,
        k=5,
    )
    return slate.offers(0, model_version)


def test_slate_offers_are_rounded_as_served_and_labelled() -> None:
    offers = _slate_offers("v7")
    assert [o.product_id for o in offers] == ["B", "A"]
    for offer in offers:
        assert offer.model_version == "v7"
        assert offer.score == round(offer.score, 6)
        assert offer.propensity == round(offer.propensity, 6)
        assert offer.expected_value == round(offer.expected_value, 4)
        assert isinstance(offer.reasons, tuple) and offer.reasons
    assert offers[1].propensity == 0.123457
    assert offers[1].expected_value == round(0.123456789 * 3.0, 4)


def test_api_schema_reads_the_answer_directly() -> None:
    offers = _slate_offers("v3")
    answer = OffersAnswer(
        "C1",
        offers,
        Source.PRECOMPUTED,
        "v3",
        degraded=True,
        notes=["cache unavailable"],
        experiment=ExperimentTag("e1", "ranker", "champion"),
    )
    body = json.loads(OffersOut.model_validate(answer).model_dump_json())
    assert body == {
        "customer_id": "C1",
        # The cached text and the API's offers are the same JSON.
        "offers": json.loads(dump_offers(offers)),
        "source": "precomputed",
        "model_version": "v3",
        "degraded": True,
        "notes": ["cache unavailable"],
        "experiment": {"experiment_id": "e1", "variant": "ranker", "strategy": "champion"},
        "control": False,
        "withheld_reason": None,
    }
    # A held-out answer shows nothing; what it would have offered never reaches the body.
    held = OffersAnswer("C1", [], Source.CONTROL, "v3", control=True, withheld=offers)
    body = json.loads(OffersOut.model_validate(held).model_dump_json())
    assert body["control"] is True and body["offers"] == [] and "withheld" not in body


def test_serving_and_scoring_do_not_import_heavy_libraries_at_import() -> None:
    code = (
        "import sys\n"
        "import nextoffer.scoring, nextoffer.scoring.offers, nextoffer.scoring.champions\n"
        "import nextoffer.scoring.churn, nextoffer.serving.offers, nextoffer.serving.state\n"
        "import nextoffer.serving.warm, nextoffer.serving.insights\n"
        "heavy = {'pandas', 'sklearn', 'mlflow', 'implicit', 'lightgbm'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"
