"""Score customers given in files (offers and churn) with the champions, storing nothing.

The files go through the normal ingest into a scratch SQLite database in a temporary
folder, with a copy of the catalogue: the same validation (bad rows are reported with the
quarantine's reasons), the same features job, the same scoring functions as precompute and
the live API. Segments are not refitted on the file: each customer gets the current
segment whose mean is nearest (`features.segment_assign`). The platform's database is only
read (catalogue, segments); the scratch database is deleted afterwards.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError, NextOfferError
from nextoffer.domain.offers import OfferSlate
from nextoffer.ingest.entities import PRODUCTS
from nextoffer.ingest.sources import SUFFIXES as INPUT_FORMATS
from nextoffer.scoring.offers import policy_from_settings, score_snapshot
from nextoffer.store import Engine, migrate
from nextoffer.store.engine import make_engine
from nextoffer.store.reads import features as feature_reads
from nextoffer.store.reads.quarantine import quarantine_rows
from nextoffer.usecases.context import Services
from nextoffer.usecases.exports import output_format, write_table

if TYPE_CHECKING:
    import pandas as pd

OFFER_COLUMNS: Final = 3
"""Offers per customer in the output: offer_1..offer_3 with their scores."""


@dataclass(frozen=True)
class ScoreRequest:
    """The files to score and how."""

    customers: Path
    subscriptions: Path | None = None
    """Their holdings; without it, nobody holds anything."""
    transactions: Path | None = None
    """Their purchases (recency, frequency, spend features and history)."""
    events: Path | None = None
    """Their events (support contacts, engagement, offers accepted)."""
    mapping: str | None = None
    """A mapping file for the files (`docs/data-format.md`); default NEXTOFFER_INGEST_MAPPING."""
    channel: str | None = None
    as_of: datetime | None = None
    """Measure features at this instant (default: the data's clock, as the features job)."""


@dataclass(frozen=True)
class Rejected:
    """A row of an input file that failed validation, with the quarantine's reason."""

    entity: str
    line: int
    reason: str


@dataclass
class ScoreResult:
    """What scoring the files produced."""

    out: str
    frame: pd.DataFrame
    rows_read: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    offers_model: str = ""
    churn_model: str | None = None

    def summary(self) -> str:
        """One line for the CLI."""
        churn = f"churn {self.churn_model}" if self.churn_model else "no churn champion"
        return (
            f"score: {self.rows_read:,} rows read · {len(self.rejected):,} rejected · "
            f"{len(self.frame):,} customers scored with offers {self.offers_model}, {churn} "
            f"→ {self.out} (nothing stored)"
        )


def score_files(services: Services, request: ScoreRequest, out: str) -> ScoreResult:
    """Score the customers of `request`'s files and write one row per customer to `out`.

    Columns: customer_id, segment_id, churn_risk, churn_band, offer_1..offer_3 and
    offer_1_score..offer_3_score, then the model versions. Raises NextOfferError when there
    is no offers champion or the catalogue changed since it was trained.
    """
    output_format(out)
    given = {
        "customers": request.customers,
        "subscriptions": request.subscriptions,
        "transactions": request.transactions,
        "events": request.events,
    }
    files = [(entity, path) for entity, path in given.items() if path is not None]
    for _, path in files:
        if not path.is_file():
            raise ConfigError(f"no such file: {path}")
    services.state.refresh()
    champion, catalogue = services.state.offers, services.state.catalogue
    if champion is None or catalogue is None:
        raise NextOfferError("no offers champion yet: run `nextoffer train` first")
    if tuple(catalogue.product_ids) != tuple(champion.model.products.product_ids):
        raise NextOfferError(
            "the product catalogue changed since the offers champion was trained: "
            "run `nextoffer train` before scoring"
        )
    settings = services.settings
    with tempfile.TemporaryDirectory(prefix="nextoffer-score-") as folder:
        root = Path(folder)
        inputs = root / "in"
        inputs.mkdir()
        # The catalogue is loaded on its own, in the import format as it is: a mapping
        # meant for the operator's files must not be applied to it.
        (root / "catalogue").mkdir()
        _write_products(services, root / "catalogue" / "products.csv")
        for entity, path in files:
            shutil.copyfile(path, inputs / f"{entity}{_ending(path)}")
        scratch = settings.model_copy(
            update={
                "database_url": f"sqlite:///{root / 'scratch.db'}",
                "var_dir": root / "var",
            }
        )
        engine = make_engine(scratch.database_url)
        try:
            result = _score(services, scratch, engine, inputs, request, out)
        finally:
            engine.dispose()
    write_table(result.frame, out, settings)
    return result


def _score(
    services: Services,
    scratch: Settings,
    engine: Engine,
    inputs: Path,
    request: ScoreRequest,
    out: str,
) -> ScoreResult:
    from nextoffer.features.segment_assign import assign_segments
    from nextoffer.features.training import build_snapshot
    from nextoffer.pipelines.etl import run_ingest
    from nextoffer.pipelines.features import run_features
    from nextoffer.scoring.churn import score_customers

    settings = services.settings
    champion, catalogue = services.state.offers, services.state.catalogue
    assert champion is not None and catalogue is not None  # checked by the caller
    migrate.upgrade(engine)
    run_ingest(engine, scratch, inputs.parent / "catalogue")
    mapping = request.mapping or settings.ingest_mapping or None
    ingested = run_ingest(engine, scratch, inputs, mapping=mapping)
    rejected = [
        Rejected(q.entity, q.line, q.reason)
        for q in quarantine_rows(engine)
        if q.entity != "products"
    ]
    rows_read = sum(f.rows_read for f in ingested.files if f.entity != "products")
    done = run_features(engine, scratch, request.as_of)
    with engine.connect() as conn:
        features = feature_reads.current_features(conn)
        # The platform's segments, not the scratch run's: nearest current segment mean.
        reference = feature_reads.current_features(services.engine)
        features["segment_id"] = assign_segments(reference, features).to_numpy()
        snapshot = build_snapshot(
            conn,
            done.as_of,
            list(catalogue.product_ids),
            segments=settings.segments,
            seed=settings.random_seed,
            features=features,
        )
    features = snapshot.features
    n = len(features)
    churn = services.state.churn
    risk = np.full(n, np.nan)
    bands: list[str | None] = [None] * n
    if churn is not None and n:
        scored = score_customers(churn.model, features, settings.churn_bands, explained_bands=())
        risk = scored["score"].to_numpy(np.float64)
        bands = [str(b) for b in scored["band"]]
    slate = score_snapshot(
        champion.model,
        catalogue,
        policy_from_settings(settings),
        snapshot,
        np.zeros((n, catalogue.n_products), np.int32),
        risk,
        k=OFFER_COLUMNS,
        channel=request.channel,
    )
    frame = _table(features, risk, bands, slate, champion.label, churn.label if churn else None)
    return ScoreResult(
        out,
        frame,
        rows_read=rows_read,
        rejected=rejected,
        offers_model=champion.label,
        churn_model=churn.label if churn else None,
    )


def _table(
    features: pd.DataFrame,
    risk: np.ndarray,
    bands: list[str | None],
    slate: OfferSlate,
    offers_model: str,
    churn_model: str | None,
) -> pd.DataFrame:
    import pandas as pd

    table: dict[str, Any] = {
        "customer_id": features["customer_id"].astype(str).to_numpy(),
        "segment_id": features["segment_id"].to_numpy(),
        "churn_risk": np.round(risk, 6),
        "churn_band": bands,
    }
    offers = [slate.offers(i) for i in range(len(features))]
    for j in range(OFFER_COLUMNS):
        table[f"offer_{j + 1}"] = [o[j].product_id if len(o) > j else None for o in offers]
        table[f"offer_{j + 1}_score"] = [o[j].score if len(o) > j else math.nan for o in offers]
    table["offers_model"] = offers_model
    table["churn_model"] = churn_model
    return pd.DataFrame(table)


def _write_products(services: Services, path: Path) -> None:
    """The platform's catalogue as a products import file, for the scratch database."""
    import csv

    columns = PRODUCTS.column_names
    records = feature_reads.product_records(services.engine, columns)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for record in records:
            writer.writerow([_cell(record.get(c)) for c in columns])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.2f}" if value == round(value, 2) else repr(value)
    return str(value)


def _ending(path: Path) -> str:
    """The file's import-format ending (.csv, .csv.gz, .parquet); ConfigError otherwise."""
    name = path.name.lower()
    for ending in INPUT_FORMATS:
        if name.endswith(ending):
            return ending
    raise ConfigError(f"{path}: an input file must end in {', '.join(INPUT_FORMATS)}")
