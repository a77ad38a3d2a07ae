"""The model registry in a backup: its own database, and the files of recent model versions.

MLflow keeps versions, metrics and the `champion` alias in its database and the model files
under NEXTOFFER_ARTIFACTS_URL (`<experiment>/<run id>/artifacts/model/...`). Restoring both
brings back the same champion, loadable. An MLflow server (http://) keeps its database
itself: it is not ours to dump, and the manifest says so.
"""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from nextoffer.config import Settings
from nextoffer.ops import pgtools, sqlitefiles
from nextoffer.ops.manifest import ArtifactVersion, BackupError, RegistryPart
from nextoffer.storage import ObjectStore, open_prefix

if TYPE_CHECKING:
    from nextoffer.registry.mlflow_registry import ModelRegistry
    from nextoffer.store import Engine

REGISTRY_SETTING = "NEXTOFFER_REGISTRY_URI"
ARTIFACTS_SETTING = "NEXTOFFER_ARTIFACTS_URL"
REGISTRY_SQLITE_FILE = "registry.sqlite.gz"
REGISTRY_PG_FILE = "registry.dump"
ARTIFACTS_FILE = "artifacts.tar.gz"

log = logging.getLogger(__name__)


def registry_kind(settings: Settings) -> str:
    """`sqlite`, `postgresql`, or `none` (a server or a store we do not dump)."""
    uri = settings.registry_uri
    if uri.startswith("sqlite:"):
        return "sqlite"
    if uri.startswith(("postgresql:", "postgresql+", "postgres:")):
        return "postgresql"
    return "none"


def _registry(settings: Settings) -> ModelRegistry:
    # Imported here: MLflow takes seconds to import, and only backups with a registry need it.
    from nextoffer.registry.mlflow_registry import ModelRegistry

    return ModelRegistry.from_settings(settings)


def _artifacts_store(settings: Settings) -> ObjectStore:
    return open_prefix(
        settings.artifacts_url, endpoint_url=settings.s3_endpoint_url, setting=ARTIFACTS_SETTING
    )


def _pg_registry_url(settings: Settings) -> str:
    # MLflow accepts postgres:// and postgresql+psycopg2://; pg_dump only needs the parts.
    uri = settings.registry_uri.replace("postgres://", "postgresql://", 1)
    return str(pgtools.psycopg_url(uri, REGISTRY_SETTING).render_as_string(hide_password=False))


def backup_registry(settings: Settings, workdir: Path) -> tuple[RegistryPart, list[Path]]:
    """Dump the registry's database into `workdir`; the manifest part and files to store."""
    kind = registry_kind(settings)
    if kind == "sqlite":
        source = sqlitefiles.sqlite_path(settings.registry_uri, REGISTRY_SETTING)
        if not source.exists():
            return RegistryPart(kind="none", note=f"no registry database yet at {source}"), []
        copy = workdir / "registry.sqlite"
        sqlitefiles.online_copy(source, copy)
        packed = workdir / REGISTRY_SQLITE_FILE
        sqlitefiles.gzip_file(copy, packed)
        copy.unlink()
        return RegistryPart(kind="sqlite", file=packed.name), [packed]
    if kind == "postgresql":
        url = _pg_registry_url(settings)
        target = workdir / REGISTRY_PG_FILE
        pgtools.start_dump(url, target, REGISTRY_SETTING, settings.postgres_bin_dir).wait(
            REGISTRY_SETTING
        )
        return RegistryPart(kind="postgresql", file=target.name), [target]
    note = (
        "registry database not backed up: NEXTOFFER_REGISTRY_URI is an MLflow server or a "
        "store nextoffer does not dump; back up the server's own database"
    )
    return RegistryPart(kind="none", note=note), []


