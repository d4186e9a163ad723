"""Micro-batching: many concurrent requests, a few inference worker threads that own the cores.

Requests put their texts on a bounded queue and await a future. Each worker thread loops:

1. wait until something is queued, then take its share of what is queued: everything when it is the
   only idle worker, else an even split between the idle ones, and at most `drain_max` texts (whole
   requests, at least one); no fixed wait: a timer before each batch adds straight to latency, and
   under load the queue fills while the other drains run;
2. tokenise all drained texts into windows in one call (`Scorer.windows`: Rust, releases the GIL);
3. run the windows through the scorer's one path (`Scorer.iter_probabilities`: length-sorted
   sub-batches of `batch_max_size`, so short chat messages do not pay for the padding of a long one,
   and the fail-closed check on non-finite scores), and resolve a request's future with its windows'
   scores (`WindowScores`) as soon as its last window is done. Steps 2-3 are one call,
   `score_drain`: with inference processes (`textguard.service.inference_process.ProcessScorer`) the
   forward passes run in a worker process while this thread waits on its socket.

Why a drain is capped (`drain_max`, the `batch_drain_max` setting, 8 by default): a worker that takes
everything queued while the other is busy leaves it a few texts when it comes back, and the two fall
into uneven drains: requests that arrive behind a long drain wait for it and then for their own. At
c=32 (MiniLM, one server process, two inference workers, wrk, four interleaved rounds on 2 AMD cores;
README Performance) drains of at most 8 texts answered p99 115 ms against 170 uncapped, at 412
against 384 msgs/s; at most 4 cost throughput (342 msgs/s: more drains, each with its round trip).
A request larger than the cap is still taken whole and run in sub-batches of `max_batch_size`.

Tokenising in the worker rather than in each request: one `encode_batch` per drain cost ~10% less CPU
than one call per request on chat texts (bench/serve_load.py prints both), keeps that work off the
event loop, and needs no second thread hop per request.
A full queue raises `Overloaded` at once (load shedding, 503 + Retry-After) instead of letting latency
grow without bound, and so does a request that cannot be answered by its deadline
(textguard.service.deadline): the batcher estimates when its scores would be ready from the measured
scoring rate, the texts still in the current forward pass and those queued ahead, and refuses it at
admission when that is past the deadline; a job admitted on that estimate whose drain would not leave
it the same slack before its deadline is refused instead of scored late.

Workers: by default one per core, each forward single-threaded (`inference_threads`), rather than one
forward at a time spread over every core, whose threads wait for each other at every operator and stall
whenever the event loop takes a core. Measured on 2 AMD cores (MiniLM, bf16, wrk; README Performance): 217-230
requests/s at c=32 against 150-201 for one worker on two threads, and 77 against 59 at c=1, where a
second worker picks up what arrives while the first is busy (on an Intel AMX machine the two layouts
measured alike at c=32).
The batcher is the service's `AsyncScoring` for `textguard.moderation.Moderator`; it decides nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from textguard.errors import InvalidScoresError
from textguard.scorer import WindowScores
from textguard.service.deadline import ADMISSION_SHARE, current_deadline, retry_after
from textguard.service.errors import NotReady, Overloaded, ServiceError
from textguard.service.metrics import ServiceMetrics
from textguard.service.model_manager import LoadedModel

logger = logging.getLogger("textguard.service.batcher")

__all__ = ["MicroBatcher", "Overloaded"]


class InvalidScores(ServiceError):
    """The model's output is not a probability (NaN or infinite): a 500, never a decision."""


@dataclass
class _Job:
    texts: Sequence[str]
    future: asyncio.Future[tuple[WindowScores, LoadedModel]]
    loop: asyncio.AbstractEventLoop
    deadline: float | None = None  # time.perf_counter() seconds
    enqueued_at: float = field(default_factory=time.perf_counter)
    #: Admitted on an estimate: work was ahead of it and the rate was measured (see `_drop_late`).
    estimated: bool = False


