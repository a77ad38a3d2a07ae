"""The ASGI app for uvicorn workers (`nextoffer serve`): settings from the environment."""

from __future__ import annotations

from nextoffer.api.app import create_app
from nextoffer.config import Settings
from nextoffer.observe.logs import configure_logging

settings = Settings()
configure_logging(settings.log_level, json_lines=settings.log_json)
app = create_app(settings)
