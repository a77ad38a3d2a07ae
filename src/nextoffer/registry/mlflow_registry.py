"""Model registry on MLflow: model directories as run artifacts, versions, the champion alias."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import math
import numbers
import os
import posixpath
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# MLflow reports usage to its developers from a background thread unless told not to, and
# writes an installation id on import. A self-hosted platform must not phone home, so the
# default is off (MLFLOW_DISABLE_TELEMETRY=false opts back in). Set before MLflow is imported.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow draws a progress bar on stderr for every download, and prints "View run … at" links
# to stdout for every run on a tracking server; our CLI output stays ours.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

import mlflow.artifacts
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import (
    get_artifact_repository,
)
from mlflow.telemetry import get_telemetry_client, set_telemetry_client
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError
from sqlalchemy.exc import SQLAlchemyError

from nextoffer.config import Settings
from nextoffer.domain.errors import (
    BackendUnavailableError,
    ConfigError,
    NextOfferError,
    RegistryError,
)

MODEL_KINDS: tuple[str, ...] = ("offers", "churn")
CHAMPION = "champion"

REGISTRY_SETTING = "NEXTOFFER_REGISTRY_URI"
ARTIFACTS_SETTING = "NEXTOFFER_ARTIFACTS_URL"
MODEL_ARTIFACT_PATH = "model"

# Tags on runs, model versions and registered models. Everything the registry decides is
# written to MLflow, so the MLflow UI and `versions()` tell the same story.
TAG_KIND = "nextoffer.kind"
TAG_DECISION = "nextoffer.decision"
TAG_REASON = "nextoffer.reason"
TAG_PRIMARY_METRIC = "nextoffer.primary_metric"
TAG_CHALLENGER_VALUE = "nextoffer.challenger_value"
TAG_CHAMPION_VALUE = "nextoffer.champion_value"
TAG_CHAMPION_VERSION = "nextoffer.champion_version"
TAG_MARGIN = "nextoffer.margin"
TAG_HIGHER_IS_BETTER = "nextoffer.higher_is_better"
TAG_ALIAS_CHANGE = "nextoffer.alias_change"
TAG_ARTIFACTS_DELETED = "nextoffer.artifacts_deleted"
TAG_CHAMPION_HISTORY = "nextoffer.champion_history"
TAG_METRIC_NAMES = "nextoffer.metric_names"
TAG_PARAM_NAMES = "nextoffer.param_names"
DECISION_PROMOTED = "promoted"
DECISION_NOT_PROMOTED = "not_promoted"

# MLflow's limits (mlflow.utils.validation), checked before a run is created so that a bad
# input fails cleanly instead of leaving a half-logged run behind.
_MAX_KEY_LENGTH = 250
_MAX_PARAM_VALUE_LENGTH = 6000
_MAX_RUN_TAG_VALUE_LENGTH = 8000
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000

# MLflow accepts only these characters in metric and parameter names; `ndcg@10` is refused.
_MLFLOW_NAME = re.compile(r"[\w.\- ]+")
_NOT_MLFLOW_NAME_CHAR = re.compile(r"[^\w.\- ]")
_PASSWORD_IN_URL = re.compile(r"(?<=://)([^/\s:@]*):[^/\s@]*@")
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\"()\]]+)")
# botocore's connection failures, matched by name: boto3 is optional (only s3:// needs it).
_BOTOCORE_UNREACHABLE = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
}

log = logging.getLogger(__name__)


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


class ModelRegistry:
    """Stores model directories in MLflow and manages the `champion` alias of each model kind.

    Every call goes through one `MlflowClient` built from the given URIs; the global MLflow
    tracking URI is never set, so two registries in one process do not interfere.
    """

    def __init__(
        self,
        tracking_uri: str,
        artifacts_url: str,
        keep_versions: int = 5,
        experiment: str = "nextoffer",
    ) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions must be at least 1, got {keep_versions}")
        if not experiment:
            raise ValueError("experiment name must not be empty")
        _quiet_mlflow()
        self.tracking_uri = _absolute_tracking_uri(tracking_uri)
        self.artifacts_url = _absolute_artifacts_url(artifacts_url)
        self.keep_versions = keep_versions
        self.experiment = experiment
        self._mlflow: MlflowClient | None = None
        self._experiment_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """The registry that NEXTOFFER_REGISTRY_URI and NEXTOFFER_ARTIFACTS_URL point at."""
        return cls(
            settings.registry_uri,
            settings.artifacts_url,
            keep_versions=settings.keep_model_versions,
        )

    # ------------------------------------------------------------------ public API

    def register(
        self,
        kind: str,
        model_dir: Path,
        *,
        params: dict[str, Any],
        metrics: dict[str, float],
        primary_metric: str,
        margin: float = 0.0,
        higher_is_better: bool = True,
        tags: dict[str, str] | None = None,
        run_name: str | None = None,
    ) -> Decision:
        """Log `model_dir` as a new version of `kind`, promote it if it beats the champion, prune.

        The challenger is promoted when there is no champion yet, or when its `primary_metric`
        is better than the champion's by more than `margin` × |champion value| (higher is
        better: value > champion + margin·|champion|; lower is better: value < champion −
        margin·|champion|). Equal values never promote.
        """
        name = _model_name(kind)
        model_dir = Path(model_dir)
        files = _model_files(model_dir)
        if primary_metric not in metrics:
            raise ValueError(f"primary metric {primary_metric!r} is not among the metrics")
        challenger_value = float(metrics[primary_metric])
        if not math.isfinite(challenger_value):
            raise ValueError(f"primary metric {primary_metric!r} is {challenger_value}")
        if not math.isfinite(margin) or margin < 0:
            raise ValueError(f"margin must be a finite number ≥ 0, got {margin}")
        user_tags = dict(tags or {})
        run_tags = {**user_tags, TAG_KIND: kind}
        batch = _RunBatch.build(params, metrics, run_tags)

        run_id, artifact_uri = self._log_run(kind, model_dir, files, batch, run_name)
        with self._calling(f"registering {name}"):
            self._ensure_registered_model(name)
        # Decided before the version exists, so that the decision is written with it in one
        # request rather than tag by tag.
        draft = _decide(
            kind,
            0,
            self.champion(kind),
            primary_metric=primary_metric,
            challenger_value=challenger_value,
            margin=margin,
            higher_is_better=higher_is_better,
        )
        version_tags = {
            **user_tags,
            TAG_KIND: kind,
            TAG_DECISION: DECISION_PROMOTED if draft.promoted else DECISION_NOT_PROMOTED,
            TAG_REASON: draft.reason,
            TAG_PRIMARY_METRIC: primary_metric,
            TAG_CHALLENGER_VALUE: repr(challenger_value),
            TAG_MARGIN: repr(float(margin)),
            TAG_HIGHER_IS_BETTER: "true" if higher_is_better else "false",
        }
        if draft.champion_version is not None:
            version_tags[TAG_CHAMPION_VERSION] = str(draft.champion_version)
        if draft.champion_value is not None:
            version_tags[TAG_CHAMPION_VALUE] = repr(draft.champion_value)
        with self._calling(f"registering {name}"):
            created = self._client.create_model_version(
                name,
                f"{artifact_uri.rstrip('/')}/{MODEL_ARTIFACT_PATH}",
                run_id,
                tags=version_tags,
            )
        version = int(created.version)
        decision = dataclasses.replace(draft, version=version)
        if decision.promoted:
            self._move_champion(name, version, f"registered: {decision.reason}", append=True)
        log.info(
            "registered %s v%d: %s",
            name,
            version,
            decision.reason,
            extra={"model": name, "version": version, "promoted": decision.promoted},
        )
        self.prune(kind)
        return decision

    def champion(self, kind: str) -> ModelVersionInfo | None:
        """The version the `champion` alias points at, or None when there is none yet."""
        name = _model_name(kind)
        with self._calling(f"reading {name}"):
            aliases, _ = self._model_state(name)
            if CHAMPION not in aliases:
                return None
            version = self._client.get_model_version(name, str(aliases[CHAMPION]))
            return self._info(kind, version, champion=aliases[CHAMPION])

    def versions(self, kind: str) -> list[ModelVersionInfo]:
        """Every version of `kind`, newest first, pruned ones included (their metrics remain)."""
        name = _model_name(kind)
        with self._calling(f"reading {name}"):
            aliases, _ = self._model_state(name)
            champion = aliases.get(CHAMPION)
            return [self._info(kind, mv, champion=champion) for mv in self._all_versions(name)]

    def download(self, kind: str, version: int | None = None, dst: Path | None = None) -> Path:
        """Copy a version's model directory (default: the champion's) to `dst`, return it.

        `dst` must be absent or an empty directory; without it a new temporary directory is
        made, which the caller deletes when done. The result holds exactly the registered files.
        """
        name = _model_name(kind)
        if version is None:
            info = self.champion(kind)
            if info is None:
                raise RegistryError(f"{name} has no champion yet: register a model first")
        else:
            info = self._version_info(kind, version)
        if info.artifacts_deleted:
            raise RegistryError(
                f"{name} v{info.version}: its artifacts were pruned; "
                "only the metrics of this version remain"
            )
        with self._calling(f"reading {name} v{info.version}"):
            source = self._client.get_model_version(name, str(info.version)).source or ""
        if not source:
            raise RegistryError(f"{name} v{info.version} has no artifact location in MLflow")
        if dst is None:
            target = Path(tempfile.mkdtemp(prefix=f"nextoffer-{kind}-v{info.version}-"))
            made_target = True
        else:
            target = Path(dst)
            if target.exists() and (not target.is_dir() or any(target.iterdir())):
                raise RegistryError(f"{target} exists and is not an empty directory")
            made_target = not target.exists()
            target.mkdir(parents=True, exist_ok=True)
        # Download next to the target, then move: a failed download leaves no partial model
        # in `dst`, and the move is a rename on the same filesystem.
        staging = Path(tempfile.mkdtemp(prefix=".nextoffer-download-", dir=target.parent))
        try:
            with self._calling(f"downloading {name} v{info.version}", artifacts=True):
                got = Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=source,
                        dst_path=str(staging),
                        tracking_uri=self.tracking_uri,
                        registry_uri=self.tracking_uri,
                    )
                )
            children = list(got.iterdir()) if got.is_dir() else []
            if not children:
                raise RegistryError(
                    f"{name} v{info.version}: no files at {_redact(source)} "
                    "(were the artifacts deleted outside nextoffer?)"
                )
            for child in children:
                child.replace(target / child.name)
        except BaseException:
            if made_target:
                shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def promote(self, kind: str, version: int, reason: str) -> Decision:
        """Point the champion alias at `version` by hand (an operator action), with a reason."""
        name = _model_name(kind)
        if not reason.strip():
            raise ValueError("a promotion needs a reason")
        info = self._version_info(kind, version)
        if info.artifacts_deleted:
            raise RegistryError(
                f"{name} v{version}: its artifacts were pruned, it cannot become the champion"
            )
        current = self.champion(kind)
        primary = info.tags.get(TAG_PRIMARY_METRIC, "")
        value = info.metrics.get(primary, math.nan)
        champion_value = current.metrics.get(primary) if current is not None and primary else None
        if current is not None and current.version == version:
            return Decision(
                kind=kind,
                version=version,
                promoted=False,
                reason=f"v{version} is already the champion",
                champion_version=version,
                primary_metric=primary,
                challenger_value=value,
                champion_value=champion_value,
            )
        full_reason = f"promoted by hand: {reason.strip()}"
        self._move_champion(name, version, full_reason, append=True)
        log.info("promoted %s v%d by hand: %s", name, version, reason)
        return Decision(
            kind=kind,
            version=version,
            promoted=True,
            reason=full_reason,
            champion_version=current.version if current is not None else None,
            primary_metric=primary,
            challenger_value=value,
            champion_value=champion_value,
        )

    def rollback(self, kind: str) -> Decision:
        """Point the champion alias back at the champion before the current one."""
        name = _model_name(kind)
        with self._calling(f"reading {name}"):
            aliases, history = self._model_state(name)
        current = aliases.get(CHAMPION)
        if current is None:
            raise RegistryError(f"{name} has no champion to roll back from")
        stack = _history_without_current(history, current)
        if not stack:
            raise RegistryError(
                f"{name}: v{current} is the only champion there has been; nothing to roll back to"
            )
        target = stack[-1]
        info = self._version_info(kind, target)
        if info.artifacts_deleted:
            raise RegistryError(
                f"{name}: the previous champion v{target} was pruned; promote a version by hand"
            )
        current_info = self._version_info(kind, current)
        reason = f"rolled back from v{current} to v{target}"
        # The history is a stack: rolling back pops the current champion, so a second rollback
        # goes one step further back instead of bouncing between two versions.
        self._move_champion(name, target, reason, history=stack)
        log.info("%s: %s", name, reason)
        primary = info.tags.get(TAG_PRIMARY_METRIC, "")
        return Decision(
            kind=kind,
            version=target,
            promoted=True,
            reason=reason,
            champion_version=current,
            primary_metric=primary,
            challenger_value=info.metrics.get(primary, math.nan),
            champion_value=current_info.metrics.get(primary) if primary else None,
        )

    def prune(self, kind: str) -> list[int]:
        """Delete the artifacts of old versions; return the versions pruned by this call.

        Kept: the newest `keep_versions` versions, the champion, and the previous champion
        (the rollback target). Pruned versions keep their record, metrics, params and tags,
        marked with `nextoffer.artifacts_deleted=true`. Versions not registered by nextoffer
        (no `nextoffer.kind` tag) are never touched.
        """
        name = _model_name(kind)
        with self._calling(f"reading {name}"):
            aliases, history = self._model_state(name)
            all_versions = self._all_versions(name)
        keep = {int(mv.version) for mv in all_versions[: self.keep_versions]}
        current = aliases.get(CHAMPION)
        if current is not None:
            keep.add(current)
            stack = _history_without_current(history, current)
            if stack:
                keep.add(stack[-1])
        pruned: list[int] = []
        for mv in all_versions:
            number = int(mv.version)
            tags = mv.tags or {}
            if number in keep or tags.get(TAG_ARTIFACTS_DELETED) == "true":
                continue
            # A version registered by hand outside nextoffer may point at files we do not own.
            if tags.get(TAG_KIND) != kind or not mv.source:
                continue
            with self._calling(f"deleting the artifacts of {name} v{number}", artifacts=True):
                repo = get_artifact_repository(
                    mv.source, tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
                repo.delete_artifacts()  # type: ignore[no-untyped-call]
            # Marked after the delete: if the delete fails half-way, the next prune retries it.
            with self._calling(f"marking {name} v{number} as pruned"):
                self._client.set_model_version_tag(name, str(number), TAG_ARTIFACTS_DELETED, "true")
            pruned.append(number)
        if pruned:
            log.info("pruned the artifacts of %s versions %s", name, pruned)
        return sorted(pruned)

    # ------------------------------------------------------------------ internals

    @property
    def _client(self) -> MlflowClient:
        # Built on first use, inside `_calling`: MLflow opens (and for SQLite migrates) the
        # database right here, and an unreachable database must become a clear error.
        if self._mlflow is None:
            self._mlflow = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._mlflow

    def _log_run(
        self, kind: str, model_dir: Path, files: list[Path], batch: _RunBatch, run_name: str | None
    ) -> tuple[str, str]:
        """Log one run with the params, metrics, tags and model files; (run id, artifact URI)."""
        experiment_id = self._experiment()
        with self._calling("creating an MLflow run"):
            run = self._client.create_run(
                experiment_id,
                tags={TAG_KIND: kind},
                run_name=run_name or f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}",
            )
        run_id = str(run.info.run_id)
        try:
            with self._calling(f"logging run {run_id}"):
                for chunk in batch.chunks():
                    self._client.log_batch(run_id, **chunk)
            with self._calling(f"storing the model files of run {run_id}", artifacts=True):
                self._client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_PATH)
        except BaseException:
            # A run left RUNNING forever looks like a live training job in the MLflow UI.
            with contextlib.suppress(Exception):
                self._client.set_terminated(run_id, "FAILED")
            raise
        with self._calling(f"finishing run {run_id}"):
            self._client.set_terminated(run_id, "FINISHED")
        log.debug("logged run %s with %d model files", run_id, len(files))
        return run_id, str(run.info.artifact_uri)

    def _experiment(self) -> str:
        if self._experiment_id is not None:
            return self._experiment_id
        location = f"{self.artifacts_url.rstrip('/')}/{self.experiment}"
        with self._calling(f"opening experiment {self.experiment!r}"):
            found = self._client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    experiment_id = self._client.create_experiment(
                        self.experiment, artifact_location=location
                    )
                except MlflowException as exc:
                    # Another process created it between our lookup and create.
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    found = self._client.get_experiment_by_name(self.experiment)
                    if found is None:
                        raise
                else:
                    found = self._client.get_experiment(experiment_id)
        if found.lifecycle_stage != "active":
            raise RegistryError(
                f"MLflow experiment {self.experiment!r} is deleted: restore it "
                "(mlflow experiments restore) or use another experiment name"
            )
        # An experiment's artifact location is fixed when it is created. If the setting has
        # changed since, new runs would silently keep writing to the old place.
        if (found.artifact_location or "").rstrip("/") != location:
            raise ConfigError(
                f"{ARTIFACTS_SETTING}: MLflow experiment {self.experiment!r} stores artifacts "
                f"at {_redact(found.artifact_location or '')}, not under "
                f"{_redact(self.artifacts_url)}; set the URL back or use a new experiment name"
            )
        self._experiment_id = str(found.experiment_id)
        return self._experiment_id

    def _ensure_registered_model(self, name: str) -> None:
        try:
            self._client.create_registered_model(
                name, description=f"nextoffer {name.removeprefix('nextoffer-')} model"
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _model_state(self, name: str) -> tuple[dict[str, int], list[int]]:
        """The registered model's aliases and champion history; empty when it does not exist."""
        try:
            model = self._client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}, []
            raise
        aliases = {alias: int(version) for alias, version in (model.aliases or {}).items()}
        return aliases, _parse_history((model.tags or {}).get(TAG_CHAMPION_HISTORY, ""))

    def _all_versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, newest first."""
        found: list[ModelVersion] = []
        token: str | None = None
        while True:
            page = self._client.search_model_versions(
                f"name = '{name}'",
                max_results=1000,
                order_by=["version_number DESC"],
                page_token=token,
            )
            found.extend(page)
            token = page.token
            if not token:
                break
        return sorted(found, key=lambda mv: int(mv.version), reverse=True)

    def _version_info(self, kind: str, version: int) -> ModelVersionInfo:
        name = _model_name(kind)
        with self._calling(f"reading {name} v{version}"):
            aliases, _ = self._model_state(name)
            try:
                mv = self._client.get_model_version(name, str(int(version)))
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    raise RegistryError(f"{name} has no version {version}") from None
                raise
            return self._info(kind, mv, champion=aliases.get(CHAMPION))

    def _info(self, kind: str, mv: ModelVersion, *, champion: int | None) -> ModelVersionInfo:
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        if mv.run_id:
            try:
                run = self._client.get_run(mv.run_id)
            except MlflowException as exc:
                # A run deleted for good in MLflow: the version record is all that is left.
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
            else:
                run_tags = run.data.tags
                metric_names = _name_map(run_tags.get(TAG_METRIC_NAMES))
                param_names = _name_map(run_tags.get(TAG_PARAM_NAMES))
                metrics = {metric_names.get(k, k): float(v) for k, v in run.data.metrics.items()}
                params = {param_names.get(k, k): str(v) for k, v in run.data.params.items()}
        tags = dict(mv.tags or {})
        number = int(mv.version)
        return ModelVersionInfo(
            kind=kind,
            version=number,
            run_id=mv.run_id or "",
            created_at=datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, UTC),
            metrics=metrics,
            params=params,
            tags=tags,
            is_champion=number == champion,
            artifacts_deleted=tags.get(TAG_ARTIFACTS_DELETED) == "true",
        )

    def _move_champion(
        self,
        name: str,
        version: int,
        reason: str,
        *,
        append: bool = False,
        history: list[int] | None = None,
    ) -> None:
        """Point the alias at `version` and record it: append to, or replace, the history."""
        with self._calling(f"moving the champion of {name} to v{version}"):
            if history is None:
                _, history = self._model_state(name)
            if append:
                history = [*history, version]
            self._client.set_registered_model_alias(name, CHAMPION, str(version))
            self._client.set_registered_model_tag(
                name, TAG_CHAMPION_HISTORY, ",".join(str(v) for v in history)
            )
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            self._client.set_model_version_tag(
                name, str(version), TAG_ALIAS_CHANGE, f"{stamp} {reason}"
            )

    @contextlib.contextmanager
    def _calling(self, what: str, *, artifacts: bool = False) -> Iterator[None]:
        """Turn MLflow, HTTP, database and storage failures into errors a person can act on."""
        try:
            yield
        except NextOfferError:
            raise
        except (MlflowException, requests.RequestException, SQLAlchemyError, OSError) as exc:
            raise self._translate(what, exc, artifacts=artifacts) from exc
        except Exception as exc:
            if type(exc).__module__.split(".")[0] not in {"botocore", "boto3", "s3transfer"}:
                raise
            raise self._translate(what, exc, artifacts=True) from exc

    def _translate(self, what: str, exc: BaseException, *, artifacts: bool) -> NextOfferError:
        chain = _exception_chain(exc)
        # Files on the local disk or proxied by the tracking server fail with the server; S3
        # and the like are a backend of their own.
        own_store = urlsplit(self.artifacts_url).scheme not in {"file", "mlflow-artifacts"}
        if artifacts and own_store:
            setting, target = ARTIFACTS_SETTING, _redact(self.artifacts_url)
        else:
            setting, target = REGISTRY_SETTING, _redact(self.tracking_uri)
        if any(_is_unreachable(e) for e in chain):
            return BackendUnavailableError(setting, target, _short_detail(chain))
        return RegistryError(f"{what}: {_redact(_first_line(exc))}")


# ---------------------------------------------------------------------- helpers


def _model_name(kind: str) -> str:
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}: expected one of {', '.join(MODEL_KINDS)}")
    return f"nextoffer-{kind}"


def _model_files(model_dir: Path) -> list[Path]:
    if not model_dir.is_dir():
        raise ValueError(f"model directory {model_dir} does not exist or is not a directory")
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"model directory {model_dir} holds no files")
    return files


def _decide(
    kind: str,
    version: int,
    champion: ModelVersionInfo | None,
    *,
    primary_metric: str,
    challenger_value: float,
    margin: float,
    higher_is_better: bool,
) -> Decision:
    """Whether the new version replaces the champion (see `ModelRegistry.register`)."""

    def decision(promoted: bool, reason: str, champion_value: float | None) -> Decision:
        return Decision(
            kind=kind,
            version=version,
            promoted=promoted,
            reason=reason,
            champion_version=champion.version if champion is not None else None,
            primary_metric=primary_metric,
            challenger_value=challenger_value,
            champion_value=champion_value,
        )

    if champion is None:
        return decision(True, "first version: there was no champion", None)
    champion_value = champion.metrics.get(primary_metric)
    if champion_value is None or not math.isfinite(champion_value):
        # Comparing against nothing would promote blindly; a person has to decide.
        return decision(
            False,
            f"champion v{champion.version} has no {primary_metric} to compare with; "
            "promote by hand if this version should serve",
            None,
        )
    slack = margin * abs(champion_value)
    if higher_is_better:
        better = challenger_value > champion_value + slack
    else:
        better = challenger_value < champion_value - slack
    by = f" by more than {margin * 100:g} %" if margin > 0 else ""
    direction = "" if higher_is_better else " (lower is better)"
    verdict = "is better than" if better else "is not better than"
    reason = (
        f"{primary_metric} {challenger_value:.6g} {verdict} champion v{champion.version}'s "
        f"{champion_value:.6g}{by}{direction}"
    )
    return decision(better, reason, champion_value)


def _parse_history(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip().isdigit()]


def _history_without_current(history: list[int], current: int) -> list[int]:
    """The champions before the current one, oldest first (the rollback stack)."""
    stack = list(history)
    # The alias may have been moved outside nextoffer (MLflow UI); then the history's last
    # entry is not the current champion and is itself the one to go back to.
    while stack and stack[-1] == current:
        stack.pop()
    return stack


def _name_map(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def _mlflow_name(name: str) -> str:
    """`name` as MLflow accepts it: `ndcg@10` → `ndcg_at_10`, other odd characters → `_`."""
    if _MLFLOW_NAME.fullmatch(name) and posixpath.normpath(name) == name and name != ".":
        return name
    cleaned = _NOT_MLFLOW_NAME_CHAR.sub("_", name.replace("@", "_at_"))
    if posixpath.normpath(cleaned) != cleaned or cleaned in {"", ".", ".."}:
        cleaned = "_" + cleaned.replace("..", "__")
    return cleaned


@dataclass
class _RunBatch:
    """Params, metrics and tags of one run, already in MLflow's names and limits."""

    params: list[Param]
    metrics: list[Metric]
    tags: list[RunTag]

    @classmethod
    def build(
        cls, params: Mapping[str, Any], metrics: Mapping[str, float], tags: Mapping[str, str]
    ) -> _RunBatch:
        now = int(time.time() * 1000)
        metric_keys = _mlflow_names(metrics, "metric")
        param_keys = _mlflow_names(params, "param")
        run_tags = dict(tags)
        # MLflow cannot store `ndcg@10`; keep the original names so reads give them back.
        renamed_metrics = {k: n for n, k in metric_keys.items() if k != n}
        renamed_params = {k: n for n, k in param_keys.items() if k != n}
        if renamed_metrics:
            run_tags[TAG_METRIC_NAMES] = json.dumps(renamed_metrics, sort_keys=True)
        if renamed_params:
            run_tags[TAG_PARAM_NAMES] = json.dumps(renamed_params, sort_keys=True)
        param_list: list[Param] = []
        for name, value in params.items():
            text = _param_text(value)
            if len(text) > _MAX_PARAM_VALUE_LENGTH:
                raise ValueError(
                    f"param {name!r} is {len(text)} characters; MLflow stores at most "
                    f"{_MAX_PARAM_VALUE_LENGTH} (log it as a file in the model directory)"
                )
            param_list.append(Param(param_keys[name], text))
        metric_list: list[Metric] = []
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"metric {name!r} is not a number: {value!r}")
            metric_list.append(Metric(metric_keys[name], float(value), now, 0))
        tag_list: list[RunTag] = []
        for key, value in run_tags.items():
            if not isinstance(value, str):
                raise ValueError(f"tag {key!r} must be a string, got {type(value).__name__}")
            if len(key) > _MAX_KEY_LENGTH or len(value) > _MAX_RUN_TAG_VALUE_LENGTH:
                raise ValueError(f"tag {key!r} is too long for MLflow")
            tag_list.append(RunTag(key, value))
        return cls(param_list, metric_list, tag_list)

    def chunks(self) -> Iterator[dict[str, Any]]:
        """`log_batch` arguments within MLflow's per-request limits (usually just one)."""
        metrics, params, tags = self.metrics, self.params, self.tags
        while metrics or params or tags:
            room = _MAX_PARAMS_TAGS_PER_BATCH
            batch_params, params = params[:room], params[room:]
            room -= len(batch_params)
            batch_tags, tags = tags[:room], tags[room:]
            batch_metrics = metrics[:_MAX_METRICS_PER_BATCH]
            metrics = metrics[_MAX_METRICS_PER_BATCH:]
            yield {"metrics": batch_metrics, "params": batch_params, "tags": batch_tags}


