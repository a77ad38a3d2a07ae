"""An operator's own export, loaded through a mapping file, on SQLite and PostgreSQL.

The export is made from the generator's world the way a telco's CRM would give it: one
wide row per customer, Yes/No columns per product from the holdings at the end, its own
spellings of contracts and payments, tenure instead of a signup date, extra attribute
columns and a Churn column; no transactions, no names, no age bands.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from nextoffer.config import Settings
from nextoffer.domain.attributes import AttributeKind, AttributeRole, AttributeSpec
from nextoffer.domain.errors import InputError
from nextoffer.ingest import format_guide as guide
from nextoffer.jobs.calls import run_features, run_ingest
from nextoffer.pipelines.etl import Staged
from nextoffer.pipelines.nightly import extract, load
from nextoffer.store.engine import make_engine
from nextoffer.store.ledger import list_entries
from nextoffer.store.migrate import upgrade
from nextoffer.store.reads.attributes import attribute_schema
from nextoffer.store.reads.features import current_features
from nextoffer.store.schema import ChurnLabel, Customer, QuarantinedRow, Subscription
from nextoffer.synth.generator import generate_world
from tests.helpers import dump_all

CONTRACTS = {
    "prepaid": "Prepaid",
    "month_to_month": "Month-to-month",
    "one_year": "One year",
    "two_year": "Two year",
}
PAYMENTS = {
    "direct_debit": "Bank transfer (automatic)",
    "credit_card": "Credit card (automatic)",
    "bank_transfer": "Electronic check",
    "voucher": "Mailed check",
}
AS_OF = "2026-06-01"
BAD_PAYMENT_ROW = 3  # 0-based data row with a payment method the mapping does not know
BAD_CHARGES_ROW = 240  # 0-based data row whose MonthlyCharges is no number (not in block 1)


@dataclass(frozen=True)
class Export:
    """The operator's folder, its mapping file, and what the export holds."""

    folder: Path
    mapping: Path
    rows: pd.DataFrame
    product_columns: list[str]


