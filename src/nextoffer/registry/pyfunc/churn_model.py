"""MLflow models-from-code entry for the churn model: one row per customer in, churn risk out.

MLflow runs this file when it loads a `nextoffer-churn` version (`mlflow.pyfunc.load_model(
"models:/nextoffer-churn@champion")`); the model's own files (JSON, LightGBM text) are its
`model` artifact and `ChurnModel.load` reads them: nothing is unpickled. nextoffer itself
imports this module only in `registry.pyfunc.write_pyfunc`, after `prepare_mlflow()`.

Input: the model's feature columns (numbers and 0/1 flags as float64, categories as text).
Output: the calibrated churn probability of each row, as nextoffer's churn scoring gives it.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature

from nextoffer.models.churn import SCHEMA_FILE, ChurnModel
from nextoffer.models.pyfunc import ModelPyfunc, table_signature

OUTPUT = "churn_probability"


def churn_scores(model: ChurnModel, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per input row: the churn probability."""
    scores = np.asarray(model.predict_proba(frame), dtype=np.float64)
    return pd.DataFrame({OUTPUT: scores}, index=frame.index)


def signature(model_dir: Path) -> ModelSignature | None:
    """The columns the model's schema reads; None when the folder has no schema."""
    return table_signature(model_dir, SCHEMA_FILE, OUTPUT)


mlflow.models.set_model(ModelPyfunc("churn", ChurnModel.load, churn_scores))
