"""A model as an MLflow pyfunc: what the registry's models-from-code scripts share.

The scripts (`nextoffer/registry/pyfunc/*_model.py`) run in whatever process loads a
version with MLflow, and import this module rather than anything of `nextoffer.registry`:
loading a model with MLflow's tools needs nextoffer's model code, not its registry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc.model import PythonModel, PythonModelContext
from mlflow.types.schema import ColSpec, DataType, Schema

from nextoffer.models.tabular import TableSchema

ModelT = TypeVar("ModelT")
# The key of the model's files among the pyfunc's artifacts (`context.artifacts["model"]`).
ARTIFACT = "model"


class ModelPyfunc(PythonModel, Generic[ModelT]):
    """A nextoffer model as an MLflow pyfunc: `load` reads its files, `score` answers a frame.

    The scripts build one with their model's loader and scoring; `predict` is defined here
    only, so MLflow wraps it (for its type-hint checks) once.
    """

    def __init__(
        self,
        name: str,
        load: Callable[[Path], ModelT],
        score: Callable[[ModelT, pd.DataFrame], pd.DataFrame],
    ) -> None:
        # `name` is the model's in the not-loaded error ("the churn model is not loaded").
        self.name = name
        self.load = load
        self.score = score
        self.model: ModelT | None = None

    def load_context(self, context: PythonModelContext) -> None:
        """Read the model's own files (the `model` artifact)."""
        self.model = self.load(Path(context.artifacts[ARTIFACT]))

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """The model's answer for each input row."""
        del context, params
        if self.model is None:
            raise RuntimeError(f"the {self.name} model is not loaded (load_context was not called)")
        return self.score(self.model, pd.DataFrame(model_input))


def table_signature(model_dir: Path, schema_file: str, output: str) -> ModelSignature | None:
    """A one-table model's signature (churn, uplift); None when the folder has no schema.

    Inputs are the saved schema's columns, the output one float64 column named `output`.
    """
    path = model_dir / schema_file
    if not path.is_file():
        return None
    schema = TableSchema.from_dict(json.loads(path.read_text()))
    inputs = Schema(
        [
            *(ColSpec(DataType.double, name) for name in (*schema.numeric, *schema.boolean)),
            *(ColSpec(DataType.string, column.name) for column in schema.categorical),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(DataType.double, output)]))
