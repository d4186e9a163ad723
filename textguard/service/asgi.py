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
    from textguard.service.preload import first_worker_for, start_first_worker
    from textguard.service.startup_turns import StartupTurn

    # Set only by `textguard serve --workers N`, whose processes take turns through their first load.
    turn = StartupTurn.from_environment()
    first = None
    if turn is not None:
        turn.acquire_blocking()
        first = start_first_worker()  # before the settings' 0.3 s import, as `textguard serve` does

    from textguard.service.logging import configure_logging
    from textguard.service.settings import ServiceSettings

    try:
        settings = ServiceSettings()
    except BaseException:
        first_worker_for(None, first)
        raise
    configure_logging(settings.log_level)
    preload = None
    if turn is not None and settings.workers > 1:
        from textguard.service.preload import Preload, verified_by_parent

        worker = first_worker_for(settings, first)
        verified = verified_by_parent(settings.model)
        preload = Preload(settings, None, verified=verified, first_worker=worker).loaded
    elif turn is not None:  # not one of several processes after all
        first_worker_for(None, first)
        turn.release()
        turn = None

    from textguard.service.app import create_app

    return create_app(settings, preload=preload, turn=turn)
