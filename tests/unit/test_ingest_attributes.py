"""Custom attributes and mapping files without a database: names, kinds, JSON, layout, reshape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextoffer.domain.attributes import (
    ATTRIBUTE_NAME,
    AttributeKind,
    AttributeRole,
    AttributeSpec,
    snake_case,
)
from nextoffer.domain.errors import InputError
from nextoffer.features.attributes import feature_attributes
from nextoffer.ingest import format_guide
from nextoffer.ingest.attributes import (
    Declared,
    infer_kind,
    json_objects,
    parse_attribute,
    plan_attributes,
)
from nextoffer.ingest.entities import CUSTOMERS
from nextoffer.ingest.layout import plan_layout
from nextoffer.ingest.mapping import parse_mapping
from nextoffer.ingest.reshape import months_before, reshape
from nextoffer.store.reads.attributes import typed_column

K = AttributeKind
R = AttributeRole


@pytest.mark.parametrize(
    ("column", "name"),
    [
        ("SeniorCitizen", "senior_citizen"),
        ("Payment Method", "payment_method"),
        ("customerID", "customer_id"),
        ("MonthlyCharges", "monthly_charges"),
        ("TVBox", "tv_box"),
        ("already_snake", "already_snake"),
        ("  e-mail opt-in ", "e_mail_opt_in"),
        ("Score (0-100)", "score_0_100"),
    ],
)
def test_snake_case(column: str, name: str) -> None:
    assert snake_case(column) == name
    assert ATTRIBUTE_NAME.match(name)


def test_names_that_cannot_be_attributes() -> None:
    assert not ATTRIBUTE_NAME.match(snake_case("2ndLine"))
    assert not ATTRIBUTE_NAME.match(snake_case("???"))


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["Yes", "no", "", "TRUE", "f"], K.BOOLEAN),
        (["1", "0", "1"], K.NUMBER),  # 0/1 is a number unless declared boolean
        (["29.85", "-3", "1e3", " 7 "], K.NUMBER),
        (["2024-01-31", "", "1999-12-01"], K.DATE),
        (["2024-02-30"], K.CATEGORY),  # no such day
        (["gold", "silver"], K.CATEGORY),
        (["1.5", "nan"], K.CATEGORY),  # NaN is no number
        (["yes", "maybe"], K.CATEGORY),
        (["", " "], K.CATEGORY),
    ],
)
def test_infer_kind(values: list[str], kind: AttributeKind) -> None:
    assert infer_kind(pd.Series(values, dtype=object)) is kind


def test_values_are_typed_and_rows_become_json_objects() -> None:
    frame = pd.DataFrame(
        {
            "senior": ["Yes", "0", "", "maybe"],
            "charges": ["29.85", "1", "n/a", ""],
            "since": ["2024-01-31", "", "2024-13-01", "2020-02-29"],
            "plan": ['say "hi"\\', "tab\there", "", "x" * 201],
        }
    )
    specs = [
        AttributeSpec("senior", K.BOOLEAN),
        AttributeSpec("charges", K.NUMBER),
        AttributeSpec("since", K.DATE),
        AttributeSpec("plan", K.CATEGORY),
    ]
    parsed = [parse_attribute(s, frame[s.name]) for s in specs]
    bad = {p.spec.name: np.flatnonzero(p.bad).tolist() for p in parsed}
    assert bad == {"senior": [3], "charges": [2], "since": [2], "plan": [3]}
    assert [p.problem for p in parsed][:2] == ["is not true/false", "is not a number"]
    assert (parsed[3].code, parsed[3].problem) == ("too_long", "is longer than 200 characters")
    objects = [json.loads(text) for text in json_objects(parsed, len(frame))]
    assert objects[0] == {
        "senior": True,
        "charges": 29.85,
        "since": "2024-01-31",
        "plan": 'say "hi"\\',
    }
    assert objects[1] == {"senior": False, "charges": 1, "plan": "tab\there"}
    assert objects[2] == {}  # every value bad or missing: bad values are never stored
    assert objects[3] == {"since": "2020-02-29"}
    # Keys sorted, no spaces: the same values always give the same text.
    assert json_objects(parsed, len(frame))[0] == (
        '{"charges":29.85,"plan":"say \\"hi\\"\\\\","senior":true,"since":"2024-01-31"}'
    )


def test_declared_beats_registered_beats_inferred() -> None:
    first = pd.DataFrame({"a": ["1", "0"], "b": ["x", "y"], "c": ["yes", "no"], "d": ["5", ""]})
    registered = {
        "b": AttributeSpec("b", K.NUMBER, R.DISPLAY),
        "c": AttributeSpec("c", K.CATEGORY, R.FEATURE),
    }
    plan = plan_attributes(
        {"a": Declared(K.BOOLEAN), "b": Declared(), "c": Declared(role=R.LABEL), "d": Declared()},
        first,
        registered,
    )
    assert plan.specs == (
        AttributeSpec("a", K.BOOLEAN, R.FEATURE),  # declared kind, default role
        AttributeSpec("b", K.NUMBER, R.DISPLAY),  # registered: kept, though 'x' is text
        AttributeSpec("c", K.CATEGORY, R.LABEL),  # registered kind, declared role
        AttributeSpec("d", K.NUMBER, R.FEATURE),  # new: inferred
    )
    assert [s.name for s in plan.declared] == ["a", "c"]
    assert [s.name for s in plan.inferred] == ["d"]
    ignored = plan_attributes({"e": Declared(role=R.IGNORE)}, first, {})
    assert (ignored.specs, ignored.dropped) == ((), ("e",))


def test_feature_attributes_are_features_only() -> None:
    schema = [
        AttributeSpec("z_num", K.NUMBER),
        AttributeSpec("flag", K.BOOLEAN),
        AttributeSpec("seen", K.DATE),
        AttributeSpec("tier", K.CATEGORY),
        AttributeSpec("gender", K.CATEGORY, R.DISPLAY),
        AttributeSpec("churn", K.BOOLEAN, R.LABEL),
        AttributeSpec("noise", K.NUMBER, R.IGNORE),
    ]
    assert feature_attributes(schema) == (
        ["attr_flag", "attr_seen", "attr_z_num"],
        ["attr_tier"],
    )


def test_stored_values_become_model_columns() -> None:
    raw = pd.Series([True, False, None, "text"], dtype=object)
    assert typed_column(K.BOOLEAN, raw).tolist()[:2] == [1.0, 0.0]
    assert np.isnan(typed_column(K.BOOLEAN, raw).iloc[2])
    numbers = typed_column(K.NUMBER, pd.Series([1, 2.5, None, "x", True], dtype=object))
    assert numbers.iloc[:2].tolist() == [1.0, 2.5]
    assert numbers.iloc[2:].isna().all()  # missing, text and booleans are no numbers
    days = typed_column(K.DATE, pd.Series(["1970-01-02", None], dtype=object))
    assert days.iloc[0] == 1.0 and np.isnan(days.iloc[1])
    assert typed_column(K.CATEGORY, pd.Series(["a", None, 3], dtype=object)).tolist() == [
        "a",
        None,
        "3",
    ]


MAPPING = """\
files:
  customers:
    path: export_*.csv
    rename: {ID: customer_id, Plan Type: contract_type}
    values:
      contract_type: {Monthly: month_to_month, Yearly: one_year}
    defaults: {payment_method: other, signup_date: "2024-01-01"}
    attributes:
      Senior: {kind: boolean}
      Noise: {role: ignore}
    holdings:
      products:
        Phone: {product: phone, holds: [Yes, Y]}
        Internet: {values: {DSL: dsl, Fiber optic: fiber}}
    churn_label: {column: Left, as_of: "2025-01-01"}
