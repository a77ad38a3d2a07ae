"""The composition root: every service of one process, built once from Settings.

Each entry point (the ASGI app, the CLI, a Celery worker, an Airflow task) calls
`build_platform` once and hands the result, or its `services`, to the use cases. Nothing
else constructs engines, caches, registries or job runners. Backends are created here but
not contacted until first use, so building a platform never fails on a dead backend.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from nextoffer.cache import Cache, make_cache
from nextoffer.config import Settings
from nextoffer.observe.metrics import ApiMetrics
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.serving.api_keys import ApiKeyVerifier
from nextoffer.serving.events import EventWriter, start_replayer
from nextoffer.serving.experiment_book import ExperimentBook
from nextoffer.serving.offers import OfferService
from nextoffer.serving.rate_limit import RateLimiter
from nextoffer.serving.state import ServingState
from nextoffer.serving.tokens import TokenVerifier, resolve_jwt_secret
from nextoffer.store.engine import make_engine
from nextoffer.store.runs import utcnow
from nextoffer.usecases.context import Clock, JobStarter, Services

if TYPE_CHECKING:
    from nextoffer.store import Engine

log = logging.getLogger(__name__)


@dataclass
class Platform:
    """One process's services: what the use cases get, plus what only entry points use."""

    services: Services
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        """The settings it was built from."""
        return self.services.settings

    # Built on first use: a CLI command that never serves must not create the JWT secret.
    @cached_property
    def jwt_secret(self) -> str:
        """The key that signs login tokens (the setting, or one generated per machine)."""
        return resolve_jwt_secret(self.settings)

    @cached_property
    def key_verifier(self) -> ApiKeyVerifier:
        """Checks machines' API keys."""
        return ApiKeyVerifier(self.services.engine, self.settings.auth_cache_s)

    @cached_property
    def token_verifier(self) -> TokenVerifier:
        """Checks people's login tokens."""
        return TokenVerifier(self.services.engine, self.jwt_secret, self.settings.auth_cache_s)

    @cached_property
    def limiter(self) -> RateLimiter:
        """Requests per minute per caller, shared through the cache."""
        return RateLimiter(self.services.cache, self.settings.rate_limit_per_minute)

    def start_serving(self) -> None:
        """Load the champions, then keep them fresh and replay spooled events in the background."""
        services = self.services
        services.state.refresh()
        interval = services.settings.serving_refresh_s
        self._threads.append(_every(interval, self._stop, self._refresh))
        self._threads.append(
            start_replayer(services.events, services.settings.spool_replay_s, self._stop)
        )
        log.info(
            "serving offers %s, churn %s; cache %s",
            services.state.offers.label if services.state.offers else "none",
            services.state.churn.label if services.state.churn else "none",
            services.cache.name,
        )

    def close(self) -> None:
        """Stop background work and release the cache; running jobs finish on their own."""
        self._stop.set()
        self.services.jobs.shutdown()
        self.services.cache.close()

    def _refresh(self) -> None:
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
    """Build every service from `settings`; `engine`/`cache` replace the configured ones."""
    engine = engine or make_engine(settings.database_url, pool_size=pool_size)
    cache = cache or make_cache(settings.cache_url)
    registry = ModelRegistry.from_settings(settings)
    metrics = ApiMetrics()
    state = ServingState(engine, registry)
    offers = OfferService(
        engine,
        cache,
        state,
        settings,
        on_source=lambda source: metrics.offers_served.labels(source).inc(),
        on_cache=lambda hit: metrics.cache_requests.labels(
            "error" if hit is None else "hit" if hit else "miss"
        ).inc(),
    )
    services = Services(
        settings=settings,
        engine=engine,
        cache=cache,
        registry=registry,
        clock=clock,
        state=state,
        offers=offers,
        events=EventWriter(engine, settings.spool_dir),
        experiments=ExperimentBook(engine, cache, settings.serving_refresh_s),
        metrics=metrics,
        jobs=_job_runner(engine, settings, registry, state, offers),
    )
    return Platform(services)


def _job_runner(
    engine: Engine,
    settings: Settings,
    registry: ModelRegistry,
    state: ServingState,
    offers: OfferService,
) -> JobStarter:
    from nextoffer.jobs.context import JobContext
    from nextoffer.jobs.dispatch import JobRunner

    def after(_kind: str) -> None:
        # A job started here: pick up new models and data at once, drop old answers.
        state.refresh()
        offers.invalidate()

    return JobRunner(JobContext(engine, settings, registry), after=after)


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
