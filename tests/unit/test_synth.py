"""The synthetic world: deterministic, valid in the import format, with planted structure."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from nextoffer.ingest.entities import BY_NAME, ENTITIES, Entity, Kind
from nextoffer.synth.generator import GenerateResult, generate_world
from nextoffer.synth.market import CATEGORIES

SEED = 11
CUSTOMERS = 3000
END = datetime(2026, 11, 1, tzinfo=UTC)
FILES = [f"{e.name}.csv" for e in ENTITIES]
MONEY = re.compile(r"^\d+\.\d{2}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
NO_SPACE = re.compile(r"^\S+$")

Rows = list[dict[str, str]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> GenerateResult:
    """One world, in several chunks, shared by the read-only tests."""
    done: list[int] = []
    result = generate_world(
        tmp_path_factory.mktemp("world"),
        CUSTOMERS,
        SEED,
        chunk_customers=1000,
        progress=done.append,
    )
    assert done == [1000, 2000, 3000]
    return result


@pytest.fixture(scope="module")
def tables(world: GenerateResult) -> dict[str, Rows]:
    """Every import file and truth/customers.csv, as rows of text."""
    names = [e.name for e in ENTITIES] + ["truth/customers"]
    out = {}
    for name in names:
        with (world.out_dir / f"{name}.csv").open(encoding="utf-8", newline="") as fh:
            out[name] = list(csv.DictReader(fh))
    return out


def _bytes(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    first = generate_world(tmp_path / "a", 700, 5, chunk_customers=300)
    second = generate_world(tmp_path / "b", 700, 5, chunk_customers=300)
    other = generate_world(tmp_path / "c", 700, 6, chunk_customers=300)
    assert first.rows == second.rows
    assert _bytes(first.out_dir) == _bytes(second.out_dir)
    a, c = _bytes(first.out_dir), _bytes(other.out_dir)
    assert a["products.csv"] == c["products.csv"]  # the catalogue is fixed
    for name in FILES[1:]:
        assert a[name] != c[name], name


def test_files_headers_and_row_counts(world: GenerateResult) -> None:
    manifest = json.loads((world.out_dir / "manifest.json").read_text())
    assert manifest["seed"] == SEED
    assert manifest["customers"] == CUSTOMERS
    assert manifest["end"] == "2026-11-01T00:00:00Z"
    assert manifest["label_as_of"] == "2026-08-03"
    assert manifest["rows"] == world.rows
    assert world.customers == CUSTOMERS
    assert world.rows["customers"] == CUSTOMERS
    for entity in ENTITIES:
        raw = (world.out_dir / f"{entity.name}.csv").read_bytes()
        assert b"\r" not in raw and b'"' not in raw
        assert raw.endswith(b"\n")
        lines = raw.decode("utf-8").split("\n")[:-1]
        assert lines[0] == ",".join(entity.column_names)
        assert len(lines) - 1 == world.rows[entity.name]
        assert all(line.count(",") == len(entity.columns) - 1 for line in lines)
    truth = (world.out_dir / "truth" / "customers.csv").read_text().splitlines()
    assert truth[0].startswith("customer_id,latent_segment,churn_probability")
    assert len(truth) - 1 == CUSTOMERS
    segments = json.loads((world.out_dir / "truth" / "segments.json").read_text())
    assert sum(s["size"] for s in segments["segments"]) == CUSTOMERS


def _check_value(entity: Entity, column: str, value: str, known: dict[str, set[str]]) -> None:
    col = entity.column(column)
    where = f"{entity.name}.{column}={value!r}"
    if value == "":
        assert not col.required, f"{where}: required"
        return
    if col.kind is Kind.ID:
        assert len(value) <= col.max_length and NO_SPACE.match(value), where
        if col.references:
            assert value in known[col.references], f"{where}: unknown reference"
    elif col.kind is Kind.TEXT:
        assert len(value) <= col.max_length, where
    elif col.kind is Kind.INT:
        assert int(value) >= (col.min_value or 0), where
    elif col.kind is Kind.FLOAT:
        number = float(value)
        assert np.isfinite(number) and number >= (col.min_value or 0), where
        assert "e" not in value.lower(), where
    elif col.kind is Kind.MONEY:
        assert MONEY.match(value), where
    elif col.kind is Kind.BOOL:
        assert value in {"true", "false"}, where
    elif col.kind is Kind.DATE:
        assert DATE.match(value), where
        assert date.fromisoformat(value) < END.date(), f"{where}: after the end"
    elif col.kind is Kind.TIMESTAMP:
        assert TIMESTAMP.match(value), where
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        assert parsed < END, f"{where}: after the end"
    elif col.kind is Kind.ENUM:
        assert value in col.choices, where
    elif col.kind is Kind.ENUM_LIST:
        assert set(value.split("|")) <= set(col.choices), where


def test_every_row_follows_the_import_format(tables: dict[str, Rows]) -> None:
    known: dict[str, set[str]] = {}
    for entity in ENTITIES:
        rows = tables[entity.name]
        assert rows, entity.name
        for row in rows:
            for column in entity.column_names:
                _check_value(entity, column, row[column], known)
        keys = [tuple(row[k] for k in entity.key) for row in rows]
        assert len(set(keys)) == len(keys), f"{entity.name}: duplicate keys"
        if len(entity.key) == 1:
            known[entity.name] = {k[0] for k in keys}
    for p in tables["products"]:
        assert float(p["margin"]) <= float(p["price"])
    for s in tables["subscriptions"]:
        assert not s["end_date"] or s["end_date"] >= s["start_date"]
    for c in tables["churn_labels"]:
        assert (c["churn_date"] != "") == (c["churned"] == "true")
        assert not c["churn_date"] or c["churn_date"] > c["as_of"]
    assert {c["plan_id"] for c in tables["customers"]} <= known["products"]


def test_catalogue_shape(tables: dict[str, Rows]) -> None:
    products = tables["products"]
    categories = Counter(p["category"] for p in products)
    assert 35 <= len(products) <= 45
    # The generator keeps its own five categories; the format accepts more (fixed voice, TV...).
    assert set(categories) == {c.value for c in CATEGORIES}
    assert set(categories) <= set(BY_NAME["products"].column("category").choices)
    assert sum(p["is_retention_offer"] == "true" for p in products) >= 3
    fibre = [p for p in products if p["product_id"].startswith("BB-FIB")]
    assert fibre and all(p["regions"] for p in fibre)
    addons = [p for p in products if p["category"] == "addon"]
    assert all(p["requires_category"] for p in addons if p["is_retention_offer"] == "false")


def test_holdings_are_consistent_with_transactions(tables: dict[str, Rows]) -> None:
    subs, txns = tables["subscriptions"], tables["transactions"]
    starts = {
        (t["customer_id"], t["product_id"], t["ts"][:10])
        for t in txns
        if t["type"] in {"activation", "purchase", "upgrade", "downgrade"}
    }
    for s in subs:
        if s["start_date"] >= "2024-11-01":
            assert (s["customer_id"], s["product_id"], s["start_date"]) in starts, s
    ends = {(s["customer_id"], s["product_id"], s["end_date"]) for s in subs}
    for t in txns:
        if t["type"] == "cancellation":
            assert (t["customer_id"], t["product_id"], t["ts"][:10]) in ends, t
    # Never two open periods of the same product at once.
    spans: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for s in subs:
        spans[(s["customer_id"], s["product_id"])].append(
            (s["start_date"], s["end_date"] or "9999-12-31")
        )
    for periods in spans.values():
        periods.sort()
        for (_, end), (start, _) in pairwise(periods):
            assert start > end

    per_customer = len(txns) / CUSTOMERS
    assert 3.0 <= per_customer <= 6.0
    assert {"activation", "purchase", "upgrade", "downgrade", "cancellation"} <= {
        t["type"] for t in txns
    }


def test_churners_leave_cleanly(tables: dict[str, Rows]) -> None:
    churn_day = {
        c["customer_id"]: c["churn_date"] for c in tables["churn_labels"] if c["churn_date"]
    }
    signup = {c["customer_id"]: c["signup_date"] for c in tables["customers"]}
    cancelled = {
        (t["customer_id"], t["ts"][:10])
        for t in tables["transactions"]
        if t["type"] == "cancellation"
    }
    plans = {c["customer_id"]: c["plan_id"] for c in tables["customers"]}
    for customer, day in churn_day.items():
        assert (customer, day) in cancelled
        assert plans[customer]
    for s in tables["subscriptions"]:
        if s["customer_id"] in churn_day:
            assert s["end_date"] and s["end_date"] <= churn_day[s["customer_id"]]
    for e in tables["events"]:
        day = e["ts"][:10]
        assert day >= signup[e["customer_id"]]
        assert day < churn_day.get(e["customer_id"], "9999-12-31")
    for t in tables["transactions"]:
        assert signup[t["customer_id"]] <= t["ts"][:10] <= churn_day.get(t["customer_id"], "9999")
    # Labels exist exactly for customers who joined before label_as_of.
    labelled = {c["customer_id"] for c in tables["churn_labels"]}
    assert labelled == {c for c, d in signup.items() if d < "2026-08-03"}


def test_events_volume_and_offer_fields(tables: dict[str, Rows]) -> None:
    events = tables["events"]
    assert 5.0 <= len(events) / CUSTOMERS <= 12.0
    kinds = Counter(e["event_type"] for e in events)
    assert set(kinds) == set(BY_NAME["events"].column("event_type").choices)
    for e in events:
        if e["event_type"].startswith("offer_"):
            assert e["product_id"] and e["channel"] and e["session_id"], e
        assert e["ts"] >= "2026-05-03"


def _churn_frame(tables: dict[str, Rows]) -> dict[str, np.ndarray]:
    truth = {t["customer_id"]: t for t in tables["truth/customers"]}
    customers = {c["customer_id"]: c for c in tables["customers"]}
    service: Counter[str] = Counter(
        e["customer_id"]
        for e in tables["events"]
        if e["event_type"] in {"support_call", "network_complaint"}
        and "2026-05-05" <= e["ts"][:10] < "2026-08-03"
    )
    labels = tables["churn_labels"]
    ids = [c["customer_id"] for c in labels]
    return {
        "y": np.array([c["churned"] == "true" for c in labels]),
        "p": np.array([float(truth[i]["churn_probability"]) for i in ids]),
        "contract": np.array([customers[i]["contract_type"] for i in ids]),
        "service": np.array([service[i] for i in ids]),
        "segment": np.array([truth[i]["latent_segment"] for i in ids]),
    }


def test_planted_churn_drivers_are_visible(tables: dict[str, Rows]) -> None:
    f = _churn_frame(tables)
    y = f["y"]
    assert 0.15 <= y.mean() <= 0.30
    assert y[f["contract"] == "month_to_month"].mean() > 2 * y[f["contract"] == "two_year"].mean()
    assert y[f["service"] >= 2].mean() > y[f["service"] < 2].mean() + 0.1
    assert abs(f["p"].mean() - y.mean()) < 0.03


def test_truth_probability_ranks_churners(tables: dict[str, Rows]) -> None:
    f = _churn_frame(tables)
    assert roc_auc_score(f["y"], f["p"]) > 0.75


def test_product_uptake_differs_by_latent_segment(tables: dict[str, Rows]) -> None:
    segment = {t["customer_id"]: t["latent_segment"] for t in tables["truth/customers"]}
    bought: dict[str, Counter[str]] = defaultdict(Counter)
    for t in tables["transactions"]:
        if t["type"] == "purchase":
            bought[segment[t["customer_id"]]][t["product_id"]] += 1
    assert len(bought) == 6
    tops = {s: counts.most_common(1)[0][0] for s, counts in bought.items()}
    assert len(set(tops.values())) >= 5, tops


def test_custom_end_moves_the_calendar(tmp_path: Path) -> None:
    end = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)
    result = generate_world(tmp_path, 200, 3, end=end)
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["end"] == "2025-03-15T00:00:00Z"
    assert manifest["label_as_of"] == "2024-12-15"
    with (result.out_dir / "events.csv").open() as fh:
        assert max(row["ts"] for row in csv.DictReader(fh)) < "2025-03-15"


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="customers"):
        generate_world(tmp_path, 0, 1)
    with pytest.raises(ValueError, match="seed"):
        generate_world(tmp_path, 10, -1)
