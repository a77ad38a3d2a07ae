"""Generate a synthetic telco world in the import format, chunk by chunk, plus its hidden truth."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from nextoffer.domain.vocabulary import EventType
from nextoffer.ingest.entities import (
    CHURN_LABELS,
    CONSENT,
    CUSTOMERS,
    DO_NOT_CALL,
    ENTITIES,
    EVENTS,
    EXPOSURES,
    PRODUCTS,
    SUBSCRIPTIONS,
    TRANSACTIONS,
    Entity,
)
from nextoffer.synth import market
from nextoffer.synth.arrays import I64
from nextoffer.synth.campaign import CampaignOutcome, run_campaign
from nextoffer.synth.campaign_truth import (
    UPLIFT_COLUMNS,
    CampaignTally,
    exposure_columns,
    uplift_columns,
)
from nextoffer.synth.catalog import Catalog
from nextoffer.synth.consent import consent_rows
from nextoffer.synth.events import (
    DAY,
    EventColumns,
    activity_events,
    offer_events,
    service_counts,
)
from nextoffer.synth.market import CATEGORIES, CHANNELS, CONTRACTS, REGIONS
from nextoffer.synth.names import FIRST_NAMES, LAST_NAMES
from nextoffer.synth.population import Population, draw_population
from nextoffer.synth.products import COMPLEMENTS
from nextoffer.synth.segments import SEGMENTS, affinity_matrix
from nextoffer.synth.simulate import TXN_TYPES, ChunkSimulation, ChurnOutcome
from nextoffer.synth.world import (
    CHURN,
    CUSTOMER_EFFECTS,
    FORMAT_VERSION,
    MAX_TENURE_DAYS,
    PRICE_PENALTY,
    Timeline,
)
from nextoffer.synth.writer import Column, Text, join, write_header, write_rows

TRUTH_COLUMNS = (
    "customer_id",
    "latent_segment",
    "churn_probability",
    "price_sensitivity",
    "service_issue_level",
    "shopper_activity",
    "digital_level",
    "churn_noise",
)

CUSTOMER_WIDTH = 8
AGE_BANDS = [a.value for a in market.AGE_BANDS]
PAYMENTS = [p.value for p in market.PAYMENT_METHODS]
EVENT_NAMES = [e.value for e in EventType]


@dataclass(frozen=True)
class GenerateResult:
    """What generate_world wrote."""

    out_dir: Path
    customers: int
    rows: dict[str, int]
    seconds: float


@dataclass(frozen=True)
class ChunkOutput:
    """One simulated chunk, ready to be written."""

    pop: Population
    churn: ChurnOutcome
    txn: dict[str, I64]
    sub: dict[str, I64]
    events: EventColumns
    campaign: CampaignOutcome


def simulate_chunk(
    rng: np.random.Generator, first_number: int, n: int, catalog: Catalog, tl: Timeline
) -> ChunkOutput:
    """Draw customers, run their history through the window, decide churn, add events."""
    pop = draw_population(rng, first_number, n, catalog, tl)
    sim = ChunkSimulation(rng, pop, catalog, tl)
    sim.initialise()
    activity = activity_events(rng, pop, tl)
    for a, b in tl.steps:
        if b <= tl.label_day:
            sim.step(a, b, plan_changes=True)
    churn = sim.decide_churn(service_counts(activity, n, tl))
    # What an offer engine would show: products the customer could buy at label_as_of.
    weights = sim.offer_weights(tl.label_day)
    # The campaign draws from its own stream (spawned, so the chunk's stream is untouched):
    # everything before label_as_of, and churn outside retention offers, stays as it was.
    campaign, churn = run_campaign(rng.spawn(1)[0], pop, catalog, tl, sim, churn, weights)
    for a, b in tl.steps:
        if a >= tl.label_day:
            sim.step(a, b, plan_changes=False)
    sim.finish()
    txn = sim.records.transactions()
    txn["secs"] = txn["day"] * DAY + rng.integers(8 * 3600, 21 * 3600, len(txn["day"]))
    offers = offer_events(rng, pop, catalog, tl, weights, txn, churn.churn_day)
    # Nobody is seen after leaving.
    activity = activity.take(activity.secs // DAY < churn.churn_day[activity.cust])
    events = EventColumns.concat([activity, offers])
    return ChunkOutput(pop, churn, txn, sim.records.subscriptions(), events, campaign)


def _ordered(rows: dict[str, I64], *keys: str) -> dict[str, I64]:
    """Every column of `rows` sorted by `keys`, the first key the most significant."""
    order = np.lexsort([rows[key] for key in reversed(keys)])
    return {name: values[order] for name, values in rows.items()}


def _rank(cust: I64) -> I64:
    """1-based position of each row within its customer's run (rows sorted by customer)."""
    n = len(cust)
    idx = np.arange(n, dtype=np.int64)
    starts = np.ones(n, np.bool_)
    starts[1:] = cust[1:] != cust[:-1]
    return idx - np.maximum.accumulate(np.where(starts, idx, 0)) + 1


