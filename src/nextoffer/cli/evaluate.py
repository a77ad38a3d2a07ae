"""`nextoffer evaluate`: offline evaluation of the models on any CSV."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from nextoffer.cli.common import (
    console,
    err_console,
    handles_errors,
    metrics_table,
    print_json,
)
from nextoffer.domain.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

evaluate_app = typer.Typer(
    help="Offline evaluation on any CSV: recommenders on interactions, churn on a table."
)


@evaluate_app.command("recommenders")
@handles_errors
def evaluate_recommenders(
    interactions: Annotated[Path, typer.Option(help="CSV with one interaction per row")],
    user_col: Annotated[str, typer.Option(help="user id column")] = "user_id",
    item_col: Annotated[str, typer.Option(help="item id column")] = "item_id",
    rating_col: Annotated[str, typer.Option(help="rating column, if any")] = "rating",
    time_col: Annotated[str, typer.Option(help="timestamp column, if any")] = "timestamp",
    split: Annotated[
        str, typer.Option(help="stratified (per user, random), time, or leave_one_out")
    ] = "stratified",
    ratio: Annotated[float, typer.Option(min=0.01, max=0.99, help="train share")] = 0.75,
    seed: Annotated[int, typer.Option(help="random seed of the split")] = 42,
    filter_by: Annotated[str, typer.Option(help="stratify by user or item")] = "user",
    k: Annotated[int, typer.Option(min=1, help="cut-off of the ranking metrics")] = 10,
    models: Annotated[
        str | None, typer.Option(help="comma-separated models (default: all)")
    ] = None,
    weights: Annotated[str, typer.Option(help="binary or rating")] = "binary",
    tune: Annotated[bool, typer.Option(help="choose settings on a validation split")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Split an interactions CSV, fit every recommender, and print test ranking metrics.

    Settings (EASE regularisation, ALS factors, neighbours) are chosen on a validation
    split carved from the training part, never on the test part. Items a user has in
    training are not recommended; all of the user's test items are relevant.
    """
    from nextoffer.models.catalog import RECOMMENDERS
    from nextoffer.pipelines.evaluate import RecommenderEvaluationConfig
    from nextoffer.pipelines.evaluate import evaluate_recommenders as run

    choices = {"split": ("stratified", "time", "leave_one_out"), "filter_by": ("user", "item")}
    choices["weights"] = ("binary", "rating")
    given = {"split": split, "filter_by": filter_by, "weights": weights}
    for option, value in given.items():
        if value not in choices[option]:
            raise ConfigError(f"--{option.replace('_', '-')} must be one of {choices[option]}")
    config = RecommenderEvaluationConfig(
        user_col=user_col,
        item_col=item_col,
        rating_col=rating_col or None,
        time_col=time_col or None,
        split=split,  # type: ignore[arg-type]
        ratio=ratio,
        seed=seed,
        k=k,
        filter_by=filter_by,  # type: ignore[arg-type]
        models=tuple(m.strip() for m in models.split(",") if m.strip())
        if models is not None
        else tuple(RECOMMENDERS),
        weights=weights,  # type: ignore[arg-type]
        tune=tune,
    )
    with err_console.status("evaluating recommenders") as status:
        result = run(interactions, config, progress=lambda m: status.update(m))
    if as_json:
        print_json(result.to_dict())
        return
    d = result.data
    console.print(
        f"{d['file']}: {d['interactions']:,} interactions · {d['users']:,} users · "
        f"{d['items']:,} items · {d['split']} split {d['ratio']} (seed {d['seed']}) → "
        f"{d['train']:,} train / {d['test']:,} test",
        highlight=False,
        soft_wrap=True,
    )
    columns = [f"{m}@{k}" for m in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")]
    table = metrics_table("test metrics", result.metrics, [*columns, f"coverage@{k}"])
    # Whole names and headers even where the console is narrower than the table (80 columns
    # when piped): rich would otherwise cut them to "populari…".
    wide = console.options.update_width(max(console.width, 1_000))
    width = max(console.width, console.measure(table, options=wide).maximum)
    Console(width=width, highlight=False).print(table)
    for name, params in result.chosen.items():
        console.print(f"{name}: {params or 'default settings'}", highlight=False)


@evaluate_app.command("churn")
@handles_errors
def evaluate_churn(
    data: Annotated[Path, typer.Option(help="CSV with one customer per row and a label column")],
    label: Annotated[str, typer.Option(help="label column (yes/no, true/false or 1/0)")],
    id_col: Annotated[
        str | None, typer.Option(help="id column to drop (default: detected)")
    ] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="cross-validation folds")] = 5,
    seed: Annotated[int, typer.Option(help="random seed of the folds")] = 42,
    tune: Annotated[bool, typer.Option(help="choose LightGBM settings in each fold")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Cross-validate the churn model and a logistic baseline on any customer table.

    Columns are typed automatically (numbers, yes/no flags, categories; blank cells are
    missing values) and id columns are dropped. LightGBM settings are chosen inside each
    training fold, never on the fold being scored.
    """
    import pandas as pd

    from nextoffer.domain.errors import InputError
    from nextoffer.models.churn_eval import evaluate_churn_table

    if not data.is_file():
        raise InputError(f"{data}: {'is a directory' if data.is_dir() else 'no such file'}")
    try:
        table = pd.read_csv(data, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{data}: the file is empty") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise InputError(f"{data}: cannot read as CSV: {reason}") from None
    if label not in table.columns:
        raise InputError(f"{data}: no column {label!r}; found {', '.join(table.columns)}")
    if id_col is not None and id_col not in table.columns:
        raise InputError(f"{data}: no id column {id_col!r}")
    with err_console.status(f"cross-validating on {len(table):,} rows ({folds} folds)"):
        try:
            result = evaluate_churn_table(
                table, label, id_col=id_col, folds=folds, seed=seed, tune=tune
            )
        except ValueError as exc:
            raise InputError(f"{data}: {exc}") from None
    payload = result.to_dict()
    if as_json:
        print_json(payload)
        return
    console.print(
        f"{data}: {payload['rows']:,} rows · churn rate {payload['positives_rate']:.1%} · "
        f"{folds}-fold cross-validation (seed {seed})",
        highlight=False,
        soft_wrap=True,
    )
    metrics = ("roc_auc", "pr_auc", "brier", "lift_top_decile")
    table_out = Table(title="mean ± std over folds", box=None, title_justify="left")
    table_out.add_column("model")
    for metric in metrics:
        table_out.add_column(metric, justify="right")
    for name, scores in result.models.items():
        table_out.add_row(name, *(f"{scores.mean[m]:.4f} ± {scores.std[m]:.4f}" for m in metrics))
    console.print(table_out)
    schema = payload["schema"]
    categorical = ", ".join(f"{n} ({k} levels)" for n, k in schema["categorical"].items())
    dropped = ", ".join(f"{n} ({why})" for n, why in schema["dropped"].items())
    console.print(
        f"columns: {len(schema['numeric'])} numeric · "
        f"{len(schema['boolean'])} yes/no {schema['boolean']} · "
        f"categorical: {categorical or 'none'} · dropped: {dropped or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
    for fold, params in enumerate(result.chosen_params, start=1):
        console.print(
            f"fold {fold} LightGBM settings: {params or 'defaults'}",
            highlight=False,
            soft_wrap=True,
        )


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    """A CSV as text columns, or one InputError line saying why not."""
    import pandas as pd

    from nextoffer.domain.errors import InputError

    if not path.is_file():
        raise InputError(f"{what} {path}: {'is a directory' if path.is_dir() else 'no such file'}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{what} {path}: the file is empty") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise InputError(f"{what} {path}: cannot read as CSV: {reason}") from None


@evaluate_app.command("offers")
@handles_errors
def evaluate_offers(
    holdings: Annotated[Path, typer.Option(help="CSV with one row per customer and held product")],
    customer_col: Annotated[str, typer.Option(help="customer id column")] = "customer_id",
    product_col: Annotated[str, typer.Option(help="product id column")] = "product_id",
    attributes: Annotated[
        Path | None, typer.Option(help="CSV with one row per customer and any columns")
    ] = None,
    products: Annotated[
        Path | None,
        typer.Option(help="catalogue in the import format: categories, prices, product rules"),
    ] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="cross-validation folds")] = 5,
    seed: Annotated[int, typer.Option(help="random seed of the hidden products and folds")] = 0,
    k: Annotated[int, typer.Option(min=1, max=100, help="cut-off of HR@k and nDCG@k")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Cross-validate the offer ranker and baselines by hiding one held product per customer.

    Customers holding two or more products have one hidden (seeded); each model learns from
    the other folds and ranks the products the customer does not visibly hold. See
    docs/evaluation.md for the exact protocol.
    """
    from nextoffer.pipelines.evaluate_offers import (
        OfferEvaluationConfig,
        holdings_frame,
    )
    from nextoffer.pipelines.evaluate_offers import evaluate_offers as run
    from nextoffer.pipelines.offer_catalogue import catalogue_for

    table = _read_csv(holdings, "holdings")
    extra = _read_csv(attributes, "attributes") if attributes is not None else None
    features, held, product_ids, attribute_columns = holdings_frame(
        table, customer_col, product_col, extra, customer_col
    )
    catalogue = _read_csv(products, "products") if products is not None else None
    product_table, allowed = catalogue_for(product_ids, catalogue)
    config = OfferEvaluationConfig(folds=folds, seed=seed, k=k, allowed=allowed)
    with err_console.status(
        f"cross-validating on {len(features):,} customers × {len(product_ids)} products"
    ) as status:
        result = run(
            features,
            held,
            product_table,
            attribute_columns,
            config,
            progress=lambda m: status.update(m),
        )
    payload = result.to_dict()
    if as_json:
        print_json(payload)
        return
    console.print(
        f"{holdings}: {result.customers:,} customers · {len(product_ids)} products · "
        f"{result.evaluated:,} with a hidden product · {folds}-fold (seed {seed}) · "
        f"{result.seconds:.0f} s",
        highlight=False,
        soft_wrap=True,
    )
    metrics = ("hr@1", f"hr@{k}", f"ndcg@{k}", "mrr")
    out = Table(title="mean ± std over folds", box=None, title_justify="left")
    out.add_column("model")
    for metric in metrics:
        out.add_column(metric, justify="right")
    summary = payload["models"]
    for name in sorted(summary, key=lambda n: -summary[n]["hr@1"]["mean"]):
        scores = summary[name]
        out.add_row(name, *(f"{scores[m]['mean']:.4f} ± {scores[m]['std']:.4f}" for m in metrics))
    console.print(out)


def _column_list(value: str | None) -> tuple[str, ...] | None:
    """Comma-separated column names ("A, B" → ("A", "B")); None stays None."""
    if value is None:
        return None
    return tuple(name.strip() for name in value.split(",") if name.strip())


@evaluate_app.command("uplift")
@handles_errors
def evaluate_uplift(
    data: Annotated[Path, typer.Option(help="CSV of a randomised experiment, one row per unit")],
    treatment_col: Annotated[str, typer.Option(help="column holding each row's arm")],
    treated: Annotated[str, typer.Option(help="value of --treatment-col for treated rows")],
    outcome: Annotated[str, typer.Option(help="outcome column: 0/1, yes/no or a number")],
    control: Annotated[
        str | None,
        typer.Option(help="value for control rows (default: the other of exactly two values)"),
    ] = None,
    ignore_cols: Annotated[
        str | None, typer.Option(help="comma-separated columns that are not features")
    ] = None,
    features: Annotated[
        str | None, typer.Option(help="comma-separated feature columns (default: all others)")
    ] = None,
    id_col: Annotated[
        str | None, typer.Option(help="id column to drop (default: detected)")
    ] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="cross-validation folds")] = 5,
    seed: Annotated[int, typer.Option(help="random seed of the folds and models")] = 42,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Average treatment effect, then cross-validated uplift models on a randomised table.

    Prints the treated − control difference in mean outcome with its 95 % interval, then
    the Qini AUC, uplift AUC and uplift at 30 % (scikit-uplift's definitions) of a random
    ranking and of each uplift model, on out-of-fold predictions from folds stratified on
    treatment × outcome. Columns other than the treatment, outcome, id and ignored ones are
    typed automatically, as in `evaluate churn`. See docs/evaluation.md.
    """
    from nextoffer.pipelines.evaluate_uplift import UpliftEvaluationConfig
    from nextoffer.pipelines.evaluate_uplift import evaluate_uplift as run

    table = _read_csv(data, "data")
    config = UpliftEvaluationConfig(
        treatment_col=treatment_col,
        treated=treated,
        control=control,
        outcome=outcome,
        ignore_cols=_column_list(ignore_cols) or (),
        features=_column_list(features),
        id_col=id_col,
        folds=folds,
        seed=seed,
    )
    with err_console.status(f"cross-validating on {len(table):,} rows ({folds} folds)") as status:
        result = run(table, config, progress=lambda m: status.update(m))
    payload = result.to_dict()
    if as_json:
        print_json(payload)
        return
    arms, ate = result.arms, result.ate
    dropped = (
        f" · {arms.dropped:,} rows dropped (treatment neither {arms.treated_value!r} nor "
        f"{arms.control_value!r})"
        if arms.dropped
        else ""
    )
    console.print(
        f"{data}: {len(result.outcome):,} rows{dropped} · treated {arms.treated_value!r} "
        f"{ate.treated_rows:,} · control {arms.control_value!r} {ate.control_rows:,} · "
        f"outcome {outcome!r} ({result.outcome_kind}) · {folds}-fold cross-validation "
        f"(seed {seed})",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"average treatment effect: {ate.value:+.4f} (95 % CI {ate.ci_low:+.4f} to "
        f"{ate.ci_high:+.4f}; {ate.method}) · treated {ate.treated_mean:.4f} vs control "
        f"{ate.control_mean:.4f}",
        highlight=False,
        soft_wrap=True,
    )
    out = Table(title="out-of-fold uplift scores", box=None, title_justify="left")
    out.add_column("model")
    for column in ("qini_auc", "uplift_auc", "uplift@30%"):
        out.add_column(column, justify="right")
    for name, scores in result.scores.items():
        out.add_row(
            name,
            f"{scores.qini_auc:.4f}",
            f"{scores.uplift_auc:.4f}",
            f"{scores.uplift_at_30:+.4f}",
        )
    console.print(out)
    schema = payload["schema"]
    categorical = ", ".join(f"{n} ({k} levels)" for n, k in schema["categorical"].items())
    dropped_columns = ", ".join(f"{n} ({why})" for n, why in schema["dropped"].items())
    console.print(
        f"features: numeric {schema['numeric']} · yes/no {schema['boolean']} · "
        f"categorical: {categorical or 'none'} · dropped: {dropped_columns or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
