"""The one ASGI app `nextoffer serve` runs: the API and the console side by side on one platform."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter

from nextoffer.api.app import API_METADATA, install_api, install_edges
from nextoffer.cache import Cache
from nextoffer.config import Settings
from nextoffer.observe.logs import configure_logging
from nextoffer.platform import build_platform
from nextoffer.store import Engine
from nextoffer.web.app import install_console


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    cache: Cache | None = None,
    span_exporter: SpanExporter | None = None,
) -> FastAPI:
    """Build the app. Backends are created here but not contacted until startup."""
    platform = build_platform(settings, engine=engine, cache=cache)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        platform.start_serving()
        yield
        platform.close()

    app = FastAPI(lifespan=lifespan, **API_METADATA)
    install_api(app, platform)
    install_console(app, platform)
    install_edges(app, platform, span_exporter)
    return app


def app_from_environment() -> FastAPI:
    """The app for a uvicorn worker (`nextoffer serve`): settings from the environment."""
    settings = Settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return create_app(settings)