def _param_text(value: Any) -> str:
    """A param value as text: strings as they are, numbers and containers as JSON."""
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float | list | tuple | dict):
        return json.dumps(value, sort_keys=True, default=_jsonable)
    return str(value)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return value.tolist()
    return str(value)


def _mlflow_names(names: Mapping[str, Any], what: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what} names must be non-empty strings, got {name!r}")
        key = _mlflow_name(name)
        if len(key) > _MAX_KEY_LENGTH:
            raise ValueError(f"{what} name {name!r} is longer than {_MAX_KEY_LENGTH} characters")
        if key in seen:
            raise ValueError(f"{what}s {seen[key]!r} and {name!r} would both be stored as {key!r}")
        seen[key] = name
        keys[name] = key
    return keys


def _absolute_tracking_uri(uri: str) -> str:
    """A SQLite path made absolute: MLflow opens it relative to whatever the cwd is later."""
    if not uri:
        raise ConfigError(f"{REGISTRY_SETTING} is empty")
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path, sep, query = uri[len(prefix) :].partition("?")
        if path and path != ":memory:" and not path.startswith("/"):
            return f"{prefix}{Path(path).resolve()}{sep}{query}"
    return uri


def _absolute_artifacts_url(url: str) -> str:
    """`file://./var/artifacts` (relative) as an absolute file URI; other schemes unchanged.

    Everything after `file://` is taken as a path, so `file://./x` and `file://x` are both
    relative to the working directory and `file:///x` is absolute.
    """
    if not url:
        raise ConfigError(f"{ARTIFACTS_SETTING} is empty")
    scheme = urlsplit(url).scheme
    if scheme in {"", "file"}:
        path = url.removeprefix("file:")
        if path.startswith("//"):
            path = path[2:]
        path = path.removeprefix("localhost/") if path.startswith("localhost/") else path
        return Path(path or ".").resolve().as_uri()
    if scheme == "s3" and importlib.util.find_spec("boto3") is None:
        raise ConfigError(f"{ARTIFACTS_SETTING}: s3:// needs the boto3 package (pip install boto3)")
    return url