def make_export(tmp_path: Path, customers: int = 260, seed: int = 11) -> Export:
    world = tmp_path / "world"
    generate_world(world, customers, seed)
    products = pd.read_csv(world / "products.csv", dtype=str, keep_default_na=False)
    people = pd.read_csv(world / "customers.csv", dtype=str, keep_default_na=False)
    subs = pd.read_csv(world / "subscriptions.csv", dtype=str, keep_default_na=False)
    labels = pd.read_csv(world / "churn_labels.csv", dtype=str, keep_default_na=False)
    held = subs[(subs["end_date"] == "") | (subs["end_date"] >= AS_OF)]
    held = held[held["start_date"] <= AS_OF]
    pairs = set(zip(held["customer_id"], held["product_id"], strict=True))
    product_ids = sorted(products["product_id"])
    newest_label = labels[labels["as_of"] == labels["as_of"].max()]
    churned = dict(zip(newest_label["customer_id"], newest_label["churned"], strict=True))
    rows: list[dict[str, str]] = []
    as_of = pd.Timestamp(AS_OF)
    for i, person in enumerate(people.itertuples(index=False)):
        signup = pd.Timestamp(person.signup_date)
        tenure = max(0, round((as_of - signup).days / (365.25 / 12)))
        row = {
            "customerID": person.customer_id,
            "gender": "Female" if i % 2 else "Male",
            "SeniorCitizen": "1" if i % 5 == 0 else "0",
            "Household": ("single", "couple", "family")[i % 3],
            "tenure": str(tenure),
            "Contract": CONTRACTS[person.contract_type],
            "PaymentMethod": PAYMENTS[person.payment_method],
            "MonthlyCharges": person.arpu,
            "TotalCharges": f"{float(person.arpu) * max(tenure, 1):.2f}",
            "Churn": {"true": "Yes", "false": "No"}.get(churned.get(person.customer_id, ""), ""),
        }
        for pid in product_ids:
            row[pid] = "Yes" if (person.customer_id, pid) in pairs else "No"
        rows.append(row)
    rows[BAD_PAYMENT_ROW]["PaymentMethod"] = "Bitcoin"
    rows[BAD_CHARGES_ROW]["MonthlyCharges"] = "n/a"
    folder = tmp_path / "export"
    folder.mkdir()
    shutil.copy(world / "products.csv", folder / "products.csv")
    with (folder / "telco_export.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(mapping_yaml(product_ids), encoding="utf-8")
    return Export(folder, mapping, pd.DataFrame(rows), product_ids)


def mapping_yaml(product_ids: list[str]) -> str:
    products = "\n".join(f"        {pid}: {{product: {pid}, holds: [Yes]}}" for pid in product_ids)
    return f"""\
files:
  customers:
    path: telco_*.csv
    rename: {{customerID: customer_id, Contract: contract_type, PaymentMethod: payment_method}}
    values:
      contract_type: {{Prepaid: prepaid, Month-to-month: month_to_month, One year: one_year, Two year: two_year}}
      payment_method:
        Bank transfer (automatic): direct_debit
        Credit card (automatic): credit_card
        Electronic check: bank_transfer
        Mailed check: cheque
    derive:
      signup_date: {{from_tenure_months: tenure, as_of: "{AS_OF}"}}
    attributes:
      SeniorCitizen: {{kind: boolean}}
      gender: {{role: display}}
      Churn: {{role: label}}
      TotalCharges: {{role: ignore}}
    holdings:
      start_date: "{AS_OF}"
      products:
{products}
    churn_label: {{column: Churn, churned: [Yes], as_of: "{AS_OF}"}}
"""


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def settings_for(database_url: str, var_dir: Path) -> Settings:
    # Small blocks: the attribute kinds are inferred from the first block only.
    return Settings(database_url=database_url, var_dir=var_dir, ingest_block_bytes=16_384)


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def test_a_wide_export_loads_through_its_mapping(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    export = make_export(tmp_path)
    settings = settings_for(database_url, tmp_path / "var")

    result = run_ingest(engine, settings, export.folder, mapping=export.mapping)

    bad_rows = {BAD_PAYMENT_ROW, BAD_CHARGES_ROW}
    good = export.rows.drop(index=sorted(bad_rows))
    yes_cells = int((good[export.product_columns] == "Yes").to_numpy().sum())
    by_entity = {f.entity: f for f in result.files}
    assert set(by_entity) == {"products", "customers", "subscriptions", "churn_labels"}
    assert by_entity["customers"].rows_read == len(export.rows)
    assert by_entity["customers"].rows_loaded == len(good)
    assert by_entity["customers"].rows_quarantined == 2
    assert count(engine, Customer) == len(good)
    assert yes_cells > len(good)  # most customers hold more than one product
    assert by_entity["subscriptions"].rows_loaded == yes_cells
    assert count(engine, Subscription) == yes_cells
    labelled = int((good["Churn"] != "").sum())
    assert count(engine, ChurnLabel) == labelled
    with engine.connect() as conn:
        churned = conn.execute(
            select(func.count()).select_from(ChurnLabel).where(ChurnLabel.churned.is_(True))
        ).scalar_one()
    assert churned == int((good["Churn"] == "Yes").sum())

    # The unmapped payment and the text in a number attribute: quarantined, with the value
    # named and the line of the operator's file (header = line 1).
    with engine.connect() as conn:
        stored = conn.execute(
            select(QuarantinedRow.entity, QuarantinedRow.line, QuarantinedRow.reason)
        ).all()
    assert sorted((e, line, reason.split(" is ")[0]) for e, line, reason in stored) == [
        ("customers", BAD_PAYMENT_ROW + 2, "bad_enum: payment_method 'Bitcoin'"),
        ("customers", BAD_CHARGES_ROW + 2, "bad_type: attribute monthly_charges 'n/a'"),
    ]
    assert any(r.endswith("'n/a' is not a number") for _, _, r in stored)

    # Master data: mapped values, derived signup date, the defaults of optional columns.
    first = export.rows.iloc[0]
    with engine.connect() as conn:
        row = conn.execute(
            select(Customer).where(Customer.customer_id == first["customerID"])
        ).one()
    assert row.contract_type == {v: k for k, v in CONTRACTS.items()}[first["Contract"]]
    assert (row.age_band, row.region, row.display_name, row.arpu) == (
        "unknown",
        "unknown",
        None,
        None,
    )
    months = int(first["tenure"])
    expected = pd.Timestamp(AS_OF) - pd.to_timedelta(round(months * 365.25 / 12), unit="D")
    assert str(row.signup_date)[:10] == expected.strftime("%Y-%m-%d")
    cheques = good[good["PaymentMethod"] == "Mailed check"]["customerID"]
    with engine.connect() as conn:
        methods = set(
            conn.execute(
                select(Customer.payment_method).where(Customer.customer_id.in_(list(cheques)))
            ).scalars()
        )
    assert methods == {"cheque"}

    # Attributes: typed, roles as declared or defaulted, the ignored one never stored.
    assert attribute_schema(engine) == [
        AttributeSpec("churn", AttributeKind.BOOLEAN, AttributeRole.LABEL),
        AttributeSpec("gender", AttributeKind.CATEGORY, AttributeRole.DISPLAY),
        AttributeSpec("household", AttributeKind.CATEGORY, AttributeRole.FEATURE),
        AttributeSpec("monthly_charges", AttributeKind.NUMBER, AttributeRole.FEATURE),
        AttributeSpec("senior_citizen", AttributeKind.BOOLEAN, AttributeRole.FEATURE),
        # Never read, so never typed: an ignored column is only remembered as ignored.
        AttributeSpec("total_charges", AttributeKind.CATEGORY, AttributeRole.IGNORE),
    ]
    # tenure fed the signup date (a mapping input), so it is no attribute of its own.
    assert row.attributes == {
        "churn": first["Churn"] == "Yes",
        "gender": first["gender"],
        "household": first["Household"],
        "monthly_charges": pytest.approx(float(first["MonthlyCharges"])),
        "senior_citizen": first["SeniorCitizen"] == "1",
    }
    assert isinstance(row.attributes["senior_citizen"], bool)

    # Features carry attributes of role feature and display as attr_ columns, never labels.
    run_features(engine, settings)
    features = current_features(engine).set_index("customer_id")
    attr_columns = sorted(c for c in features.columns if c.startswith("attr_"))
    assert attr_columns == [
        "attr_gender",
        "attr_household",
        "attr_monthly_charges",
        "attr_senior_citizen",
    ]
    one = features.loc[first["customerID"]]
    assert one["attr_senior_citizen"] == (1.0 if first["SeniorCitizen"] == "1" else 0.0)
    assert one["attr_household"] == first["Household"]
    assert features["arpu"].isna().all()  # no ARPU in the export: unknown, not 0


def test_loading_the_export_again_changes_nothing(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    export = make_export(tmp_path)
    settings = settings_for(database_url, tmp_path / "var")
    first = run_ingest(engine, settings, export.folder, mapping=export.mapping)
    after_first = dump_all(engine)

    second = run_ingest(engine, settings, export.folder, mapping=export.mapping)

    assert first.rows_changed == first.rows_loaded > 0
    assert second.rows_changed == 0
    assert second.rows_loaded == first.rows_loaded
    assert second.rows_quarantined == first.rows_quarantined == 2
    assert dump_all(engine) == after_first
    assert count(engine, QuarantinedRow) == 2

    # The ledger keys a mapped file per table, so --new-only leaves it out next time...
    uris = {e.uri for e in list_entries(engine)}
    source = str((export.folder / "telco_export.csv").resolve())
    assert {f"{source}#customers", f"{source}#subscriptions", f"{source}#churn_labels"} <= uris
    skipped = run_ingest(engine, settings, export.folder, mapping=export.mapping, new_only=True)
    assert skipped.files == [] and skipped.skipped == 2  # products.csv and the export
    # ... unless the mapping changed: the same file read another way is new content.
    changed = export.mapping.read_text().replace("role: display", "role: feature")
    export.mapping.write_text(changed)
    again = run_ingest(engine, settings, export.folder, mapping=export.mapping, new_only=True)
    assert [f.entity for f in again.files] == ["customers", "subscriptions", "churn_labels"]
    assert again.rows_changed == 0  # same rows; only the attribute's role changed
    gender = next(s for s in attribute_schema(engine) if s.name == "gender")
    assert gender.role is AttributeRole.FEATURE


def test_a_plain_customers_file_with_extra_columns_infers_attribute_kinds(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    header = (
        "customer_id,signup_date,contract_type,payment_method,Fiber Available,"
        "LastMove,Score,Segment Name\n"
    )
    (folder / "customers.csv").write_text(
        header
        + "C1,2024-01-01,prepaid,cheque,yes,2023-05-01,1.5,gold\n"
        + "C2,2024-02-01,one_year,other,no,2022-01-31,2,silver\n"
        + "C3,2024-03-01,two_year,voucher,maybe,2022-01-31,3,gold\n",
        encoding="utf-8",
    )
    settings = settings_for(database_url, tmp_path / "var")
    result = run_ingest(engine, settings, folder)

    assert (result.rows_loaded, result.rows_quarantined) == (3, 0)
    kinds = {s.name: s.kind for s in attribute_schema(engine)}
    # 'maybe' is in the first block, so fiber_available is inferred as a category.
    assert kinds == {
        "fiber_available": AttributeKind.CATEGORY,
        "last_move": AttributeKind.DATE,
        "score": AttributeKind.NUMBER,
        "segment_name": AttributeKind.CATEGORY,
    }
    # A registered attribute keeps its kind: the next file's text in `score` is rejected.
    later = tmp_path / "later"
    later.mkdir()
    (later / "customers-2.csv").write_text(
        "customer_id,signup_date,contract_type,payment_method,Score\n"
        "C4,2024-01-01,prepaid,cheque,high\n",
        encoding="utf-8",
    )
    rejected = run_ingest(engine, settings, later)
    assert rejected.rows_quarantined == 1
    with engine.connect() as conn:
        reasons = set(conn.execute(select(QuarantinedRow.reason)).scalars())
        stored = {
            r.customer_id: r.attributes
            for r in conn.execute(select(Customer.customer_id, Customer.attributes))
        }
    assert "bad_type: attribute score 'high' is not a number" in reasons
    assert stored["C1"] == {
        "fiber_available": "yes",
        "last_move": "2023-05-01",
        "score": 1.5,
        "segment_name": "gold",
    }
    assert stored["C2"]["score"] == 2 and stored["C2"]["fiber_available"] == "no"


def test_a_header_clash_is_one_error_before_anything_loads(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "clash"
    folder.mkdir()
    (folder / "customers.csv").write_text(
        "customer_id,signup_date,contract_type,payment_method,Region\n"
        "C1,2024-01-01,prepaid,cheque,north\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError, match="'Region' would be custom attribute 'region'"):
        run_ingest(engine, settings_for(database_url, tmp_path / "var"), folder)
    assert count(engine, Customer) == 0


def test_the_documented_example_loads_as_the_page_says(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "example"
    folder.mkdir()
    (folder / "telco_export.csv").write_text(guide.EXAMPLE_EXPORT, encoding="utf-8")
    (folder / "products.csv").write_text(guide.EXAMPLE_PRODUCTS, encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(guide.EXAMPLE_MAPPING, encoding="utf-8")

    result = run_ingest(
        engine, settings_for(database_url, tmp_path / "var"), folder, mapping=mapping
    )

    loaded = {f.entity: f.rows_loaded for f in result.files}
    assert loaded == {"products": 5, "customers": 5, "subscriptions": 11, "churn_labels": 5}
    with engine.connect() as conn:
        (reason,) = conn.execute(select(QuarantinedRow.line, QuarantinedRow.reason)).all()
        churned = conn.execute(
            select(func.count()).select_from(ChurnLabel).where(ChurnLabel.churned.is_(True))
        ).scalar_one()
        row = conn.execute(select(Customer).where(Customer.customer_id == "5575-GNVDE")).one()
    assert tuple(reason) == (
        7,
        "bad_enum: payment_method 'Bitcoin' is not one of "
        "direct_debit|credit_card|bank_transfer|voucher|cheque|other",
    )
    assert churned == 2
    assert str(row.signup_date)[:10] == "2022-03-03"
    assert (row.payment_method, float(row.arpu), row.age_band, row.region) == (
        "cheque",
        56.95,
        "unknown",
        "unknown",
    )
    assert row.attributes == {
        "gender": "Male",
        "partner": False,
        "senior_citizen": False,
        "churn": False,
    }
    assert {(s.name, s.kind, s.role) for s in attribute_schema(engine)} == {
        ("senior_citizen", AttributeKind.BOOLEAN, AttributeRole.FEATURE),
        ("partner", AttributeKind.BOOLEAN, AttributeRole.FEATURE),
        ("gender", AttributeKind.CATEGORY, AttributeRole.DISPLAY),
        ("churn", AttributeKind.BOOLEAN, AttributeRole.LABEL),
        ("total_charges", AttributeKind.CATEGORY, AttributeRole.IGNORE),
    }


def test_the_nightly_reads_its_source_through_the_mapping_setting(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "telco_export.csv").write_text(guide.EXAMPLE_EXPORT, encoding="utf-8")
    (folder / "products.csv").write_text(guide.EXAMPLE_PRODUCTS, encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(guide.EXAMPLE_MAPPING, encoding="utf-8")
    settings = Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        ingest_source=str(folder),
        ingest_mapping=str(mapping),
    )

    staged = extract(engine, settings)
    assert [(Path(f.path).name, f.entity, f.mapping is not None) for f in staged.files] == [
        ("products.csv", "products", False),
        ("telco_export.csv", "customers", True),
    ]
    # Passed between Airflow tasks as JSON: the mapping entry travels with the file.
    staged = Staged.from_dict(json.loads(json.dumps(staged.to_dict())))
    loaded = load(engine, settings, staged)
    assert {f.entity: f.rows_loaded for f in loaded.files}["subscriptions"] == 11
    assert count(engine, Subscription) == 11
    assert extract(engine, settings).files == []  # nothing new the next night
    without = extract(engine, settings.model_copy(update={"ingest_mapping": ""}))
    assert [Path(f.path).name for f in without.files] == []  # the export is no import file
