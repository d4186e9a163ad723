"""Prometheus metrics (one registry per app, so several apps in one test process never collide)
and the ASGI middleware that times every request and writes one access-log line for it.

Label values are bounded: routes are path templates ("/v1/score"), never raw paths, and no metric or
log line carries message text.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_logger = logging.getLogger("textguard.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "textguard_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "textguard_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "textguard_batch_size", "texts per forward pass", buckets=BATCH_BUCKETS, registry=r
        )
        self.drain_size = Histogram(
            "textguard_batch_drain_texts",
            "texts collected by one drain of the inference queue",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "textguard_inference_seconds",
            "tokenise + forward + activation time per drain",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "textguard_queue_wait_seconds",
            "time a request waits before its drain starts",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("textguard_queue_depth", "texts waiting for inference", registry=r)
        self.shed = Counter("textguard_overloaded", "requests refused because the queue was full", registry=r)
        self.messages = Counter(
            "textguard_messages", "scored messages by policy and action", ["policy", "action"], registry=r
        )
        self.flags = Counter(
            "textguard_label_flags",
            "flagged labels by label and resulting action",
            ["label", "action"],
            registry=r,
        )
        self.known_content = Counter(
            "textguard_known_content_matches",
            "known-content hash-list matches by list and hash kind",
            ["list_id", "kind"],
            registry=r,
        )
        self.model_info = Gauge(
            "textguard_model_info",
            "the model being served (value 1)",
            ["name", "version", "alias"],
            registry=r,
        )
        self.model_swaps = Counter("textguard_model_swaps", "hot swaps to a new model version", registry=r)
        self.model_load_failures = Counter(
            "textguard_model_load_failures", "model loads or registry polls that failed", registry=r
        )

    def record_decisions(self, policy: str, decisions: Iterable[tuple[list[str], str]]) -> None:
        for labels, action in decisions:
            self.messages.labels(policy, action).inc()
            for label in labels:
                self.flags.labels(label, action).inc()

    def record_matches(self, matches: Iterable[tuple[str, str]]) -> None:
        for list_id, kind in matches:
            self.known_content.labels(list_id, kind).inc()

    def set_model(self, name: str, version: str, alias: str | None) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version, alias or "").set(1)

    def exposition(self) -> bytes:
        # With several worker processes, prometheus-client's multiprocess mode aggregates their files.
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)
            return generate_latest(registry)
        return generate_latest(self.registry)


class ObservabilityMiddleware:
    """Times and counts each HTTP request by route template and status, logs one line, echoes a request id."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("ascii"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            state = scope.get("state", {})
            access_logger.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": state.get("client_id"),
                        "messages": state.get("n_messages"),
                        "actions": state.get("actions"),
                        "model_version": state.get("model_version"),
                    }
                },
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        # Refused before routing (admission by deadline) under a route's own path.
        path = scope.get("state", {}).get("route_path")
    return path if isinstance(path, str) else "unmatched"
