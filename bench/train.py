"""Training and batch-scoring time of the offer and churn models, against the bare math.

For each size: a generated world is loaded (generate, ingest and features are timed but
reported apart), both models are trained with the real jobs, then every customer is scored:
offers through `OfferModel.propensity` and `domain.offers.arbitrate` (top 10 with reasons),
churn through `scoring.churn.score_customers` (probability, band, top 3 reasons).
The baseline, measured in the same run on the same customers, is the bare numpy / LightGBM
computation of the same scores and top-k: EASE `history @ B` plus `argpartition`, the
ranker's `booster.predict` on candidate matrices built beforehand (untimed), and the churn
booster's `predict` and `pred_contrib` on a matrix encoded beforehand (untimed).
Results: bench/results/train.json.
Run from the repository root: `python -m bench.train [--customers 100000,1000000] [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, create_engine, func, select, text

from bench.common import machine, timed, write_result
from nextoffer.config import Settings
from nextoffer.domain.offers import CATEGORIES, Catalogue, arbitrate
from nextoffer.features.training import build_snapshot, current_features, load_products
from nextoffer.models.candidates import candidate_mask, candidate_matrix, shortlist
from nextoffer.models.churn import RISK_THRESHOLDS, ChurnModel
from nextoffer.models.ease import EASERecommender
from nextoffer.models.offer_model import SCORE_BLOCK_ROWS, OfferModel
from nextoffer.models.tabular import encode_for_trees
from nextoffer.pipelines.etl import run_ingest
from nextoffer.pipelines.features import run_features
from nextoffer.pipelines.score_churn import SCORE_BLOCK_ROWS as CHURN_BLOCK_ROWS
from nextoffer.pipelines.train_churn import ChurnTrainingConfig, train_churn
from nextoffer.pipelines.train_offers import OfferTrainingConfig, train_offers
from nextoffer.scoring.churn import model_frame, score_customers
from nextoffer.scoring.offers import HELD_COLUMNS, customers_for
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import Customer, UserFeatures
from nextoffer.synth.generator import generate_world

PG_SERVER = os.environ.get("NEXTOFFER_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
K = 10
REASONS = 3
TARGET_CUSTOMERS = 1_000_000
TARGET_SECONDS = 300.0
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def note(message: str) -> None:
    """Progress on stdout, with the wall clock, for long runs watched from a log."""
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def seconds(value: float) -> float:
    return round(value, 3)


def ratio(ours: float, bare: float) -> float | None:
    return round(ours / bare, 2) if bare > 0 else None


# --------------------------------------------------------------------------- the world


def world_dir(data: Path, customers: int, seed: int) -> Path:
    """`data` itself when it is a generated world of that size, else a sub-folder of it."""
    manifest = data / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text())["customers"] == customers:
        return data
    return data / f"world-{customers}-seed{seed}"


def ensure_world(folder: Path, customers: int, seed: int) -> dict[str, Any]:
    """Generate the world unless a complete one (its manifest is written last) is there."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        meta = json.loads(manifest.read_text())
        if meta["customers"] == customers and meta["seed"] == seed:
            return {"reused_world": str(folder), "rows": meta["rows"]}
        raise SystemExit(f"{folder} holds another world ({meta['customers']} customers)")
    note(f"generating {customers:,} customers into {folder}")
    with timed() as elapsed:
        result = generate_world(folder, customers, seed)
    return {"generate_s": seconds(elapsed()), "rows": result.rows}


