"""What the rest of nextoffer needs from a model registry: its records, tags and methods."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, Required, TypedDict, Unpack

MODEL_KINDS: tuple[str, ...] = ("offers", "churn", "uplift")
CHAMPION = "champion"

# Tags on runs, model versions and registered models. Everything the registry decides is
# written with the version, so the MLflow UI and `versions()` tell the same story.
TAG_KIND = "nextoffer.kind"
TAG_DECISION = "nextoffer.decision"
TAG_REASON = "nextoffer.reason"
TAG_PRIMARY_METRIC = "nextoffer.primary_metric"
TAG_CHALLENGER_VALUE = "nextoffer.challenger_value"
TAG_CHAMPION_VALUE = "nextoffer.champion_value"
TAG_CHAMPION_VERSION = "nextoffer.champion_version"
TAG_MARGIN = "nextoffer.margin"
TAG_HIGHER_IS_BETTER = "nextoffer.higher_is_better"
TAG_CHAMPION_RESCORED = "nextoffer.champion_rescored"
TAG_DATA_FINGERPRINT = "nextoffer.data_fingerprint"
TAG_ALIAS_CHANGE = "nextoffer.alias_change"
TAG_ARTIFACTS_DELETED = "nextoffer.artifacts_deleted"
TAG_CHAMPION_HISTORY = "nextoffer.champion_history"
TAG_METRIC_NAMES = "nextoffer.metric_names"
TAG_PARAM_NAMES = "nextoffer.param_names"
# Where a version's own model files are (the run's `model` folder). The version's source is
# the MLflow pyfunc model made of them; versions registered before that have no such tag,
# and their source is the files.
TAG_FILES = "nextoffer.files"
DECISION_PROMOTED = "promoted"
DECISION_NOT_PROMOTED = "not_promoted"


class RegisterOptions(TypedDict, total=False):
    """What `register` takes besides the kind and the folder: the run's record and the gate."""

    params: Required[dict[str, Any]]
    metrics: Required[dict[str, float]]
    # The metric the gate compares (one of `metrics`).
    primary_metric: Required[str]
    # How much the challenger must beat the champion by (0.0 when not given).
    margin: float
    # Whether a larger primary metric is better (True when not given).
    higher_is_better: bool
    tags: dict[str, str] | None
    run_name: str | None
    # The champion re-scored on the challenger's test data in the same run: compared
    # instead of the champion's own (older, other-data) metrics.
    champion_metrics: dict[str, float] | None
    # The challenger must beat this value of the primary metric (e.g. popularity's on the
    # same test rows) to be promoted at all, the first version included.
    floor: float | None


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version of a model, with the metrics and params of the run behind it."""

    kind: str
    version: int
    run_id: str
    created_at: datetime
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    is_champion: bool
    artifacts_deleted: bool


@dataclass(frozen=True)
class Decision:
    """What happened to the champion alias, and why."""

    kind: str
    version: int
    promoted: bool
    reason: str
    champion_version: int | None
    primary_metric: str
    challenger_value: float
    champion_value: float | None


class ModelRegistryProtocol(Protocol):
    """The registry as jobs, serving, the console and backups use it (MLflow is one adapter)."""

    @property
    def experiment(self) -> str:
        """The experiment (folder under the artifacts URL) that runs are logged in."""
        ...

    def register(self, kind: str, model_dir: Path, **options: Unpack[RegisterOptions]) -> Decision:
        """Store `model_dir` as a new version; promote it when it beats the champion."""
        ...

    def champion(self, kind: str) -> ModelVersionInfo | None:
        """The version the champion alias points at, or None."""
        ...

    def versions(self, kind: str) -> list[ModelVersionInfo]:
        """Every version of `kind`, newest first."""
        ...

    def download(self, kind: str, version: int | None = None, dst: Path | None = None) -> Path:
        """Copy a version's model files (default: the champion's) to a directory."""
        ...

    def promote(self, kind: str, version: int, reason: str) -> Decision:
        """Point the champion alias at `version` by hand."""
        ...

    def rollback(self, kind: str) -> Decision:
        """Point the champion alias back at the champion before the current one."""
        ...

    def prune(self, kind: str) -> list[int]:
        """Delete the files of old versions; the versions pruned."""
        ...
