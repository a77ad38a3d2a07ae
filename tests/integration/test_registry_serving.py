"""Serving's copy of the registry: files per version, a champion row per kind, no MLflow read.

Registering, promoting, rolling back and pruning keep `serving_champions` and the
`serving/` copies in step; `ServingState` loads from them with a registry that refuses
every call, and falls back to the registry for a kind with no row (a database from before
migration 0011) until `sync_serving` records it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nextoffer.registry.gauges import ModelQualityCollector
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.registry.serving_mirror import ServingChampions, ServingFiles, ServingMirror
from nextoffer.serving import state as state_module
from nextoffer.serving.state import ServingState
from nextoffer.store import Engine, migrate
from nextoffer.store.engine import make_engine
from nextoffer.store.serving_champions import read_serving_champions
from tests.integration.test_registry import db_uri, file_bytes, migrated_db, register, scrape

__all__ = ["db_uri", "migrated_db"]  # fixtures, imported for pytest

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")


@pytest.fixture(scope="module")
def app_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's SQLite database, migrated once (to head, 0011 included)."""
    path = tmp_path_factory.mktemp("app-template") / "nextoffer.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def engine(app_template: Path, tmp_path: Path) -> Engine:
    """A fresh copy of the migrated app database."""
    shutil.copy(app_template, tmp_path / "nextoffer.db")
    return make_engine(f"sqlite:///{tmp_path / 'nextoffer.db'}")


@pytest.fixture
def files(tmp_path: Path) -> ServingFiles:
    return ServingFiles(f"file://{tmp_path}/artifacts")


def mirrored(db_uri: str, tmp_path: Path, engine: Engine, keep_versions: int = 5) -> ModelRegistry:
    files = ServingFiles(f"file://{tmp_path}/artifacts")
    return ModelRegistry(
        db_uri,
        f"file://{tmp_path}/artifacts",
        keep_versions=keep_versions,
        mirror=ServingMirror(engine, files),
    )


class NoRegistry:
    """A registry serving must not touch: every call fails the test."""

    experiment = "none"

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"serving called the registry: {name}")


def served_versions(engine: Engine) -> dict[str, int]:
    return {kind: row.version for kind, row in read_serving_champions(engine).items()}


@pytest.fixture
def read_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving 'loads' a model as its files' bytes: the test models are not real models."""
    monkeypatch.setattr(state_module, "offer_loader", lambda: file_bytes)
    monkeypatch.setattr(state_module, "churn_loader", lambda: file_bytes)


def model_dir(tmp_path: Path, version_index: int) -> Path:
    """The model directory the `version_index`-th `register` call of this test made."""
    made = sorted(tmp_path.glob("model-*"), key=lambda p: int(p.name.split("-")[1]))
    return made[version_index]


@pytest.mark.usefixtures("read_bytes")
def test_register_promote_rollback_move_the_served_champion(
    db_uri: str, tmp_path: Path, engine: Engine, files: ServingFiles
) -> None:
    registry = mirrored(db_uri, tmp_path, engine)
    state = ServingState(engine, NoRegistry(), files=files)  # type: ignore[arg-type]
    register(registry, tmp_path, "offers", 0.40)
    register(registry, tmp_path, "offers", 0.45)
    register(registry, tmp_path, "offers", 0.42)  # worse: registered, not champion
    assert served_versions(engine) == {"offers": 2}
    row = read_serving_champions(engine)["offers"]
    assert row.metrics == {"ndcg@10": 0.45}
    assert row.files_url == files.url("offers", 2) and row.files_url.endswith("/serving/offers/v2")
    state.refresh()
    assert state.offers is not None and state.offers.version == 2
    assert state.offers.model == file_bytes(model_dir(tmp_path, 1))
    # Every version has its copy (experiment variants pin non-champions), not only champions.
    assert all(files.has("offers", v) for v in (1, 2, 3))
    pinned = state.pinned_offers_model(3)
    assert pinned.version == 3 and pinned.model == file_bytes(model_dir(tmp_path, 2))

    registry.promote("offers", 3, reason="won the A/B test")
    assert served_versions(engine) == {"offers": 3}
    state.refresh()
    assert state.offers.version == 3 and state.offers.model == file_bytes(model_dir(tmp_path, 2))
    assert state.stamp.startswith("ov3.")

    registry.rollback("offers")
    assert served_versions(engine) == {"offers": 2}
    state.refresh()
    assert state.offers.version == 2 and state.offers.model == file_bytes(model_dir(tmp_path, 1))

    register(registry, tmp_path, "churn", 0.7, "auc")
    state.refresh()
    assert served_versions(engine) == {"offers": 2, "churn": 1}
    assert state.churn is not None and state.churn.model == file_bytes(model_dir(tmp_path, 3))


