"""Auto-typing of customer tables: booleans, numbers with blanks, rare levels, ids, labels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nextoffer.models.tabular import (
    MISSING_LEVEL,
    OTHER_LEVEL,
    DroppedColumn,
    TableSchema,
    encode_for_linear,
    encode_for_trees,
    infer_columns,
    parse_label,
)


def table() -> pd.DataFrame:
    """Twenty rows with one column of each kind the typing must recognise."""
    n = 20
    return pd.DataFrame(
        {
            "customerID": [f"{1000 + i}-ABCDE" for i in range(n)],
            "Partner": [" Yes", "no", "YES", "No ", "", "y", "N", "true", "False", "t"] * 2,
            "Senior": [0, 1] * 10,
            "TotalCharges": ["12.5", " ", "7", "1e3", " 3.25 "] * 4,
            "tenure": list(range(n)),
            "Contract": ["Month-to-month"] * 11 + ["One year"] * 6 + ["Two year"] * 2 + [""],
            "Country": ["FR"] * n,
            "Churn": ["Yes", "No"] * 10,
        }
    )


def test_columns_are_typed_and_ids_and_constants_dropped() -> None:
    schema = infer_columns(table(), "Churn", None, min_count=3)

    assert schema.numeric == ("TotalCharges", "tenure")
    assert schema.boolean == ("Partner", "Senior")
    assert schema.levels == {"Contract": ("Month-to-month", "One year", MISSING_LEVEL, OTHER_LEVEL)}
    dropped = {d.name: d.reason for d in schema.dropped}
    assert set(dropped) == {"customerID", "Country"}
    assert "id" in dropped["customerID"]
    assert dropped["Country"] == "constant"
    assert "Churn" not in schema.features


def test_yes_no_with_blanks_becomes_zero_one_and_nan() -> None:
    df = table()
    encoded = encode_for_trees(df, infer_columns(df, "Churn", None, min_count=3))

    partner = encoded["Partner"].to_numpy()[:10]
    np.testing.assert_array_equal(partner, [1, 0, 1, 0, np.nan, 1, 0, 1, 0, 1])
    assert encoded["Senior"].dtype == np.float64


def test_numeric_with_blank_cells_parses_blanks_as_nan() -> None:
    df = table()
    encoded = encode_for_trees(df, infer_columns(df, "Churn", None, min_count=3))

    np.testing.assert_array_equal(
        encoded["TotalCharges"].to_numpy()[:5], [12.5, np.nan, 7.0, 1000.0, 3.25]
    )


def test_a_text_cell_in_a_number_column_makes_it_categorical() -> None:
    df = pd.DataFrame({"x": ["1", "2", "three", "4"] * 5, "y": [0, 1] * 10})

    schema = infer_columns(df, "y", None, min_count=1)

    assert schema.numeric == ()
    assert schema.levels["x"] == ("1", "2", "4", "three", OTHER_LEVEL)


def test_rare_categories_fold_into_other_and_blank_is_its_own_level() -> None:
    df = table()
    schema = infer_columns(df, "Churn", None, min_count=3)

    levels = schema.levels["Contract"]
    assert "Two year" not in levels  # 2 rows < min_count
    assert MISSING_LEVEL in levels
    contract = encode_for_trees(df, schema)["Contract"]
    assert isinstance(contract.dtype, pd.CategoricalDtype)
    assert list(contract.cat.categories) == list(levels)
    assert list(contract.iloc[17:]) == [OTHER_LEVEL, OTHER_LEVEL, MISSING_LEVEL]


def test_unknown_category_at_transform_time_goes_to_other() -> None:
    df = table()
    schema = infer_columns(df, "Churn", None, min_count=3)
    new = df.head(3).copy()
    new["Contract"] = ["Three year", "One year", None]
    new["Partner"] = ["maybe", "yes", None]
    new["TotalCharges"] = ["n/a", "5", None]

    encoded = encode_for_trees(new, schema)

    assert list(encoded["Contract"]) == [OTHER_LEVEL, "One year", MISSING_LEVEL]
    np.testing.assert_array_equal(encoded["Partner"].to_numpy(), [np.nan, 1.0, np.nan])
    np.testing.assert_array_equal(encoded["TotalCharges"].to_numpy(), [np.nan, 5.0, np.nan])


def test_missing_feature_column_is_named() -> None:
    df = table()
    schema = infer_columns(df, "Churn", None, min_count=3)

    with pytest.raises(ValueError, match="tenure"):
        encode_for_trees(df.drop(columns=["tenure"]), schema)


@pytest.mark.parametrize("name", ["id", "customer_id", "Customer ID", "accountId", "customerID"])
def test_id_named_numeric_columns_with_unique_values_are_dropped(name: str) -> None:
    df = pd.DataFrame({name: range(10), "x": [1.5, 2.5] * 5, "y": [0, 1] * 5})

    schema = infer_columns(df, "y", None)

    assert [d.name for d in schema.dropped] == [name]


def test_unique_numbers_without_an_id_name_are_kept() -> None:
    df = pd.DataFrame({"Paid": np.arange(10) * 1.5, "y": [0, 1] * 5})

    assert infer_columns(df, "y", None).numeric == ("Paid",)


def test_named_id_column_is_excluded_without_guessing() -> None:
    df = table()

    schema = infer_columns(df, "Churn", "customerID", min_count=3)

    assert schema.dropped[0] == DroppedColumn("customerID", "id column named by the caller")
    assert "customerID" not in schema.features


def test_missing_label_column_is_an_error() -> None:
    with pytest.raises(ValueError, match="'Exited'"):
        infer_columns(table(), "Exited", None)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["Yes", "no", " YES ", "No"], [1, 0, 1, 0]),
        (["TRUE", "False", "true", "FALSE"], [1, 0, 1, 0]),
        ([1, 0, 0, 1], [1, 0, 0, 1]),
        ([1.0, 0.0, 1.0, 0.0], [1, 0, 1, 0]),
        (["1", "0", "0", "1"], [1, 0, 0, 1]),
        ([True, False, False, True], [1, 0, 0, 1]),
    ],
)
def test_parse_label_accepts_usual_spellings(values: list[object], expected: list[int]) -> None:
    labels = parse_label(pd.Series(values, name="Churn"))

    assert labels.dtype == np.int64
    assert labels.tolist() == expected


def test_parse_label_names_the_bad_values() -> None:
    series = pd.Series(["Yes", "No", "maybe", "churned", "maybe", " "], name="Churn")

    with pytest.raises(ValueError, match="'Churn'") as error:
        parse_label(series)

    message = str(error.value)
    assert "'maybe'" in message
    assert "'churned'" in message
    assert "<blank>" in message
    assert "4 rows" in message


def test_parse_label_rejects_other_numbers() -> None:
    with pytest.raises(ValueError, match="2"):
        parse_label(pd.Series([0, 1, 2], name="y"))


def test_schema_json_round_trip() -> None:
    schema = infer_columns(table(), "Churn", None, min_count=3)

    restored = TableSchema.from_dict(json.loads(json.dumps(schema.to_dict())))

    assert restored == schema
    assert restored.features == schema.features


def test_linear_encoding_imputes_scales_and_one_hots() -> None:
    df = table()
    schema = infer_columns(df, "Churn", None, min_count=3)

    matrix, encoding = encode_for_linear(df, schema)

    assert not matrix.isna().any().any()
    np.testing.assert_allclose(matrix["tenure"].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(matrix["tenure"].std(ddof=0), 1.0)
    one_hot = matrix[[f"Contract={level}" for level in schema.levels["Contract"]]]
    np.testing.assert_array_equal(one_hot.sum(axis=1).to_numpy(), np.ones(len(df)))
    # Statistics are JSON-serialisable and reused as fitted, not refitted on new rows.
    restored = type(encoding).from_dict(json.loads(json.dumps(encoding.to_dict())))
    again, _ = encode_for_linear(df.head(4), schema, restored)
    pd.testing.assert_frame_equal(again, matrix.head(4))
