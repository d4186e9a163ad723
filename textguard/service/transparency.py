"""`GET /v1/transparency/report`: the transparency report for a period, from the audit store.

The same `textguard.report.aggregate` backs `textguard report`, so the endpoint and the CLI print the
same numbers. The aggregation runs in a worker thread: it is a handful of GROUP BY queries that can take
a while on a large store and must not stall the event loop that serves scoring requests.

Scoping: a key reads its own tenant's report; only a key with the `admin` scope may name another tenant
(`tenant=acme`) or read every tenant's decisions together (no `tenant`). Small counts are suppressed
with the server's `report_min_count` / `report_min_meetings`; a caller may ask for more suppression
(`min_count`), never less.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BeforeValidator

from textguard.errors import DataError
from textguard.report import Suppression, TransparencyReport, aggregate, parse_period, render
from textguard.service.errors import AuditUnavailable, Forbidden
from textguard.service.schemas import error_responses
from textguard.service.security import Principal

router = APIRouter(tags=["transparency"])

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_day(value: object) -> object:
    # Pydantic's lax date parsing reads "0.0" or "1700000000" as a Unix time; a report period is a
    # calendar day, so only the YYYY-MM-DD the schema documents is accepted.
    if isinstance(value, str) and not _ISO_DAY.fullmatch(value):
        raise ValueError("expected a day as YYYY-MM-DD")
    return value


IsoDay = Annotated[date, BeforeValidator(_iso_day)]

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "markdown": "text/markdown; charset=utf-8"}


def _invalid(field: str, message: str, value: str | None) -> RequestValidationError:
    # Raised as a validation error so the app's 422 handler names the field like any other.
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", field), "msg": message, "input": value}]
    )


def _period(period: str | None, since: date | None, until: date | None) -> tuple[date, date, str]:
    if period is not None:
        if since is not None or until is not None:
            raise _invalid("period", "give either period or since/until, not both", period)
        try:
            first, last = parse_period(period)
        except DataError as exc:
            raise _invalid("period", str(exc), period) from None
        return first, last, period
    if since is None:
        raise _invalid("since", "give period (2026-11, 2026-Q4, 2026) or since (YYYY-MM-DD)", None)
    last = until if until is not None else datetime.now(UTC).date()
    if since > last:
        raise _invalid("until", f"until ({last}) must be on or after since ({since})", last.isoformat())
    return since, last, f"{since}..{last}"


def report_tenant(principal: Principal | None, asked: str | None) -> str | None:
    """The tenant this caller may read: its own; an admin key any one, or all (None)."""
    if principal is None:
        return asked
    if "admin" in principal.scopes:
        return asked
    if asked is not None and asked != principal.tenant:
        raise Forbidden("this API key may read only its own tenant's report (the admin scope reads any)")
    return principal.tenant


@router.get(
    "/v1/transparency/report",
    response_model=TransparencyReport,
    responses={
        **error_responses(401, 403, 422, 429, 503),
        200: {"content": {"text/csv": {}, "text/markdown": {}, "text/html": {}}},
    },
)
async def transparency_report(
    request: Request,
    period: str | None = Query(None, description="a month (2026-11), quarter (2026-Q4) or year (2026), UTC"),
    since: IsoDay | None = Query(None, description="first UTC day, YYYY-MM-DD (included)"),
    until: IsoDay | None = Query(None, description="last UTC day, YYYY-MM-DD (included; default: today)"),
    tenant: str | None = Query(None, description="admin keys: this tenant only (default: every tenant)"),
    min_count: int | None = Query(None, ge=1, description="suppress counts below this (>= the server's)"),
    format: Literal["json", "csv", "markdown", "html"] = Query("json", description="rendering"),
) -> Any:
    """Decisions and actions by label, language, source; cross-tab; known content; time to action;
    exposure; reviews and appeals; model and policy versions (docs/transparency.md)."""
    first, last, label = _period(period, since, until)
    settings = getattr(request.app.state, "settings", None)
    floor = int(getattr(settings, "report_min_count", 10))
    if min_count is not None and min_count < floor:
        raise _invalid("min_count", f"min_count may not be below this server's {floor}", str(min_count))
    rule = Suppression(min_count or floor, int(getattr(settings, "report_min_meetings", 3)))
    scope = report_tenant(getattr(request.state, "principal", None), tenant)
    store = getattr(request.app.state, "audit", None)
    if store is None:
        raise AuditUnavailable("this server keeps no audit store", retry_after=None)
    try:
        result = await anyio.to_thread.run_sync(
            lambda: aggregate(store, first, last, tenant=scope, suppression=rule, period=label)
        )
    except DataError as exc:
        raise AuditUnavailable(str(exc), retry_after=30) from None
    if format == "json":
        return result
    rendered = render(result, format)
    response: Response
    if format == "html":
        response = HTMLResponse(rendered)
    else:
        response = PlainTextResponse(rendered, media_type=MEDIA_TYPES[format])
    return response