def test_pruned_versions_lose_their_serving_copy(
    db_uri: str, tmp_path: Path, engine: Engine, files: ServingFiles
) -> None:
    registry = mirrored(db_uri, tmp_path, engine, keep_versions=1)
    for value in (0.40, 0.30, 0.35):
        register(registry, tmp_path, "offers", value)
    pruned = [v.version for v in registry.versions("offers") if v.artifacts_deleted]
    assert pruned == [2]
    assert not files.has("offers", 2)
    assert files.has("offers", 1) and files.has("offers", 3)
    assert served_versions(engine) == {"offers": 1}


@pytest.mark.usefixtures("read_bytes")
def test_no_row_falls_back_to_the_registry_until_synced(
    db_uri: str,
    tmp_path: Path,
    engine: Engine,
    files: ServingFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Registered without the mirror: what a database from before migration 0011 holds.
    plain = ModelRegistry(db_uri, f"file://{tmp_path}/artifacts")
    register(plain, tmp_path, "offers", 0.40)
    register(plain, tmp_path, "offers", 0.30)
    register(plain, tmp_path, "churn", 0.7, "auc")
    assert served_versions(engine) == {} and not files.has("offers", 1)

    state = ServingState(engine, plain, files=files)
    with caplog.at_level(logging.WARNING, logger="nextoffer.serving.state"):
        state.refresh()
        state.refresh()
    assert state.offers is not None and state.offers.version == 1
    assert state.offers.model == file_bytes(model_dir(tmp_path, 0))
    warned = [r.getMessage() for r in caplog.records if "offers" in r.getMessage()]
    assert len(warned) == 1 and "nextoffer models sync" in warned[0]
    # A pinned version with no copy comes through the registry too.
    assert state.pinned_offers_model(2).model == file_bytes(model_dir(tmp_path, 1))

    synced = mirrored(db_uri, tmp_path, engine)
    assert synced.sync_serving("uplift") is None
    assert served_versions(engine) == {}
    # The first row brings every kind's champion with it: the table is then the whole truth.
    assert synced.sync_serving("offers") == 1
    assert served_versions(engine) == {"offers": 1, "churn": 1}
    assert files.has("offers", 1) and files.has("offers", 2)  # every version copied
    fresh = ServingState(engine, NoRegistry(), files=files)  # type: ignore[arg-type]
    fresh.refresh()
    assert fresh.offers is not None and fresh.offers.version == 1
    assert fresh.churn is not None and fresh.churn.model == file_bytes(model_dir(tmp_path, 2))
    assert fresh.uplift is None  # no row, no champion: the registry is not asked
    assert fresh.pinned_offers_model(2).model == file_bytes(model_dir(tmp_path, 1))


def test_gauges_read_the_serving_table(db_uri: str, tmp_path: Path, engine: Engine) -> None:
    registry = mirrored(db_uri, tmp_path, engine)
    register(registry, tmp_path, "offers", 0.41, extra_metrics={"max_psi": 0.3})
    prometheus = CollectorRegistry()
    # Rows recorded: no kind is asked of the registry, not even those without a champion.
    champions = ServingChampions(engine, NoRegistry())  # type: ignore[arg-type]
    prometheus.register(ModelQualityCollector(champions))
    samples = scrape(prometheus)
    assert samples[("nextoffer_model_quality", ("offers", "1", "ndcg_at_10"))] == 0.41
    assert samples[("nextoffer_model_champion_version", ("offers",))] == 1
    assert samples[("nextoffer_model_max_psi", ("offers",))] == 0.3
    assert samples[("nextoffer_model_registry_up", ())] == 1
    assert ("nextoffer_model_champion_version", ("churn",)) not in samples
