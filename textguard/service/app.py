"""The app factory: `create_app(settings)` builds a FastAPI app; nothing exists before it is called.

Lifespan (start-up, then shutdown):
1. the inference worker thread starts; the model loads and warms up in the background, so /healthz
   answers at once and /readyz turns 200 only when the model can serve (a Kubernetes liveness probe
   never kills a pod that is still loading);
2. the audit store opens (textguard.audit), the meeting-context store (memory, or Redis for several
   replicas), the known-content hash lists (reloaded when their files change) and the language
   identifier load, and the library's `Moderator` is built from them: the one path from items to
   decisions that every route calls;
3. on shutdown: stop polling the registry, finish the queued work, close the audit and context stores.

`app.state` holds what routes need: settings, model_manager, batcher, policies, audit, audit_probe,
context, known_content, moderator, scoring, metrics, auth and rate_limits. Every /v1 route (ours and the
caption/transparency routers) is behind the API key check, a scope and the rate limit
(textguard.service.security).

Every HTTP request carries a deadline (the `deadline_ms` setting, or the client's `X-Deadline-Ms` within
bounds; textguard.service.deadline): the micro-batcher refuses at once what it cannot answer in time.

X-Forwarded-For is believed only from `trusted_proxies` (uvicorn's ProxyHeadersMiddleware, inside the
app so the server's own, which trusts 127.0.0.1 by default, can stay off: see
textguard.service.connection).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from textguard import __version__
from textguard.audit import AuditStore
from textguard.known_content import KnownContentReloader
from textguard.language import LanguageDetector
from textguard.moderation import ContextLimits, ContextStore, MemoryContextStore, Moderator
from textguard.policy import PolicySet
from textguard.service.batcher import MicroBatcher
from textguard.service.deadline import AdmissionGate, DeadlineMiddleware
from textguard.service.errors import install_error_handlers
from textguard.service.keys import Scope
from textguard.service.metrics import ObservabilityMiddleware, ServiceMetrics
from textguard.service.model_manager import LoadedModel, ModelManager
from textguard.service.ratelimit import RateLimits
from textguard.service.readiness import AuditProbe
from textguard.service.scoring import ScoringService
from textguard.service.security import ApiKeyAuth, BodyLimitMiddleware, WebSocketAdmission, require
from textguard.service.settings import ServiceSettings
from textguard.service.startup_turns import StartupTurn

if TYPE_CHECKING:
    from textguard.scorer import Scorer

logger = logging.getLogger("textguard.service")

#: Routers owned by other modules, included when present: (module, attribute, scope their routes need).
#: (The caption WebSocket is a plain Starlette route: WebSocketAdmission checks it.)
OPTIONAL_ROUTERS: tuple[tuple[str, str, Scope], ...] = (
    ("textguard.service.captions", "router", "score"),
    ("textguard.service.transparency", "router", "report"),
)


#: Routes admitted by deadline before their body is read (textguard.service.deadline.AdmissionGate).
SCORED_PATHS = frozenset({"/v1/score", "/v1/moderations"})


def create_app(
    settings: ServiceSettings,
    scorer: Scorer | None = None,
    preload: Future[LoadedModel] | None = None,
    turn: StartupTurn | None = None,
) -> FastAPI:
    """Build the service. `scorer` serves a prebuilt model (tests); otherwise `settings.model` loads, or
    `preload`, a load of it already under way (`textguard serve` starts it before building the app).
    `turn`: this process's startup turn (`--workers N`), already taken; released once the first load
    settled (None: taken at start-up from the environment, where one is set)."""
    # Fail before serving anything if the policy file is invalid: a policy typo must not start a server.
    policies = PolicySet.load(settings.policy)
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await _start(app, settings, scorer, policies, metrics, preload, turn)
            yield
        finally:
            await _stop(app)

    app = FastAPI(
        title="textguard",
        version=__version__,
        summary="Scores meeting chat and live captions for terrorist and violent extremist content.",
        lifespan=lifespan,
        # FastAPI's OpenTelemetry logs would record validation failures with the offending input:
        # that input can be the harmful message text itself.
        telemetry={"logs": False},
    )
    app.state.settings = settings
    app.state.policies = policies
    app.state.metrics = metrics
    app.state.auth = ApiKeyAuth(settings.api_keys)
    app.state.rate_limits = RateLimits.from_settings(settings)
    install_error_handlers(app)
    # Added last = outermost: every response, refusals included, is counted and logged (with the client
    # address X-Forwarded-For gives when a trusted proxy sent it).
    app.state.admission = AdmissionGate(on_refusal=metrics.shed.inc)
    app.add_middleware(
        DeadlineMiddleware,
        default_ms=settings.deadline_ms,
        min_ms=settings.deadline_min_ms,
        max_ms=settings.deadline_max_ms,
        gate=app.state.admission,
        scored_paths=SCORED_PATHS,
        retry_hold_ms=settings.retry_hold_ms,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(WebSocketAdmission)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))

    from textguard.service import reviews, routes_moderations, routes_ops, routes_score

    app.include_router(routes_ops.router)
    app.include_router(routes_score.router)
    app.include_router(routes_moderations.router)
    app.include_router(reviews.router)  # each route checks its own scope (review, score)
    for module_name, attribute, scope in OPTIONAL_ROUTERS:
        router = _optional_attribute(module_name, attribute)
        if router is not None:
            app.include_router(router, dependencies=[Depends(require(scope))])
    _document_runtime_limits(app, settings, policies)
    return app


def _document_runtime_limits(app: FastAPI, settings: ServiceSettings, policies: PolicySet) -> None:
    """Publish this server's policy names and size limits in its OpenAPI schema: they are settings, not
    constants, so the pydantic models cannot carry them."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI: the edits below apply once to the same dict
        components = schema.get("components", {}).get("schemas", {})
        for model in ("ScoreRequest", "ModerationRequest"):
            policy = components.get(model, {}).get("properties", {}).get("policy", {})
            for option in policy.get("anyOf", []):
                if option.get("type") == "string":
                    option["enum"] = policies.names
        messages = components.get("ScoreRequest", {}).get("properties", {}).get("messages")
        if messages is not None:
            messages["maxItems"] = settings.max_messages
        text = components.get("MessageIn", {}).get("properties", {}).get("text")
        if text is not None:
            text["maxLength"] = settings.max_text_chars
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _start(
    app: FastAPI,
    settings: ServiceSettings,
    scorer: Scorer | None,
    policies: PolicySet,
    metrics: ServiceMetrics,
    preload: Future[LoadedModel] | None,
    turn: StartupTurn | None,
) -> None:
    if settings.audit_hash_key_generated:
        logger.warning(
            "no audit hash key configured (TEXTGUARD_AUDIT_HASH_KEY[_FILE]): using a random per-process key; "
            "audit hashes will not match across restarts or replicas"
        )
    if not settings.api_keys.keys and settings.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("API keys are disabled on a non-loopback address: set TEXTGUARD_API_KEYS_FILE")
    manager = ModelManager(settings, scorer=scorer, metrics=metrics, preload=preload)
    workers, threads = settings.inference_layout()
    batcher = MicroBatcher(
        lambda: manager.current,
        max_batch_size=settings.batch_max_size,
        max_queue=settings.max_queue,
        metrics=metrics,
        workers=workers,
        gather_seconds=settings.gather_seconds(),
        drain_max=settings.batch_drain_max,
        # With inference processes each process sets its own threads, and this one never imports torch.
        on_worker_start=lambda: (
            _set_torch_threads(threads)
            if settings.backend == "torch" and not settings.inference_processes
            else None
        ),
    )
    languages = LanguageDetector()
    app.state.model_manager = manager
    app.state.batcher = batcher
    batcher.start()
    # With several server processes, one loads at a time (`startup_turns`), until its load settled.
    if turn is None and settings.workers > 1:
        turn = StartupTurn.from_environment()
    if turn is not None:
        await turn.acquire()
    # The model loads in the background from here on; the rest of start-up overlaps with it.
    await manager.start()
    audit = await asyncio.to_thread(AuditStore.from_settings, settings)
    app.state.audit = audit
    if audit is not None and hasattr(audit, "health"):
        app.state.audit_probe = AuditProbe(audit)
    context = await asyncio.to_thread(open_context_store, settings)
    app.state.context = context
    known_content = None
    if settings.hash_lists is not None:
        # A bad store at start is an error; later a bad edit keeps the previous lists (and logs it).
        known_content = await asyncio.to_thread(
            KnownContentReloader, settings.hash_lists, check_interval_s=settings.hash_lists_poll_seconds
        )
        logger.info("hash lists loaded", extra={"fields": {"version": known_content.index.version}})
    app.state.known_content = known_content
    moderator = Moderator(
        policies,
        languages=languages,
        context=context,
        known_content=known_content,
        audit=audit,
        metrics=metrics,
    )
    app.state.moderator = moderator
    app.state.scoring = ScoringService(settings, batcher, moderator, app.state.admission)
    await asyncio.to_thread(languages.load)
    if settings.workers > 1:
        # The processes share one listening socket, and uvicorn accepts on it only once this start-up
        # returns: a process still loading stays out of the kernel's rotation instead of answering 503
        # beside a sibling that is ready. (One process answers /readyz 503 while it loads.)
        await manager.settled()
    if turn is not None:
        turn.release()
    logger.info("service starting", extra={"fields": {"settings": settings.redacted()}})