class MicroBatcher:
    def __init__(
        self,
        model: Callable[[], LoadedModel],
        *,
        max_batch_size: int = 8,
        max_queue: int = 1024,
        metrics: ServiceMetrics | None = None,
        workers: int = 1,
        gather_seconds: float = 0.0,
        drain_max: int = 0,
        on_worker_start: Callable[[], None] | None = None,
    ) -> None:
        self._model = model
        self.max_batch_size = max_batch_size
        #: Texts one worker takes from the queue at once (whole requests, at least one); 0 = no cap.
        self.drain_max = drain_max
        self.max_queue = max_queue
        self.metrics = metrics
        self.workers = max(1, workers)
        self.gather_seconds = gather_seconds
        #: Run first in each worker thread (e.g. torch.set_num_threads: its OpenMP setting is per thread).
        self._on_worker_start = on_worker_start
        self._jobs: deque[_Job] = deque()
        self._queued_texts = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._idle = 0
        # One worker's recent throughput (texts/s): admission by deadline and Retry-After estimate from
        # it. Until a full drain (`_full_drain`) has been measured there is no estimate, and requests are
        # admitted.
        self._texts_per_second = 100.0
        self._rate_measured = False
        # Each worker's drain in the forward pass now: its texts and when it started (for the time it
        # still needs).
        self._inflight: dict[int, tuple[int, float]] = {}

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        if not self._threads:
            self._stopping = False
            self._threads = [
                threading.Thread(
                    target=self._run, args=(number,), name=f"textguard-inference-{number}", daemon=True
                )
                for number in range(self.workers)
            ]
            for thread in self._threads:
                thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    @property
    def queue_depth(self) -> int:
        return self._queued_texts

    @property
    def texts_per_second(self) -> float:
        """The measured scoring rate of one worker (moving average over recent drains)."""
        return self._texts_per_second

    def _seconds_ahead(self, now: float) -> float:
        """Estimated seconds until the work queued or in the forward passes now is done (lock held).

        As if one worker did it all at the rate measured per drain: workers share two cores with each
        other and the event loop (two gave 1.4-1.6x one on MiniLM, less on a model bound by Python), so
        dividing by their number admitted requests that then missed their deadline (answered p99 0.88 s
        against a 0.3 s deadline in tests/integration/test_overload_deadline.py). Refusing a little
        early is the cheaper error."""
        rate = max(self._texts_per_second, 1.0)
        inflight = sum(max(0.0, texts / rate - (now - started)) for texts, started in self._inflight.values())
        return inflight + self._queued_texts / rate

    # -- the request side (event loop) -----------------------------------------------------------------

    async def score(self, texts: list[str]) -> np.ndarray:
        """Calibrated probabilities [n, labels] in input order (each label's highest window)."""
        scores, _ = await self.score_windows(texts)
        return scores.per_text()

    async def score_windows(self, texts: Sequence[str]) -> tuple[WindowScores, LoadedModel]:
        """Every window's probabilities, and the exact model that produced them (a hot swap may happen
        between two calls)."""
        if not texts:
            model = self._model()
            empty = np.zeros((0, len(model.scorer.spec.labels)))
            return WindowScores(empty, np.zeros(0, dtype=np.int64), [], 0), model
        self._model()  # raises NotReady before anything is queued
        loop = asyncio.get_running_loop()
        deadline = current_deadline.get()
        job = _Job(texts, loop.create_future(), loop, deadline)
        with self._cond:
            if self._stopping or not self.alive:
                raise NotReady("the server is shutting down", retry_after=2)
            now = time.perf_counter()
            ahead = self._seconds_ahead(now)
            if self._queued_texts + len(texts) > self.max_queue:
                self._shed()
                raise Overloaded(
                    f"the server is overloaded ({self._queued_texts} texts queued); retry shortly",
                    retry_after=retry_after(ahead),
                )
            # With nothing ahead the request is scored as soon as this server can: always admitted (a
            # refusal would teach nothing, and the rate would never be measured again).
            if deadline is not None and self._rate_measured and ahead > 0:
                needed = ahead + len(texts) / max(self.texts_per_second, 1.0)
                allowed = ADMISSION_SHARE * (deadline - now)
                if needed > allowed:
                    self._shed()
                    raise Overloaded(
                        f"the request cannot be answered within its deadline (about {needed * 1000:.0f} ms "
                        f"of scoring needed, {max(0.0, allowed) * 1000:.0f} ms available); retry later, "
                        "send fewer messages per request or allow a longer deadline",
                        retry_after=retry_after(ahead),
                    )
            job.estimated = deadline is not None and self._rate_measured and ahead > 0
            self._jobs.append(job)
            self._queued_texts += len(texts)
            self._set_depth()
            self._cond.notify()
        return await job.future

    # -- the worker thread ------------------------------------------------------------------------------

    def _run(self, number: int) -> None:
        if self._on_worker_start is not None:
            self._on_worker_start()
        while True:
            with self._cond:
                self._idle += 1
                while not self._stopping:
                    if not self._jobs:
                        self._cond.wait()
                        continue
                    wait = self._gather_wait(time.perf_counter())
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                self._idle -= 1
                if self._stopping:
                    jobs = list(self._jobs)
                    self._jobs.clear()
                    self._queued_texts = 0
                    self._set_depth()
                    for job in jobs:
                        _fail(job, NotReady("the server is shutting down", retry_after=2))
                    return
                jobs = self._take_share()
                now = time.perf_counter()
                jobs = self._drop_late(jobs, now)
                self._inflight[number] = (sum(len(job.texts) for job in jobs), now)
                if self._jobs:
                    self._cond.notify()  # what is left is another idle worker's share
            try:
                self._process(jobs, number)
            except InvalidScoresError:
                # NaN passes no threshold: answering would mean "allow" for every message. Fail closed.
                logger.error(
                    "the model produced non-finite scores; failing the requests of this drain",
                    extra={"fields": {"model_version": self._version(), "requests": len(jobs)}},
                )
                failure = InvalidScores("the model produced invalid scores; the request was not scored")
                for job in jobs:
                    _fail(job, failure)
            except Exception as exc:  # a failed drain fails its requests, never the worker
                logger.exception("inference failed for %d requests", len(jobs))
                for job in jobs:
                    _fail(job, exc)
            finally:
                with self._cond:
                    self._inflight.pop(number, None)

    def _gather_wait(self, now: float) -> float:
        """Seconds to wait for more requests before taking the queue (lock held).

        While another worker is in a forward pass, a worker waits until the queue holds a full batch (or
        a full drain, when `drain_max` is smaller) or its oldest request has waited `gather_seconds`:
        taking each request the moment it arrives would run many forward passes of one or two texts (the
        costliest per text) while the busy worker's requesters are about to send their next ones. With no
        other worker busy there is nobody to wait for, and the request is scored at once (so a lone
        request never waits)."""
        if not self._inflight or self._queued_texts >= self._full_drain() or not self.gather_seconds:
            return 0.0
        return self._jobs[0].enqueued_at + self.gather_seconds - now

    def _full_drain(self) -> int:
        """Texts of a full drain: a forward batch, or the drain cap when that is smaller."""
        return min(self.max_batch_size, self.drain_max or self.max_batch_size)

    def _take_share(self) -> list[_Job]:
        """The queued jobs this worker takes (lock held), whole jobs and at least one: at most
        `drain_max` texts unless one job alone holds more (the module docstring says why), and when other
        workers are idle about an even share of the texts, so a burst is split between them instead of
        one worker scoring it while the others wait; with neither limit, everything queued."""
        share = -(-self._queued_texts // (self._idle + 1))
        if self.drain_max:
            share = min(share, self.drain_max)
        jobs: list[_Job] = []
        taken = 0
        while self._jobs and (not jobs or taken + len(self._jobs[0].texts) <= share):
            job = self._jobs.popleft()
            jobs.append(job)
            taken += len(job.texts)
        self._queued_texts -= taken
        self._set_depth()
        return jobs

    def _drop_late(self, jobs: list[_Job], now: float) -> list[_Job]:
        """Refuse the jobs this drain would answer past their deadline (an admission estimate was wrong):
        a late answer is worth less than a refusal, and scoring them would make every job behind them late
        too. A job whose deadline has passed is refused; so is one admitted on an estimate (work was ahead
        of it) that fails admission's test again now that the work ahead is done: this drain's time at the
        measured rate must fit in `ADMISSION_SHARE` of the time it has left (the rest is for the work after
        scoring: a drain's requests are answered one after another on the event loop). Refused only once
        their deadline had passed, such jobs were answered up to a drain's time late (`bench/serve_load.py`
        overload, 1 s deadline: answered p99 877-1,464 ms in the ninth session's run, 739-989 ms in the
        tenth's with this rule; README Performance). A job admitted with nothing ahead is scored whatever
        its deadline, as admission promised."""
        needed = sum(len(job.texts) for job in jobs) / max(self._texts_per_second, 1.0) / ADMISSION_SHARE
        kept = []
        for job in jobs:
            if job.deadline is not None and now + (needed if job.estimated else 0.0) >= job.deadline:
                self._shed()
                late = Overloaded(
                    "the request could not be answered within its deadline; retry later", retry_after=1.0
                )
                _fail(job, late)
            else:
                kept.append(job)
        return kept

    def _shed(self) -> None:
        if self.metrics is not None:
            self.metrics.shed.inc()

    def _version(self) -> str | None:
        try:
            return self._model().version
        except ServiceError:
            return None

    def _process(self, jobs: list[_Job], worker: int = 0) -> None:
        jobs = [job for job in jobs if not job.future.cancelled()]
        if not jobs:
            return
        started = time.perf_counter()
        if self.metrics is not None:
            for job in jobs:
                self.metrics.queue_wait.observe(started - job.enqueued_at)
        model = self._model()  # one model per drain: a swap takes effect at the next drain
        scorer = model.scorer
        texts = [text for job in jobs for text in job.texts]
        first_text = np.cumsum([0] + [len(job.texts) for job in jobs])
        owner, spans, batches = scorer.score_drain(texts, self.max_batch_size)
        # A job's windows are contiguous (windows come in text order): [first_window[j], first_window[j+1]).
        first_window = np.searchsorted(owner, first_text)
        window_job = np.searchsorted(first_text, owner, side="right") - 1
        remaining = np.bincount(window_job, minlength=len(jobs))
        probs = np.zeros((len(owner), len(scorer.spec.labels)), dtype=np.float64)
        unresolved = len(jobs)
        for batch, values in batches:
            probs[batch] = values
            if self.metrics is not None:
                self.metrics.batch_size.observe(len(batch))
            for number, done in zip(*np.unique(window_job[batch], return_counts=True), strict=True):
                remaining[number] -= done
                if remaining[number] == 0:
                    unresolved -= 1
                    if unresolved == 0:
                        with self._cond:  # before the last answer: nothing of this drain is ahead
                            self._inflight.pop(worker, None)
                    rows = slice(first_window[number], first_window[number + 1])
                    result = WindowScores(
                        probs[rows].copy(),
                        owner[rows] - first_text[number],
                        spans[rows],
                        len(jobs[number].texts),
                    )
                    _resolve(jobs[number], (result, model))

        elapsed = time.perf_counter() - started
        self._measure(len(texts), elapsed)
        if self.metrics is not None:
            self.metrics.drain_size.observe(len(texts))
            self.metrics.inference_seconds.observe(elapsed)

    def _measure(self, texts: int, elapsed: float) -> None:
        """Update the scoring rate from a full drain (a full forward batch, or `drain_max` texts when that
        is smaller): a smaller one measures a forward's latency rather than throughput (and under load,
        drains are full). Counting only drains of a full forward batch, single-message traffic under a
        cap of 8 would never have measured a rate, and admission by deadline here would never start."""
        if texts < self._full_drain():
            return
        rate = texts / max(elapsed, 1e-6)
        if self._rate_measured:
            self._texts_per_second = 0.8 * self._texts_per_second + 0.2 * rate
        else:
            self._texts_per_second = rate
            self._rate_measured = True

    def _set_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self._queued_texts)


def _resolve(job: _Job, value: tuple[WindowScores, LoadedModel]) -> None:
    def deliver() -> None:
        if not job.future.done():
            job.future.set_result(value)

    _call_in_loop(job, deliver)


def _fail(job: _Job, exc: BaseException) -> None:
    def deliver() -> None:
        if not job.future.done():
            job.future.set_exception(exc)

    _call_in_loop(job, deliver)


def _call_in_loop(job: _Job, callback: Callable[[], None]) -> None:
    # A closed loop means nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        job.loop.call_soon_threadsafe(callback)
