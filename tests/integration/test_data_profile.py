"""`nextoffer data profile`: the Markdown's numbers are the database's, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from nextoffer.cli import app
from nextoffer.ingest import format_guide as guide
from nextoffer.store.engine import make_engine
from nextoffer.store.migrate import upgrade
from nextoffer.store.schema import (
    Base,
    Customer,
    IngestLedgerEntry,
    Product,
    QuarantinedRow,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bad_rows"


def sections(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Each `## heading`'s Markdown table as rows of {header: cell}."""
    found: dict[str, list[dict[str, str]]] = {}
    heading = ""
    header: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("## "):
            heading, header = line[3:].split(" (")[0], []
            found[heading] = []
        elif line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not header:
                header = cells
            else:
                found[heading].append(dict(zip(header, cells, strict=True)))
    return found


def by_name(rows: list[dict[str, str]], key: str = "column") -> dict[str, dict[str, str]]:
    return {row[key].strip("`"): row for row in rows}


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %"


def test_the_profile_holds_the_databases_numbers(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine: Engine = make_engine(database_url)
    upgrade(engine)
    corpus = shutil.copytree(FIXTURES, tmp_path / "corpus")
    example = tmp_path / "example"
    example.mkdir()
    (example / "telco_export.csv").write_text(guide.EXAMPLE_EXPORT, encoding="utf-8")
    (example / "products.csv").write_text(guide.EXAMPLE_PRODUCTS, encoding="utf-8")
    (tmp_path / "mapping.yaml").write_text(guide.EXAMPLE_MAPPING, encoding="utf-8")
    monkeypatch.setenv("NEXTOFFER_DATABASE_URL", database_url)
    monkeypatch.setenv("NEXTOFFER_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    for args in (
        ["ingest", str(corpus)],
        ["ingest", str(example), "--mapping", str(tmp_path / "mapping.yaml")],
    ):
        done = runner.invoke(app, args)
        assert done.exit_code == 0, done.output

    out = tmp_path / "profile.md"
    done = runner.invoke(app, ["data", "profile", "--out", str(out)])
    assert done.exit_code == 0, done.output
    printed = runner.invoke(app, ["data", "profile"])
    assert printed.exit_code == 0, printed.output
    markdown = out.read_text(encoding="utf-8")
    # Printed and written are the same document, but for the time it was made.
    assert printed.stdout.splitlines()[3:] == markdown.splitlines()[3:]
    tables = sections(markdown)

    with engine.connect() as conn:
        for name in ("products", "customers", "subscriptions", "transactions", "events"):
            table = Base.metadata.tables[name]
            rows = conn.execute(select(func.count()).select_from(table)).scalar_one()
            assert f"## {name} ({rows:,} rows)" in markdown
        customers = conn.execute(select(func.count()).select_from(Customer)).scalar_one()
        no_name = conn.execute(
            select(func.count()).select_from(Customer).where(Customer.display_name.is_(None))
        ).scalar_one()
        regions = Counter(conn.execute(select(Customer.region)).scalars())
        prices = [float(p) for p in conn.execute(select(Product.price)).scalars()]
        categories = len(set(conn.execute(select(Product.category)).scalars()))
        reasons = Counter(
            (e, r.split(":")[0])
            for e, r in conn.execute(select(QuarantinedRow.entity, QuarantinedRow.reason))
        )
        read = Counter()
        for entity, n in conn.execute(
            select(IngestLedgerEntry.entity, IngestLedgerEntry.rows_read)
        ):
            read[entity] += int(n)

    people = by_name(tables["customers"])
    assert people["customer_id"]["distinct"] == "unique (key)"
    assert people["display_name"]["empty"] == pct(no_name, customers)
    assert no_name == 5  # the example export has no names
    assert people["region"]["distinct"] == str(len(regions))
    top_region, top_count = regions.most_common(1)[0]
    assert people["region"]["top values"].startswith(f"{top_region} ({top_count})")
    catalogue = by_name(tables["products"])
    assert catalogue["category"]["distinct"] == str(categories)
    assert float(catalogue["price"]["min"]) == min(prices)
    assert float(catalogue["price"]["max"]) == max(prices)
    assert catalogue["exclusion_group"]["top values"] == "internet (2)"

    attributes = by_name(tables["Custom attributes"], "attribute")
    assert set(attributes) == {"churn", "gender", "partner", "senior_citizen"}
    assert attributes["gender"]["role"] == "display"
    # The corpus's 3 customers have no attributes: empty for them.
    assert attributes["gender"]["empty"] == pct(customers - 5, customers)
    assert attributes["gender"]["top values"] == "Male (3), Female (2)"
    assert attributes["senior_citizen"]["top values"] == "false (5)"

    quarantine = {
        (r["entity"], r["reason"].strip("`")): int(r["rows"]) for r in tables["Quarantine"]
    }
    assert quarantine == dict(reasons)
    assert quarantine[("customers", "bad_enum")] == 1  # the example's 'Bitcoin'

    references = by_name(tables["References"], "entity")
    for entity in ("subscriptions", "transactions", "events"):
        unknown = reasons[(entity, "unknown_customer")] + reasons[(entity, "unknown_product")]
        row = references[entity]
        assert int(row["rows read"].replace(",", "")) == read[entity]
        assert row["known"] == pct(read[entity] - unknown, read[entity])
    assert references["transactions"]["unknown customer"] == "1"  # C999 of the corpus
    engine.dispose()
