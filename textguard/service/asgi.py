"""ASGI entry for process managers: settings come from TEXTGUARD_* environment variables.

    uvicorn --factory textguard.service.asgi:app_from_env --host 0.0.0.0 --port 8000 \
        --http textguard.service.connection:GuardedHttpToolsProtocol --no-proxy-headers

`textguard serve --workers N` uses this entry (each worker process builds its own app and model). Its
processes take turns through their first load (`textguard.service.startup_turns`); a process whose turn
has come starts the load (`textguard.service.preload`) before it imports the web stack and builds the
app, as a single `textguard serve` does, so the first process is ready about as soon as one alone.
Nothing heavy is imported at module level: uvicorn imports this module in every process before the
turns are decided.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def app_from_env() -> FastAPI:
    from textguard.service.logging import configure_logging
    from textguard.service.settings import ServiceSettings
    from textguard.service.startup_turns import StartupTurn

    settings = ServiceSettings()
    configure_logging(settings.log_level)
    turn = StartupTurn.from_environment() if settings.workers > 1 else None
    preload = None
    if turn is not None:
        from textguard.service.preload import Preload, verified_by_parent

        turn.acquire_blocking()
        preload = Preload(settings, None, verified=verified_by_parent(settings.model)).loaded

    from textguard.service.app import create_app

    return create_app(settings, preload=preload, turn=turn)
