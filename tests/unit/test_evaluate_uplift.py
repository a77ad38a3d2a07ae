"""`nextoffer evaluate uplift`, run through the CLI, against scikit-uplift and statsmodels.

The fixture `tests/fixtures/uplift/email_experiment.csv` (see its README) is a small
Hillstrom-shaped e-mail experiment: three arms in `segment`, a yes/no `visit`, a numeric
`spend`, a `customer_id` and a few blank `history` cells.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import Result
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep
from typer.testing import CliRunner

import nextoffer.pipelines.evaluate_uplift as pipeline
from nextoffer.cli import app
from nextoffer.domain.errors import InputError
from nextoffer.evaluation.uplift import qini_auc_score, uplift_at_k, uplift_auc_score
from nextoffer.models.uplift import UPLIFT_MODELS
from nextoffer.pipelines.evaluate_uplift import UpliftEvaluation, parse_outcome
from tests.unit.test_evaluate_cli import assert_one_line_error
from tests.unit.test_uplift_models import simulated_experiment

sklift = pytest.importorskip("sklift.metrics")

pytestmark = pytest.mark.filterwarnings("ignore:Function stable_cumsum is deprecated")

FIXTURE = Path(__file__).absolute().parent.parent / "fixtures" / "uplift" / "email_experiment.csv"
MENS_VS_NONE = (
    "--data",
    str(FIXTURE),
    "--treatment-col",
    "segment",
    "--treated",
    "Mens E-Mail",
    "--control",
    "No E-Mail",
    "--outcome",
    "visit",
    "--ignore-cols",
    "spend",
    "--id-col",
    "customer_id",
)
MODELS = ["random", *UPLIFT_MODELS]


def invoke(*args: str) -> Result:
    """Run `nextoffer evaluate uplift ...` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(app, ["evaluate", "uplift", *args])


def run_captured(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Result, UpliftEvaluation]:
    """Run the command and keep the pipeline's result object (with its predictions)."""
    captured: list[UpliftEvaluation] = []
    real = pipeline.evaluate_uplift

    def spy(*a: Any, **kw: Any) -> UpliftEvaluation:
        captured.append(real(*a, **kw))
        return captured[-1]

    monkeypatch.setattr(pipeline, "evaluate_uplift", spy)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result, captured[0]


