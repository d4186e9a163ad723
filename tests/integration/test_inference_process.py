"""Forward passes in worker processes (`inference_processes`): the same scores as in this process, a dead
worker replaced, failed loads leave nothing running, and a server's workers end with it."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from serve_process import serve_process

from textguard.errors import ModelLoadError
from textguard.inference_worker import LoadRequest
from textguard.scorer import Scorer
from textguard.service.inference_process import InferenceUnavailable, ProcessScorer

TEXTS = [
    "see you all at the standup tomorrow",
    "",
    "ok",
    # Longer than one window of the tiny model (64 tokens): several windows, one text.
    " ".join(["the quarterly planning meeting will cover the roadmap and the budget"] * 12),
    "i will find you after the meeting and make you pay",
]
OPTIONS = {"backend": "torch", "precision": "fp32", "verified": False, "max_batch_size": 2}


def _workers() -> list[psutil.Process]:
    """This test process's inference worker processes."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "textguard.inference_worker" in " ".join(child.cmdline()):
                found.append(child)
    return found


def _gone(processes: list[psutil.Process], timeout: float = 10.0) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return not alive


def _dead(process: psutil.Process, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {process.pid} still running")


@pytest.fixture
def process_scorer(tiny_artifact: Path) -> Iterator[ProcessScorer]:
    scorer = ProcessScorer.start(LoadRequest(str(tiny_artifact), OPTIONS, 1, 2), tiny_artifact, processes=1)
    try:
        yield scorer
    finally:
        scorer.close(grace=10)


def test_scores_are_those_of_the_scorer_in_this_process(
    process_scorer: ProcessScorer, tiny_artifact: Path
) -> None:
    local = Scorer.from_artifact(tiny_artifact, precision="fp32", max_batch_size=2)
    ours, theirs = process_scorer.score_windows(TEXTS), local.score_windows(TEXTS)
    assert ours.n_texts == theirs.n_texts == len(TEXTS)
    np.testing.assert_array_equal(ours.owner, theirs.owner)
    assert ours.spans == theirs.spans
    assert np.bincount(ours.owner)[3] > 1  # the long text really had several windows
    np.testing.assert_allclose(ours.probabilities, theirs.probabilities, rtol=0, atol=1e-6)
    np.testing.assert_allclose(process_scorer.predict_proba(TEXTS), local.predict_proba(TEXTS), atol=1e-6)

    owner, _, batches = process_scorer.score_drain(TEXTS, 2)
    passes = list(batches)
    assert all(len(indices) <= 2 for indices, _ in passes)  # the worker honoured the batch size
    assert sorted(index for indices, _ in passes for index in indices) == list(range(len(owner)))
    assert process_scorer.spec.labels == local.spec.labels
    assert process_scorer.precision.precision == "fp32"
    assert process_scorer.backend_name == "torch"


def test_close_stops_the_workers(tiny_artifact: Path) -> None:
    before = {process.pid for process in _workers()}
    scorer = ProcessScorer.start(LoadRequest(str(tiny_artifact), OPTIONS, 1, 0), tiny_artifact, processes=2)
    deadline = time.monotonic() + 60
    while scorer.processes < 2 and time.monotonic() < deadline:  # the second starts behind the first
        time.sleep(0.1)
    assert scorer.processes == 2
    ours = [process for process in _workers() if process.pid not in before]
    assert len(ours) == 2
    scorer.close(grace=10)
    assert _gone(ours)


def test_a_dead_worker_fails_its_drain_with_503_and_is_replaced(process_scorer: ProcessScorer) -> None:
    expected = process_scorer.predict_proba(TEXTS[:1])
    (worker,) = _workers()
    worker.kill()
    worker.wait(10)
    with pytest.raises(InferenceUnavailable) as refused:
        process_scorer.predict_proba(TEXTS[:1])
    assert refused.value.status == 503 and refused.value.retry_after
    if process_scorer.processes == 0:  # the replacement is still loading: refused at once, not queued
        started = time.monotonic()
        with pytest.raises(InferenceUnavailable):
            process_scorer.predict_proba(TEXTS[:1])
        assert time.monotonic() - started < 1.0
    deadline = time.monotonic() + 60
    while process_scorer.processes < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    np.testing.assert_allclose(process_scorer.predict_proba(TEXTS[:1]), expected, atol=1e-6)
    (replacement,) = _workers()
    assert replacement.pid != worker.pid


def test_a_worker_that_dies_idle_is_replaced_before_any_request_meets_it(tiny_artifact: Path) -> None:
    before = {process.pid for process in _workers()}
    scorer = ProcessScorer.start(LoadRequest(str(tiny_artifact), OPTIONS, 1, 0), tiny_artifact, processes=2)
    try:
        _wait_for(lambda: scorer.processes == 2)
        expected = scorer.predict_proba(TEXTS[:1])
        victim, survivor = [process for process in _workers() if process.pid not in before]
        victim.kill()
        _wait_for(lambda: scorer.processes == 1, timeout=5)  # noticed with no request sent
        for _ in range(4):  # the dead worker may still sit in the idle queue: never handed a drain
            np.testing.assert_allclose(scorer.predict_proba(TEXTS[:1]), expected, atol=1e-6)
        _wait_for(lambda: scorer.processes == 2)
        pids = {process.pid for process in _workers()} - before
        assert victim.pid not in pids and survivor.pid in pids and len(pids) == 2
    finally:
        scorer.close(grace=10)


def test_close_does_not_wait_for_a_worker_that_dies_mid_drain(process_scorer: ProcessScorer) -> None:
    """A close waits for drains to finish, but a worker that dies during its drain is not waited for:
    the drain fails with 503 and close returns at once rather than after its whole grace."""
    (worker,) = _workers()
    worker.send_signal(signal.SIGSTOP)  # the drain below cannot finish until the worker is killed
    outcome: list[BaseException | None] = []

    def drain() -> None:
        try:
            process_scorer.predict_proba(TEXTS)
            outcome.append(None)
        except BaseException as exc:  # the test inspects it
            outcome.append(exc)

    drainer = threading.Thread(target=drain)
    drainer.start()
    _wait_for(lambda: process_scorer._idle.empty(), timeout=5)  # the worker is taken
    closer = threading.Thread(target=process_scorer.close, kwargs={"grace": 30})
    closer.start()
    time.sleep(0.3)
    assert closer.is_alive()  # waiting for the drain in flight
    worker.kill()
    started = time.monotonic()
    closer.join(10)
    drainer.join(10)
    assert not closer.is_alive() and time.monotonic() - started < 5
    assert len(outcome) == 1 and isinstance(outcome[0], InferenceUnavailable)
    assert _gone([worker]) and not _workers()  # no replacement started while closing


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_tampered_artefact_is_refused_and_leaves_no_worker(tiny_artifact_copy: Path) -> None:
    weights = tiny_artifact_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError):
        ProcessScorer.start(LoadRequest(str(tiny_artifact_copy), OPTIONS, 1, 0), tiny_artifact_copy, 1)
    assert _workers() == []


