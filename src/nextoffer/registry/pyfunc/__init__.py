"""Each registered version as an MLflow pyfunc model too, so MLflow's own tools can load it.

Each kind has a models-from-code script here (`offers_model.py`, `churn_model.py`,
`uplift_model.py`): MLflow copies it into the model and runs it on
`mlflow.pyfunc.load_model`, and it reads the model's own safe files (JSON, npz, LightGBM
text), the pyfunc's `model` artifact, with nextoffer's loader. No pickle.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nextoffer.registry.mlflow_setup import prepare_mlflow

if TYPE_CHECKING:
    from mlflow.models.signature import ModelSignature

_HERE = Path(__file__).parent


def write_pyfunc(kind: str, model_dir: Path, dst: Path) -> None:
    """Write `model_dir` (a `kind` model) as an MLflow pyfunc model into `dst`, a new directory.

    `dst` gets MLmodel (with the signature), the entry script, the environment files, and a
    copy of the model's files as the `model` artifact: a self-contained MLflow model.
    """
    prepare_mlflow()
    with warnings.catch_warnings():
        # MLflow's import of its own agent types warns about their `Any` hints; and an input
        # example would be customer data, the signature says what goes in.
        warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType")
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        import mlflow.pyfunc

        from nextoffer.models.pyfunc import ARTIFACT

        script, signature = _entry(kind)
        mlflow.pyfunc.save_model(
            path=str(dst),
            python_model=str(script),
            artifacts={ARTIFACT: str(model_dir)},
            signature=signature(model_dir),
            pip_requirements=[_nextoffer_requirement()],
            metadata={"nextoffer_kind": kind},
        )


def _entry(kind: str) -> tuple[Path, Callable[[Path], ModelSignature | None]]:
    """The models-from-code script of `kind` and its signature function."""
    # Imported here: the scripts import the model code (LightGBM, pandas) and MLflow.
    if kind == "offers":
        from nextoffer.registry.pyfunc import offers_model

        return _HERE / "offers_model.py", offers_model.signature
    if kind == "churn":
        from nextoffer.registry.pyfunc import churn_model

        return _HERE / "churn_model.py", churn_model.signature
    if kind == "uplift":
        from nextoffer.registry.pyfunc import uplift_model

        return _HERE / "uplift_model.py", uplift_model.signature
    raise ValueError(f"no MLflow pyfunc wrapper for model kind {kind!r}")


def _nextoffer_requirement() -> str:
    """The package the scripts import, pinned to this version (it brings the model libraries)."""
    try:
        return f"nextoffer=={importlib.metadata.version('nextoffer')}"
    except importlib.metadata.PackageNotFoundError:
        return "nextoffer"
