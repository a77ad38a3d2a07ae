"""Row validation: every rule alone, first reason wins, typed output, duplicates, known ids."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextoffer.ingest.entities import BY_NAME
from nextoffer.ingest.validate import (
    DuplicateTracker,
    KeySet,
    ValidatedChunk,
    ValidationContext,
    validate_chunk,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CENT = Decimal("0.01")

VALID = {
    "products": {
        "product_id": "P1",
        "name": "Plan",
        "category": "mobile_plan",
        "price": "10",
        "margin": "4",
        "upfront_price": "",
        "contract_types": "",
        "min_tenure_months": "",
        "regions": "",
        "channels": "",
        "requires_category": "",
        "is_retention_offer": "",
        "active": "",
        "requires_products": "",
        "requires_attribute": "",
        "exclusion_group": "",
        "upgrades_from": "",
        "offer_cost": "",
    },
    "customers": {
        "customer_id": "C1",
        "display_name": "Ann",
        "age_band": "25-34",
        "region": "north",
        "signup_date": "2020-01-01",
        "contract_type": "prepaid",
        "payment_method": "voucher",
        "plan_id": "",
        "arpu": "10",
        "data_gb_month": "",
        "voice_min_month": "",
        "timezone": "",
    },
    "subscriptions": {
        "subscription_id": "S1",
        "customer_id": "C1",
        "product_id": "P1",
        "start_date": "2020-01-01",
        "end_date": "",
        "monthly_price": "",
    },
    "transactions": {
        "transaction_id": "T1",
        "customer_id": "C1",
        "product_id": "P1",
        "ts": "2025-06-01T10:00:00Z",
        "type": "purchase",
        "amount": "5",
        "channel": "",
    },
    "events": {
        "event_id": "E1",
        "customer_id": "C1",
        "ts": "2025-06-01T10:00:00Z",
        "event_type": "web_visit",
        "product_id": "",
        "channel": "",
        "session_id": "",
    },
    "churn_labels": {
        "customer_id": "C1",
        "as_of": "2025-01-01",
        "churned": "false",
        "churn_date": "",
    },
    "exposures": {
        "exposure_id": "C1@2025-06-01",
        "customer_id": "C1",
        "exposed_at": "2025-06-01T10:00:00Z",
        "arm": "control",
        "product_ids": "P1|P1-0",
        "experiment_id": "",
        "variant": "",
        "unit_id": "",
        "channel": "",
        "source": "",
        "model_version": "",
    },
}
KEY_COLUMNS = {
    "products": "product_id",
    "customers": "customer_id",
    "subscriptions": "subscription_id",
    "transactions": "transaction_id",
    "events": "event_id",
    "exposures": "exposure_id",
}


def rows(entity: str, *changes: dict[str, str]) -> pd.DataFrame:
    """Text rows of `entity`: the valid row changed by each dict, with distinct keys."""
    out = []
    for i, change in enumerate(changes):
        row = dict(VALID[entity])
        if entity in KEY_COLUMNS:
            row[KEY_COLUMNS[entity]] = f"{row[KEY_COLUMNS[entity]]}-{i}"
        else:
            row["as_of"] = f"2025-01-{i + 1:02d}"
        row.update(change)
        out.append(row)
    return pd.DataFrame(out, columns=BY_NAME[entity].column_names)


def context(**known: list[str]) -> ValidationContext:
    return ValidationContext(
        now=NOW, known={name: KeySet(pd.Index(ids, dtype=object)) for name, ids in known.items()}
    )


def check(
    entity: str, *changes: dict[str, str], ctx: ValidationContext | None = None
) -> ValidatedChunk:
    return validate_chunk(BY_NAME[entity], rows(entity, *changes), ctx or context())


# (entity, change to one valid row, the whole reason or how it starts)
BAD_CASES = [
    ("products", {"product_id": ""}, "missing_id: product_id is empty"),
    ("products", {"name": ""}, "missing_value: name is empty"),
    ("products", {"price": "ten"}, "bad_type: price 'ten' is not a number"),
    ("products", {"price": "1,5"}, "bad_type: price '1,5' is not a number"),
    ("products", {"price": "NaN"}, "not_finite: price is NaN"),
    ("products", {"price": "nan"}, "not_finite: price is NaN"),
    ("products", {"price": "inf"}, "not_finite: price is infinite"),
    ("products", {"price": "-Infinity"}, "not_finite: price is infinite"),
    ("products", {"price": "1e400"}, "not_finite: price is infinite"),
    ("products", {"price": "-0.01"}, "negative_amount: price '-0.01' is below 0"),
    ("products", {"min_tenure_months": "1.5"}, "bad_integer: min_tenure_months '1.5' is not"),
    ("products", {"min_tenure_months": "-1"}, "out_of_range: min_tenure_months '-1' is below 0"),
    ("products", {"category": "phone"}, "bad_enum: category 'phone' is not one of mobile_plan|"),
    ("products", {"category": "Mobile_Plan"}, "bad_enum: category 'Mobile_Plan'"),
    (
        "products",
        {"contract_types": "prepaid|forever"},
        "bad_enum: contract_types 'prepaid|forever'",
    ),
    ("products", {"channels": "web|"}, "bad_enum: channels 'web|' has values outside"),
    ("products", {"is_retention_offer": "maybe"}, "bad_boolean: is_retention_offer 'maybe'"),
    ("products", {"margin": "11"}, "margin_exceeds_price: margin is above price"),
    ("products", {"product_id": "P 1"}, "bad_id: product_id 'P 1' has spaces or symbols"),
    ("products", {"product_id": "-P1"}, "bad_id: product_id '-P1'"),
    ("products", {"product_id": "P" * 65}, "too_long: product_id is longer than 64 characters"),
    ("products", {"name": "n" * 201}, "too_long: name is longer than 200 characters"),
    ("customers", {"signup_date": "2021-02-30"}, "bad_date: signup_date '2021-02-30' is not"),
    ("customers", {"signup_date": "01/02/2021"}, "bad_date: signup_date '01/02/2021'"),
    ("customers", {"signup_date": "2026-01-02"}, "future_date: signup_date '2026-01-02' is in"),
    ("customers", {"data_gb_month": "-0.5"}, "out_of_range: data_gb_month '-0.5' is below 0"),
    ("customers", {"plan_id": "NOPE"}, "unknown_product: plan_id 'NOPE' not found"),
    ("customers", {"age_band": "90+"}, "bad_enum: age_band '90+'"),
    ("subscriptions", {"customer_id": "C404"}, "unknown_customer: customer_id 'C404' not found"),
    ("subscriptions", {"product_id": "P404"}, "unknown_product: product_id 'P404' not found"),
    (
        "subscriptions",
        {"end_date": "2019-12-31"},
        "end_before_start: end_date is before start_date",
    ),
    ("transactions", {"ts": "yesterday"}, "bad_timestamp: ts 'yesterday' is not an ISO-8601"),
    ("transactions", {"ts": "2025-13-01T00:00:00Z"}, "bad_timestamp: ts '2025-13-01T00:00:00Z'"),
    ("transactions", {"ts": "2026-01-01T12:00:01Z"}, "future_timestamp: ts '2026-01-01T12:00:01Z'"),
    ("transactions", {"ts": "2026-01-01T13:00:01+01:00"}, "future_timestamp: ts"),
    ("transactions", {"ts": ""}, "missing_value: ts is empty"),
    ("transactions", {"type": "refund"}, "bad_enum: type 'refund'"),
    ("transactions", {"amount": "-1"}, "negative_amount: amount '-1' is below 0"),
    ("events", {"session_id": "s" * 129}, "too_long: session_id is longer than 128 characters"),
    ("events", {"product_id": "P404"}, "unknown_product: product_id 'P404' not found"),
    ("churn_labels", {"churn_date": "2025-01-02"}, "inconsistent_churn: churn_date needs churned"),
    ("churn_labels", {"churned": "yes", "churn_date": "2024-12-31"}, "inconsistent_churn:"),
    ("churn_labels", {"churned": ""}, "missing_value: churned is empty"),
    ("exposures", {"arm": "holdout"}, "bad_enum: arm 'holdout' is not one of treated|control"),
    ("exposures", {"source": "email"}, "bad_enum: source 'email' is not one of api|campaign|"),
    ("exposures", {"customer_id": "C404"}, "unknown_customer: customer_id 'C404' not found"),
    ("exposures", {"product_ids": "P1|P404"}, "unknown_product: product_ids 'P1|P404' has an"),
    ("exposures", {"product_ids": ""}, "missing_value: product_ids is empty"),
    ("exposures", {"exposed_at": "2026-01-02T00:00:00Z"}, "future_timestamp: exposed_at"),
    ("exposures", {"exposure_id": "C1@" + "x" * 200}, "too_long: exposure_id is longer than 200"),
]


@pytest.mark.parametrize(("entity", "change", "reason"), BAD_CASES)
def test_each_rule_rejects_its_row_and_keeps_the_good_one(
    entity: str, change: dict[str, str], reason: str
) -> None:
    ctx = context(products=["P1-0", "P1-1", "P1"], customers=["C1", "C1-0", "C1-1"])
    checked = check(entity, {}, change, ctx=ctx)
    assert checked.bad_positions == [1]
    assert checked.bad_reasons[0].startswith(reason), checked.bad_reasons[0]
    assert len(checked.good) == 1
    assert list(checked.good.columns) == BY_NAME[entity].column_names


def test_a_row_is_reported_for_its_first_problem_only() -> None:
    checked = check("transactions", {"ts": "bad", "amount": "-1", "type": "refund"})
    assert checked.bad_reasons == ["bad_timestamp: ts 'bad' is not an ISO-8601 timestamp"]
    # Empty required id comes before anything else in the row.
    checked = check("products", {"product_id": "", "price": "x", "margin": "y"})
    assert checked.bad_reasons == ["missing_id: product_id is empty"]


def test_long_values_are_shortened_in_reasons() -> None:
    checked = check("products", {"category": "x" * 100})
    assert checked.bad_reasons[0].startswith("bad_enum: category '" + "x" * 40 + "…'")


def test_good_rows_are_typed() -> None:
    checked = check(
        "products",
        {"price": "19.999", "margin": "0.004", "min_tenure_months": "12", "active": " TRUE "},
        {"price": "9.994", "upfront_price": "5.5", "min_tenure_months": "3.0",
         "is_retention_offer": "Y", "active": "no"},
    )  # fmt: skip
    good = checked.good
    assert checked.bad_positions == []
    assert good["price"].tolist() == [20.0, 9.99]
    assert good["margin"].tolist() == [0.0, 4.0]
    assert good["upfront_price"].tolist() == [0.0, 5.5]  # empty takes the default "0"
    assert str(good["min_tenure_months"].dtype) == "Int64"
    assert good["min_tenure_months"].tolist() == [12, 3]
    assert good["active"].tolist() == [True, False]
    assert good["is_retention_offer"].tolist() == [False, True]  # default "false"
    assert good["contract_types"].tolist() == ["", ""]  # default ""
    assert good["requires_category"].isna().all()  # empty optional: missing


MONEY_CASES = [
    ("1.005", 1.01),
    ("1.015", 1.02),
    ("0.125", 0.13),
    ("0.285", 0.29),
    ("12.345", 12.35),
    ("2.675", 2.68),
    ("1.004999", 1.0),
    ("19.999", 20.0),
    ("7", 7.0),
    ("1234567.125", 1234567.13),
    ("0.0049", 0.0),
    ("1e2", 100.0),
]


@pytest.mark.parametrize(("text", "cents"), MONEY_CASES)
def test_money_is_rounded_to_cents_half_up(text: str, cents: float) -> None:
    checked = check("transactions", {"amount": text})
    assert checked.good["amount"].tolist() == [cents]


@pytest.mark.parametrize("text", ["true", "T", "yes", "Y", "1", " True "])
def test_true_texts(text: str) -> None:
    checked = check("churn_labels", {"churned": text})
    assert checked.good["churned"].tolist() == [True]


@pytest.mark.parametrize("text", ["false", "F", "no", "N", "0", "FALSE"])
def test_false_texts(text: str) -> None:
    checked = check("churn_labels", {"churned": text})
    assert checked.good["churned"].tolist() == [False]


def test_timestamps_become_utc_instants_and_dates_utc_midnights() -> None:
    checked = check(
        "transactions",
        {"ts": "2025-03-01T10:30:00+02:00"},
        {"ts": "2025-03-01T10:30:00"},
        {"ts": "2025-03-01T10:30:00.250Z"},
        {"ts": "2025-03-01 23:15:00-05:00"},
        {"ts": "2026-01-01T12:00:00Z"},  # exactly now is not the future
    )
    assert checked.bad_reasons == []
    assert checked.good["ts"].tolist() == [
        pd.Timestamp("2025-03-01T08:30:00Z"),
        pd.Timestamp("2025-03-01T10:30:00Z"),
        pd.Timestamp("2025-03-01T10:30:00.250Z"),
        pd.Timestamp("2025-03-02T04:15:00Z"),
        pd.Timestamp(NOW),
    ]
    dates = check("subscriptions", {"end_date": "2999-12-31"}).good  # future end is fine
    assert dates["start_date"].tolist() == [pd.Timestamp("2020-01-01T00:00:00Z")]
    assert dates["end_date"].tolist() == [pd.Timestamp("2999-12-31T00:00:00Z")]
    # Today is not in the future; tomorrow is.
    today = check("customers", {"signup_date": "2026-01-01"}, {"signup_date": "2026-01-02"})
    assert today.bad_positions == [1]


def test_empty_optional_values_are_missing_not_errors() -> None:
    checked = check("customers", {})
    row = checked.good.iloc[0]
    assert pd.isna(row["plan_id"])
    assert pd.isna(row["data_gb_month"])
    checked = check("events", {"product_id": "", "channel": "", "session_id": ""})
    assert checked.good[["product_id", "channel", "session_id"]].iloc[0].isna().all()


def test_references_are_only_checked_against_known_entities() -> None:
    # Nothing known about products (e.g. a customers-only unit check): ids pass as they are.
    checked = check("customers", {"plan_id": "ANY"}, ctx=context(customers=[]))
    assert checked.bad_positions == []
    checked = check(
        "customers", {"plan_id": "ANY"}, {"plan_id": "P1"}, ctx=context(products=["P1"])
    )
    assert checked.bad_positions == [0]
    assert checked.good["plan_id"].tolist() == ["P1"]


def test_exposures_name_an_experiment_and_their_source_defaults_to_import() -> None:
    ctx = context(products=["P1", "P1-0"], customers=["C1"])
    experiment = "0b6c1f2e-8a3d-4c5e-9f10-1a2b3c4d5e6f"
    checked = check(
        "exposures",
        {"exposure_id": f"s-42@2025-06-01#{experiment}", "unit_id": "s-42", "arm": "treated"},
        {"source": "api", "experiment_id": experiment, "variant": "B", "channel": "app"},
        ctx=ctx,
    )
    assert checked.bad_reasons == []
    assert checked.good["source"].tolist() == ["import", "api"]
    assert checked.good["product_ids"].tolist() == ["P1|P1-0", "P1|P1-0"]
    assert checked.good["exposed_at"].tolist() == [pd.Timestamp("2025-06-01T10:00:00Z")] * 2


def test_duplicates_in_a_chunk_keep_the_first() -> None:
    frame = rows("transactions", {}, {}, {}, {})
    frame["transaction_id"] = ["A", "B", "A", "A"]
    checked = validate_chunk(BY_NAME["transactions"], frame, context())
    assert checked.bad_positions == [2, 3]
    assert checked.bad_reasons == [
        "duplicate: transaction_id 'A' appears earlier in this file",
        "duplicate: transaction_id 'A' appears earlier in this file",
    ]
    assert checked.good["transaction_id"].tolist() == ["A", "B"]


def test_duplicates_are_found_across_chunks_of_one_file() -> None:
    ctx = context()
    first = rows("churn_labels", {"as_of": "2025-01-01"}, {"as_of": "2025-02-01"})
    second = rows("churn_labels", {"as_of": "2025-02-01"}, {"as_of": "2025-03-01"})
    assert validate_chunk(BY_NAME["churn_labels"], first, ctx).bad_positions == []
    checked = validate_chunk(BY_NAME["churn_labels"], second, ctx)
    assert checked.bad_positions == [0]
    assert checked.bad_reasons == [
        "duplicate: customer_id/as_of 'C1/2025-02-01' appears earlier in this file"
    ]
    # A new file starts a new tracker.
    fresh = validate_chunk(BY_NAME["churn_labels"], second, context())
    assert fresh.bad_positions == []


def test_a_rejected_row_does_not_claim_its_key() -> None:
    ctx = context()
    bad_first = validate_chunk(BY_NAME["transactions"], rows("transactions", {"amount": "-1"}), ctx)
    assert bad_first.bad_positions == [0]
    retry = validate_chunk(BY_NAME["transactions"], rows("transactions", {}), ctx)
    assert retry.bad_positions == []


def test_duplicate_tracker_across_chunks() -> None:
    tracker = DuplicateTracker()
    every = np.ones(3, dtype=bool)
    first = tracker.mark(pd.DataFrame({"k": ["a", "b", "x"]}), np.array([True, True, False]))
    assert first.tolist() == [False, False, False]
    second = tracker.mark(pd.DataFrame({"k": ["b", "c", "c"]}), every)
    assert second.tolist() == [True, False, True]
    # "x" was not a candidate before, so it was not remembered.
    third = tracker.mark(pd.DataFrame({"k": ["x", "a", "c"]}), every)
    assert third.tolist() == [False, True, True]
    # Non-candidates are never reported.
    assert tracker.mark(pd.DataFrame({"k": ["a"]}), np.zeros(1, dtype=bool)).tolist() == [False]


def test_duplicate_tracker_composite_keys_do_not_run_together() -> None:
    tracker = DuplicateTracker()
    keys = pd.DataFrame({"a": ["ab", "a", "ab"], "b": ["c", "bc", "d"]})
    assert tracker.mark(keys, np.ones(3, dtype=bool)).tolist() == [False, False, False]
    again = pd.DataFrame({"a": ["a", "ab"], "b": ["bc", "x"]})
    assert tracker.mark(again, np.ones(2, dtype=bool)).tolist() == [True, False]


def test_key_set() -> None:
    known = KeySet(pd.Index(["P1", "P2"], dtype=object))
    assert len(known) == 2
    assert known.contains(pd.Series(["P1", "P3", ""])).tolist() == [True, False, False]
    known.add(pd.Series(["P3", "P4"], dtype="string"))
    assert len(known) == 4
    assert known.contains(pd.Series(["P3", "P4", "P5"])).tolist() == [True, True, False]
    known.add(pd.Series(["P1"]))  # already known: contains stays the same
    assert known.contains(pd.Series(["P1", "P2"])).tolist() == [True, True]
    empty = KeySet()
    assert len(empty) == 0
    assert empty.contains(pd.Series(["P1"])).tolist() == [False]


AMOUNTS = {
    "5": True,
    "0": True,
    "12.345": True,
    "1.005": True,
    "0.125": True,
    "-1": False,
    "abc": False,
    "nan": False,
    "": False,
}
TYPES = {"purchase": True, "upgrade": True, "refund": False, "": False}
CUSTOMERS = {"C1": True, "C2": True, "C404": False, "C 1": False}
TIMES = {"2025-01-01T00:00:00Z": True, "2025-06-01T10:00:00+05:00": True, "2027-01-01": False,
         "soon": False}  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(AMOUNTS)),
            st.sampled_from(sorted(TYPES)),
            st.sampled_from(sorted(CUSTOMERS)),
            st.sampled_from(sorted(TIMES)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_rows_are_split_exactly_into_good_and_bad(
    choices: list[tuple[str, str, str, str]],
) -> None:
    changes = [
        {"amount": amount, "type": kind, "customer_id": customer, "ts": ts}
        for amount, kind, customer, ts in choices
    ]
    frame = rows("transactions", *changes)
    checked = validate_chunk(BY_NAME["transactions"], frame, context(customers=["C1", "C2"]))
    expected_good = [
        i
        for i, (amount, kind, customer, ts) in enumerate(choices)
        if AMOUNTS[amount] and TYPES[kind] and CUSTOMERS[customer] and TIMES[ts]
    ]
    assert checked.bad_positions == sorted(set(range(len(choices))) - set(expected_good))
    assert len(checked.bad_reasons) == len(checked.bad_positions)
    assert checked.good["transaction_id"].tolist() == [f"T1-{i}" for i in expected_good]
    assert checked.good["amount"].tolist() == [
        float(Decimal(choices[i][0]).quantize(CENT, ROUND_HALF_UP)) for i in expected_good
    ]
