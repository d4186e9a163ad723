"""Forward passes in worker processes beside the event loop (`inference_processes`).

With threads, the event loop and the inference workers share one interpreter lock: the loop waits while a
forward pass runs Python between operators, a forward pass waits while the loop parses and answers
requests, and a start-up imports torch and reads e5's tokenizer (about a second each, lock held) one
after the other beside the web stack. `ProcessScorer` keeps tokenisation in the server (the Rust
tokenizer releases the lock) and runs the forward passes in `textguard.inference_worker` processes,
one per inference worker: at start-up the first worker imports torch and loads the weights on one core
while the server imports its web stack and reads the tokenizer on the other.

The first worker is started before anything else (`textguard serve` hands it in) and the service is
ready once it is; the others start one after the other behind it (several loading at once shared the
cores between copies of one start-up) and join as each becomes ready. A worker that dies (killed, out of
memory) fails the drain it was scoring with a 503 and is replaced in the background, loading the same
artefact again (verified again). One that dies while idle is noticed within `WATCH_INTERVAL_S` (and
before any drain takes it), so no request is handed to it: readiness drops at once when it was the last
one, and its replacement starts without waiting for a request to fail.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from textguard.encoding import TOKENIZER_FILE, encode_windows, load_tokenizer
from textguard.errors import ModelLoadError
from textguard.inference_worker import LoadRequest, WorkerProcess
from textguard.scorer import DrainScores, WindowScores, verified_beside
from textguard.service.errors import ServiceError
from textguard.spec import load_spec

if TYPE_CHECKING:
    from pathlib import Path

    from textguard.parity import PrecisionChoice
    from textguard.spec import ModelSpec

logger = logging.getLogger("textguard.service.inference")

#: Seconds a drain waits for a free worker (all busy, or being replaced after a crash) before a 503.
ACQUIRE_TIMEOUT_S = 30.0
#: How often the worker processes are checked for having exited while idle.
WATCH_INTERVAL_S = 0.5
#: How often a close looks again for workers that died during their drain (they never come back idle).
CLOSE_POLL_S = 0.1


class InferenceUnavailable(ServiceError):
    """No inference process could score the request (one died and is being replaced): retry shortly."""

    default_kind = "inference_unavailable"


class _LastTokenizer:
    """The untruncated tokenizer this process read last, kept by the sha256 that its artefact's manifest
    records for tokenizer.json: a hot swap to a model with the same file (a retrained head on the same
    backbone, the usual promotion) takes it instead of reading the file again. Reading one holds the
    interpreter lock throughout, so the event loop answers nothing meanwhile: e5's 17 MB file stalled
    it for 1.17 s (MiniLM's 26 ms). Sharing it between the old and the new model is safe: the server
    only ever uses it through `encode_windows`, which never reconfigures it. A checksum that does not
    match the file fails the load (`verified_beside`), the cached tokenizer with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[str, Any] | None = None

    def read(self, directory: Path, spec: ModelSpec) -> Any:
        digest = spec.files.get(TOKENIZER_FILE)
        with self._lock:
            last = self._last
        if digest is not None and last is not None and last[0] == digest:
            return last[1]
        tokenizer = load_tokenizer(directory, spec.max_length, truncate=False)
        if digest is not None:
            with self._lock:
                self._last = (digest, tokenizer)
        return tokenizer


_TOKENIZERS = _LastTokenizer()


class ProcessScorer:
    """A `textguard.scorer.ScoringModel` that tokenises here and runs its forward passes in worker
    processes, one drain per worker at a time (the batcher's threads each take a free one)."""

    def __init__(
        self,
        request: LoadRequest,
        spec: ModelSpec,
        tokenizer: Any,
        first: WorkerProcess,
        precision: PrecisionChoice,
        backend_name: str,
    ) -> None:
        self._request = request
        self.spec = spec
        self.precision = precision
        self._tokenizer = tokenizer
        self._backend_name = backend_name
        self._idle: queue.SimpleQueue[WorkerProcess] = queue.SimpleQueue()
        self._idle.put(first)
        self._lock = threading.Lock()
        #: Workers in the pool (idle or scoring); a dead one leaves it once (`_replace`), though it may
        #: still sit in the idle queue until a drain or `close` takes it out.
        self._live = {first}
        self._closing = False
        self._closed = threading.Event()
        #: Workers start one at a time (each start-up wants the cores to itself).
        self._starting = threading.Lock()
        threading.Thread(target=self._watch, name="textguard-inference-watch", daemon=True).start()

    @classmethod
    def start(
        cls, request: LoadRequest, directory: Path, processes: int, first: WorkerProcess | None = None
    ) -> ProcessScorer:
        """Load the model in `first` (or a new worker) while reading the spec and tokenizer here, and
        verifying the artefact's checksums here unless `request.options["verified"]` says the caller
        has; return once that worker is ready, the other `processes - 1` starting behind it."""
        worker = first or WorkerProcess(preimport_torch=request.options.get("backend") == "torch")
        verify = not request.options.get("verified", False)
        try:
            # The worker never hashes what this process verifies (and a tampered file fails the load).
            worker.load(replace(request, options={**request.options, "verified": True}))
            spec = load_spec(directory)
            with verified_beside(directory, spec, enabled=verify):
                tokenizer = _TOKENIZERS.read(directory, spec)
                precision, backend_name = worker.wait_ready()
        except BaseException:
            worker.stop(timeout=1.0)
            raise
        scorer = cls(request, spec, tokenizer, worker, precision, backend_name)
        for _ in range(max(1, processes) - 1):
            threading.Thread(target=scorer._add_worker, name="textguard-inference-start", daemon=True).start()
        return scorer

    # -- ScoringModel ----------------------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        return self._backend_name

    @property
    def processes(self) -> int:
        """Worker processes ready now (others may be starting)."""
        return len(self._live)

    def score_drain(self, texts: Sequence[str], max_batch_size: int | None = None) -> DrainScores:
        if self._closing:
            raise InferenceUnavailable("the inference processes are stopping; retry shortly", retry_after=2)
        self._refuse_if_none_live()
        windows = encode_windows(texts, self._tokenizer, self.spec.max_length, prefix=self.spec.text_prefix)
        owner = np.asarray(windows.owner, dtype=np.int64)
        worker = self._acquire()
        try:
            batches = worker.probabilities(windows.input_ids, max_batch_size)
        except (EOFError, OSError):
            self._replace(worker, "failing its drain", texts=len(texts))
            raise InferenceUnavailable(
                "the inference process scoring this request stopped; retry shortly", retry_after=2
            ) from None
        except BaseException:
            self._idle.put(worker)  # it answered (with an error it reported): still usable
            raise
        self._idle.put(worker)
        return DrainScores(owner, windows.spans, batches)

    def _refuse_if_none_live(self) -> None:
        if not self._live:  # all died, replacements starting: refuse now rather than wait for one
            raise InferenceUnavailable("no inference process is running; retry shortly", retry_after=2)

    def _acquire(self) -> WorkerProcess:
        """A free live worker; dead ones met in the idle queue are retired (and replaced) on the way."""
        deadline = time.monotonic() + ACQUIRE_TIMEOUT_S
        while True:
            try:
                worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise InferenceUnavailable(
                    "no inference process is available; retry shortly", retry_after=2
                ) from None
            if worker in self._live and worker.process.poll() is None:
                return worker
            self._replace(worker, "before scoring")  # a no-op if the watcher already retired it
            self._refuse_if_none_live()

    def _replace(self, worker: WorkerProcess, when: str, **fields: Any) -> None:
        """Take a dead worker out of the pool and start its replacement (once per worker, whoever
        notices first)."""
        with self._lock:
            if worker not in self._live:
                return
            self._live.discard(worker)
        logger.error(
            "an inference process died" + ("" if self._closing else "; starting a replacement"),
            extra={"fields": {"noticed": when, "exit_code": worker.process.poll(), **fields}},
        )
        worker.stop(timeout=1.0)
        if not self._closing:
            threading.Thread(target=self._add_worker, name="textguard-inference-restart", daemon=True).start()

    def _watch(self) -> None:
        """Notice workers that exit while idle, every WATCH_INTERVAL_S, until closed."""
        while not self._closed.wait(WATCH_INTERVAL_S):
            for worker in list(self._live):
                if worker.process.poll() is not None:
                    self._replace(worker, "while idle")

    def score_windows(self, texts: Sequence[str]) -> WindowScores:
        return self.score_drain(texts).collect(len(self.spec.labels), len(texts))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.spec.labels)))
        return self.score_windows(texts).per_text()

    # -- lifecycle -------------------------------------------------------------------------------------

    def close(self, grace: float = 60.0) -> None:
        """Stop every worker once it has finished the drain it is scoring (at most `grace` seconds); a
        worker still starting stops itself when ready."""
        with self._lock:
            self._closing = True
        self._closed.set()
        deadline = time.monotonic() + grace
        # Until every live worker is back from its drain and stopped; one that dies mid-drain leaves
        # `_live` by itself (`_replace`) without coming back, so the queue is polled and `_live` checked
        # again (a single wait for the whole grace held a close for it when the last worker died).
        while self._live:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                worker = self._idle.get(timeout=min(CLOSE_POLL_S, remaining))
            except queue.Empty:
                continue
            with self._lock:
                self._live.discard(worker)  # a retired (dead) one still in the queue was stopped already
            worker.stop()

    def _add_worker(self) -> None:
        """Start a worker and add it to the pool once ready (retried until it loads or this closes)."""
        with self._starting:
            while not self._closing:
                worker = WorkerProcess(preimport_torch=self._request.options.get("backend") == "torch")
                try:
                    # The files may have changed since this model loaded: the worker verifies them itself.
                    worker.load(replace(self._request, options={**self._request.options, "verified": False}))
                    worker.wait_ready()
                except (ModelLoadError, OSError) as exc:
                    logger.error(
                        "starting an inference process failed; retrying",
                        extra={"fields": {"reason": str(exc)}},
                    )
                    worker.stop(timeout=1.0)
                    time.sleep(5)
                    continue
                with self._lock:
                    if not self._closing:
                        self._live.add(worker)
                        self._idle.put(worker)
                        logger.info(
                            "inference process ready", extra={"fields": {"processes": len(self._live)}}
                        )
                        return
                worker.stop()
                return
