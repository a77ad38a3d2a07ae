"""MLflow models-from-code entry for the uplift model: one row per customer in, uplift out.

MLflow runs this file when it loads a `nextoffer-uplift` version (`mlflow.pyfunc.load_model(
"models:/nextoffer-uplift@champion")`); the model's own files (JSON, LightGBM text) are its
`model` artifact and `load_uplift_model` reads them: nothing is unpickled. nextoffer itself
imports this module only in `registry.pyfunc.write_pyfunc`, after `prepare_mlflow()`.

Input: the model's feature columns (the churn model's: numbers and 0/1 flags as float64,
categories as text). Output: the predicted change in the probability of staying (not
churning within the outcome window) that a retention offer causes, as nextoffer's
arbitration reads it.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature

from nextoffer.models.pyfunc import ModelPyfunc, table_signature
from nextoffer.models.uplift import SCHEMA_FILE, UpliftModel, load_uplift_model

OUTPUT = "uplift"


def uplift_scores(model: UpliftModel, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per input row: the predicted uplift (treated − control retention)."""
    scores = np.asarray(model.predict_uplift(frame), dtype=np.float64)
    return pd.DataFrame({OUTPUT: scores}, index=frame.index)


def signature(model_dir: Path) -> ModelSignature | None:
    """The columns the model's schema reads; None when the folder has no schema."""
    return table_signature(model_dir, SCHEMA_FILE, OUTPUT)


mlflow.models.set_model(ModelPyfunc("uplift", load_uplift_model, uplift_scores))
