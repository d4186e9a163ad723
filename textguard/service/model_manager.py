"""Loads the model once, warms it up, reports readiness, and swaps in new versions without failing a request.

What is served is one immutable `LoadedModel` (scorer + name/version/alias). The batcher reads the
reference once per drain, so a swap is one attribute assignment: requests already drained finish on the
old model, later ones use the new one, none fail. A new version is loaded and warmed up in a thread
*before* the swap, while the old one keeps serving.

What is polled (every `model_poll_seconds`):
- `models:/<name>@<alias>`: the registry's version behind the alias (promotion = hot swap);
- a local artefact directory: the fingerprint of its `textguard.json` (which records every file's
  sha256), so a re-mounted volume or a replaced artefact is picked up too;
- `models:/<name>/<version>` and `runs:/...` are immutable and not polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from textguard.errors import ModelLoadError, TextguardError
from textguard.labels import LABELS
from textguard.moderation.decision import ServedModel
from textguard.policy import PolicySet, check_against_model
from textguard.scorer import Scorer, warm_up
from textguard.service.errors import NotReady
from textguard.service.heap import freeze_long_lived, refreeze_once_released
from textguard.spec import SPEC_FILENAME, spec_fingerprint

if TYPE_CHECKING:
    from textguard.inference_worker import WorkerProcess
    from textguard.scorer import ScoringModel
    from textguard.service.metrics import ServiceMetrics
    from textguard.service.settings import ServiceSettings

logger = logging.getLogger("textguard.service.model")

#: Seconds a replaced model keeps its worker processes after a hot swap, so that a drain which took the
#: old model just before the swap still finds them (then `close` waits for the drains in progress).
SWAP_CLOSE_GRACE_S = 2.0


@dataclass(frozen=True)
class ModelRef:
    """What the `model` setting points at, and how to tell that it changed."""

    uri: str
    name: str
    alias: str | None = None
    fixed_version: str | None = None

    @property
    def is_registry_alias(self) -> bool:
        return self.alias is not None

    @property
    def is_local(self) -> bool:
        return not self.uri.startswith(("models:/", "runs:/", "mlflow-artifacts:/"))


def parse_model_uri(uri: str) -> ModelRef:
    if uri.startswith("models:/"):
        rest = uri.removeprefix("models:/").strip("/")
        if "@" in rest:
            name, alias = rest.split("@", 1)
            if not name or not alias:
                raise ModelLoadError(f"model URI {uri!r} must look like models:/<name>@<alias>")
            return ModelRef(uri, name=name, alias=alias)
        name, _, version = rest.partition("/")
        if not name or not version:
            raise ModelLoadError(
                f"model URI {uri!r} must look like models:/<name>/<version> or models:/<name>@<alias>"
            )
        return ModelRef(uri, name=name, fixed_version=version)
    if uri.startswith("runs:/"):
        run_id = uri.removeprefix("runs:/").strip("/").split("/", 1)[0]
        return ModelRef(uri, name="textguard", fixed_version=f"run-{run_id}")
    return ModelRef(uri, name="textguard")


def local_version(directory: Path) -> str:
    """The version of a local artefact: a fingerprint of its spec (which covers every file's checksum)."""
    try:
        return "local-" + hashlib.sha256((directory / SPEC_FILENAME).read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise ModelLoadError(f"{directory}: cannot read {SPEC_FILENAME}: {exc.strerror}") from None


def registry_alias_version(name: str, alias: str) -> str:
    from textguard.tracking.registry import alias_version

    version = alias_version(name, alias)
    if version is None:
        raise ModelLoadError(
            f"models:/{name}@{alias}: no such alias in the registry (promote one with `textguard promote`)"
        )
    return str(version)


@dataclass(frozen=True)
class LoadedModel(ServedModel):
    """The model being served, and when it was loaded."""

    loaded_at: float = field(default_factory=time.time)


class ModelManager:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        scorer: Scorer | None = None,
        metrics: ServiceMetrics | None = None,
        version_of: Callable[[ModelRef], str] | None = None,
        preload: Future[LoadedModel] | None = None,
        first_worker: WorkerProcess | None = None,
    ) -> None:
        """`first_worker`: with `inference_processes`, a worker process started early (by `textguard
        serve`, before the web stack is imported) that the first load uses."""
        self.settings = settings
        self._first_worker = first_worker
        #: The first load, already under way (`textguard serve` starts it early): adopted, not repeated.
        self._preload = preload
        self.ref = parse_model_uri(settings.model)
        self.metrics = metrics
        self._version_of = version_of or self._current_version
        self._current: LoadedModel | None = None
        self._initial = scorer
        self._tasks: list[asyncio.Task[None]] = []
        self.error: str | None = None
        self.swaps = 0
        #: Set once the first load has succeeded or failed (`settled`).
        self._first_outcome = asyncio.Event()

    # -- what the routes and the batcher see ---------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._current is not None

    @property
    def current(self) -> LoadedModel:
        model = self._current
        if model is None:
            raise NotReady(self.error or "the model is still loading; retry shortly", retry_after=2)
        return model

    @property
    def scorer(self) -> ScoringModel:
        return self.current.scorer

    @property
    def info(self) -> dict[str, str | None]:
        return self.current.info

    async def settled(self) -> None:
        """Return once the first load has succeeded or failed (a failed one is still retried)."""
        await self._first_outcome.wait()

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Install the given scorer now, or start loading in the background (readiness follows)."""
        if self._initial is not None:
            spec = self._initial.spec
            check_against_model(PolicySet.load(self.settings.policy), spec.thresholds, spec.name)
            self._install(LoadedModel(self._initial, spec.name, "local-" + spec_fingerprint(spec), None))
            self._initial = None
            return
        self._tasks.append(asyncio.create_task(self._load_then_watch(), name="textguard-model"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._current is not None:
            await asyncio.to_thread(_close, self._current.scorer)

    async def _load_then_watch(self) -> None:
        retry = max(self.settings.model_poll_seconds, 1.0) if self.settings.model_poll_seconds else 5.0
        if self._preload is not None:
            preload, self._preload = self._preload, None
            try:
                self._install(await asyncio.wrap_future(preload))
            except Exception as exc:  # as `refresh`: reported, then retried below
                self._failed(exc)
                await asyncio.sleep(retry)
        while self._current is None:
            if await self.refresh():
                break
            await asyncio.sleep(retry)
        if self.settings.model_poll_seconds <= 0 or self.ref.fixed_version is not None:
            return
        while True:
            await asyncio.sleep(self.settings.model_poll_seconds)
            await self.refresh()

    async def refresh(self) -> bool:
        """Load the version the model reference points at now unless already served; True if swapped."""
        try:
            version = await asyncio.to_thread(self._version_of, self.ref)
            if self._current is not None and version == self._current.version:
                return False
            loaded = await asyncio.to_thread(self._load, version)
        except (TextguardError, OSError, ValueError) as exc:
            self._failed(exc)
            return False
        except Exception as exc:  # registry clients raise their own types; never kill the watcher
            self._failed(exc)
            return False
        self._install(loaded)
        return True

    # -- internals -------------------------------------------------------------------------------------

    def _current_version(self, ref: ModelRef) -> str:
        if ref.fixed_version is not None:
            return ref.fixed_version
        if ref.alias is not None:
            return registry_alias_version(ref.name, ref.alias)
        from textguard.artifact import resolve_artifact

        return local_version(resolve_artifact(ref.uri))

    def load_now(self, *, verified: bool = False) -> LoadedModel:
        """Load the version the reference points at now (blocking); `verified`: a local artefact whose
        checksums the caller has just verified."""
        return self._load(self._version_of(self.ref), verified=verified)

    def _load(self, version: str, *, verified: bool = False) -> LoadedModel:
        uri = f"models:/{self.ref.name}/{version}" if self.ref.is_registry_alias else self.ref.uri
        started = time.perf_counter()
        workers, threads = self.settings.inference_layout()
        options = {
            "backend": self.settings.backend,
            "quantized": self.settings.quantized,
            "precision": self.settings.precision,
            "verified": verified,
            "max_batch_size": self.settings.batch_max_size,
            "intra_op_threads": threads,
            # The inference threads share the cores with the event loop: spinning workers starve it.
            "allow_spinning": False,
        }
        warmup_batch = self.settings.batch_max_size if self.settings.warmup else 0
        scorer: ScoringModel
        if self.settings.inference_processes:
            from textguard.artifact import resolve_artifact
            from textguard.inference_worker import LoadRequest
            from textguard.service.inference_process import ProcessScorer

            # Downloaded (registry) or resolved here once; every worker process loads that directory.
            directory = resolve_artifact(uri)
            request = LoadRequest(str(directory), options, threads, warmup_batch)
            first, self._first_worker = self._first_worker, None
            scorer = ProcessScorer.start(request, directory, processes=workers, first=first)
        else:
            scorer = Scorer.from_artifact(uri, **options)  # type: ignore[arg-type]
        try:
            if list(scorer.spec.labels) != list(LABELS):
                raise ModelLoadError(
                    f"{uri} predicts {scorer.spec.labels}, but this service serves the taxonomy "
                    f"{list(LABELS)}"
                )
            # A policy may not become laxer than the model it runs with (e.g. a strict policy after a swap).
            check_against_model(PolicySet.load(self.settings.policy), scorer.spec.thresholds, uri)
        except BaseException:
            _close(scorer)
            raise
        if warmup_batch and isinstance(scorer, Scorer):  # worker processes warm up before they are ready
            warm_up(scorer, warmup_batch)
        logger.info(
            "model loaded",
            extra={
                "fields": {
                    "model": self.ref.name,
                    "version": version,
                    "backend": self.settings.backend,
                    "precision": scorer.precision.precision,
                    "precision_reason": scorer.precision.reason,
                    "inference_processes": workers if self.settings.inference_processes else 0,
                    "seconds": round(time.perf_counter() - started, 2),
                }
            },
        )
        # A local directory replaced mid-load shows a different fingerprint at the next poll and reloads.
        name = scorer.spec.name if self.ref.is_local else self.ref.name
        return LoadedModel(scorer, name, version, self.ref.alias)

    def _install(self, loaded: LoadedModel) -> None:
        previous = self._current
        if previous is None and self.settings.freeze_heap:
            freeze_long_lived()  # start-up is over: its objects leave the collector's full scans
        self._current = loaded  # the swap: one reference assignment
        self.error = None
        self._first_outcome.set()
        if self.metrics is not None:
            self.metrics.set_model(loaded.name, loaded.version, loaded.alias)
            if previous is not None:
                self.metrics.model_swaps.inc()
        if previous is not None:
            # In-flight drains finish on the old model first: a drain that read the old reference just
            # before the swap reaches its scorer within the grace, and `close` then waits for the drains.
            threading.Thread(
                target=_close_replaced,
                args=([previous.scorer], self.settings.freeze_heap),
                name="textguard-close-model",
                daemon=True,
            ).start()
            self.swaps += 1
            logger.info(
                "model swapped",
                extra={"fields": {"from_version": previous.version, "to_version": loaded.version}},
            )

    def _failed(self, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, TextguardError) else f"{type(exc).__name__}: {exc}"
        self.error = None if self._current is not None else f"model not loaded: {message}"
        self._first_outcome.set()
        if self.metrics is not None:
            self.metrics.model_load_failures.inc()
        logger.error(
            "model load failed"
            if self._current is None
            else "model refresh failed; still serving the old one",
            extra={"fields": {"model": self.settings.model, "reason": message[:500]}},
        )


def _close(scorer: ScoringModel, after: float = 0.0) -> None:
    """Release what a model holds beyond memory (a `ProcessScorer`'s worker processes), `after` seconds."""
    close = getattr(scorer, "close", None)
    if close is not None:
        time.sleep(after)
        close()


def _close_replaced(holder: list[ScoringModel], frozen: bool) -> None:
    """Close a model replaced by a hot swap after the grace, then let go of it (the holder is this
    thread's only reference) and, with a frozen heap, freeze again once the model is gone."""
    released = weakref.ref(holder[0])
    _close(holder[0], SWAP_CLOSE_GRACE_S)
    holder.clear()
    if frozen and not refreeze_once_released(released):
        logger.warning("a replaced model was still referenced a minute after the swap; heap left unfrozen")