class WorldWriter:
    """Appends chunks to the import files and the truth file."""

    def __init__(
        self, out_dir: Path, catalog: Catalog, tl: Timeline, stack: ExitStack, seed: int = 0
    ) -> None:
        self.cat = catalog
        self.tl = tl
        self.seed = seed
        self.text = Text(tl.end_day - MAX_TENURE_DAYS - 10, tl.end_day + 1)
        self.rows = {e.name: 0 for e in ENTITIES}
        self.files: dict[str, BinaryIO] = {}
        for entity in ENTITIES:
            fh = stack.enter_context((out_dir / f"{entity.name}.csv").open("wb"))
            write_header(fh, entity.column_names)
            self.files[entity.name] = fh
        self.truth = stack.enter_context((out_dir / "truth" / "customers.csv").open("wb"))
        write_header(self.truth, TRUTH_COLUMNS)
        self.label = tl.iso_day(tl.label_day)
        self.uplift = stack.enter_context((out_dir / "truth" / "uplift.csv").open("wb"))
        write_header(self.uplift, UPLIFT_COLUMNS)
        self.tally = CampaignTally(tl, catalog)

    def _write(self, entity: Entity, columns: dict[str, Column], n: int) -> None:
        # Columns this generator does not know (added to the format later) stay empty.
        empty = Text.choice([""], np.full(n, -1, np.int64))
        ordered = [columns.get(name, empty) for name in entity.column_names]
        self.rows[entity.name] += write_rows(self.files[entity.name], ordered)

    def _write_owned(
        self,
        entity: Entity,
        id_format: tuple[str, int],
        numbers: I64,
        cust: I64,
        prod: I64,
        columns: dict[str, Column],
    ) -> None:
        """Write rows customers own (sorted by customer `cust`), with their product.

        Adds the customer (its number from `numbers`) and the row's id, numbered within its
        customer: T00000042-003 for `id_format` ("T", 3).
        """
        prefix, rank_width = id_format
        t = self.text
        owner = numbers[cust]
        ids = t.child_ids(prefix, owner, CUSTOMER_WIDTH, _rank(owner), rank_width)
        customers = t.ids("C", owner, CUSTOMER_WIDTH)
        products = Text.choice(self.cat.ids, prod)
        key = {entity.key[0]: ids, "customer_id": customers, "product_id": products}
        self._write(entity, key | columns, len(owner))

    def products(self) -> None:
        """The catalogue file."""
        t, cat = self.text, self.cat
        n = cat.n
        ps = cat.products

        def joined(values: list[tuple[str, ...]]) -> Column:
            return Text.choice(
                ["|".join(v) for v in values], np.arange(n), np.array([bool(v) for v in values])
            )

        cols = {
            "product_id": Text.choice(cat.ids, np.arange(n)),
            "name": Text.choice([p.name for p in ps], np.arange(n)),
            "category": Text.choice([c.value for c in CATEGORIES], cat.category.astype(np.int64)),
            "price": t.money(cat.price),
            "margin": t.money(np.array([p.margin for p in ps], np.int64)),
            "upfront_price": t.money(np.array([p.upfront for p in ps], np.int64)),
            "contract_types": joined([tuple(c.value for c in p.contracts) for p in ps]),
            "min_tenure_months": t.integers(np.array([p.min_tenure_months for p in ps])),
            "regions": joined([p.regions for p in ps]),
            "channels": joined([tuple(c.value for c in p.channels) for p in ps]),
            "requires_category": Text.choice(
                [c.value for c in CATEGORIES], cat.requires.astype(np.int64)
            ),
            "is_retention_offer": Text.choice(["false", "true"], cat.retention.astype(np.int64)),
            "active": Text.choice(["false", "true"], cat.active.astype(np.int64)),
            "offer_cost": t.money(cat.offer_cost),
        }
        self._write(PRODUCTS, cols, n)

    def chunk(self, out: ChunkOutput) -> None:
        """Append one chunk to every file."""
        t, cat, pop, churn = self.text, self.cat, out.pop, out.churn
        n = len(pop)
        cust_ids = t.ids("C", pop.number, CUSTOMER_WIDTH)
        display = join(
            Text.choice(FIRST_NAMES, pop.first_name), Text.choice(LAST_NAMES, pop.last_name), " "
        )
        self._write(
            CUSTOMERS,
            {
                "customer_id": cust_ids,
                "display_name": display,
                "age_band": Text.choice(AGE_BANDS, pop.age),
                "region": Text.choice([r.name for r in REGIONS], pop.region),
                "signup_date": t.dates(pop.signup),
                "contract_type": Text.choice([c.value for c in CONTRACTS], pop.contract),
                "payment_method": Text.choice(PAYMENTS, pop.payment),
                "plan_id": Text.choice(cat.ids, churn.plan),
                "arpu": t.money(churn.arpu_cents),
                "data_gb_month": t.floats(pop.data_gb, 1),
                "voice_min_month": t.floats(pop.voice_min, 1),
            },
            n,
        )

        sub = _ordered(out.sub, "cust", "start", "prod")
        self._write_owned(
            SUBSCRIPTIONS,
            ("S", 2),
            pop.number,
            sub["cust"],
            sub["prod"],
            {
                "start_date": t.dates(sub["start"]),
                "end_date": t.dates(sub["end"], sub["end"] >= 0),
                "monthly_price": t.money(sub["price"]),
            },
        )

        txn = _ordered(out.txn, "cust", "secs", "type", "prod")
        self._write_owned(
            TRANSACTIONS,
            ("T", 3),
            pop.number,
            txn["cust"],
            txn["prod"],
            {
                "ts": t.timestamps(txn["secs"]),
                "type": Text.choice([k.value for k in TXN_TYPES], txn["type"]),
                "amount": t.money(txn["amount"]),
                "channel": Text.choice([c.value for c in CHANNELS], txn["chan"]),
            },
        )

        ev = out.events
        ev = ev.take(np.lexsort((ev.prod, ev.kind, ev.secs, ev.cust)))
        self._write_owned(
            EVENTS,
            ("E", 4),
            pop.number,
            ev.cust,
            ev.prod,
            {
                "ts": t.timestamps(ev.secs),
                "event_type": Text.choice(EVENT_NAMES, ev.kind),
                "channel": Text.choice([c.value for c in CHANNELS], ev.chan),
                "session_id": t.ids("s", ev.session, 0, ev.session >= 0),
            },
        )

        lab = np.flatnonzero(churn.labelled)
        self._write(
            CHURN_LABELS,
            {
                "customer_id": t.ids("C", pop.number[lab], CUSTOMER_WIDTH),
                "as_of": Text.constant(self.label, len(lab)),
                "churned": Text.choice(["false", "true"], churn.churned[lab].astype(np.int64)),
                "churn_date": t.dates(churn.churn_day[lab], churn.churned[lab]),
            },
            len(lab),
        )

        consent = consent_rows(t, pop.number, pop.signup, self.seed, CUSTOMER_WIDTH)
        self._write(CONSENT, consent.consent, consent.consent_rows)
        self._write(DO_NOT_CALL, consent.do_not_call, consent.do_not_call_rows)

        camp = out.campaign
        exposed_ids = t.ids("C", pop.number[camp.cust], CUSTOMER_WIDTH)
        self._write(EXPOSURES, exposure_columns(camp, exposed_ids, cat, self.tl), len(camp))
        write_rows(self.uplift, uplift_columns(camp, exposed_ids, cat, t))
        self.tally.add(camp, pop.segment[camp.cust])

        truth = [
            cust_ids,
            Text.choice([s.name for s in SEGMENTS], pop.segment),
            t.floats(churn.probability, 6),
            t.floats(pop.price_sensitivity, 4),
            t.floats(pop.service_issues, 4),
            t.floats(pop.shopper, 4),
            t.floats(pop.digital, 4),
            t.floats(pop.churn_noise, 4),
        ]
        write_rows(self.truth, truth)


