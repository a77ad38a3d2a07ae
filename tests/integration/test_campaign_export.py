"""`nextoffer campaign export`: the API's own answers, the N best, caps, commit, CSV/Parquet/S3.

On a small trained world whose catalogue has product rules (`tests/integration/rules_world`):
the exported customers and offers are exactly those the API answers (read through the
app's TestClient), a committed export lands in `contact_history` and then caps the offer,
a dry run writes nothing, and Parquet and S3 (moto) outputs read back. The product rules
are honoured by the API, precompute and the export alike.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from nextoffer.asgi import create_app
from nextoffer.cache.memory import MemoryCache
from nextoffer.cli import app as cli_app
from nextoffer.config import Settings
from nextoffer.domain.roles import Role
from nextoffer.platform import Platform, build_platform
from nextoffer.serving.api_keys import create_api_key
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import (
    ChurnScore,
    ContactHistory,
    Event,
    PrecomputedOffers,
    UserFeatures,
)
from nextoffer.usecases.campaigns import COLUMNS, CampaignRequest, export_campaign
from tests.integration.rules_world import (
    BROADBAND,
    RulesWorld,
    fibre_reached,
    holdings,
    rules_world,
    violations,
)
from tests.integration.test_ingest_s3 import CREDENTIALS, s3, s3_endpoint

__all__ = ["s3_endpoint"]  # the moto fixture, used by name below

CHANNEL = "web"
"""The channel of the exports (a campaign is made in one) and of the API answers compared."""


@dataclass
class Served:
    """The API (TestClient) and a platform for exports, on one world, sharing one cache."""

    settings: Settings
    engine: Engine
    platform: Platform
    client: TestClient
    key: str

    def answer(self, customer: str, **params: Any) -> dict[str, Any]:
        """The API's offers answer for `customer`."""
        response = self.client.get(
            f"/v1/customers/{customer}/offers", params=params, headers={"X-API-Key": self.key}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def export(self, out: Path, **request: Any) -> pd.DataFrame:
        """A campaign export through the use case (in CHANNEL by default), read from its CSV."""
        request.setdefault("channel", CHANNEL)
        export_campaign(self.platform.services, CampaignRequest(**request), str(out))
        return read_export(out)


def read_export(path: Path | io.BytesIO, parquet: bool = False) -> pd.DataFrame:
    """An export file as written, ids as text."""
    if parquet:
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"customer_id": str, "segment": str, "channel": str})


@contextmanager
def serve(settings: Settings) -> Iterator[Served]:
    """The API on `settings`' world and a platform for exports, sharing one memory cache."""
    engine = make_engine(settings.database_url)
    cache = MemoryCache()
    _record, key = create_api_key(engine, "campaign test", Role.VIEWER)
    app = create_app(settings, engine=engine, cache=cache)
    platform = build_platform(settings, engine=engine, cache=cache)
    try:
        with TestClient(app) as client:
            yield Served(settings, engine, platform, client, key)
    finally:
        platform.close()
        engine.dispose()


def pairs(rows: Iterable[Any]) -> dict[Any, Any]:
    """{first column: second column} of a result's rows."""
    return {row[0]: row[1] for row in rows}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> RulesWorld:
    return rules_world(tmp_path_factory)


@pytest.fixture(scope="module")
def served(world: RulesWorld) -> Iterator[Served]:
    """The original world, read only (dry runs never write; its answers record no exposure)."""
    with serve(world.settings(exposures_enabled=False)) as found:
        yield found


@pytest.fixture(scope="module")
def answers(served: Served) -> dict[str, list[dict[str, Any]]]:
    """Every customer's API answer in CHANNEL (default k), by customer id."""
    with served.engine.connect() as conn:
        ids = conn.execute(select(UserFeatures.customer_id).order_by(UserFeatures.customer_id))
        customers = [str(c) for c in ids.scalars()]
    return {c: served.answer(c, channel=CHANNEL)["offers"] for c in customers}


def first_offers(exported: pd.DataFrame) -> dict[str, list[str]]:
    """An export as {customer: [their exported product]}."""
    pairs = zip(exported["customer_id"], exported["product_id"], strict=True)
    return {str(c): [str(p)] for c, p in pairs}