def loaded_customers(engine: Engine) -> int:
    """Customers with stored features (0 when the database still has to be loaded)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(UserFeatures)).scalar() or 0)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    name = f"nextoffer_bench_train_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def loaded_world(
    customers: int, args: argparse.Namespace, work: Path
) -> Iterator[tuple[Engine, Settings, dict[str, Any]]]:
    """An engine on a database holding a generated world with its features, and setup times."""
    with ExitStack() as stack:
        if args.database_url:
            url = str(args.database_url).format(customers=customers)
            backend = "given"
        elif args.postgres:
            url = stack.enter_context(postgres_database())
            backend = "postgresql"
        else:
            url = f"sqlite:///{work / f'train-{customers}.db'}"
            backend = "sqlite"
        settings = Settings(database_url=url, var_dir=work / f"var-{customers}")
        engine = make_engine(url)
        stack.callback(engine.dispose)
        migrate.upgrade(engine)
        setup: dict[str, Any] = {"backend": engine.dialect.name, "database": backend}
        stored = loaded_customers(engine)
        if stored:
            setup["reused_database"] = True
        else:
            data = Path(args.data) if args.data else work / "data"
            setup.update(ensure_world(world_dir(data, customers, args.seed), customers, args.seed))
            note("ingesting")
            with timed() as ingest:
                loaded = run_ingest(engine, settings, world_dir(data, customers, args.seed))
            note("computing features")
            with timed() as features:
                run_features(engine, settings)
            setup.update(
                ingest_s=seconds(ingest()),
                ingest_rows=loaded.rows_read,
                ingest_quarantined=loaded.rows_quarantined,
                features_s=seconds(features()),
            )
            stored = loaded_customers(engine)
        with engine.connect() as conn:
            setup["customers_stored"] = int(
                conn.execute(select(func.count()).select_from(Customer)).scalar() or 0
            )
        setup["customers_with_features"] = stored
        setup["peak_rss_mb"] = peak_rss_mb()
        yield engine, settings, setup


# --------------------------------------------------------------------------- training


def bench_training(
    engine: Engine, settings: Settings, threads: int
) -> tuple[OfferModel, ChurnModel, dict[str, Any]]:
    """Both real training jobs, timed whole (each tunes, tests and refits), with their steps."""
    steps: dict[str, list[list[Any]]] = {"offers": [], "churn": []}

    def progress(kind: str, elapsed: Callable[[], float]) -> Callable[[str], None]:
        def say(message: str) -> None:
            steps[kind].append([seconds(elapsed()), message])
            note(f"  {kind} +{elapsed():7.1f} s  {message}")

        return say

    with timed() as offers_time:
        offers = train_offers(
            engine,
            OfferTrainingConfig(
                horizon_days=settings.offer_horizon_days,
                k=K,
                segments=settings.segments,
                seed=settings.random_seed,
                ranker_customers=settings.ranker_train_customers,
                threads=threads,
            ),
            progress=progress("offers", offers_time),
        )
    with timed() as churn_time:
        churn = train_churn(
            engine,
            ChurnTrainingConfig(seed=settings.random_seed, threads=threads),
            progress=progress("churn", churn_time),
        )
    result = {
        "offers_s": seconds(offers_time()),
        "offers_steps_started_at_s": steps["offers"],
        "offers_test_ndcg_at_10": round(offers.metrics[f"ndcg_at_{K}"], 4),
        "offers_chosen": offers.chosen,
        "churn_s": seconds(churn_time()),
        "churn_steps_started_at_s": steps["churn"],
        "churn_test_roc_auc": round(churn.metrics["roc_auc"], 4),
        "churn_rows": churn.rows,
        "churn_chosen": {k: v for k, v in churn.chosen.items() if k != "metric"},
        "peak_rss_mb": peak_rss_mb(),
    }
    return offers.model, churn.model, result


# --------------------------------------------------------------------------- offers batch


def bench_offers(engine: Engine, settings: Settings, model: OfferModel) -> dict[str, Any]:
    """Top 10 offers for every customer, stage by stage, each next to the same math bare.

    `OfferModel.propensity` is called per block of `SCORE_BLOCK_ROWS` customers (the size it
    works in internally), and right after each call its own stages are replayed on the same
    block with a timer around each: the ranker's `predict` is then timed on a candidate
    matrix that is already built. Pairing them block by block keeps a neighbour's load from
    landing on one side of a ratio only. The replay's output is checked against ours.
    """
    assert len(HELD_COLUMNS) == len(CATEGORIES)
    assert model.booster is not None
    note("offers batch: snapshot, propensity (with its replay), arbitration, bare top-k")
    stages: dict[str, float] = {}
    with timed() as load:
        with engine.connect() as conn:
            records = load_products(conn)
            features = current_features(conn)
            snapshot = build_snapshot(
                conn,
                features["as_of"].max().to_pydatetime(),
                list(model.products.product_ids),
                segments=settings.segments,
                seed=settings.random_seed,
                features=features,
            )
        catalogue = Catalogue.from_records(records)
    stages["load_snapshot_s"] = load()
    assert tuple(catalogue.product_ids) == model.products.product_ids
    feats, history, held_sparse = snapshot.features, snapshot.history, snapshot.held
    n, n_products = len(feats), len(model.products)
    groups = pd.to_numeric(feats["segment_id"], errors="coerce").fillna(-1).to_numpy(np.int64)

    propensity = np.full((n, n_products), np.nan, dtype=np.float32)
    stages["propensity_s"] = 0.0
    breakdown = dict.fromkeys(
        ["candidate_mask_s", *(f"score_{name}_s" for name in model.recommenders)], 0.0
    )
    breakdown.update(candidate_matrix_s=0.0, ranker_predict_s=0.0)
    same = True
    for start in range(0, n, SCORE_BLOCK_ROWS):
        rows_slice = slice(start, min(start + SCORE_BLOCK_ROWS, n))
        block, block_history = feats.iloc[rows_slice], history[rows_slice]
        block_held = held_sparse[rows_slice]
        with timed() as elapsed:
            ours, _recommender_scores = model.propensity(block, block_history, block_held)
        stages["propensity_s"] += elapsed()
        propensity[rows_slice] = ours
        del _recommender_scores
        # The same block again, stage by stage (what `propensity` does inside).
        block_scores: dict[str, np.ndarray] = {}
        for name, recommender in model.recommenders.items():
            with timed() as elapsed:
                block_scores[name] = np.asarray(
                    recommender.score_block(block_history, groups[rows_slice]), np.float32
                )
            breakdown[f"score_{name}_s"] += elapsed()
        with timed() as elapsed:
            mask = shortlist(
                candidate_mask(block_held, model.products),
                block_scores,
                model.shortlist_per_model,
            )
        breakdown["candidate_mask_s"] += elapsed()
        with timed() as elapsed:
            inputs, rows, cols = candidate_matrix(
                block, model.products, mask, block_scores, model.levels, model.inputs, block_held
            )
        breakdown["candidate_matrix_s"] += elapsed()
        with timed() as elapsed:
            predicted = model.predict_rows(inputs, cols)
        breakdown["ranker_predict_s"] += elapsed()
        same &= bool(np.allclose(ours[rows, cols], np.asarray(predicted, np.float32), atol=1e-6))
        del inputs, block_scores, mask

    with timed() as build:
        held = held_sparse.toarray() > 0
        customers = customers_for(feats, held, np.full(len(feats), np.nan))
    stages["customers_s"] = build()
    with timed() as choose:
        slate = arbitrate(
            propensity, catalogue, customers, channel=None, contacts_in_window=None, k=K
        )
    stages["arbitrate_s"] = choose()
    with timed() as reasons:
        reason_ids, reason_rows = slate.reason_table()
    stages["reason_table_s"] = reasons()
    filled = float((slate.product_index >= 0).mean())
    batch_s = sum(stages.values())
    del slate, reason_ids, customers

    bare = {"ranker_predict_s": breakdown["ranker_predict_s"]}
    with timed() as elapsed:
        top_k(np.where(np.isnan(propensity), -np.inf, propensity), K)
    bare["propensity_top10_s"] = elapsed()
    bare["ease_scores_top10_s"] = bare_ease(model, history, held)
    del propensity
    bare_s = bare["ease_scores_top10_s"] + bare["ranker_predict_s"]
    return {
        "customers": n,
        "products": n_products,
        "recommenders": list(model.recommenders),
        "ranker_trees": model.best_iteration,
        "stages": {k: seconds(v) for k, v in stages.items()},
        "batch_s": seconds(batch_s),
        "slots_filled": round(filled, 4),
        "distinct_reason_tuples": len(reason_rows),
        "propensity_breakdown": {k: seconds(v) for k, v in breakdown.items()},
        "bare": {k: seconds(v) for k, v in bare.items()},
        "bare_s": seconds(bare_s),
        "bare_predictions_match": same,
        "ratios": {
            "batch_to_bare": ratio(batch_s, bare_s),
            "propensity_to_ranker_predict": ratio(stages["propensity_s"], bare["ranker_predict_s"]),
            "arbitrate_to_bare_top10": ratio(stages["arbitrate_s"], bare["propensity_top10_s"]),
        },
        "peak_rss_mb": peak_rss_mb(),
    }


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest per row, best first (argpartition, then sort k)."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def bare_ease(model: OfferModel, history: Any, held: np.ndarray) -> float:
    """Seconds for EASE's `history @ B` and the top 10 of the candidates, all customers."""
    ease = model.recommenders["ease"]
    assert isinstance(ease, EASERecommender)
    weights = ease.weights
    not_candidate = held | ~model.products.active[None, :]
    with timed() as elapsed:
        binary = history.astype(np.float32)
        binary.data[:] = 1.0
        scores = np.asarray(binary @ weights, dtype=np.float32)
        scores[not_candidate] = -np.inf
        top_k(scores, K)
    return elapsed()


