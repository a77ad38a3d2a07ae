"""The ASGI app for uvicorn workers (`nextoffer serve`): the API with the console on it."""

from __future__ import annotations

from nextoffer.api.app import create_app
from nextoffer.config import Settings
from nextoffer.observe.logs import configure_logging
from nextoffer.web.app import mount_console

settings = Settings()
configure_logging(settings.log_level, json_lines=settings.log_json)
app = mount_console(create_app(settings), settings)
