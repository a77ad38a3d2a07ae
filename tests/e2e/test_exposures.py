"""Exposures and the control group on the real server, and the forged-variant attack refused.

The e2e servers hold out `CONTROL_GROUP_SHARE` of the customers. A held-out customer is
answered `control: true` with no offer, and the server writes (off the request path, within
its flush interval) one exposure a day with the offers it would have made; a treated
customer's exposure names what it was shown. Events tagged with a variant other than the
customer's assignment are refused with a 422 problem naming the expected values.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from nextoffer.domain.experiments import assign
from nextoffer.store.schema import Event, Exposure, PrecomputedOffers
from tests.e2e.conftest import Api
from tests.e2e.test_api import (
    CONTROL_VS_CHAMPION,
    assert_problem,
    ids,
    offers,
    start_experiment,
    stop_experiment,
)

FLUSH_WAIT_S = 30.0


def precomputed_ids(api: Api) -> dict[str, list[str]]:
    """Each customer's precomputed products, best first (only those with any)."""
    with api.engine.connect() as conn:
        rows = conn.execute(select(PrecomputedOffers.customer_id, PrecomputedOffers.offers))
        found = {}
        for customer, stored in rows:
            stored = stored if isinstance(stored, list) else json.loads(stored)
            if stored:
                found[str(customer)] = [o["product_id"] for o in stored]
    return found


def todays_exposures(api: Api, customers: list[str]) -> dict[str, list[Any]]:
    """The customers' exposures of today, waited for (the server flushes in batches).

    The generated world has exposures of its own (imported history): only today's count.
    """
    today = datetime.now(UTC).date().isoformat()
    wanted = {f"{c}@{today}": c for c in customers}
    deadline = time.monotonic() + FLUSH_WAIT_S
    while True:
        with api.engine.connect() as conn:
            rows = conn.execute(
                select(Exposure.__table__).where(Exposure.exposure_id.like(f"%@{today}%"))
            ).all()
        found: dict[str, list[Any]] = {c: [] for c in customers}
        for row in rows:
            if row.customer_id in found:
                found[row.customer_id].append(row)
        if all(found[c] for c in wanted.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_held_out_and_treated_customers_are_exposed_once_a_day(api: Api) -> None:
    stored = precomputed_ids(api)
    held = api.take(2, among=sorted(stored), control_group=True)
    treated = api.take(2, among=sorted(stored))
    shown: dict[str, list[str]] = {}
    for customer in held:
        for _ in range(2):
            body = offers(api, customer, k=5)
            assert body["control"] is True and body["offers"] == [], body
            assert body["source"] == "control" and body["experiment"] is None
    for customer in treated:
        body = offers(api, customer, k=5)
        assert body["control"] is False and body["offers"], body
        shown[customer] = ids(body)
        assert ids(offers(api, customer, k=5)) == shown[customer]

    today = datetime.now(UTC).date().isoformat()
    found = todays_exposures(api, held + treated)
    for customer in held:
        [row] = found[customer]
        would = row.product_ids.split("|")
        # What the precomputed answer offers after the contact rules: its products, in order.
        assert 0 < len(would) <= 5 and would == [p for p in stored[customer] if p in would]
        assert (row.exposure_id, row.arm, row.source) == (f"{customer}@{today}", "control", "api")
    for customer in treated:
        [row] = found[customer]
        assert (row.arm, row.product_ids.split("|")) == ("treated", shown[customer])


def test_events_tagged_with_another_variant_are_refused(api: Api) -> None:
    experiment_id = start_experiment(api, "e2e forged variants", "customer")
    try:
        pool = api.take(30)
        by_variant: dict[str, list[str]] = {"control": [], "treatment": []}
        for customer in pool:
            by_variant[assign(experiment_id, customer, CONTROL_VS_CHAMPION).name].append(customer)
        control, treatment = by_variant["control"][0], by_variant["treatment"][0]
        product = ids(offers(api, treatment, k=5))[0]
        assert offers(api, control, k=5)["control"] is True

        # The attack of the issue: 20 impression + accept pairs of one control customer,
        # tagged with the treatment variant.
        forged = [
            {
                "event_id": f"e2e-forged-{experiment_id[:8]}-{kind}-{n}",
                "customer_id": control,
                "event_type": kind,
                "product_id": product,
                "experiment_id": experiment_id,
                "variant": "treatment",
            }
            for n in range(20)
            for kind in ("offer_impression", "offer_accept")
        ]
        problem = assert_problem(api.post("/v1/events", {"events": forged}), 422)
        assert problem["type"].endswith("/validation-error")
        assert problem["expected"] == {"experiment_id": experiment_id, "variant": "control"}
        with api.engine.connect() as conn:
            stored = conn.execute(select(Event.event_id).where(Event.customer_id == control))
            assert not [e for e in stored.scalars() if e.startswith("e2e-forged-")]

        # Tagged as assigned, or not tagged, it is taken, with the server's tag.
        honest = {**forged[0], "event_id": f"e2e-honest-{experiment_id[:8]}", "variant": "control"}
        plain = {k: v for k, v in honest.items() if k not in ("experiment_id", "variant")}
        plain["event_id"] = f"e2e-plain-{experiment_id[:8]}"
        response = api.post("/v1/events", {"events": [honest, plain]})
        assert response.status_code == 201, response.text
        with api.engine.connect() as conn:
            tags = conn.execute(
                select(Event.experiment_id, Event.variant).where(
                    Event.event_id.in_([honest["event_id"], plain["event_id"]])
                )
            ).all()
        assert [tuple(t) for t in tags] == [(experiment_id, "control")] * 2
    finally:
        stop_experiment(api, experiment_id)