# --------------------------------------------------------------------------- churn batch


def bench_churn(engine: Engine, model: ChurnModel) -> dict[str, Any]:
    """Churn probability, band and top 3 reasons for every customer, next to the same bare.

    Per block of the scoring job's size: `score_customers` (the job's own call), then its
    two stages alone, then the bare booster on a matrix encoded beforehand (untimed).
    """
    note("churn batch: score_customers, its stages and the bare booster, block by block")
    with engine.connect() as conn:
        features = current_features(conn)
    n = len(features)
    names = model.schema.features
    batch_s = 0.0
    stages = {"predict_proba_s": 0.0, "explain_s": 0.0}
    bare = {"predict_s": 0.0, "pred_contrib_top3_s": 0.0}
    same = True
    for start in range(0, n, CHURN_BLOCK_ROWS):
        block = features.iloc[start : start + CHURN_BLOCK_ROWS]
        with timed() as elapsed:
            score_customers(model, block, RISK_THRESHOLDS, top=REASONS)
        batch_s += elapsed()
        frame = model_frame(model, block)
        with timed() as elapsed:
            model.predict_proba(frame)
        stages["predict_proba_s"] += elapsed()
        with timed() as elapsed:
            model.explain(frame, top=REASONS)
        stages["explain_s"] += elapsed()
        matrix = encoded_matrix(frame, model)
        with timed() as elapsed:
            raw = np.asarray(model.booster.predict(matrix, num_iteration=model.best_iteration))
            model.calibration.apply(raw)
        bare["predict_s"] += elapsed()
        with timed() as elapsed:
            contrib = np.asarray(
                model.booster.predict(matrix, num_iteration=model.best_iteration, pred_contrib=True)
            )
            top_k(contrib[:, : len(names)], REASONS)
        bare["pred_contrib_top3_s"] += elapsed()
        if start == 0:
            same = bool(np.allclose(raw, model.predict_raw(frame)))
    bare_s = sum(bare.values())
    return {
        "customers": n,
        "trees": model.best_iteration,
        "stages": {k: seconds(v) for k, v in stages.items()},
        "batch_s": seconds(batch_s),
        "bare": {k: seconds(v) for k, v in bare.items()},
        "bare_s": seconds(bare_s),
        "bare_predictions_match": same,
        "ratios": {
            "batch_to_bare": ratio(batch_s, bare_s),
            "predict_proba_to_bare_predict": ratio(stages["predict_proba_s"], bare["predict_s"]),
            "explain_to_bare_contrib_top3": ratio(stages["explain_s"], bare["pred_contrib_top3_s"]),
        },
        "peak_rss_mb": peak_rss_mb(),
    }


