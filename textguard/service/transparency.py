"""`GET /v1/transparency/report`: the transparency-report figures for a period, from the audit store.

The same `textguard.report.aggregate` backs `textguard report`, so the endpoint and the CLI print the
same numbers. The aggregation runs in a worker thread: it is a handful of GROUP BY queries that can take
a while on a large store and must not stall the event loop that serves scoring requests.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError

from textguard.errors import DataError
from textguard.report import TransparencyReport, aggregate
from textguard.service.errors import AuditUnavailable
from textguard.service.schemas import error_responses

router = APIRouter(tags=["transparency"])


@router.get(
    "/v1/transparency/report",
    response_model=TransparencyReport,
    responses=error_responses(401, 422, 429, 503),
)
async def transparency_report(
    request: Request,
    since: date = Query(description="first UTC day of the period, YYYY-MM-DD (included)"),
    until: date = Query(description="last UTC day of the period, YYYY-MM-DD (included)"),
) -> Any:
    """Decisions and actions by label, language, source, day and policy; model versions; meetings."""
    if since > until:
        # Raised as a validation error so the app's 422 handler names the field like any other.
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "until"),
                    "msg": f"until ({until}) must be on or after since ({since})",
                    "input": until.isoformat(),
                }
            ]
        )
    store = getattr(request.app.state, "audit", None)
    if store is None:
        raise AuditUnavailable("this server keeps no audit store", retry_after=None)
    try:
        return await anyio.to_thread.run_sync(aggregate, store, since, until)
    except DataError as exc:
        raise AuditUnavailable(str(exc), retry_after=30) from None