"""


def test_mapping_scalars_stay_text() -> None:
    mapping = parse_mapping(MAPPING, "m.yaml")
    (entry,) = mapping.files
    phone = entry.holdings.products["Phone"]  # type: ignore[union-attr]
    assert phone.holds == ("Yes", "Y")  # not True: YAML 1.1 booleans are not read
    assert entry.defaults["signup_date"] == "2024-01-01"
    assert entry.attributes["Senior"].kind is K.BOOLEAN
    assert mapping.entry_for(Path("export_2026.csv")) is entry
    assert mapping.entry_for(Path("customers.csv")) is None
    parse_mapping(format_guide.EXAMPLE_MAPPING, "docs")  # the documented example is valid


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("files: {}", "expected `files:`"),
        ("files:\n  customers: {paht: x.csv}", "files.customers.paht: Extra inputs"),
        ("files:\n  gadgets: {path: x.csv}", "unknown entity 'gadgets'"),
        ("files:\n  products: {holdings: {products: {}}}", "only a customers file"),
        (
            "files:\n  customers:\n    holdings: {products: {P: {product: p, values: {a: b}}}}",
            "either `product`",
        ),
        ("files:\n  customers: {attributes: {A: {kind: money}}}", "attributes.A.kind"),
        ("files: [unclosed", "not valid YAML"),
        ("version: 2\nfiles:\n  customers: {}", "version 2 is not supported"),
    ],
)
def test_bad_mapping_files_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_mapping(text, "m.yaml")
    assert str(caught.value).startswith("m.yaml: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_layout_and_reshape_of_a_wide_block() -> None:
    (entry,) = parse_mapping(MAPPING, "m.yaml").files
    header = ["ID", "Plan Type", "Senior", "Noise", "Phone", "Internet", "Left", "Shoe Size"]
    layout = plan_layout(CUSTOMERS, header, entry, "export_1.csv")
    assert "Noise" not in layout.read  # ignored: never read
    assert layout.attributes == {"Senior": "senior", "Shoe Size": "shoe_size"}
    assert layout.declared["noise"] == Declared(role=R.IGNORE)
    block = pd.DataFrame(
        [
            ["C1", "Monthly", "1", "x", "Yes", "DSL", "Yes", "42"],
            ["C2", "Weekly", "0", "x", "no", "No", "", "40"],
            ["C3", "Yearly", "", "x", "Y", "Satellite", "no", ""],
        ],
        columns=header,
    )
    frame = layout.complete(block[list(layout.read)])
    out = reshape(entry, frame)
    primary = layout.primary(out.frame)
    assert primary["contract_type"].tolist() == ["month_to_month", "Weekly", "one_year"]
    assert primary["payment_method"].tolist() == ["other"] * 3
    assert primary["signup_date"].tolist() == ["2024-01-01"] * 3
    assert list(primary.columns[-2:]) == ["senior", "shoe_size"]
    subscriptions, labels = out.derived
    assert subscriptions.frame[["subscription_id", "product_id"]].values.tolist() == [
        ["C1:internet", "dsl"],
        ["C1:phone", "phone"],
        ["C3:internet", "Satellite"],  # unmapped: passed on, to be rejected by validation
        ["C3:phone", "phone"],
    ]
    assert subscriptions.origin.tolist() == [0, 0, 2, 2]
    assert subscriptions.frame["start_date"].tolist() == ["2024-01-01"] * 4
    assert labels.frame[["customer_id", "churned"]].values.tolist() == [
        ["C1", "true"],
        ["C3", "false"],
    ]
    assert labels.origin.tolist() == [0, 2]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (["customer_id", "signup_date", "contract_type", "payment_method", "Region"], "'region'"),
        (
            ["customer_id", "signup_date", "contract_type", "payment_method", "A B", "a_b"],
            "both be attribute 'a_b'",
        ),
        (["customer_id", "signup_date", "contract_type", "payment_method", "2nd"], "'2nd'"),
        (["customer_id", "contract_type", "payment_method"], "missing required column(s)"),
    ],
)
def test_headers_that_cannot_load(header: list[str], message: str) -> None:
    with pytest.raises(InputError, match=r"^c\.csv: ") as caught:
        plan_layout(CUSTOMERS, header, None, "c.csv")
    assert message in str(caught.value)


def test_months_before() -> None:
    tenure = pd.Series(["0", "12", "abc", "1.5"], dtype=object)
    assert months_before(tenure, "2025-01-01").tolist() == [
        "2025-01-01",
        "2024-01-02",  # months of 365.25 / 12 days: 12 of them are 365 days back
        "abc",  # passed on: the date's check names it
        "2024-11-16",
    ]


def test_the_customer_page_lists_stored_attributes_the_schema_does_not_ignore() -> None:
    from nextoffer.usecases.customers import shown_attributes

    schema = [
        AttributeSpec("churn", K.BOOLEAN, R.LABEL),
        AttributeSpec("charges", K.NUMBER),
        AttributeSpec("gender", K.CATEGORY, R.DISPLAY),
        AttributeSpec("noise", K.NUMBER, R.IGNORE),
        AttributeSpec("since", K.DATE),
    ]
    stored = {"churn": True, "charges": 1234.5, "gender": "F", "noise": 3, "other": "x"}
    shown = shown_attributes(schema, stored)
    assert [(a.name, a.kind, a.role, a.text) for a in shown] == [
        ("churn", "boolean", "label", "yes"),
        ("charges", "number", "feature", "1,234.5"),
        ("gender", "category", "display", "F"),
    ]
