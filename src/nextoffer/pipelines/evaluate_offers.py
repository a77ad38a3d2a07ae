"""`nextoffer evaluate offers`: hide-one-held-product cross-validation on any holdings table.

Protocol (docs/evaluation.md, "evaluate offers"): every customer holding at least two
products has one of them hidden (seeded); customers are split into K folds; for each fold
every model learns from the other folds and ranks, for each customer of the fold, the
products that customer does not visibly hold (and, given a catalogue, may be offered under
its product rules). HR@1, HR@k, nDCG@k and MRR are averaged over the fold's customers with
a hidden product, then mean ± std over folds. The ranker is fitted by the same functions
as `nextoffer train` in snapshot mode (`models.offer_fit`, `models.hide_one`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from nextoffer.domain.attributes import snake_case
from nextoffer.domain.errors import InputError
from nextoffer.features.segments import fit_table_segments
from nextoffer.models.candidates import ProductTable, choose_inputs, held_flag_name
from nextoffer.models.catalog import RECOMMENDERS
from nextoffer.models.hide_one import MIN_HELD, hide_one
from nextoffer.models.leakage import drop_leaking
from nextoffer.models.offer_fit import (
    SNAPSHOT_RANKER_GRID,
    Examples,
    FitConfig,
    evaluate,
    fit_offer_model,
    fit_standalone,
    ranking_table,
    refit_ranker,
)
from nextoffer.models.tabular import OTHER_LEVEL, infer_columns
from nextoffer.pipelines.base import Say, silent

BASELINE = "lightgbm_propensity"
PROPENSITY_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 20,
    "feature_fraction": 0.9,
    "verbose": -1,
    "deterministic": True,
    "force_col_wise": True,
}
PROPENSITY_ROUNDS = 200


@dataclass(frozen=True)
class OfferEvaluationConfig:
    """Knobs of one evaluation."""

    folds: int = 5
    seed: int = 0
    k: int = 3
    segments: int = 6
    threads: int = 0
    recommenders: Sequence[str] = tuple(RECOMMENDERS)
    # The product rules as a mask of the examples (customers × products), when given.
    allowed: Callable[[Examples], np.ndarray] | None = None


@dataclass
class OfferEvaluation:
    """Per model, per metric: the value of each fold."""

    customers: int
    evaluated: int
    products: list[str]
    folds: int
    k: int
    seed: int
    per_fold: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """{model: {metric: {"mean", "std"}}} over folds."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for model, rows in self.per_fold.items():
            out[model] = {
                metric: {
                    "mean": float(np.mean([r[metric] for r in rows])),
                    "std": float(np.std([r[metric] for r in rows])),
                }
                for metric in rows[0]
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        """The `--json` document."""
        return {
            "models": self.summary(),
            "customers": self.customers,
            "evaluated": self.evaluated,
            "products": self.products,
            "folds": self.folds,
            "k": self.k,
            "seed": self.seed,
            "protocol": "hide one held product (customers holding 2+), K-fold by customer",
            "seconds": round(self.seconds, 1),
        }


def _as_days(text: pd.Series) -> np.ndarray | None:
    """Days since 1970-01-01 when every non-empty value is a YYYY-MM-DD date, else None."""
    present = text != ""
    parsed = pd.to_datetime(text.where(present, None), format="%Y-%m-%d", errors="coerce")
    if not present.any() or bool((parsed.isna() & present).any()):
        return None
    epoch = pd.Timestamp("1970-01-01")
    return np.asarray((parsed - epoch).dt.days, dtype=float)


def holdings_frame(
    holdings: pd.DataFrame,
    customer_col: str,
    product_col: str,
    attributes: pd.DataFrame | None,
    attributes_id: str | None = None,
) -> tuple[pd.DataFrame, sp.csr_matrix, list[str], list[str]]:
    """(features, held matrix, product ids, attribute columns) of a long holdings table.

    Attributes (one row per customer, any columns) are auto-typed like `evaluate churn`:
    numbers and yes/no flags become numbers, the rest categories; id-like and constant
    columns are left out. Columns are named `attr_<snake_case>`, as stored attributes are.
    """
    for column in (customer_col, product_col):
        if column not in holdings.columns:
            found = ", ".join(map(str, holdings.columns))
            raise InputError(f"holdings: no column {column!r}; found {found}")
    pairs = holdings[[customer_col, product_col]].astype(str)
    pairs = pairs[(pairs[customer_col] != "") & (pairs[product_col] != "")].drop_duplicates()
    customers = sorted(set(pairs[customer_col]))
    products = sorted(set(pairs[product_col]))
    if len(products) < 2:
        raise InputError(f"holdings: {len(products)} distinct product(s); need at least 2")
    features = pd.DataFrame({"customer_id": customers})
    attribute_columns: list[str] = []
    if attributes is not None:
        id_col = attributes_id or customer_col
        if id_col not in attributes.columns:
            raise InputError(f"attributes: no column {id_col!r} to join on")
        table = attributes.astype(str).drop_duplicates(subset=[id_col]).copy()
        typed = pd.DataFrame({"customer_id": table[id_col].to_numpy()})
        for name in [c for c in table.columns if c != id_col]:
            days = _as_days(table[name])
            if days is not None:  # dates become numbers: days since 1970
                typed[f"attr_{snake_case(name)}"] = days
                attribute_columns.append(f"attr_{snake_case(name)}")
                table = table.drop(columns=[name])
        table["__label"] = "0"
        schema = infer_columns(table, label="__label", id_col=id_col)
        for name in (*schema.numeric, *schema.boolean):
            column = f"attr_{snake_case(name)}"
            text = table[name].str.strip().str.lower()
            numbers = pd.to_numeric(table[name], errors="coerce")
            if name in schema.boolean:
                numbers = text.map({"yes": 1.0, "y": 1.0, "true": 1.0, "t": 1.0, "1": 1.0})
                numbers = numbers.fillna(
                    text.map({"no": 0.0, "n": 0.0, "false": 0.0, "f": 0.0, "0": 0.0})
                )
            typed[column] = numbers.to_numpy(dtype=float)
            attribute_columns.append(column)
        for categorical in schema.categorical:
            column = f"attr_{snake_case(categorical.name)}"
            raw = table[categorical.name]
            # Levels rarer than the schema's minimum fold into "other", as in `evaluate churn`.
            kept = raw.where(raw.isin(categorical.levels), OTHER_LEVEL).replace("", None)
            typed[column] = kept.to_numpy(dtype=object)
            attribute_columns.append(column)
        features = features.merge(typed, on="customer_id", how="left")
    rows = pd.Series(np.arange(len(customers)), index=customers)
    cols = pd.Series(np.arange(len(products)), index=products)
    held = sp.csr_matrix(
        (
            np.ones(len(pairs), np.float32),
            (rows[pairs[customer_col]].to_numpy(), cols[pairs[product_col]].to_numpy()),
        ),
        shape=(len(customers), len(products)),
    )
    features["products_held"] = np.diff(held.indptr).astype(np.int64)
    return features, held, products, attribute_columns


def evaluate_offers(
    features: pd.DataFrame,
    held: sp.csr_matrix,
    products: ProductTable,
    attribute_columns: list[str],
    config: OfferEvaluationConfig,
    progress: Say = silent,
) -> OfferEvaluation:
    """Cross-validate every model on hide-one-held-product examples."""
    if config.folds < 2:
        raise InputError("--folds must be at least 2")
    started = time.perf_counter()
    features = features.assign(segment_id=0)
    everyone = hide_one(features, held, held, products, config.seed)
    labelled = everyone.buyers
    if len(labelled) < config.folds * 10:
        raise InputError(
            f"only {len(labelled)} customers hold {MIN_HELD}+ products; need at least "
            f"{config.folds * 10} for {config.folds} folds"
        )
    rng = np.random.default_rng(config.seed)
    fold_of = rng.permutation(len(everyone)) % config.folds
    result = OfferEvaluation(
        customers=len(everyone),
        evaluated=len(labelled),
        products=list(products.product_ids),
        folds=config.folds,
        k=config.k,
        seed=config.seed,
    )
    segment_columns = [
        c
        for c in ["products_held", *attribute_columns]
        if pd.api.types.is_numeric_dtype(everyone.features[c])
    ]
    fit = FitConfig(
        k=config.k,
        seed=config.seed,
        threads=config.threads,
        recommenders=tuple(config.recommenders),
        ranker_grid=tuple(SNAPSHOT_RANKER_GRID),
        shortlist=0,  # as `nextoffer train` learning from a holdings snapshot
    )
    for fold in range(config.folds):
        progress(f"fold {fold + 1} of {config.folds}")
        train = everyone.take(np.flatnonzero(fold_of != fold))
        test = everyone.take(np.flatnonzero(fold_of == fold))
        segments = fit_table_segments(
            train.features, segment_columns, config.segments, seed=config.seed
        )
        train.features["segment_id"] = segments.assign(train.features)
        test.features["segment_id"] = segments.assign(test.features)
        inputs = choose_inputs(
            train.features,
            train.held,
            numeric_attributes=[c for c in attribute_columns if c in segment_columns],
            categorical_attributes=[c for c in attribute_columns if c not in segment_columns],
        )
        inputs, _dropped = drop_leaking(train, inputs)
        fitted = fit_offer_model(products, train, inputs, fit)
        refit_ranker(fitted.model, train, fitted.chosen, fit)
        allowed = config.allowed(test) if config.allowed is not None else None
        table = evaluate(
            fitted.model,
            test,
            config.k,
            allowed=allowed,
            standalone=fit_standalone(
                products, train, fitted.chosen, skip=list(fitted.model.recommenders)
            ),
        )
        table[BASELINE] = _propensity_baseline(
            train, test, attribute_columns, products, config, allowed
        )
        for name, row in table.items():
            result.per_fold.setdefault(name, []).append(_reported(row, config.k))
    result.seconds = time.perf_counter() - started
    return result


def _reported(row: Mapping[str, float], k: int) -> dict[str, float]:
    return {
        "hr@1": row["hit_rate_at_1"],
        f"hr@{k}": row[f"hit_rate_at_{k}"],
        f"ndcg@{k}": row[f"ndcg_at_{k}"],
        "mrr": row["mrr"],
    }


def _propensity_inputs(
    examples: Examples, attribute_columns: list[str], products: ProductTable
) -> pd.DataFrame:
    """Attributes plus one visible-holding flag per product (categories as pandas codes)."""
    frame = pd.DataFrame(index=range(len(examples)))
    for column in attribute_columns:
        values = examples.features[column].reset_index(drop=True)
        frame[column] = (
            values if pd.api.types.is_numeric_dtype(values) else values.astype("category")
        )
    dense = np.asarray(examples.held.todense()) > 0
    for j, pid in enumerate(products.product_ids):
        frame[held_flag_name(pid)] = dense[:, j].astype(np.float32)
    return frame


def _propensity_baseline(
    train: Examples,
    test: Examples,
    attribute_columns: list[str],
    products: ProductTable,
    config: OfferEvaluationConfig,
    allowed: np.ndarray | None,
) -> dict[str, float]:
    """A plain per-product LightGBM propensity model: one binary model per product.

    For product p the rows are the training customers who do not visibly hold it, the label
    whether p is their hidden product; test customers are ranked by each model's score.
    """
    x_train = _propensity_inputs(train, attribute_columns, products)
    x_test = _propensity_inputs(test, attribute_columns, products)
    for column in x_train.columns:
        if isinstance(x_train[column].dtype, pd.CategoricalDtype):
            levels = x_train[column].cat.categories
            x_test[column] = pd.Categorical(x_test[column].astype(object), categories=levels)
    held_train = np.asarray(train.held.todense()) > 0
    labels = np.asarray(train.labels.todense()) > 0
    scores = np.zeros((len(test), len(products)), dtype=np.float64)
    params = {**PROPENSITY_PARAMS, "seed": config.seed, "num_threads": config.threads}
    for j in range(len(products)):
        rows = ~held_train[:, j]
        y = labels[rows, j].astype(np.float32)
        if y.sum() == 0:
            continue
        if y.sum() == len(y):
            scores[:, j] = 1.0
            continue
        booster = lgb.train(
            params, lgb.Dataset(x_train[rows], y), num_boost_round=PROPENSITY_ROUNDS
        )
        scores[:, j] = booster.predict(x_test)
    mask = ~(np.asarray(test.held.todense()) > 0) & products.active[None, :]
    if allowed is not None:
        mask &= allowed
    buyers = test.buyers
    return ranking_table(scores[buyers], mask[buyers], test.labels[buyers], config.k)
