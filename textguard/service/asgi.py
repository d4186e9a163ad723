"""ASGI entry for process managers: settings come from TEXTGUARD_* environment variables.

    uvicorn --factory textguard.service.asgi:app_from_env --host 0.0.0.0 --port 8000 \
        --http textguard.service.connection:GuardedHttpToolsProtocol --no-proxy-headers

`textguard serve --workers N` uses this entry (each worker process builds its own app and model).
"""

from __future__ import annotations

from fastapi import FastAPI

from textguard.service.app import create_app
from textguard.service.logging import configure_logging
from textguard.service.settings import ServiceSettings


def app_from_env() -> FastAPI:
    settings = ServiceSettings()
    configure_logging(settings.log_level)
    return create_app(settings)
