"""The console shows custom attributes (customer 360) and the data profile, over plain HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from nextoffer.ingest.entities import CUSTOMERS
from nextoffer.store.schema import Customer
from tests.browser.conftest import ConsoleWorld
from tests.browser.test_console_http import sign_in
from tests.e2e.server import run_cli

# Display only: shown by the console, never a model feature, so the served models and the
# other tests of this world see no new input.
MAPPING = """\
files:
  customers:
    path: crm-attributes.csv
    attributes:
      Loyalty Tier: {role: display}
      Fiber Available: {kind: boolean, role: display}
"""


@pytest.fixture(scope="module")
def with_attributes(world: ConsoleWorld, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A customer of the world loaded again with two attributes (same master data)."""
    (customer_id,) = world.take(1)
    with world.engine.connect() as conn:
        row = conn.execute(select(Customer).where(Customer.customer_id == customer_id)).one()
    values = [
        "" if getattr(row, c) is None else str(getattr(row, c)) for c in CUSTOMERS.column_names
    ]
    folder = tmp_path_factory.mktemp("crm")
    header = ",".join([*CUSTOMERS.column_names, "Loyalty Tier", "Fiber Available"])
    line = ",".join(f'"{v}"' for v in [*values, "Gold \u2605", "Yes"])
    (folder / "crm-attributes.csv").write_text(f"{header}\n{line}\n", encoding="utf-8")
    mapping = folder.parent / f"{folder.name}-mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    run_cli(world.env, "ingest", str(folder), "--mapping", str(mapping))
    return customer_id


def test_the_customer_page_shows_attributes_with_their_kinds(
    world: ConsoleWorld, with_attributes: str
) -> None:
    with sign_in(world, "viewer") as (client, _):
        page = client.get(f"/customers/{with_attributes}")
    assert page.status_code == 200
    html = page.text
    assert 'id="attributes"' in html
    assert (
        '<dd data-attribute="loyalty_tier" data-kind="category" data-role="display">'
        "Gold \u2605 " in html
    )
    assert (
        '<dd data-attribute="fiber_available" data-kind="boolean" data-role="display">yes ' in html
    )
    with world.engine.connect() as conn:
        stored = conn.execute(
            select(Customer.attributes).where(Customer.customer_id == with_attributes)
        ).scalar_one()
    assert stored == {"fiber_available": True, "loyalty_tier": "Gold \u2605"}


def test_the_data_profile_page_counts_what_the_database_holds(
    world: ConsoleWorld, with_attributes: str
) -> None:
    with world.engine.connect() as conn:
        customers = len(conn.execute(select(Customer.customer_id)).all())
    with sign_in(world, "viewer") as (client, _):
        page = client.get("/data/profile")
        markdown = client.get("/data/profile.md")
    assert page.status_code == 200 and markdown.status_code == 200
    assert f'id="table-customers" data-rows="{customers}"' in page.text
    # One customer of many has the attribute: its row counts the others as empty.
    assert f'data-column="loyalty_tier" data-empty="{customers - 1}" data-distinct="1"' in (
        page.text
    )
    assert "| `loyalty_tier` | category | display |" in markdown.text
    assert markdown.headers["cache-control"] == "no-store"
    assert Path(markdown.headers["content-disposition"].split('"')[1]).suffix == ".md"
