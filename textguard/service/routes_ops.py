"""Operations endpoints: liveness, readiness, Prometheus metrics and the model/policy description.

/healthz and /readyz are unauthenticated (Kubernetes probes), as is /metrics (scraped inside the
cluster; it carries counts only, never text). /readyz gives filesystem paths in its reasons only to a
key with the admin scope. /v1/model is behind the API key like the rest of /v1.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from textguard.labels import TAXONOMY_VERSION
from textguard.service.deps import Caller, Models
from textguard.service.errors import AuditUnavailable, NotReady, ServiceError, error_response
from textguard.service.readiness import redact_paths
from textguard.service.schemas import ModelDescription, error_responses
from textguard.service.security import optional_principal

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Liveness: the event loop answers and the inference worker thread is running."""
    batcher = request.app.state.batcher
    if not batcher.alive:
        return error_response(ServiceError("the inference worker has stopped; restart the process"))
    return JSONResponse({"status": "ok"})


@router.get("/readyz", responses=error_responses(503))
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the model is loaded and warmed up, the inference thread runs, the audit store can write."""
    manager = request.app.state.model_manager
    error: ServiceError | None = None
    if not manager.ready or not request.app.state.batcher.alive:
        error = NotReady(manager.error or "the model is still loading", retry_after=2)
    elif getattr(manager.current.scorer, "processes", 1) == 0:
        # Every inference process died (one is being replaced): route traffic elsewhere meanwhile.
        error = NotReady("no inference process is running; a replacement is starting", retry_after=2)
    else:
        probe = getattr(request.app.state, "audit_probe", None)
        problem = await probe.problem() if probe is not None else None
        if problem is not None:
            error = AuditUnavailable(problem, retry_after=5)
    if error is None:
        return JSONResponse({"status": "ready", "model": manager.info})
    caller = optional_principal(request)
    if caller is None or not caller.allows("admin"):
        error.message = redact_paths(error.message)
    return error_response(error)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: counts and timings, never message text."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/model", response_model=ModelDescription, responses=error_responses(401, 403, 429, 503))
async def model(request: Request, models: Models, caller: Caller) -> Any:
    """The model being served (name, version, alias, labels, thresholds, temperature) and the policies."""
    current = models.current
    spec = current.scorer.spec
    return ModelDescription(
        name=current.name,
        version=current.version,
        alias=current.alias,
        labels=list(spec.labels),
        taxonomy_version=spec.taxonomy_version or TAXONOMY_VERSION,
        thresholds=dict(spec.thresholds),
        temperature=spec.temperature,
        max_length=spec.max_length,
        backend=current.scorer.backend_name,
        precision=current.scorer.precision.precision,
        precision_reason=current.scorer.precision.reason,
        policies=request.app.state.policies.describe(),
    )
