"""JSON logs: one object per line on stderr, for the service and for uvicorn's own loggers.

Only structured fields the code chooses go into a line (`extra={"fields": {...}}`); exception
messages are dropped (type and frames only) because they can quote the request text. Message text
never reaches a log line from this service.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
_CAPTION_PATH = re.compile(r"^/v1/meetings/[^/]*/captions$")


class RedactWebSocketPaths(logging.Filter):
    """uvicorn logs every WebSocket handshake with its raw path and query string, and the caption path
    carries the meeting id (which the audit store only keeps as a keyed hash): log the route instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "WebSocket %s" in record.msg and isinstance(record.args, tuple):
            record.args = tuple(
                _route_of(arg) if index == 1 and isinstance(arg, str) else arg
                for index, arg in enumerate(record.args)
            )
        return True


class DropWireLevelLogs(logging.Filter):
    """The websockets library (which uvicorn hands its logger) logs the handshake at DEBUG with every
    header, the API key included, and each frame's payload, the caption text included: never write those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO or not _from_websockets_library(record.pathname)


def _from_websockets_library(pathname: str) -> bool:
    parts = Path(pathname).parts
    return "websockets" in parts and "uvicorn" not in parts


def _route_of(path: str) -> str:
    path = path.split("?", 1)[0]
    return "/v1/meetings/{meeting_id}/captions" if _CAPTION_PATH.match(path) else path


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({key: value for key, value in fields.items() if value is not None})
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["frames"] = traceback.format_list(traceback.extract_tb(record.exc_info[2]))
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(level: str = "info") -> dict[str, Any]:
    """A dictConfig for textguard and uvicorn loggers (pass it to uvicorn as `log_config`)."""
    upper = level.upper()
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
        "filters": ["websocket_paths", "wire_level"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {
            "websocket_paths": {"()": RedactWebSocketPaths},
            "wire_level": {"()": DropWireLevelLogs},
        },
        "handlers": {"stderr": handler},
        "loggers": {
            "textguard": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            # Our middleware writes the access line (with route, client id and decisions); uvicorn's
            # would duplicate it with the raw path.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def configure_logging(level: str = "info") -> None:
    """JSON logging for a server process; also silences progress bars that would break one-object-per-line."""
    import logging.config
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.config.dictConfig(logging_config(level))