def test_a_worker_that_cannot_load_reports_why(tmp_path: Path, tiny_artifact: Path) -> None:
    with pytest.raises(ModelLoadError, match="unknown backend"):
        ProcessScorer.start(
            LoadRequest(str(tiny_artifact), {**OPTIONS, "backend": "tpu"}, 1, 0), tiny_artifact, 1
        )
    assert _workers() == []


@pytest.mark.parametrize("layout", [["--inference-processes"], ["--no-inference-processes"]])
def test_a_server_scores_in_either_layout_and_its_workers_end_with_it(
    tiny_artifact: Path, tmp_path: Path, layout: list[str]
) -> None:
    with serve_process(tiny_artifact, tmp_path, ["--inference-workers", "2", *layout]) as server:
        answer = httpx.post(f"{server.url}/v1/score", json={"messages": [{"id": "1", "text": "hello"}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["id"] == "1"
        workers = [
            child
            for child in server.ps.children(recursive=True)
            if "textguard.inference_worker" in " ".join(child.cmdline())
        ]
        if layout == ["--inference-processes"]:
            assert 1 <= len(workers) <= 2  # the second may still be starting
        else:
            assert workers == []
    assert _gone(workers)


def test_a_server_whose_only_worker_died_is_unready_until_the_replacement_is_ready(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    body = {"messages": [{"id": "1", "text": "hello"}]}
    with serve_process(tiny_artifact, tmp_path, ["--inference-workers", "1"]) as server:
        assert httpx.post(f"{server.url}/v1/score", json=body).status_code == 200
        (worker,) = [
            child
            for child in server.ps.children(recursive=True)
            if "textguard.inference_worker" in " ".join(child.cmdline())
        ]
        worker.kill()
        _dead(worker)  # a zombie until the server notices: it is the server's child, not ours
        # Unready as soon as the server notices, before any request meets the dead worker.
        _wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 503, timeout=5)
        refused = httpx.post(f"{server.url}/v1/score", json=body)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["type"] == "inference_unavailable"
        assert refused.headers["retry-after"]
        assert httpx.get(f"{server.url}/readyz").status_code == 503  # the replacement takes seconds
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert httpx.post(f"{server.url}/v1/score", json=body).status_code == 200


def test_a_swap_to_the_same_tokenizer_file_reuses_the_tokenizer(
    tiny_artifact: Path, tiny_artifact_copy: Path
) -> None:
    """Reading e5's tokenizer holds the interpreter lock for about a second, during which the event loop
    answers nothing: a swap to a model whose manifest records the same tokenizer.json takes the one
    already read; another file is read; and the checksums still decide whether the load succeeds."""
    from textguard.artifact import refresh_checksums

    request = LoadRequest(str(tiny_artifact), OPTIONS, 1, 0)
    served = ProcessScorer.start(request, tiny_artifact, processes=1)
    started: list[ProcessScorer] = [served]

    def swap() -> ProcessScorer:
        scorer = ProcessScorer.start(replace(request, uri=str(tiny_artifact_copy)), tiny_artifact_copy, 1)
        started.append(scorer)
        return scorer

    try:
        assert swap()._tokenizer is served._tokenizer  # another directory, the same tokenizer.json
        tokenizer_file = tiny_artifact_copy / "tokenizer.json"
        original = tokenizer_file.read_bytes()
        tokenizer_file.write_text(json.dumps(json.loads(original), indent=1))  # same tokenizer, new bytes
        refresh_checksums(tiny_artifact_copy)
        reread = swap()
        assert reread._tokenizer is not served._tokenizer
        np.testing.assert_allclose(reread.predict_proba(TEXTS), served.predict_proba(TEXTS), atol=1e-6)
        # Bytes that are not the ones the manifest records fail the load, although a tokenizer read
        # for that checksum is at hand.
        tokenizer_file.write_bytes(original)
        with pytest.raises(ModelLoadError, match=r"tokenizer\.json does not match its recorded sha256"):
            swap()
    finally:
        for scorer in started:
            scorer.close(grace=10)
