"""The model registry on MLflow: model folders, versions as pyfunc models, the champion alias.

The adapter behind `ModelRegistryProtocol`. What to decide lives in `promotion` (pure), the
names and limits of a run in `batch`, URLs in `urls`, failures in `failures`, and MLflow is
imported only after `mlflow_setup.prepare_mlflow()` (called when a registry is built).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Unpack

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError, NextOfferError, RegistryError
from nextoffer.registry import failures, promotion
from nextoffer.registry.batch import RunBatch, original_names
from nextoffer.registry.mlflow_setup import prepare_mlflow
from nextoffer.registry.protocol import (
    CHAMPION,
    MODEL_KINDS,
    TAG_ALIAS_CHANGE,
    TAG_ARTIFACTS_DELETED,
    TAG_CHAMPION_HISTORY,
    TAG_DECISION,
    TAG_FILES,
    TAG_KIND,
    TAG_METRIC_NAMES,
    TAG_PARAM_NAMES,
    TAG_PRIMARY_METRIC,
    TAG_REASON,
    Decision,
    ModelVersionInfo,
    RegisterOptions,
)
from nextoffer.registry.pyfunc import write_pyfunc
from nextoffer.registry.serving_mirror import ServingMirror
from nextoffer.registry.urls import (
    ARTIFACTS_SETTING,
    REGISTRY_SETTING,
    absolute_artifacts_url,
    absolute_tracking_uri,
    artifacts_are_separate,
    private_sqlite_file,
    redact,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel
    from mlflow.entities.model_registry import ModelVersion

    from nextoffer.store import Engine

# Re-exported: callers and tests import the records and tag names from here too.
__all__ = [
    "CHAMPION",
    "MODEL_KINDS",
    "TAG_ARTIFACTS_DELETED",
    "TAG_DECISION",
    "TAG_KIND",
    "TAG_PRIMARY_METRIC",
    "TAG_REASON",
    "Decision",
    "ModelRegistry",
    "ModelVersionInfo",
]

# The run's artifact folder that holds the model's own files, as they were registered: what
# nextoffer's loader downloads and backups pack. The version's source is an MLflow logged
# model (pyfunc, `models:/<id>`) of the same run, made of a copy of these files.
MODEL_ARTIFACT_PATH = "model"

log = logging.getLogger(__name__)


class ModelRegistry:
    """Stores model directories in MLflow and manages the `champion` alias of each model kind.

    Every call goes through one `MlflowClient` built from the given URIs; the global MLflow
    tracking URI is never set, so two registries in one process do not interfere. Each
    version is also an MLflow pyfunc model: `mlflow.pyfunc.load_model("models:/nextoffer-
    offers@champion")` loads it with the same tracking URI, outside nextoffer's own loader.

    With a `mirror`, every version's files are also copied for serving and every move of
    the alias is recorded in the database (`serving_mirror`), so serving needs no MLflow.
    """

    def __init__(
        self,
        tracking_uri: str,
        artifacts_url: str,
        keep_versions: int = 5,
        experiment: str = "nextoffer",
        mirror: ServingMirror | None = None,
    ) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions must be at least 1, got {keep_versions}")
        if not experiment:
            raise ValueError("experiment name must not be empty")
        prepare_mlflow()
        self.tracking_uri = absolute_tracking_uri(tracking_uri)
        self.artifacts_url = absolute_artifacts_url(artifacts_url)
        self.keep_versions = keep_versions
        self.experiment = experiment
        self.mirror = mirror
        self._mlflow: MlflowClient | None = None
        self._experiment_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None) -> ModelRegistry:
        """The registry that NEXTOFFER_REGISTRY_URI and NEXTOFFER_ARTIFACTS_URL point at.

        With `engine` (the app's database), it keeps serving's copy there in step.
        """
        return cls(
            settings.registry_uri,
            settings.artifacts_url,
            keep_versions=settings.keep_model_versions,
            mirror=None if engine is None else ServingMirror.from_settings(settings, engine),
        )

    # ------------------------------------------------------------------ public API

    def register(self, kind: str, model_dir: Path, **options: Unpack[RegisterOptions]) -> Decision:
        """Log `model_dir` as a new version of `kind`, promote it if it beats the champion, prune.

        See `promotion.decide` for when the challenger is promoted. The files are logged as
        they are in the run's `model` folder; the version itself is an MLflow pyfunc model
        (models from code) of the same run, so MLflow's own tools load it too.
        """
        name = promotion.model_name(kind)
        model_dir = Path(model_dir)
        files = _model_files(model_dir)
        primary_metric = options["primary_metric"]
        margin = options.get("margin", 0.0)
        higher_is_better = options.get("higher_is_better", True)
        metrics = options["metrics"]
        value = promotion.challenger_value(metrics, primary_metric, margin)
        user_tags = dict(options.get("tags") or {})
        batch = RunBatch.build(options["params"], metrics, {**user_tags, TAG_KIND: kind})

        with tempfile.TemporaryDirectory(prefix="nextoffer-pyfunc-") as scratch:
            # Written before the run exists: a model MLflow could not wrap logs nothing.
            pyfunc = Path(scratch) / "pyfunc"
            write_pyfunc(kind, model_dir, pyfunc)
            run_id, files_uri, model = self._log_run(
                kind, model_dir, pyfunc, batch, options.get("run_name")
            )
        with self._calling(f"registering {name}"):
            self._ensure_registered_model(name)
        # Decided before the version exists, so that the decision is written with it in one
        # request rather than tag by tag.
        draft = promotion.decide(
            kind,
            0,
            self.champion(kind),
            primary_metric=primary_metric,
            challenger_value=value,
            margin=margin,
            higher_is_better=higher_is_better,
            champion_rescored=_rescored(options.get("champion_metrics"), primary_metric),
            floor=options.get("floor"),
        )
        version_tags = promotion.decision_tags(
            draft, margin=margin, higher_is_better=higher_is_better, user_tags=user_tags
        )
        version_tags[TAG_FILES] = files_uri
        with self._calling(f"registering {name}"):
            created = self._client.create_model_version(
                name, model.artifact_location, run_id, tags=version_tags, model_id=model.model_id
            )
        version = int(created.version)
        decision = dataclasses.replace(draft, version=version)
        if self.mirror is not None:
            # Every version, not only champions: experiment variants pin older versions.
            with self._calling(f"copying {name} v{version} for serving", artifacts=True):
                self.mirror.files.publish(kind, version, model_dir)
        if decision.promoted:
            self._move_champion(name, version, f"registered: {decision.reason}", append=True)
        log.info(
            "registered %s v%d: %s",
            name,
            version,
            decision.reason,
            extra={"model": name, "version": version, "promoted": decision.promoted},
        )
        log.debug("%s v%d holds %d model files", name, version, len(files))
        self.prune(kind)
        return decision

    def champion(self, kind: str) -> ModelVersionInfo | None:
        """The version the `champion` alias points at, or None when there is none yet."""
        name = promotion.model_name(kind)
        with self._calling(f"reading {name}"):
            aliases, _ = self._model_state(name)
            if CHAMPION not in aliases:
                return None
            version = self._client.get_model_version(name, str(aliases[CHAMPION]))
            return self._info(kind, version, champion=aliases[CHAMPION])

    def versions(self, kind: str) -> list[ModelVersionInfo]:
        """Every version of `kind`, newest first, pruned ones included (their metrics remain)."""
        name = promotion.model_name(kind)
        with self._calling(f"reading {name}"):
            aliases, _ = self._model_state(name)
            champion = aliases.get(CHAMPION)
            return [self._info(kind, mv, champion=champion) for mv in self._all_versions(name)]

    def download(self, kind: str, version: int | None = None, dst: Path | None = None) -> Path:
        """Copy a version's model directory (default: the champion's) to `dst`, return it.

        `dst` must be absent or an empty directory; without it a new temporary directory is
        made, which the caller deletes when done. The result holds exactly the registered files.
        """
        name = promotion.model_name(kind)
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
            source = _files_uri(self._client.get_model_version(name, str(info.version)))
        if not source:
            raise RegistryError(f"{name} v{info.version} has no artifact location in MLflow")
        target, made_target = _download_target(kind, info.version, dst)
        # Download next to the target, then move: a failed download leaves no partial model
        # in `dst`, and the move is a rename on the same filesystem.
        staging = Path(tempfile.mkdtemp(prefix=".nextoffer-download-", dir=target.parent))
        try:
            got = self._download_source(name, info.version, source, staging)
            children = list(got.iterdir()) if got.is_dir() else []
            if not children:
                raise RegistryError(
                    f"{name} v{info.version}: no files at {redact(source)} "
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
        name = promotion.model_name(kind)
        full_reason = promotion.promotion_reason(reason)
        info = self._version_info(kind, version)
        decision = promotion.hand_promotion(info, self.champion(kind), full_reason)
        if decision.promoted:
            self._move_champion(name, version, full_reason, append=True)
            log.info("promoted %s v%d by hand: %s", name, version, reason)
        return decision

    def rollback(self, kind: str) -> Decision:
        """Point the champion alias back at the champion before the current one."""
        name = promotion.model_name(kind)
        with self._calling(f"reading {name}"):
            aliases, history = self._model_state(name)
        current = aliases.get(CHAMPION)
        target, stack = promotion.rollback_target(kind, current, history)
        assert current is not None  # rollback_target raised otherwise
        decision = promotion.rollback_decision(
            self._version_info(kind, target), self._version_info(kind, current)
        )
        self._move_champion(name, target, decision.reason, history=stack)
        log.info("%s: %s", name, decision.reason)
        return decision

    def prune(self, kind: str) -> list[int]:
        """Delete the artifacts of old versions; return the versions pruned by this call.

        Kept: see `promotion.versions_to_keep`. Pruned versions keep their record, metrics,
        params and tags, marked with `nextoffer.artifacts_deleted=true`. Versions not
        registered by nextoffer (no `nextoffer.kind` tag) are never touched.
        """
        name = promotion.model_name(kind)
        with self._calling(f"reading {name}"):
            aliases, history = self._model_state(name)
            all_versions = self._all_versions(name)
        keep = promotion.versions_to_keep(
            [int(mv.version) for mv in all_versions],
            self.keep_versions,
            aliases.get(CHAMPION),
            history,
        )
        pruned: list[int] = []
        for mv in all_versions:
            number = int(mv.version)
            tags = mv.tags or {}
            if number in keep or tags.get(TAG_ARTIFACTS_DELETED) == "true":
                continue
            # A version registered by hand outside nextoffer may point at files we do not own.
            if tags.get(TAG_KIND) != kind or not _files_uri(mv):
                continue
            # The files, and the pyfunc model's copy of them (where the version downloads from).
            with self._calling(f"reading {name} v{number}"):
                where = self._client.get_model_version_download_uri(name, str(number))
            with self._calling(f"deleting the artifacts of {name} v{number}", artifacts=True):
                for location in dict.fromkeys(filter(None, [_files_uri(mv), where])):
                    self._delete_artifacts(location)
                if self.mirror is not None:
                    self.mirror.files.remove(kind, number)
            # Marked after the delete: if the delete fails half-way, the next prune retries it.
            with self._calling(f"marking {name} v{number} as pruned"):
                self._client.set_model_version_tag(name, str(number), TAG_ARTIFACTS_DELETED, "true")
            pruned.append(number)
        if pruned:
            log.info("pruned the artifacts of %s versions %s", name, pruned)
        return sorted(pruned)

    def sync_serving(self, kind: str) -> int | None:
        """Bring serving's copy of `kind` in step with MLflow; the champion's version.

        Copies every version with files but no serving copy yet (registered before the
        copy existed, or the alias moved in the MLflow UI), then records the champion.
        """
        if self.mirror is None:
            raise RegistryError(
                f"{ARTIFACTS_SETTING}: serving copies need a file:// or s3:// artifact store "
                "and the app's database"
            )
        name = promotion.model_name(kind)
        with self._calling(f"reading {name}"):
            aliases, _ = self._model_state(name)
            all_versions = self._all_versions(name)
        for mv in all_versions:
            if (mv.tags or {}).get(TAG_ARTIFACTS_DELETED) == "true" or not _files_uri(mv):
                continue
            self._ensure_serving_copy(kind, int(mv.version))
        champion = aliases.get(CHAMPION)
        if champion is None:
            self.mirror.forget(kind)
            return None
        self._record_champion(kind, champion)
        return champion

    def _sync_champion(self, kind: str) -> None:
        """Record `kind`'s current champion for serving, if it has one."""
        name = promotion.model_name(kind)
        with self._calling(f"reading {name}"):
            aliases, _ = self._model_state(name)
        if CHAMPION in aliases:
            self._record_champion(kind, aliases[CHAMPION], first=False)

    # ------------------------------------------------------------------ internals

    def _ensure_serving_copy(self, kind: str, version: int) -> None:
        """Copy `kind` v`version` for serving from MLflow when it has no copy yet."""
        assert self.mirror is not None
        name = promotion.model_name(kind)
        with self._calling(f"copying {name} v{version} for serving", artifacts=True):
            if self.mirror.files.has(kind, version):
                return
        folder = self.download(kind, version)
        try:
            with self._calling(f"copying {name} v{version} for serving", artifacts=True):
                self.mirror.files.publish(kind, version, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _record_champion(self, kind: str, version: int, *, first: bool = True) -> None:
        """Point serving at `kind` v`version`: its files copied, its row rewritten."""
        assert self.mirror is not None
        if first and self.mirror.is_empty():
            # The first row makes the table the whole truth for serving (a kind without a
            # row has no champion): the other kinds' champions are recorded first.
            for other in MODEL_KINDS:
                if other != kind:
                    self._sync_champion(other)
        self._ensure_serving_copy(kind, version)
        metrics = self._version_info(kind, version).metrics
        try:
            self.mirror.record(kind, version, metrics)
        except Exception as exc:
            # MLflow's alias has moved already; serving keeps the old row until this is fixed.
            raise RegistryError(
                f"{promotion.model_name(kind)} v{version} is the champion in MLflow, but the "
                f"database could not record it for serving ({exc}); run `nextoffer models sync`"
            ) from exc

    @property
    def _client(self) -> MlflowClient:
        # Built on first use, inside `_calling`: MLflow opens (and for SQLite migrates) the
        # database right here, and an unreachable database must become a clear error.
        if self._mlflow is None:
            from mlflow import MlflowClient  # prepared in __init__

            private_sqlite_file(self.tracking_uri)
            self._mlflow = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._mlflow

    def _log_run(
        self, kind: str, model_dir: Path, pyfunc: Path, batch: RunBatch, run_name: str | None
    ) -> tuple[str, str, LoggedModel]:
        """Log one run: params, metrics, tags, model files, and the pyfunc model of them.

        Returns (run id, URI of the model files, the logged pyfunc model).
        """
        from mlflow.entities import Metric, Param, RunTag

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
                    self._client.log_batch(
                        run_id,
                        metrics=[Metric(k, v, batch.timestamp_ms, 0) for k, v in chunk.metrics],
                        params=[Param(k, v) for k, v in chunk.params],
                        tags=[RunTag(k, v) for k, v in chunk.tags],
                    )
            with self._calling(f"storing the model files of run {run_id}", artifacts=True):
                self._client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_PATH)
            model = self._log_pyfunc(experiment_id, run_id, kind, pyfunc)
        except BaseException:
            # A run left RUNNING forever looks like a live training job in the MLflow UI.
            with contextlib.suppress(Exception):
                self._client.set_terminated(run_id, "FAILED")
            raise
        with self._calling(f"finishing run {run_id}"):
            self._client.set_terminated(run_id, "FINISHED")
        return run_id, f"{str(run.info.artifact_uri).rstrip('/')}/{MODEL_ARTIFACT_PATH}", model

    def _log_pyfunc(self, experiment_id: str, run_id: str, kind: str, pyfunc: Path) -> LoggedModel:
        """The run's MLflow logged model (where MLflow 3 keeps models): the pyfunc model."""
        name = promotion.model_name(kind)
        with self._calling(f"creating the MLflow model of run {run_id}"):
            model = self._client.create_logged_model(
                experiment_id, name=name, source_run_id=run_id, tags={TAG_KIND: kind}
            )
        try:
            with self._calling(f"storing the MLflow model of run {run_id}", artifacts=True):
                self._client.log_model_artifacts(model.model_id, str(pyfunc))
        except BaseException:
            with contextlib.suppress(Exception):
                self._client.finalize_logged_model(model.model_id, "FAILED")
            raise
        with self._calling(f"finishing the MLflow model of run {run_id}"):
            return self._client.finalize_logged_model(model.model_id, "READY")

    def _download_source(self, name: str, version: int, source: str, staging: Path) -> Path:
        import mlflow.artifacts

        with self._calling(f"downloading {name} v{version}", artifacts=True):
            return Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source,
                    dst_path=str(staging),
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.tracking_uri,
                )
            )

    def _delete_artifacts(self, source: str) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(
            source, tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
        )
        repo.delete_artifacts()  # type: ignore[no-untyped-call]

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

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
                f"at {redact(found.artifact_location or '')}, not under "
                f"{redact(self.artifacts_url)}; set the URL back or use a new experiment name"
            )
        self._experiment_id = str(found.experiment_id)
        return self._experiment_id

    def _ensure_registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.create_registered_model(
                name, description=f"nextoffer {name.removeprefix('nextoffer-')} model"
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _model_state(self, name: str) -> tuple[dict[str, int], list[int]]:
        """The registered model's aliases and champion history; empty when it does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            model = self._client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}, []
            raise
        aliases = {alias: int(version) for alias, version in (model.aliases or {}).items()}
        history = promotion.parse_history((model.tags or {}).get(TAG_CHAMPION_HISTORY, ""))
        return aliases, history

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
        from mlflow.exceptions import MlflowException

        name = promotion.model_name(kind)
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
        from mlflow.exceptions import MlflowException

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
                metric_names = original_names(run_tags.get(TAG_METRIC_NAMES))
                param_names = original_names(run_tags.get(TAG_PARAM_NAMES))
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
                name, TAG_CHAMPION_HISTORY, promotion.format_history(history)
            )
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            self._client.set_model_version_tag(
                name, str(version), TAG_ALIAS_CHANGE, f"{stamp} {reason}"
            )
        if self.mirror is not None:
            self._record_champion(name.removeprefix("nextoffer-"), version)

    @contextlib.contextmanager
    def _calling(self, what: str, *, artifacts: bool = False) -> Iterator[None]:
        """Turn MLflow, HTTP, database and storage failures into errors a person can act on."""
        try:
            yield
        except NextOfferError:
            raise
        except Exception as exc:
            storage = failures.is_storage_failure(exc)
            if not storage and not failures.is_backend_failure(exc):
                raise
            # Files on the local disk or proxied by the tracking server fail with the server;
            # S3 and the like are a backend of their own.
            if (artifacts or storage) and artifacts_are_separate(self.artifacts_url):
                setting, target = ARTIFACTS_SETTING, self.artifacts_url
            else:
                setting, target = REGISTRY_SETTING, self.tracking_uri
            raise failures.translate(what, exc, setting=setting, target=target) from exc


def _model_files(model_dir: Path) -> list[Path]:
    if not model_dir.is_dir():
        raise ValueError(f"model directory {model_dir} does not exist or is not a directory")
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"model directory {model_dir} holds no files")
    return files


def _files_uri(mv: ModelVersion) -> str:
    """Where a version's own model files are: the tag, or (older versions) its source."""
    return (mv.tags or {}).get(TAG_FILES) or mv.source or ""


def _download_target(kind: str, version: int, dst: Path | None) -> tuple[Path, bool]:
    """The folder a download goes to, and whether this call made it (removed on failure)."""
    if dst is None:
        return Path(tempfile.mkdtemp(prefix=f"nextoffer-{kind}-v{version}-")), True
    target = Path(dst)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RegistryError(f"{target} exists and is not an empty directory")
    made_target = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    return target, made_target


def _rescored(metrics: Mapping[str, float] | None, primary_metric: str) -> float | None:
    """The champion's re-scored primary metric, when the caller measured one."""
    if not metrics or primary_metric not in metrics:
        return None
    return float(metrics[primary_metric])