def _segments_json(catalog: Catalog, sizes: I64) -> dict[str, Any]:
    affinity = affinity_matrix(catalog)
    base = np.log(np.maximum(catalog.base_rate, 1e-12))
    out = []
    for s, seg in enumerate(SEGMENTS):
        score = np.where(catalog.buyable, base + affinity[s], -np.inf)
        top = [catalog.ids[j] for j in np.argsort(-score, kind="stable")[:5]]
        traits = {
            k: v
            for k, v in asdict(seg).items()
            if k not in {"name", "description", "share", "affinity"}
        }
        out.append(
            {
                "name": seg.name,
                "description": seg.description,
                "share": seg.share,
                "size": int(sizes[s]),
                "top_products": top,
                "affinity": dict(sorted(seg.affinity.items(), key=lambda kv: -kv[1])),
                "traits": traits,
            }
        )
    return {
        "segments": out,
        "note": (
            "monthly purchase hazard = base_rate * exp(segment affinity + customer effects "
            "+ complements of held products - price_penalty * price_sensitivity * "
            "log(1 + monthly price / 10)) * shopper_activity"
        ),
        "base_rates": dict(zip(catalog.ids, catalog.base_rate.tolist(), strict=True)),
        "customer_effects": {k: asdict(v) for k, v in CUSTOMER_EFFECTS.items()},
        "complements": [{"held": h, "bought": b, "weight": w} for h, b, w in COMPLEMENTS],
        "price_penalty": PRICE_PENALTY,
    }


