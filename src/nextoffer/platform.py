"""The composition root: every service of one process, built once from Settings.

Each entry point (the ASGI app, the CLI, a Celery worker, an Airflow task) calls
`build_platform` once and hands the platform, its `services` or its `job_context()` to the
use cases and jobs. Nothing else constructs engines, caches, registries or job runners.
Backends are created here but not contacted until first use, and the heavy parts (the
model registry, which imports MLflow; the JWT secret, which may create a file) are built
the first time something asks for them, so `nextoffer keys list` stays quick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from nextoffer.cache import Cache, make_cache
from nextoffer.cache.prefetch import PrefetchingCache
from nextoffer.config import Settings
from nextoffer.jobs.context import JobContext, Progress
from nextoffer.observe.metrics import ApiMetrics
from nextoffer.registry.lazy import LazyRegistry
from nextoffer.registry.serving_mirror import ServingFiles
from nextoffer.scoring.contact import contact_rules
from nextoffer.scoring.uplift import ranks_by_uplift
from nextoffer.serving.api_keys import ApiKeyVerifier
from nextoffer.serving.audit import AuditTrail, audit_spool_dir
from nextoffer.serving.events import EventWriter, start_replayer
from nextoffer.serving.experiment_book import ExperimentBook
from nextoffer.serving.exposures import ExposureRecorder, exposure_spool_dir, start_flusher
from nextoffer.serving.login_throttle import LoginThrottle
from nextoffer.serving.logins import Logins
from nextoffer.serving.offers import OfferService
from nextoffer.serving.password_gate import HashGate, register_gate_gauges
from nextoffer.serving.rate_limit import RateLimiter
from nextoffer.serving.state import ServingState
from nextoffer.serving.tokens import TokenVerifier, resolve_jwt_secret
from nextoffer.store import Engine
from nextoffer.store.engine import make_engine
from nextoffer.store.replica import ReadReplica
from nextoffer.store.runs import utcnow
from nextoffer.usecases.context import Clock, Services
from nextoffer.usecases.privacy import reapply_at_start

if TYPE_CHECKING:
    from nextoffer.pipelines.precompute import ChunkRunner
    from nextoffer.registry.mlflow_registry import ModelRegistry

log = logging.getLogger(__name__)

FLUSH_JOIN_S = 10.0
"""How long closing waits for the exposure flusher's last write."""
READ_POOL_SIZE = 10
"""Connections to the read replica per process (as many again may overflow)."""


