"""ASGI entry for process managers that import a module-level `app` (gunicorn, hypercorn, uvicorn).

Settings come from TEXTGUARD_* environment variables (see docs/serving.md). The app is built here,
at import, because that is this file's whole job; the library itself builds nothing at import time.

    uvicorn serving.asgi:app --host 0.0.0.0 --port 8000 --no-proxy-headers \
        --http textguard.service.connection:GuardedHttpToolsProtocol
    uvicorn --factory textguard.service.asgi:app_from_env ...   # same, without this file

(The two flags give the connection limits `textguard serve` has: docs/serving.md, "Running behind a
proxy".)
"""

from __future__ import annotations

from textguard.service.asgi import app_from_env

app = app_from_env()
