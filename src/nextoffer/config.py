"""One Settings object for the platform, from NEXTOFFER_* variables and *_FILE secrets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "NEXTOFFER_"


class SecretFilesSource(PydanticBaseSettingsSource):
    """Reads `NEXTOFFER_<NAME>_FILE` for any setting, the Docker-secrets convention.

    Setting both `NEXTOFFER_X` and `NEXTOFFER_X_FILE` is an error: silently picking one
    would hide a misconfiguration.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        env_name = f"{ENV_PREFIX}{field_name.upper()}"
        path = os.environ.get(f"{env_name}_FILE")
        if not path:
            return None, field_name, False
        if env_name in os.environ:
            raise ValueError(f"set either {env_name} or {env_name}_FILE, not both")
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{env_name}_FILE: cannot read {path}: {exc.strerror}") from None
        return value, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class Settings(BaseSettings):
    """Every knob of nextoffer. Built once at the edge (CLI, app, worker) and passed in."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    database_url: str = Field(
        "sqlite:///./var/nextoffer.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    database_direct_url: str = Field(
        "",
        description="the database without a transaction pooler, for job locks (session "
        "advisory locks do not hold through pgbouncer in transaction mode); empty: "
        "NEXTOFFER_DATABASE_URL",
    )
    database_read_url: str = Field(
        "",
        description="a PostgreSQL streaming replica for the API's read-only queries (answers, "
        "catalogue, segments, churn risk, console pages); writes and read-your-writes stay on "
        "NEXTOFFER_DATABASE_URL, and reads fall back to it while the replica is down; empty: "
        "every read uses NEXTOFFER_DATABASE_URL",
    )
    cache_url: str = Field("memory://", description="memory:// or redis://host:port/db")
    broker_url: str = Field("", description="Celery broker; empty runs tasks inline")
    registry_uri: str = Field("sqlite:///./var/mlflow.db", description="MLflow tracking URI")
    artifacts_url: str = Field("file://./var/artifacts", description="file:// or s3:// prefix")
    backup_url: str = Field("file://./var/backups", description="file:// or s3:// prefix")
    var_dir: Path = Field(Path("./var"), description="local state: quarantine files, spool")

    db_wait_timeout_s: float = Field(30.0, ge=0, description="how long to wait for the database")
    ingest_block_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="bytes of input validated and committed at a time"
    )
    ingest_clock_skew_s: int = Field(
        300, ge=0, description="timestamps up to this far in the future are still accepted"
    )
    segments: int = Field(6, ge=2, le=50, description="number of customer segments")
    segment_sample_rows: int = Field(
        100_000, ge=1000, description="customers sampled to fit the segment clustering"
    )
    random_seed: int = Field(42, description="seed for every randomised step")

    offer_horizon_days: int = Field(
        60, ge=7, le=365, description="days after a snapshot in which an acquisition counts"
    )
    ranker_train_customers: int = Field(
        60_000, ge=1000, description="customers the offer ranker is trained on (sampled)"
    )
    training_labels: Literal["auto", "windows", "snapshot"] = Field(
        "auto",
        description="what the offer ranker learns from: acquisitions in time windows, "
        "holdings snapshots (one held product hidden), or auto (windows when there are enough)",
    )
    offer_metric_k: int = Field(
        10, ge=1, le=100, description="cut-off k of the offer model's reported metrics"
    )
    offer_primary_metric: str = Field(
        "ndcg_at_k",
        pattern=r"^(ndcg|hit_rate|precision|recall|map)_at_(k|1|3|\d+)$|^mrr$",
        description="offer metric that decides promotion (`_at_k` = at offer_metric_k)",
    )
    promotion_margin: float = Field(
        0.01, ge=0, description="relative gain a challenger needs to become champion"
    )
    keep_model_versions: int = Field(5, ge=1, description="versions whose artifacts are kept")
    drift_threshold: float = Field(0.2, gt=0, description="PSI above which drift is flagged")
    churn_bands: tuple[float, float] = Field(
        (0.2, 0.4), description="churn probability bounds of the medium and high bands"
    )
    train_threads: int = Field(0, ge=0, description="threads for model training; 0 = all cores")

    api_host: str = Field("127.0.0.1", description="address `nextoffer serve` listens on")
    api_port: int = Field(8000, ge=1, le=65535, description="port `nextoffer serve` listens on")
    api_workers: int = Field(1, ge=1, description="API worker processes")
    jwt_secret: str = Field(
        "",
        description="key that signs login tokens; empty: one is generated into VAR_DIR/secrets "
        "(set it, the same on every replica, in production)",
    )
    privacy_key: str = Field(
        "",
        description="key of the customer digests kept by the erasure ledger and the audit "
        "trail; empty: one is generated into VAR_DIR/secrets (back it up; the same on every "
        "replica in production)",
    )
    allow_insecure_secrets: bool = Field(
        False,
        description="development only: start even with a known, example or weak secret "
        "(the development compose file sets it; production never)",
    )
    forwarded_allow_ips: str = Field(
        "",
        description="proxies whose X-Forwarded-For is believed (addresses or networks, comma "
        "separated, e.g. Traefik's); empty: nobody's, the connection's address is the client",
    )
    login_free_failures: int = Field(
        5, ge=1, description="wrong passwords per username and address before logins back off"
    )
    login_lock_max_s: int = Field(
        900, ge=1, description="longest lock of one username from one address (doubling from 1 s)"
    )
    login_hash_concurrency: int = Field(
        2, ge=1, description="password checks at once per API process (argon2: 64 MiB each)"
    )
    login_hash_wait_s: float = Field(
        10.0, gt=0, description="how long a login waits for a password check slot before a 503"
    )
    jwt_ttl_s: int = Field(900, ge=60, description="lifetime of a login token")
    auth_cache_s: float = Field(
        30.0,
        ge=0,
        description="how long each API process remembers a verified key or a user's account "
        "state; revoked keys and disabled users are refused within this; 0: check every request",
    )
    rate_limit_per_minute: int = Field(
        1200, ge=0, description="requests per minute per API key or user; 0 turns limits off"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed to call the API from a browser"
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body accepted")
    metrics_require_auth: bool = Field(
        False, description="true: /metrics needs an operator key like the other routes"
    )
    otlp_endpoint: str = Field(
        "", description="OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318; empty: off"
    )
    offers_cache_ttl_s: int = Field(3600, ge=1, description="how long cached offers are kept")
    serving_refresh_s: float = Field(
        10.0, gt=0, description="how often the API checks for a new champion or new features"
    )
    spool_replay_s: float = Field(
        2.0, gt=0, description="how often spooled events are retried while the database is down"
    )
    default_offers_k: int = Field(3, ge=1, le=50, description="offers returned when k is not given")
    precompute_k: int = Field(10, ge=1, le=50, description="offers kept per customer by precompute")
    precompute_chunk_rows: int = Field(
        20_000, ge=100, description="customers per precompute chunk (one Celery task each)"
    )
    offer_value_weight: float = Field(
        0.5, ge=0, le=1, description="0 ranks offers by propensity only, 1 by expected value only"
    )
    contact_cap: int = Field(3, ge=1, description="impressions of one offer allowed per window")
    contact_window_days: int = Field(30, ge=1, description="window of the contact cap, in days")
    # Retention (docs/security.md): the `retention` job purges older rows; 0 keeps them
    # forever. It refuses to start on one shorter than a window that reads those rows.
    retention_events_months: int = Field(0, ge=0, description="months events are kept; 0: ever")
    retention_transactions_months: int = Field(
        0, ge=0, description="months transactions are kept; 0: forever"
    )
    retention_contact_history_months: int = Field(
        0, ge=0, description="months contact history is kept; 0: forever"
    )

    # Impact (docs/impact.md): a universal control group, exposures, treated vs control.
    control_group_share: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="share of customers held out of every offer (recommended 0.02 to 0.05); "
        "membership is sticky and its history kept, so changing it never reshuffles the past",
    )
    control_group_salt: str = Field(
        "nextoffer-control",
        min_length=1,
        description="salt of the control group's hash; a new salt draws a new group",
    )
    exposures_enabled: bool = Field(
        True, description="record an exposure (at most one per customer a day) for each answer"
    )
    exposure_flush_s: float = Field(
        2.0, gt=0, description="how often buffered exposures are written to the database"
    )
    audit_enabled: bool = Field(
        True,
        description="record every read of one customer's data and every change in the "
        "append-only audit table (docs/security.md); false only for a throwaway deployment",
    )
    audit_flush_s: float = Field(
        2.0, gt=0, description="how often buffered audit entries are written to the database"
    )
    impact_window_days: int = Field(
        30, ge=1, le=365, description="days after an exposure in which outcomes are counted"
    )
    impact_period_days: int = Field(
        90, ge=1, le=730, description="days of exposures the impact job compares"
    )
    offer_ranking: Literal["propensity", "uplift"] = Field(
        "propensity",
        description="rank offers by propensity x value, or by uplift x value where an uplift "
        "model is the champion (propensity until one is)",
    )

    # Consent and contact policy (docs/consent.md).
    consent_required: bool = Field(
        False,
        description="true: a channel needs the customer's recorded consent (opt-in); false: "
        "only a recorded withdrawal closes it (opt-out)",
    )
    quiet_hours: str = Field(
        "",
        description="per channel, local hours with no offer: channel=HH[:MM]-HH[:MM], "
        "comma-separated (e.g. telesales=21-9); empty: none",
    )
    quiet_days: str = Field(
        "",
        description="per channel, local weekdays with no offer: channel=day|day, "
        "comma-separated (e.g. telesales=sat|sun); empty: none",
    )
    region_timezones: str = Field(
        "",
        description="time zone of each region, for customers without one: region=Zone, "
        "comma-separated (e.g. north=Europe/Berlin)",
    )
    default_timezone: str = Field(
        "UTC", description="time zone of customers whose zone and region's zone are unknown"
    )

    # Scheduling: Celery beat by default; Airflow's DAGs when `scheduler` says so. Crontab
    # fields are minute hour day-of-month month day-of-week, in UTC.
    scheduler: Literal["celery", "airflow"] = Field(
        "celery", description="which scheduler runs the schedule; the other stays idle"
    )
    ingest_source: str = Field(
        "", description="folder or s3://bucket/prefix the nightly ETL loads new files from"
    )
    ingest_mapping: str = Field(
        "",
        description="mapping file (YAML) the nightly ETL reads its source through: renames, "
        "value maps, wide holdings (docs/data-format.md); empty: files in the import format",
    )
    etl_cron: str = Field("0 2 * * *", description="nightly ETL (seed: daily 02:00 UTC)")
    retrain_cron: str = Field("0 3 * * 0", description="retraining (seed: Sunday 03:00 UTC)")
    backup_cron: str = Field("0 */6 * * *", description="base backups (seed: every 6 hours)")
    backup_verify_cron: str = Field("30 4 * * *", description="restore-test of the latest backup")
    kpi_refresh_cron: str = Field("5 * * * *", description="hourly KPI and analytics refresh")
    fallback_precompute_cron: str = Field(
        "15 * * * *", description="refresh of segment-popular fallback lists in the cache"
    )
    control_group_cron: str = Field(
        "0 5 * * *", description="daily sync of the universal control group to its share"
    )
    retention_cron: str = Field(
        "30 5 * * *", description="daily purge of history older than its retention setting"
    )
    worker_visibility_timeout_s: int = Field(
        0,
        ge=0,
        description="Redis broker: seconds before an unacknowledged task goes to another "
        "worker; 0: the longest task time limit plus 10 minutes",
    )
    worker_metrics_port: int = Field(
        9101, ge=0, le=65535, description="port of a worker's /metrics; 0 turns it off"
    )

    # Backups: grandfather-father-son retention as in the seed (7 days of every backup,
    # 4 weeks of dailies, 12 months of weeklies).
    backup_keep_all_days: int = Field(7, ge=0, description="days every backup is kept")
    backup_keep_daily_weeks: int = Field(4, ge=0, description="weeks one backup a day is kept")
    backup_keep_weekly_months: int = Field(12, ge=0, description="months one backup a week is kept")
    wal_archive: bool = Field(
        False, description="PostgreSQL only: archive WAL to BACKUP_URL for point-in-time recovery"
    )
    s3_endpoint_url: str = Field(
        "",
        description="S3 API endpoint for s3:// URLs (MinIO: http://minio:9000); empty: AWS, "
        "or AWS_ENDPOINT_URL; credentials come from the usual AWS_* variables",
    )
    wal_nextoffer_command: str = Field(
        "",
        description="how the PostgreSQL server runs nextoffer in the restore_command of a "
        "point-in-time restore (its host or container may differ); empty: the nextoffer "
        "beside this Python",
    )
    postgres_bin_dir: str = Field(
        "",
        description="folder of pg_dump, pg_restore, pg_basebackup; empty: the newest under "
        "/usr/lib/postgresql, else PATH",
    )
    alertmanager_url: str = Field(
        "", description="Alertmanager base URL; the console shows its open alerts"
    )
    console_secure_cookies: bool = Field(
        True,
        description="console cookies are Secure (__Host- prefixed): served over https only; "
        "false for plain-http development",
    )
    console_session_ttl_s: int = Field(
        8 * 3600, ge=300, description="how long a console login lasts"
    )

    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_json: bool | Literal["auto"] = Field(
        "auto",
        description="JSON lines logs: true, false (plain text), or auto (JSON unless stderr "
        "is a terminal)",
    )

    @property
    def quarantine_dir(self) -> Path:
        """Where rejected rows are written as CSV, one file per input file."""
        return self.var_dir / "quarantine"

    @property
    def spool_dir(self) -> Path:
        """Where accepted events wait while the database is unreachable."""
        return self.var_dir / "spool"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(env_settings, EnvSettingsSource)
        return (init_settings, env_settings, SecretFilesSource(settings_cls))


def describe_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, for docs and `--help`."""
    rows = []
    for name, field in Settings.model_fields.items():
        rows.append((f"{ENV_PREFIX}{name.upper()}", str(field.default), field.description or ""))
    return rows