class Platform:
    """One process's services: what the use cases get, plus what only entry points use."""

    def __init__(self, settings: Settings, engine: Engine, cache: Cache, clock: Clock) -> None:
        self.settings = settings
        self.engine = engine
        self.cache = cache
        self.clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._flusher: threading.Thread | None = None

    @cached_property
    def replica(self) -> ReadReplica | None:
        """The read replica (NEXTOFFER_DATABASE_READ_URL), None when reads use the primary."""
        url = self.settings.database_read_url
        return ReadReplica(url, self.engine, pool_size=READ_POOL_SIZE) if url else None

    @property
    def read_engine(self) -> Engine:
        """Where read-only queries go: the replica's engine, else the primary's."""
        return self.replica.engine if self.replica else self.engine

    @cached_property
    def registry(self) -> ModelRegistry:
        """The model registry (NEXTOFFER_REGISTRY_URI, NEXTOFFER_ARTIFACTS_URL)."""
        from nextoffer.registry.mlflow_registry import ModelRegistry

        return ModelRegistry.from_settings(self.settings, self.engine)

    @cached_property
    def services(self) -> Services:
        """What the use cases work with: serving state, answer chain, events, jobs..."""
        # Batches of answers read every customer's cached entries in one round trip first.
        settings, engine, cache = self.settings, self.engine, PrefetchingCache(self.cache)
        contact_rules(settings)  # a contact-policy setting that does not parse fails here
        metrics = ApiMetrics()
        # MLflow is opened only when an operator action needs it: serving reads the
        # champions from the database and the registry's serving copy (serving.state).
        registry = LazyRegistry(lambda: self.registry)
        state = ServingState(
            engine,
            registry,
            files=ServingFiles.from_settings(settings),
            uplift_in_use=ranks_by_uplift(settings),
        )
        offers = OfferService(
            self.read_engine,
            cache,
            state,
            settings,
            on_source=lambda source: metrics.offers_served.labels(source).inc(),
            on_cache=lambda hit: metrics.cache_requests.labels(
                "error" if hit is None else "hit" if hit else "miss"
            ).inc(),
            primary=engine if self.replica else None,
        )

        def after_job(_name: str) -> None:
            # A job run by this process: pick up new models and data at once, drop old answers.
            state.refresh()
            offers.invalidate()

        from nextoffer.jobs.dispatch import JobRunner

        return Services(
            settings=settings,
            engine=engine,
            read_engine=self.read_engine,
            cache=cache,
            registry=registry,
            clock=self.clock,
            state=state,
            offers=offers,
            events=EventWriter(engine, settings.spool_dir),
            experiments=ExperimentBook(engine, cache, settings.serving_refresh_s),
            metrics=metrics,
            jobs=JobRunner(self.job_context(), after=after_job),
            exposures=ExposureRecorder(
                engine,
                exposure_spool_dir(settings.spool_dir),
                share=settings.control_group_share,
                enabled=settings.exposures_enabled,
                on_stored=lambda arm, source, n: metrics.exposures_recorded.labels(arm, source).inc(
                    n
                ),
                on_spooled=metrics.exposures_spooled.inc,
            ),
            audit=self.audit,
        )

    def job_context(
        self,
        *,
        fan_out: Callable[[int, int | None], ChunkRunner] | None = None,
        progress: Progress | None = None,
    ) -> JobContext:
        """What a job runs with here; the registry is opened only if the job needs it."""
        registry = self.__dict__.get("registry")  # only if already built: MLflow is slow
        return JobContext(
            self.engine,
            self.settings,
            registry,
            fan_out=fan_out,
            progress=progress or Progress(),
        )

    # Built on first use: a CLI command that never serves must not create the JWT secret.
    @cached_property
    def jwt_secret(self) -> str:
        """The key that signs login tokens (the setting, or one generated per machine)."""
        return resolve_jwt_secret(self.settings)

    @cached_property
    def audit(self) -> AuditTrail:
        """The audit trail: entries queued, written in batches (NEXTOFFER_AUDIT_ENABLED)."""
        from nextoffer.serving.tokens import resolve_privacy_key

        settings = self.settings
        return AuditTrail(
            self.engine,
            audit_spool_dir(settings.spool_dir),
            lambda: resolve_privacy_key(settings),
            enabled=settings.audit_enabled,
        )

    @cached_property
    def key_verifier(self) -> ApiKeyVerifier:
        """Checks machines' API keys."""
        return ApiKeyVerifier(self.engine, self.settings.auth_cache_s)

    @cached_property
    def token_verifier(self) -> TokenVerifier:
        """Checks people's login tokens."""
        return TokenVerifier(self.engine, self.jwt_secret, self.settings.auth_cache_s)

    @cached_property
    def limiter(self) -> RateLimiter:
        """Requests per minute per caller, shared through the cache."""
        return RateLimiter(self.cache, self.settings.rate_limit_per_minute)

    @cached_property
    def logins(self) -> Logins:
        """Password logins: backoff per (username, address) in the cache, hashing queued."""
        settings = self.settings
        throttle = LoginThrottle(
            self.cache, free=settings.login_free_failures, cap_s=settings.login_lock_max_s
        )
        gate = HashGate(settings.login_hash_concurrency, settings.login_hash_wait_s)
        register_gate_gauges(self.services.metrics, gate)
        return Logins(self.engine, throttle, gate)

    def start_serving(self) -> None:
        """Load the champions, then keep them fresh, replay spooled events and write exposures.

        All three in background threads; exposures only when NEXTOFFER_EXPOSURES_ENABLED.
        """
        services = self.services
        # A restored database may hold customers erased since: they go before any answer.
        reapply_at_start(services)
        services.state.refresh()
        interval = self.settings.serving_refresh_s
        self._threads.append(_every(interval, self._stop, self._refresh))
        self._threads.append(
            start_replayer(services.events, self.settings.spool_replay_s, self._stop)
        )
        if services.exposures.enabled:
            self._flusher = start_flusher(
                services.exposures, self.settings.exposure_flush_s, self._stop
            )
            self._threads.append(self._flusher)
        if self.audit.enabled:
            flush_s = self.settings.audit_flush_s
            self._threads.append(start_flusher(self.audit, flush_s, self._stop, "audit"))
        log.info(
            "serving offers %s, churn %s; cache %s",
            services.state.offers.label if services.state.offers else "none",
            services.state.churn.label if services.state.churn else "none",
            self.cache.name,
        )

    def close(self) -> None:
        """Stop background work and release the cache; running jobs finish on their own.

        Exposures still queued are written (or spooled) before this returns.
        """
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=FLUSH_JOIN_S)  # it flushes once more as it stops
        if "services" in self.__dict__:
            self.services.jobs.shutdown()
            try:
                self.services.exposures.flush()
            except Exception:
                log.exception("exposures queued at shutdown were not written")
        if "audit" in self.__dict__:
            try:
                self.audit.flush()
            except Exception:
                log.exception("audit entries queued at shutdown were not written")
        self.cache.close()
        if "replica" in self.__dict__ and self.replica is not None:
            self.replica.dispose()

    def _refresh(self) -> None:
        # Answers forgotten while the cache was away are dropped once it is back, even
        # when this process serves no request to do it first.
        self.services.offers.flush_pending()
        state = self.services.state
        before = state.stamp
        state.refresh()
        if state.stamp != before:
            log.info("serving state changed: %s", state.stamp)


def build_platform(
    settings: Settings,
    *,
    engine: Engine | None = None,
    cache: Cache | None = None,
    clock: Clock = utcnow,
    pool_size: int = 10,
) -> Platform:
    """A platform from `settings`; `engine`/`cache` replace the configured ones (tests)."""
    return Platform(
        settings,
        engine or make_engine(settings.database_url, pool_size=pool_size),
        cache or make_cache(settings.cache_url),
        clock,
    )


def _every(interval_s: float, stop: threading.Event, work: Callable[[], None]) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                work()
            except Exception:
                log.exception("background refresh failed")

    thread = threading.Thread(target=loop, name="serving-refresh", daemon=True)
    thread.start()
    return thread