def backup_artifacts(
    settings: Settings, workdir: Path, part: RegistryPart
) -> tuple[list[ArtifactVersion], dict[str, int], list[Path]]:
    """Pack the model files of recent versions into `artifacts.tar.gz`.

    Packed: the newest `keep_model_versions` versions of each model with files, and each
    champion. Returns the versions packed, the champion of each kind, and the file.
    """
    if part.kind == "none" and registry_kind(settings) != "none":
        return [], {}, []  # no registry database yet, so no models either
    from nextoffer.registry.mlflow_registry import MODEL_KINDS

    registry = _registry(settings)
    store = _artifacts_store(settings)
    staging = workdir / "artifacts"
    versions: list[ArtifactVersion] = []
    champions: dict[str, int] = {}
    for kind in MODEL_KINDS:
        infos = registry.versions(kind)
        champion = next((v for v in infos if v.is_champion), None)
        if champion is not None:
            champions[kind] = champion.version
        alive = [v for v in infos if not v.artifacts_deleted and v.run_id]
        chosen = alive[: settings.keep_model_versions]
        if champion is not None and champion in alive and champion not in chosen:
            chosen.append(champion)
        for info in chosen:
            prefix = f"{registry.experiment}/{info.run_id}/artifacts/"
            objects = store.list(prefix)
            if not objects:
                raise BackupError(
                    f"nextoffer-{kind} v{info.version}: no files under "
                    f"{store.describe(prefix)} (were they deleted outside nextoffer?)"
                )
            for obj in objects:
                target = staging / obj.key
                target.parent.mkdir(parents=True, exist_ok=True)
                store.download(obj.key, target)
            versions.append(
                ArtifactVersion(
                    kind=kind,
                    version=info.version,
                    run_id=info.run_id,
                    champion=info.is_champion,
                    files=len(objects),
                    bytes=sum(o.size for o in objects),
                )
            )
    if not versions:
        return [], champions, []
    packed = workdir / ARTIFACTS_FILE
    # Model files are mostly compressed already (npz, LightGBM text is not): gzip's default.
    with tarfile.open(packed, "w:gz") as tar:
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            tar.add(path, arcname=path.relative_to(staging).as_posix(), recursive=False)
    return versions, champions, [packed]


def registry_needs_force(settings: Settings) -> str | None:
    """Why restoring the registry would overwrite something (None: nothing to overwrite)."""
    kind = registry_kind(settings)
    if kind == "sqlite":
        path = sqlitefiles.sqlite_path(settings.registry_uri, REGISTRY_SETTING)
        tables = sqlitefiles.table_count(path)
        return f"the registry database {path} holds {tables} tables" if tables else None
    if kind == "postgresql":
        url = _pg_registry_url(settings)
        tables = pgtools.user_table_count(url, REGISTRY_SETTING)
        return f"the registry database holds {tables} tables" if tables else None
    return None


def restore_registry(settings: Settings, part: RegistryPart, file: Path, force: bool) -> None:
    """Put the registry database of a backup in place of NEXTOFFER_REGISTRY_URI's."""
    kind = registry_kind(settings)
    if part.kind != kind:
        raise BackupError(
            f"the backup's registry is {part.kind}, but {REGISTRY_SETTING} is {kind}: "
            "restore with --no-registry, or point the setting at a database of the same kind"
        )
    if kind == "sqlite":
        target = sqlitefiles.sqlite_path(settings.registry_uri, REGISTRY_SETTING)
        staged = target.with_name(f".{target.name}.restore")
        sqlitefiles.gunzip_file(file, staged)
        problem = sqlitefiles.integrity_problem(staged)
        if problem is not None:
            staged.unlink(missing_ok=True)
            raise BackupError(f"the backup's registry database is damaged: {problem}")
        sqlitefiles.replace_database(staged, target)
        return
    url = _pg_registry_url(settings)
    if not pgtools.database_exists(url, REGISTRY_SETTING):
        pgtools.create_database(url, REGISTRY_SETTING)
    pgtools.restore_dump(
        file,
        url,
        REGISTRY_SETTING,
        settings.postgres_bin_dir,
        replace=force,
    )


def restore_artifacts(settings: Settings, packed: Path, workdir: Path) -> int:
    """Upload the model files of the backup where they are missing or differ; the count."""
    staging = workdir / "artifacts-restore"
    staging.mkdir(parents=True, exist_ok=True)
    with tarfile.open(packed, "r:gz") as tar:
        # The `data` filter refuses absolute paths, `..`, links out of the folder, devices.
        tar.extractall(staging, filter="data")
    store = _artifacts_store(settings)
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    # One listing per run folder (`<experiment>/<run id>/`), not of the whole artifact store.
    runs = {"/".join(p.relative_to(staging).parts[:2]) + "/" for p in files}
    present = {o.key: o.size for run in sorted(runs) for o in store.list(run)}
    uploaded = 0
    for path in files:
        key = path.relative_to(staging).as_posix()
        if present.get(key) == path.stat().st_size:
            continue  # run artifacts never change once logged: same size, same file
        store.upload(path, key)
        uploaded += 1
    return uploaded


def sync_serving(settings: Settings, engine: Engine) -> None:
    """Record every kind's champion for serving in `engine`'s database (registry.serving_mirror)."""
    from nextoffer.registry.mlflow_registry import MODEL_KINDS, ModelRegistry

    registry = ModelRegistry.from_settings(settings, engine)
    for kind in MODEL_KINDS:
        registry.sync_serving(kind)


def current_champions(settings: Settings) -> dict[str, int]:
    """The champion version of each model kind in the registry as it is now."""
    from nextoffer.registry.mlflow_registry import MODEL_KINDS

    registry = _registry(settings)
    found: dict[str, int] = {}
    for kind in MODEL_KINDS:
        info = registry.champion(kind)
        if info is not None:
            found[kind] = info.version
    return found