def encoded_matrix(frame: pd.DataFrame, model: ChurnModel) -> np.ndarray:
    """The booster's input as a float matrix: numbers, and category codes (NaN = missing)."""
    encoded = encode_for_trees(frame, model.schema)
    columns = []
    for name in model.schema.features:
        column = encoded[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy().astype(np.float64)
            codes[codes < 0] = np.nan
            columns.append(codes)
        else:
            columns.append(column.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.column_stack(columns)


# --------------------------------------------------------------------------- main


def trained_models(
    engine: Engine, settings: Settings, customers: int, args: argparse.Namespace
) -> tuple[OfferModel, ChurnModel, dict[str, Any]]:
    """Train both models, or load them from `--models` (then training is not measured)."""
    folder = Path(args.models) / f"models-{customers}" if args.models else None
    if folder is not None and (folder / "offers" / "offer_model.json").exists():
        note(f"loading the models saved in {folder}")
        training = {"reused_models": str(folder)}
        return OfferModel.load(folder / "offers"), ChurnModel.load(folder / "churn"), training
    offer_model, churn_model, training = bench_training(engine, settings, args.threads)
    if folder is not None:
        churn_model.save(folder / "churn")
        offer_model.save(folder / "offers")  # written last: it marks the folder complete
    return offer_model, churn_model, training


def bench_size(customers: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    with loaded_world(customers, args, work) as (engine, settings, setup):
        note(f"[{customers:,}] setup: {setup}")
        offer_model, churn_model, training = trained_models(engine, settings, customers, args)
        note(f"[{customers:,}] training: {training}")
        offers = bench_offers(engine, settings, offer_model)
        note(f"[{customers:,}] offers batch: {offers}")
        churn = bench_churn(engine, churn_model)
        note(f"[{customers:,}] churn batch: {churn}")
    return {
        "customers": customers,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "setup": setup,
        "training": training,
        "offers_batch": offers,
        "churn_batch": churn,
        "peak_rss_mb": peak_rss_mb(),
    }


def target_check(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Offers top 10 for 1 M customers within 5 minutes (projected linearly below 1 M)."""
    largest = max(runs, key=lambda run: run["customers"])
    measured = largest["offers_batch"]["batch_s"]
    projected = measured * TARGET_CUSTOMERS / largest["customers"]
    return {
        "goal": "batch top-10 offers for 1 M customers in under 5 minutes on 2 cores",
        "customers": TARGET_CUSTOMERS,
        "seconds": TARGET_SECONDS,
        "measured_customers": largest["customers"],
        "measured_s": measured,
        "projected": largest["customers"] != TARGET_CUSTOMERS,
        "offers_batch_1m_s": round(projected, 1),
        "offers_and_churn_batch_1m_s": round(
            projected + largest["churn_batch"]["batch_s"] * TARGET_CUSTOMERS / largest["customers"],
            1,
        ),
        "target_met": projected <= TARGET_SECONDS,
    }


def save(results: dict[str, Any], args: argparse.Namespace) -> Path:
    if args.quick and not args.name:
        # A smoke run must not overwrite the committed results.
        path = Path(tempfile.gettempdir()) / "nextoffer-bench-train-quick.json"
        path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path
    return write_result(args.name or "train", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", default="100000,1000000", help="comma-separated world sizes")
    parser.add_argument("--quick", action="store_true", help="one small world (20 000) smoke run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="training threads, 0 = all cores")
    parser.add_argument(
        "--data", type=Path, help="folder to keep generated worlds in (world-<n>-seed<s>) or reuse"
    )
    parser.add_argument(
        "--database-url",
        help="use (and keep) this database; loaded unless it has features; `{customers}` is "
        "replaced by the size",
    )
    parser.add_argument("--postgres", action="store_true", help="a new PostgreSQL database")
    parser.add_argument(
        "--models", type=Path, help="save trained models here (models-<n>), or load them from it"
    )
    parser.add_argument(
        "--name", help="result file under bench/results/ (default: train; --quick writes to /tmp)"
    )
    args = parser.parse_args()
    sizes = [20_000] if args.quick else sorted({int(s) for s in args.customers.split(",")})
    if args.database_url and len(sizes) > 1 and "{customers}" not in args.database_url:
        parser.error("--database-url with several sizes needs a {customers} placeholder")

    results: dict[str, Any] = {
        "machine": machine(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "thread_variables": {v: os.environ.get(v) for v in THREAD_VARIABLES},
        "training_threads": args.threads,
        "sizes": sizes,
        "seed": args.seed,
        "k": K,
    }
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nextoffer-bench-train-") as tmp:
        for customers in sizes:
            runs.append(bench_size(customers, args, Path(tmp)))
            # Written after every size, so a larger size that fails keeps the smaller ones.
            results["runs"] = runs
            results["target"] = target_check(runs)
            path = save(results, args)
    for run in runs:
        offers, churn = run["offers_batch"], run["churn_batch"]
        print(
            f"train bench {run['customers']:,}: train offers {run['training']['offers_s']:.0f} s"
            f" · churn {run['training']['churn_s']:.0f} s · offers batch {offers['batch_s']:.1f} s"
            f" ({offers['ratios']['batch_to_bare']}× bare) · churn batch {churn['batch_s']:.1f} s"
            f" ({churn['ratios']['batch_to_bare']}× bare) · peak {run['peak_rss_mb']:,.0f} MB"
        )
    verdict = "met" if results["target"]["target_met"] else "NOT met"
    print(f"target (1 M in {TARGET_SECONDS:.0f} s): {verdict} → {path}")


if __name__ == "__main__":
    main()