@pytest.fixture(scope="module")
def mens_vs_none() -> tuple[dict[str, Any], UpliftEvaluation]:
    """--json on the men's e-mail against no e-mail, and the pipeline's result behind it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        result, evaluation = run_captured(monkeypatch, *MENS_VS_NONE, "--json")
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload, evaluation


def test_json_has_the_documented_shape(mens_vs_none: tuple[dict[str, Any], Any]) -> None:
    payload, _ = mens_vs_none

    assert set(payload["ate"]) == {"value", "ci95"}
    assert list(payload["models"]) == MODELS
    for scores in payload["models"].values():
        assert set(scores) == {"qini_auc", "uplift_auc", "uplift_at_30"}
    assert payload["outcome"] == {"column": "visit", "kind": "binary", "interval": "newcombe"}
    # The id column is dropped, the ignored one never typed, the rest are features.
    schema = payload["schema"]
    assert schema["dropped"] == {"customer_id": "id column named by the caller"}
    features = schema["numeric"] + schema["boolean"] + list(schema["categorical"])
    assert sorted(features) == sorted(
        ["recency", "history", "mens", "womens", "zip_code", "newbie", "channel"]
    )


def test_ate_is_the_difference_in_visit_rates_with_newcombes_interval(
    mens_vs_none: tuple[dict[str, Any], Any],
) -> None:
    payload, _ = mens_vs_none
    table = pd.read_csv(FIXTURE)
    mens = table.loc[table["segment"] == "Mens E-Mail", "visit"] == "yes"
    none = table.loc[table["segment"] == "No E-Mail", "visit"] == "yes"

    low, high = confint_proportions_2indep(
        mens.sum(), len(mens), none.sum(), len(none), method="newcombe", compare="diff"
    )

    assert payload["ate"]["value"] == pytest.approx(mens.mean() - none.mean(), abs=1e-12)
    assert payload["ate"]["ci95"] == pytest.approx([low, high], abs=1e-12)
    assert payload["treated"] == {"value": "Mens E-Mail", "rows": len(mens), "mean": mens.mean()}
    assert payload["control"]["rows"] == len(none)
    assert payload["dropped_rows"] == int((table["segment"] == "Womens E-Mail").sum())
    assert payload["rows"] == len(mens) + len(none)


def test_json_scores_equal_scikit_uplift_on_the_out_of_fold_predictions(
    mens_vs_none: tuple[dict[str, Any], UpliftEvaluation],
) -> None:
    payload, evaluation = mens_vs_none
    table = pd.read_csv(FIXTURE)
    kept = table[table["segment"] != "Womens E-Mail"]
    y, t = evaluation.outcome, evaluation.treatment

    # Row-aligned with the file's kept rows, yes/no mapped to 1/0.
    assert y.tolist() == (kept["visit"] == "yes").astype(int).tolist()
    assert t.tolist() == (kept["segment"] == "Mens E-Mail").astype(int).tolist()
    assert list(evaluation.predictions) == MODELS
    for name, uplift in evaluation.predictions.items():
        assert uplift.shape == (len(kept),)
        scores = payload["models"][name]
        assert scores["qini_auc"] == pytest.approx(sklift.qini_auc_score(y, uplift, t), abs=1e-12)
        assert scores["uplift_auc"] == pytest.approx(
            sklift.uplift_auc_score(y, uplift, t), abs=1e-12
        )
        assert scores["uplift_at_30"] == pytest.approx(
            sklift.uplift_at_k(y, uplift, t, strategy="by_group", k=0.3), abs=1e-12
        )
    # Fitted models predict a spread of uplifts, not one number per fold.
    for name in UPLIFT_MODELS:
        assert len(np.unique(evaluation.predictions[name])) > 50, name


def test_the_table_prints_the_same_numbers(mens_vs_none: tuple[dict[str, Any], Any]) -> None:
    payload, _ = mens_vs_none

    result = invoke(*MENS_VS_NONE)

    assert result.exit_code == 0, result.output
    out = result.stdout
    ate = payload["ate"]
    assert (
        f"average treatment effect: {ate['value']:+.4f} (95 % CI {ate['ci95'][0]:+.4f} to "
        f"{ate['ci95'][1]:+.4f}" in out
    )
    assert f"{payload['dropped_rows']} rows dropped" in out
    for name, scores in payload["models"].items():
        row = next(line.split() for line in out.splitlines() if line.split()[:1] == [name])
        assert row[1:] == [
            f"{scores['qini_auc']:.4f}",
            f"{scores['uplift_auc']:.4f}",
            f"{scores['uplift_at_30']:+.4f}",
        ]


def test_two_arms_need_no_control_and_a_numeric_outcome_gets_welch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False)
    two_arms = table[table["segment"] != "Womens E-Mail"]
    path = tmp_path / "two_arms.csv"
    two_arms.to_csv(path, index=False)

    result, evaluation = run_captured(
        monkeypatch,
        *("--data", str(path), "--treatment-col", "segment", "--treated", "Mens E-Mail"),
        *("--outcome", "spend", "--ignore-cols", "visit", "--folds", "2", "--json"),
    )
    payload = json.loads(result.stdout)

    spend = two_arms["spend"].astype(float)
    mens, none = (
        spend[two_arms["segment"] == "Mens E-Mail"],
        spend[two_arms["segment"] != "Mens E-Mail"],
    )
    welch = stats.ttest_ind(mens, none, equal_var=False).confidence_interval(0.95)
    assert payload["control"]["value"] == "No E-Mail"
    assert payload["outcome"]["kind"] == "continuous"
    assert payload["ate"]["value"] == pytest.approx(mens.mean() - none.mean())
    assert payload["ate"]["ci95"] == pytest.approx([welch.low, welch.high], abs=1e-10)
    y, t = evaluation.outcome, evaluation.treatment
    for name, uplift in evaluation.predictions.items():
        assert payload["models"][name] == pytest.approx(
            {
                "qini_auc": qini_auc_score(y, uplift, t),
                "uplift_auc": uplift_auc_score(y, uplift, t),
                "uplift_at_30": uplift_at_k(y, uplift, t, k=0.3),
            }
        )


def test_two_model_beats_random_on_a_simulated_heterogeneous_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table, t, _, truth = simulated_experiment(3_000, seed=21)
    path = tmp_path / "experiment.csv"
    table.assign(arm=np.where(t == 1, "offer", "none")).to_csv(path, index=False)

    result, evaluation = run_captured(
        monkeypatch,
        *("--data", str(path), "--treatment-col", "arm", "--treated", "offer"),
        *("--outcome", "visit", "--folds", "3", "--json"),
    )
    models = json.loads(result.stdout)["models"]

    assert models["two_model"]["qini_auc"] > models["random"]["qini_auc"] + 0.1
    assert models["two_model"]["uplift_at_30"] > models["random"]["uplift_at_30"]
    # Out of fold, the predicted uplift ranks customers like the planted truth.
    assert np.corrcoef(evaluation.predictions["two_model"], truth)[0, 1] > 0.7
    assert abs(np.corrcoef(evaluation.predictions["random"], truth)[0, 1]) < 0.1


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--treated", "Mens E-Mail"), ("'segment' has 3 values", "--control")),
        (("--treated", "Kids E-Mail"), ("--treated 'Kids E-Mail' is not a value", "found")),
        (
            ("--treated", "Mens E-Mail", "--control", "Mens E-Mail"),
            ("--control must differ from --treated",),
        ),
        (
            ("--treated", "Mens E-Mail", "--control", "No E-Mail", "--outcome", "channel"),
            ("outcome 'channel' must be 0/1, yes/no", "'Web'"),
        ),
        (
            ("--treated", "Mens E-Mail", "--control", "No E-Mail", "--outcome", "nope"),
            ("no outcome column 'nope'",),
        ),
        (
            ("--treated", "Mens E-Mail", "--control", "No E-Mail", "--features", "recency,nope"),
            ("no feature column 'nope'",),
        ),
        (
            ("--treated", "Mens E-Mail", "--control", "No E-Mail", "--features", "recency,visit"),
            ("--features cannot include 'visit'",),
        ),
        (
            ("--treated", "Mens E-Mail", "--control", "No E-Mail", "--ignore-cols", "nope"),
            ("no ignored column 'nope'",),
        ),
    ],
)
def test_bad_options_give_one_line_errors(args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    outcome = () if "--outcome" in args else ("--outcome", "visit")
    result = invoke("--data", str(FIXTURE), "--treatment-col", "segment", *args, *outcome)

    assert_one_line_error(result, *needles)


def test_bad_files_give_one_line_errors(tmp_path: Path) -> None:
    tiny = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False).head(40)
    tiny.to_csv(tmp_path / "tiny.csv", index=False)
    common = ("--treatment-col", "segment", "--treated", "Mens E-Mail", "--control", "No E-Mail")

    assert_one_line_error(
        invoke("--data", str(tmp_path / "missing.csv"), *common, "--outcome", "visit"),
        "no such file",
    )
    assert_one_line_error(
        invoke("--data", str(tmp_path / "tiny.csv"), *common, "--outcome", "visit"),
        "5-fold cross-validation needs at least 5 rows of each arm × outcome",
    )
    tiny.assign(visit="no").to_csv(tmp_path / "constant.csv", index=False)
    assert_one_line_error(
        invoke("--data", str(tmp_path / "constant.csv"), *common, "--outcome", "visit"),
        "outcome 'visit' has one value",
    )


def test_outcomes_are_read_as_0_1_or_numbers() -> None:
    def parsed(*cells: str) -> tuple[list[float], str]:
        values, kind = parse_outcome(pd.Series(cells, name="y"))
        return values.tolist(), kind

    assert parsed("Yes", "no ", "TRUE") == ([1.0, 0.0, 1.0], "binary")
    assert parsed("1.0", "0.0", "1") == ([1.0, 0.0, 1.0], "binary")
    assert parsed("12.5", "0", "-3") == ([12.5, 0.0, -3.0], "continuous")
    with pytest.raises(InputError, match="2 rows are not: 'maybe', <blank>"):
        parse_outcome(pd.Series(["maybe", "", "1"], name="y"))
