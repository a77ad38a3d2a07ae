"""The one way nextoffer starts MLflow: telemetry off and output quiet before the first import.

Nothing here runs at import time. `prepare_mlflow()` is called when a registry is built,
and by every function that imports MLflow, before it does: so whichever comes first, the
environment MLflow reads on import is already set.
"""

from __future__ import annotations

import logging
import os
import threading

# What MLflow reads from the environment, and nextoffer's defaults (a value already set
# wins: MLFLOW_DISABLE_TELEMETRY=false opts back in, DO_NOT_TRACK=true is honoured too).
MLFLOW_DEFAULTS: dict[str, str] = {
    # MLflow reports usage to its developers from a background thread unless told not to,
    # and writes an installation id on import (mlflow.telemetry, read once on import). A
    # self-hosted platform must not phone home.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # A progress bar on stderr for every download, and "View run … at" links on stdout for
    # every run on a tracking server: our CLI output stays ours.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

_lock = threading.Lock()
_prepared = False


def prepare_mlflow() -> None:
    """Set MLflow's environment, import it, and hand its loggers back to ours (once).

    Importing MLflow gives the `mlflow`, `alembic` and `sqlalchemy.engine` loggers a handler
    of its own and stops them propagating, which bypasses our JSON log format; and its SQLite
    store announces table creation and each migration at INFO on first use. Done once, so an
    application that configures these loggers afterwards keeps its choice.
    """
    global _prepared
    with _lock:
        if _prepared:
            return
        for name, value in MLFLOW_DEFAULTS.items():
            os.environ.setdefault(name, value)
        import mlflow  # noqa: F401  (the first import, after the switches above)
        from mlflow.telemetry import get_telemetry_client, set_telemetry_client

        _hand_loggers_back()
        # MLflow imported by someone else before us already started its client: dropped
        # here when the (now set) environment says telemetry is off.
        if get_telemetry_client() is not None and _telemetry_off():
            set_telemetry_client()  # type: ignore[no-untyped-call]
        _prepared = True


def _telemetry_off() -> bool:
    disabled = os.environ.get("MLFLOW_DISABLE_TELEMETRY", "").strip().lower()
    return disabled in {"true", "1"} or os.environ.get("DO_NOT_TRACK", "").lower() == "true"


def _hand_loggers_back() -> None:
    # MLFLOW_LOGGING_LEVEL set by hand (e.g. DEBUG to see MLflow's requests) is respected.
    mlflow_level = logging.getLogger("mlflow").level
    if "MLFLOW_LOGGING_LEVEL" not in os.environ:
        mlflow_level = max(mlflow_level, logging.WARNING)
    for name, level in (
        ("mlflow", mlflow_level),
        ("alembic", max(logging.getLogger("alembic").level, logging.WARNING)),
        ("sqlalchemy.engine", logging.NOTSET),
    ):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(level)