def top_by(rows: list[tuple[float, str, Any]], n: int) -> list[tuple[float, str, Any]]:
    """The n best (score, customer, …) by score, ties to the smaller customer id."""
    return sorted(rows, key=lambda r: (-r[0], r[1]))[:n]


def test_export_is_the_n_best_first_offers_of_the_api(
    served: Served, answers: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    exported = served.export(tmp_path / "top.csv", top=25)

    assert list(exported.columns) == list(COLUMNS)
    expected = top_by([(o[0]["score"], c, o[0]) for c, o in answers.items() if o], 25)
    assert list(exported["customer_id"]) == [c for _, c, _ in expected]
    for row, (_, _, offer) in zip(exported.itertuples(), expected, strict=True):
        assert row.product_id == offer["product_id"]
        assert row.product_name == offer["name"]
        assert row.score == pytest.approx(offer["score"])
        assert row.propensity == pytest.approx(offer["propensity"])
        assert row.expected_value == pytest.approx(offer["expected_value"])
        assert row.reasons == "; ".join(offer["reasons"])
        assert row.rank == 1 and row.model_version == offer["model_version"]
    assert exported["score"].is_monotonic_decreasing


def test_offer_export_ranks_the_customers_whose_answer_has_it(
    served: Served, answers: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    counts = Counter(o["product_id"] for offers in answers.values() for o in offers[1:])
    product, takers = counts.most_common(1)[0]
    assert takers > 10

    exported = served.export(tmp_path / "offer.csv", top=10, offer=product)

    expected = top_by(
        [
            (o["score"], c, i + 1)
            for c, offers in answers.items()
            for i, o in enumerate(offers)
            if o["product_id"] == product
        ],
        10,
    )
    assert list(exported["customer_id"]) == [c for _, c, _ in expected]
    assert set(exported["product_id"]) == {product}
    assert list(exported["rank"]) == [rank for _, _, rank in expected]
    assert list(exported["score"]) == pytest.approx([s for s, _, _ in expected])


def test_segment_and_churn_band_choose_their_customers(
    served: Served, answers: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    with served.engine.connect() as conn:
        segments = pairs(conn.execute(select(UserFeatures.customer_id, UserFeatures.segment_id)))
        newest = conn.execute(select(func.max(ChurnScore.scored_at))).scalar_one()
        bands = pairs(
            conn.execute(
                select(ChurnScore.customer_id, ChurnScore.band).where(
                    ChurnScore.scored_at == newest
                )
            )
        )
    segment = Counter(segments.values()).most_common(1)[0][0]
    in_segment = {c for c, s in segments.items() if s == segment and answers[c]}
    by_segment = served.export(tmp_path / "segment.csv", top=10_000, segment=str(segment))
    assert set(by_segment["customer_id"]) == in_segment
    assert set(by_segment["segment_id"]) == {segment}

    high = {c for c, b in bands.items() if b == "high" and answers[c]}
    assert high
    by_band = served.export(tmp_path / "band.csv", top=10_000, churn_band="high")
    assert set(by_band["customer_id"]) == high
    assert set(by_band["churn_band"]) == {"high"}


def test_commit_records_contacts_which_then_cap_the_offer(
    world: RulesWorld, tmp_path: Path
) -> None:
    root = world.copy(tmp_path / "world")
    with serve(world.settings(root, contact_cap=1)) as served:

        def contacts() -> list[tuple[str, str, str | None]]:
            with served.engine.connect() as conn:
                rows = conn.execute(
                    select(
                        ContactHistory.customer_id,
                        ContactHistory.product_id,
                        ContactHistory.channel,
                    )
                )
                return sorted((str(c), str(p), ch) for c, p, ch in rows)

        started = datetime.now(UTC).replace(microsecond=0)
        before = served.export(tmp_path / "dry.csv", top=12, channel="app")
        assert contacts() == []  # a dry run records nothing

        committed = served.export(tmp_path / "commit.csv", top=12, channel="app", commit=True)
        shown = list(zip(committed["customer_id"], committed["product_id"], strict=True))
        assert shown == list(zip(before["customer_id"], before["product_id"], strict=True))
        assert contacts() == sorted((c, p, "app") for c, p in shown)
        with served.engine.connect() as conn:
            # The generated history has impressions of its own; these are the campaign's.
            impressions = conn.execute(
                select(Event.customer_id, Event.product_id, Event.channel)
                .where(Event.event_type == "offer_impression")
                .where(Event.ts >= started)
            ).all()
        assert sorted(tuple(i) for i in impressions) == sorted((c, p, "app") for c, p in shown)

        # Cap 1: each committed offer is now filtered from the API and from the next export.
        for customer, product in shown:
            offered = [o["product_id"] for o in served.answer(customer, channel="app")["offers"]]
            assert product not in offered, (customer, product, offered)
        again = served.export(tmp_path / "again.csv", top=12, channel="app")
        again_pairs = set(zip(again["customer_id"], again["product_id"], strict=True))
        assert not again_pairs & set(shown)


def test_cli_writes_parquet_and_s3_that_read_back(
    world: RulesWorld, served: Served, s3_endpoint: str, tmp_path: Path
) -> None:
    expected = served.export(tmp_path / "expected.csv", top=15)
    env = {**world.env(), **CREDENTIALS, "NEXTOFFER_S3_ENDPOINT_URL": s3_endpoint}
    runner = CliRunner()

    parquet = tmp_path / "top.parquet"
    done = runner.invoke(
        cli_app,
        ["campaign", "export", "--top", "15", "--channel", CHANNEL, "--out", str(parquet)],
        env=env,
    )
    assert done.exit_code == 0, done.output
    assert "dry run" in done.output and "15 exported" in done.output
    from_parquet = read_export(parquet, parquet=True)

    client = s3(s3_endpoint)
    client.create_bucket(Bucket="campaigns")
    url = "s3://campaigns/exports/2026/top.csv"
    done = runner.invoke(
        cli_app,
        ["campaign", "export", "--top", "15", "--channel", CHANNEL, "--out", url],
        env=env,
    )
    assert done.exit_code == 0, done.output
    body = client.get_object(Bucket="campaigns", Key="exports/2026/top.csv")["Body"].read()
    from_s3 = read_export(io.BytesIO(body))

    keys = ["customer_id", "product_id", "rank"]
    for got in (from_parquet, from_s3):
        assert list(got.columns) == list(COLUMNS)
        assert got[keys].values.tolist() == expected[keys].values.tolist()
        assert list(got["score"]) == pytest.approx(list(expected["score"]))
    with served.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ContactHistory)).scalar_one() == 0


def test_product_rules_hold_in_the_api_precompute_and_export(
    world: RulesWorld,
    served: Served,
    answers: dict[str, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    held = holdings(served.engine)
    fibre = fibre_reached(world)
    with served.engine.connect() as conn:
        stored = conn.execute(select(PrecomputedOffers.customer_id, PrecomputedOffers.offers))
        precomputed = {
            str(c): [o["product_id"] for o in (json.loads(o) if isinstance(o, str) else o)]
            for c, o in stored
        }
    everyone = served.export(tmp_path / "all.csv", top=10_000)
    fibre_takers = served.export(tmp_path / "fibre.csv", top=10_000, offer="BB-FIB-1G")
    consumers: dict[str, dict[str, list[str]]] = {
        "api": {c: [o["product_id"] for o in offers] for c, offers in answers.items()},
        "precompute": precomputed,
        "export": first_offers(everyone),
        "export --offer": first_offers(fibre_takers),
    }
    for name, offered in consumers.items():
        assert violations(offered, held, fibre) == [], name

    # The rules had customers to act on: broadband holders, several of them on DSL ...
    dsl = {c for c, products in held.items() if "BB-DSL-50" in products}
    on_broadband = {c for c, products in held.items() if products & set(BROADBAND)}
    assert len(dsl) >= 5 and len(on_broadband) >= 20
    # ... 5G and 1 Gbit holders (no upgrade path out) never got another line, while fibre
    # stayed open to DSL holders as their upgrade path.
    for customer in on_broadband:
        if held[customer] & {"BB-5G-HOME", "BB-FIB-1G"}:
            assert not set(BROADBAND) & set(precomputed.get(customer, [])), customer
    upgraded = {c for c in dsl if {"BB-FIB-300", "BB-FIB-1G"} & set(precomputed.get(c, []))}
    assert upgraded, "no DSL holder was offered fibre, the declared upgrade path"
    # Fibre 1 Gbit, which needs fiber_available=true, went to reached customers only, and
    # did go to some (the attribute reached the eligibility step).
    assert set(fibre_takers["customer_id"]) and set(fibre_takers["customer_id"]) <= fibre
