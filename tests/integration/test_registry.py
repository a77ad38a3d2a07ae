"""Model registry on MLflow's SQLite store: champion alias, margins, rollback, pruning, gauges."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nextoffer.config import Settings
from nextoffer.domain.errors import BackendUnavailableError, ConfigError, RegistryError
from nextoffer.registry.gauges import ModelQualityCollector, metric_label
from nextoffer.registry.mlflow_registry import (
    CHAMPION,
    TAG_ARTIFACTS_DELETED,
    TAG_DECISION,
    TAG_KIND,
    TAG_REASON,
    Decision,
    ModelRegistry,
)

# MLflow's own SQLAlchemy models use a deprecated loader; nothing we can act on.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")

LABEL_ORDER = ("model", "version", "metric")


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow database, migrated once: MLflow's migrations take seconds per database."""
    folder = tmp_path_factory.mktemp("mlflow-template")
    path = folder / "mlflow.db"
    registry = ModelRegistry(f"sqlite:///{path}", f"file://{folder}/artifacts")
    assert registry.champion("offers") is None  # touches the model registry tables too
    return path


@pytest.fixture
def db_uri(migrated_db: Path, tmp_path: Path) -> str:
    """A fresh copy of the migrated database, for one test."""
    shutil.copy(migrated_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def registry(db_uri: str, tmp_path: Path) -> ModelRegistry:
    """A registry of its own for each test, on a copy of the migrated database."""
    return ModelRegistry(db_uri, f"file://{tmp_path}/artifacts")


def make_model(folder: Path, seed: int) -> Path:
    """A model directory like ours: JSON, npz-ish binary, LightGBM text, one nested file."""
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(f'{{"seed": {seed}, "name": "café"}}\n', encoding="utf-8")
    (folder / "weights.npz").write_bytes(bytes((seed * 31 + i * 7) % 256 for i in range(4096)))
    (folder / "booster.txt").write_text(f"tree\nversion=v4\nseed={seed}\n", encoding="utf-8")
    (folder / "segments").mkdir()
    (folder / "segments" / "centroids.json").write_text(f"[[{seed}, 0.5]]", encoding="utf-8")
    return folder


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def scrape(prometheus: CollectorRegistry) -> dict[tuple[str, tuple[str, ...]], float]:
    """The /metrics text, parsed: (name, label values in model/version/metric order) → value."""
    text = generate_latest(prometheus).decode()
    return {
        (s.name, tuple(s.labels[k] for k in LABEL_ORDER if k in s.labels)): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


_counter = iter(range(1_000_000))


def register(
    registry: ModelRegistry,
    tmp_path: Path,
    kind: str,
    value: float,
    metric: str = "ndcg@10",
    *,
    margin: float = 0.0,
    higher_is_better: bool = True,
    tags: dict[str, str] | None = None,
    extra_metrics: dict[str, float] | None = None,
) -> Decision:
    """Register a fresh model directory (`tmp_path/model-<n>`, n counting up) with one metric."""
    seed = next(_counter)
    model = make_model(tmp_path / f"model-{seed}", seed)
    return registry.register(
        kind,
        model,
        params={"seed": seed, "learning_rate": 0.05, "features": ["tenure", "arpu"]},
        metrics={metric: value, **(extra_metrics or {})},
        primary_metric=metric,
        margin=margin,
        higher_is_better=higher_is_better,
        tags=tags,
    )


def model_dirs(tmp_path: Path) -> list[Path]:
    """The model directories `register` made, oldest first."""
    return sorted(tmp_path.glob("model-*"), key=lambda p: int(p.name.split("-")[1]))


def test_first_version_becomes_champion(registry: ModelRegistry, tmp_path: Path) -> None:
    decision = register(registry, tmp_path, "offers", 0.41, tags={"git": "abc123"})

    assert decision.promoted
    assert decision.version == 1
    assert decision.champion_version is None
    assert decision.reason.startswith("first version")
    champion = registry.champion("offers")
    assert champion is not None
    assert champion.version == 1 and champion.is_champion and not champion.artifacts_deleted
    # `ndcg@10` is not a valid MLflow metric name; the registry gives the original name back.
    assert champion.metrics == {"ndcg@10": 0.41}
    assert champion.params["learning_rate"] == "0.05"
    assert champion.params["features"] == '["tenure", "arpu"]'
    assert champion.tags[TAG_KIND] == "offers"
    assert champion.tags["git"] == "abc123"
    assert champion.tags[TAG_DECISION] == "promoted"
    assert registry.champion("churn") is None
    assert registry.versions("churn") == []


def test_better_challenger_moves_alias_worse_does_not(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    register(registry, tmp_path, "offers", 0.40)
    better = register(registry, tmp_path, "offers", 0.431)
    worse = register(registry, tmp_path, "offers", 0.412)

    assert better.promoted and better.champion_version == 1 and better.champion_value == 0.40
    assert not worse.promoted
    assert worse.reason == "ndcg@10 0.412 is not better than champion v2's 0.431"
    assert worse.challenger_value == 0.412 and worse.champion_value == 0.431
    versions = registry.versions("offers")
    assert [v.version for v in versions] == [3, 2, 1]
    assert [v.is_champion for v in versions] == [False, True, False]
    # The decision stays readable on the version afterwards.
    assert versions[0].tags[TAG_DECISION] == "not_promoted"
    assert versions[0].tags[TAG_REASON] == worse.reason
    assert versions[0].created_at >= versions[2].created_at


def test_margin_is_relative_to_the_champion(registry: ModelRegistry, tmp_path: Path) -> None:
    register(registry, tmp_path, "offers", 0.40)
    # 1 % of 0.40 is 0.004: 0.403 is better, but not by more than the margin.
    small = register(registry, tmp_path, "offers", 0.403, margin=0.01)
    equal = register(registry, tmp_path, "offers", 0.40)
    enough = register(registry, tmp_path, "offers", 0.405, margin=0.01)

    assert not small.promoted
    assert small.reason == "ndcg@10 0.403 is not better than champion v1's 0.4 by more than 1 %"
    assert not equal.promoted
    assert enough.promoted and enough.version == 4
    champion = registry.champion("offers")
    assert champion is not None and champion.version == 4


def test_uplift_versions_are_gated_on_qini_auc_like_the_others(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    def uplift(value: float, rescored: float | None = None) -> Decision:
        seed = next(_counter)
        return registry.register(
            "uplift",
            make_model(tmp_path / f"model-{seed}", seed),
            params={"model": "two_model"},
            metrics={"qini_auc": value, "uplift_auc": value / 2},
            primary_metric="qini_auc",
            champion_metrics=None if rescored is None else {"qini_auc": rescored},
            floor=0.0,
        )

    # No better than a random ranking (Qini AUC 0): never promoted, the first one included.
    random = uplift(0.0)
    worse = uplift(-0.02)
    first = uplift(0.03)
    # The champion re-scored on the challenger's test group decides, not its own old value.
    beaten = uplift(0.025, rescored=0.01)
    kept = uplift(0.05, rescored=0.06)

    assert not random.promoted and random.reason.startswith("degenerate")
    assert not worse.promoted and worse.reason.startswith("degenerate")
    assert first.promoted and first.reason.startswith("first version")
    assert beaten.promoted and beaten.champion_value == 0.01
    assert not kept.promoted and "on the same test data" in kept.reason
    champion = registry.champion("uplift")
    assert champion is not None and champion.version == beaten.version
    assert champion.tags[TAG_KIND] == "uplift"
    assert champion.tags["nextoffer.primary_metric"] == "qini_auc"
    assert registry.champion("offers") is None


def test_lower_is_better_metric(registry: ModelRegistry, tmp_path: Path) -> None:
    def reg(value: float, margin: float = 0.0) -> Decision:
        return register(
            registry, tmp_path, "churn", value, "log_loss", higher_is_better=False, margin=margin
        )

    reg(0.50)
    higher = reg(0.55)
    lower = reg(0.45)
    within_margin = reg(0.44, margin=0.1)  # needs < 0.45 − 10 % = 0.405

    assert not higher.promoted
    assert "(lower is better)" in higher.reason
    assert lower.promoted and lower.champion_version == 1
    assert not within_margin.promoted
    assert within_margin.reason == (
        "log_loss 0.44 is not better than champion v3's 0.45 by more than 10 % (lower is better)"
    )
    champion = registry.champion("churn")
    assert champion is not None and champion.version == 3


def test_download_returns_identical_files(
    registry: ModelRegistry, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RegistryError, match="no champion"):
        registry.download("offers")
    register(registry, tmp_path, "offers", 0.40)
    register(registry, tmp_path, "offers", 0.45)
    first_dir, champion_dir = model_dirs(tmp_path)

    got = registry.download("offers")
    try:
        assert file_bytes(got) == file_bytes(champion_dir)
    finally:
        shutil.rmtree(got)
    dst = tmp_path / "deploy" / "offers"
    assert registry.download("offers", version=1, dst=dst) == dst
    assert file_bytes(dst) == file_bytes(first_dir)
    assert [p.name for p in dst.parent.iterdir()] == ["offers"]  # no staging folder left over
    with pytest.raises(RegistryError, match="not an empty directory"):
        registry.download("offers", dst=dst)
    with pytest.raises(RegistryError, match="no version 9"):
        registry.download("offers", version=9)
    # No progress bars, no MLflow INFO lines: the CLI's output stays ours.
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_promote_and_rollback(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no champion to roll back"):
        registry.rollback("offers")
    register(registry, tmp_path, "offers", 0.40)
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback("offers")
    register(registry, tmp_path, "offers", 0.45)
    register(registry, tmp_path, "offers", 0.42)

    promoted = registry.promote("offers", 3, reason="A/B test won on acceptance rate")
    assert promoted.promoted and promoted.champion_version == 2
    assert promoted.reason == "promoted by hand: A/B test won on acceptance rate"
    assert promoted.challenger_value == 0.42 and promoted.champion_value == 0.45
    champion = registry.champion("offers")
    assert champion is not None and champion.version == 3
    assert not registry.promote("offers", 3, reason="again").promoted

    back = registry.rollback("offers")
    assert (back.version, back.champion_version) == (2, 3)
    champion = registry.champion("offers")
    assert champion is not None and champion.version == 2
    # The history is a stack: a second rollback goes further back, not back to v3.
    assert registry.rollback("offers").version == 1
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback("offers")
    with pytest.raises(RegistryError, match="no version 7"):
        registry.promote("offers", 7, reason="typo")
    with pytest.raises(ValueError, match="reason"):
        registry.promote("offers", 2, reason=" ")


def test_prune_keeps_newest_champion_and_rollback_target(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    # v1 first champion, v2 worse, v3 and v4 better (history 1,3,4), v5–v7 worse.
    for value in (0.30, 0.20, 0.40, 0.50, 0.10, 0.11, 0.12):
        register(registry, tmp_path, "offers", value)

    versions = {v.version: v for v in registry.versions("offers")}
    # Newest five are v3–v7; v4 is the champion and v3 the rollback target.
    assert sorted(n for n, v in versions.items() if v.artifacts_deleted) == [1, 2]
    assert versions[1].metrics == {"ndcg@10": 0.30}  # the quality history stays
    assert versions[1].tags[TAG_ARTIFACTS_DELETED] == "true"
    assert versions[1].tags[TAG_DECISION] == "promoted"
    artifacts = tmp_path / "artifacts" / "nextoffer"
    assert not (artifacts / versions[1].run_id / "artifacts" / "model").exists()
    assert (artifacts / versions[3].run_id / "artifacts" / "model" / "meta.json").exists()
    assert registry.prune("offers") == []  # nothing left to do
    with pytest.raises(RegistryError, match="pruned"):
        registry.download("offers", version=2)

    # An old champion keeps its artifacts however many worse versions follow it.
    for value in (0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        register(registry, tmp_path, "churn", value, "auc")
    churn = {v.version: v for v in registry.versions("churn")}
    assert [n for n, v in churn.items() if v.artifacts_deleted] == [2]
    assert churn[1].is_champion and not churn[1].artifacts_deleted
    assert file_bytes(registry.download("churn", dst=tmp_path / "churn-champion"))


def test_prune_keeps_rollback_target_beyond_keep_versions(db_uri: str, tmp_path: Path) -> None:
    registry = ModelRegistry(db_uri, f"file://{tmp_path}/artifacts", keep_versions=2)
    for value in (0.40, 0.45, 0.1, 0.2, 0.3):
        register(registry, tmp_path, "offers", value)
    pruned = [v.version for v in registry.versions("offers") if v.artifacts_deleted]
    assert pruned == [3]  # v5, v4 newest; v2 champion; v1 where a rollback would go
    assert registry.rollback("offers").version == 1
    assert registry.download("offers").is_dir()


def test_promote_refuses_a_pruned_version(db_uri: str, tmp_path: Path) -> None:
    registry = ModelRegistry(db_uri, f"file://{tmp_path}/artifacts", keep_versions=1)
    for value in (0.40, 0.30, 0.35):
        register(registry, tmp_path, "offers", value)
    assert [v.version for v in registry.versions("offers") if v.artifacts_deleted] == [2]
    with pytest.raises(RegistryError, match="pruned"):
        registry.promote("offers", 2, reason="it was better really")
    champion = registry.champion("offers")
    assert champion is not None and champion.version == 1


def test_relative_urls_resolve_against_the_working_directory(
    migrated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(migrated_db, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    settings = Settings(registry_uri="sqlite:///./mlflow.db", artifacts_url="file://./var/art")
    registry = ModelRegistry.from_settings(settings)
    assert registry.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert registry.artifacts_url == (tmp_path / "var" / "art").resolve().as_uri()
    register(registry, tmp_path, "offers", 0.4)
    assert list((tmp_path / "var" / "art" / "nextoffer").glob("*/artifacts/model/meta.json"))

    # Elsewhere, the same registry still finds its database and files.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    got = registry.download("offers", dst=tmp_path / "out")
    assert file_bytes(got) == file_bytes(model_dirs(tmp_path)[0])

    # The experiment's artifact location is fixed at creation: a changed URL is refused
    # rather than splitting the models over two places.
    monkeypatch.chdir(tmp_path)
    moved = ModelRegistry("sqlite:///./mlflow.db", "file://./other")
    with pytest.raises(ConfigError, match="NEXTOFFER_ARTIFACTS_URL"):
        register(moved, tmp_path, "offers", 0.5)


def test_gauges_export_champion_quality(registry: ModelRegistry, tmp_path: Path) -> None:
    register(
        registry,
        tmp_path,
        "offers",
        0.43,
        extra_metrics={"drift_flag": 1.0, "max_psi": 0.31, "hit rate/5": 0.2},
    )
    register(registry, tmp_path, "churn", 0.81, "auc", extra_metrics={"drift_flag": 0.0})
    prometheus = CollectorRegistry()
    prometheus.register(ModelQualityCollector(registry, cache_seconds=60))

    samples = scrape(prometheus)
    assert samples["nextoffer_model_quality", ("offers", "1", "ndcg_at_10")] == 0.43
    assert samples["nextoffer_model_quality", ("offers", "1", "hit_rate_5")] == 0.2
    assert samples["nextoffer_model_quality", ("churn", "1", "auc")] == 0.81
    assert samples["nextoffer_model_champion_version", ("offers",)] == 1
    assert samples["nextoffer_model_drift_flag", ("offers",)] == 1
    assert samples["nextoffer_model_drift_flag", ("churn",)] == 0
    assert samples["nextoffer_model_max_psi", ("offers",)] == 0.31
    assert ("nextoffer_model_max_psi", ("churn",)) not in samples
    assert samples["nextoffer_model_registry_up", ()] == 1

    # Reads are cached: a new champion shows after cache_seconds, not on the next scrape.
    register(registry, tmp_path, "offers", 0.50)
    assert scrape(prometheus)["nextoffer_model_champion_version", ("offers",)] == 1
    fresh = CollectorRegistry()
    fresh.register(ModelQualityCollector(registry, cache_seconds=0))
    assert scrape(fresh)["nextoffer_model_champion_version", ("offers",)] == 2
    assert metric_label("ndcg@10") == "ndcg_at_10"


@pytest.fixture
def no_http_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow retries HTTP requests for minutes by default; an unreachable server must fail fast."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")


@pytest.mark.usefixtures("no_http_retries")
def test_unreachable_tracking_server(tmp_path: Path) -> None:
    registry = ModelRegistry("http://admin:s3cret@127.0.0.1:9/", f"file://{tmp_path}/art")
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as raised:
        registry.champion("offers")
    with pytest.raises(BackendUnavailableError):
        register(registry, tmp_path, "offers", 0.4)
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert raised.value.setting == "NEXTOFFER_REGISTRY_URI"
    assert "127.0.0.1:9" in message and "admin:***@" in message
    assert "s3cret" not in message and "s3cret" not in raised.value.detail

    prometheus = CollectorRegistry()
    prometheus.register(ModelQualityCollector(registry))
    assert scrape(prometheus) == {("nextoffer_model_registry_up", ()): 0}


def test_bad_input_is_refused_before_anything_is_logged(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    model = make_model(tmp_path / "m", 1)
    for kind_call in (
        lambda: registry.champion("upsell"),
        lambda: registry.versions("upsell"),
        lambda: registry.download("upsell"),
        lambda: registry.prune("upsell"),
        lambda: registry.rollback("upsell"),
    ):
        with pytest.raises(ValueError, match="unknown model kind"):
            kind_call()
    with pytest.raises(ValueError, match="primary metric"):
        registry.register("offers", model, params={}, metrics={"auc": 0.5}, primary_metric="x")
    with pytest.raises(ValueError, match="margin"):
        registry.register(
            "offers", model, params={}, metrics={"auc": 0.5}, primary_metric="auc", margin=-0.1
        )
    with pytest.raises(ValueError, match="no files"):
        (tmp_path / "empty").mkdir()
        registry.register(
            "offers", tmp_path / "empty", params={}, metrics={"auc": 0.5}, primary_metric="auc"
        )
    assert registry.versions("offers") == []
    assert CHAMPION == "champion"