def _redact(text: str) -> str:
    """Mask passwords in any URL inside `text` (user:secret@host → user:***@host)."""
    return _PASSWORD_IN_URL.sub(r"\1:***@", text)


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_unreachable(exc: BaseException) -> bool:
    if isinstance(
        exc,
        requests.ConnectionError
        | requests.Timeout
        | requests.exceptions.RetryError
        | SQLAlchemyOperationalError
        | ConnectionError
        | TimeoutError,
    ):
        return True
    return type(exc).__name__ in _BOTOCORE_UNREACHABLE


def _short_detail(chain: list[BaseException]) -> str:
    for exc in chain:
        found = _ERRNO_TEXT.search(str(exc))
        if found:
            return found.group(1).strip().rstrip(".,;:")
    for exc in chain:
        if isinstance(exc, requests.Timeout | TimeoutError):
            return "timed out"
    return _redact(_first_line(chain[-1]))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


_quieted = False


def _quiet_mlflow() -> None:
    """Keep MLflow's chatter out of our output and hand its loggers back to our handlers.

    Importing MLflow gives the `mlflow`, `alembic` and `sqlalchemy.engine` loggers a handler
    of its own and stops them propagating, which bypasses our JSON log format; and its SQLite
    store announces table creation and each migration at INFO on first use. Done once, so an
    application that configures these loggers afterwards keeps its choice.
    """
    global _quieted
    if _quieted:
        return
    _quieted = True
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
    # Telemetry is off by default (top of this module) unless MLflow was imported before us,
    # in which case its client already exists: re-initialising drops it.
    if get_telemetry_client() is not None and os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true":
        set_telemetry_client()  # type: ignore[no-untyped-call]