async def _stop(app: FastAPI) -> None:
    # Tolerates a start-up that failed half-way (e.g. an unreachable audit database).
    manager = getattr(app.state, "model_manager", None)
    if manager is not None:
        await manager.stop()
    batcher = getattr(app.state, "batcher", None)
    if batcher is not None:
        await asyncio.to_thread(batcher.stop)
    for name in ("audit", "context"):
        store = getattr(app.state, name, None)
        if store is not None:
            await asyncio.to_thread(store.close)
    logger.info("service stopped")


def open_context_store(settings: ServiceSettings) -> ContextStore:
    """The meeting-context store the settings name: this process's memory, or Redis (shared by replicas)."""
    limits = ContextLimits.from_settings(settings)
    if settings.context_backend == "redis":
        from textguard.errors import ConfigError
        from textguard.moderation.redis_context import RedisContextStore

        store = RedisContextStore(settings.context_redis_url, limits)
        if not store.ping():
            raise ConfigError(
                f"context_redis_url {settings.redacted()['context_redis_url']} does not answer: start Redis "
                "or use context_backend memory"
            )
        return store
    if settings.workers > 1:
        logger.warning(
            "meeting context is kept per worker process: with several workers a speaker's messages may be "
            "split between them; set context_backend redis"
        )
    return MemoryContextStore(limits)


def _optional_attribute(module_name: str, attribute: str) -> Any:
    """`module.attribute`, or None when that module does not exist (a missing dependency still raises)."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, attribute)


def _set_torch_threads(threads: int) -> None:
    """torch's intra-op threads for the calling worker thread (OpenMP's setting is per thread)."""
    import torch

    torch.set_num_threads(threads)
