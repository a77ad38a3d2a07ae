"""MLflow models-from-code entry for the offers model: one row per customer in, propensities out.

MLflow runs this file when it loads a `nextoffer-offers` version (`mlflow.pyfunc.load_model(
"models:/nextoffer-offers@champion")`); the model's own files (JSON, npz, LightGBM text)
are its `model` artifact and `OfferModel.load` reads them: nothing is unpickled. nextoffer
itself imports this module only in `registry.pyfunc.write_pyfunc`, after `prepare_mlflow()`.

Input: the customer feature columns (numbers as float64, MLflow refuses int64 → double;
categories as text; `segment_id` as an integer), and `held` / `history`, each a list of
product ids (held on the scoring day / ever held or acquired). Output: one column per
product, the purchase propensity the ranker gives, NaN where the product is not a candidate
(held, inactive, or on no recommender's shortlist), exactly as nextoffer's scorer computes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import scipy.sparse as sp
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Array, ColSpec, DataType, Schema

from nextoffer.models.candidates import RankerInputs
from nextoffer.models.offer_model import OfferModel
from nextoffer.models.pyfunc import ModelPyfunc

HELD = "held"
HISTORY = "history"
# The segment is an integer id; the other categories are text.
INTEGER_CATEGORIES = ("segment_id",)
MODEL_FILE = "offer_model.json"


def propensities(model: OfferModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Propensities, customers × products (NaN where not a candidate)."""
    products = list(model.products.product_ids)
    held = product_matrix(frame[HELD], products)
    history = product_matrix(frame[HISTORY], products)
    features = frame.drop(columns=[HELD, HISTORY]).reset_index(drop=True)
    propensity, _ = model.propensity(features, history, held)
    return pd.DataFrame(propensity.astype(np.float64), index=frame.index, columns=products)


def product_matrix(cells: Iterable[Any], products: Sequence[str]) -> sp.csr_matrix:
    """Customers × products, 1 where a row's list names the product (unknown ids ignored)."""
    column = {product: j for j, product in enumerate(products)}
    rows: list[int] = []
    cols: list[int] = []
    count = 0
    for i, items in enumerate(cells):
        count += 1
        if items is None or isinstance(items, float):  # a missing list: nothing held
            continue
        for product in items:
            j = column.get(str(product))
            if j is not None:
                rows.append(i)
                cols.append(j)
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(count, len(products))
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def signature(model_dir: Path) -> ModelSignature:
    """The feature columns in; one propensity column per product out (when the files say)."""
    meta = model_dir / MODEL_FILE
    saved = json.loads(meta.read_text()) if meta.is_file() else {}
    columns = RankerInputs.from_dict(saved["inputs"]) if "inputs" in saved else RankerInputs()
    inputs = Schema(
        [
            *(ColSpec(DataType.double, name) for name in columns.numeric),
            *(
                ColSpec(DataType.long if name in INTEGER_CATEGORIES else DataType.string, name)
                for name in columns.categorical
            ),
            ColSpec(Array(DataType.string), HELD),
            ColSpec(Array(DataType.string), HISTORY),
        ]
    )
    if not saved:
        return ModelSignature(inputs=inputs)
    products = saved["products"]["product_ids"]
    outputs = Schema([ColSpec(DataType.double, str(p)) for p in products])
    return ModelSignature(inputs=inputs, outputs=outputs)


mlflow.models.set_model(ModelPyfunc("offers", OfferModel.load, propensities))