def _churn_json(tl: Timeline, labelled: int, churned: int) -> dict[str, Any]:
    return {
        "label_as_of": tl.iso_day(tl.label_day),
        "window_days": tl.end_day - tl.label_day,
        "coefficients": asdict(CHURN),
        "contract_order": [c.value for c in CONTRACTS],
        "payment_order": PAYMENTS,
        "labelled": labelled,
        "churned": churned,
        "churn_rate": churned / labelled if labelled else 0.0,
    }


def _dump(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def generate_world(
    out_dir: Path,
    customers: int,
    seed: int,
    end: datetime | None = None,
    chunk_customers: int = 50_000,
    progress: Callable[[int], None] | None = None,
) -> GenerateResult:
    """Write a synthetic world of `customers` customers to `out_dir` (deterministic per seed).

    Chunks of `chunk_customers` are simulated with their own random stream (seed, chunk
    index) and appended to the files, so memory stays bounded whatever the size.
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if chunk_customers < 1:
        raise ValueError("chunk_customers must be at least 1")
    if seed < 0:
        raise ValueError("seed must be zero or positive")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "truth").mkdir(parents=True, exist_ok=True)
    tl = Timeline.build(end)
    catalog = Catalog()
    sizes = np.zeros(len(SEGMENTS), np.int64)
    labelled = churned = 0
    with ExitStack() as stack:
        writer = WorldWriter(out_dir, catalog, tl, stack, seed)
        writer.products()
        for index, first in enumerate(range(0, customers, chunk_customers)):
            n = min(chunk_customers, customers - first)
            rng = np.random.default_rng([seed, index])
            out = simulate_chunk(rng, first + 1, n, catalog, tl)
            writer.chunk(out)
            sizes += np.bincount(out.pop.segment, minlength=len(SEGMENTS))
            labelled += int(out.churn.labelled.sum())
            churned += int(out.churn.churned.sum())
            if progress is not None:
                progress(first + n)
        rows = dict(writer.rows)
        impact = writer.tally.to_json()
    _dump(out_dir / "truth" / "impact.json", impact)
    _dump(out_dir / "truth" / "segments.json", _segments_json(catalog, sizes))
    _dump(out_dir / "truth" / "churn_model.json", _churn_json(tl, labelled, churned))
    _dump(
        out_dir / "manifest.json",
        {
            "format_version": FORMAT_VERSION,
            "generator": "nextoffer.synth",
            "seed": seed,
            "customers": customers,
            "chunk_customers": chunk_customers,
            "end": tl.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "history_start": tl.iso_day(tl.history_start),
            "events_start": tl.iso_day(tl.events_start),
            "label_as_of": tl.iso_day(tl.label_day),
            "rows": rows,
            "files": [f"{e.name}.csv" for e in ENTITIES],
            "campaign_day": tl.iso_day(tl.label_day),
            "truth": [
                "truth/customers.csv",
                "truth/segments.json",
                "truth/churn_model.json",
                "truth/uplift.csv",
                "truth/impact.json",
            ],
        },
    )
    return GenerateResult(out_dir, customers, rows, time.perf_counter() - started)
