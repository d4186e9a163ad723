"""Forward passes in a separate process: the worker side, and the handle the server holds on one.

The service (`textguard.service.inference_process.ProcessScorer`) tokenises in its own process and sends
token ids here; a worker loads the artefact's model without its tokenizer (`Scorer.from_artifact(...,
with_tokenizer=False)`) and answers calibrated probabilities per forward pass, exactly as
`Scorer.iter_probabilities` yields them in one process. The worker imports neither the web stack nor
the tokenizer, so its start-up is torch and the weights, and that runs beside the server's own start-up
(web stack, tokenizer) on another core instead of after it under one interpreter lock.

Protocol: a `multiprocessing.connection.Connection` over a socket the worker inherits
(`python -m textguard.inference_worker --fd N`), pickled tuples:

    server -> worker  ("load", uri, options, threads, warmup_batch)   once, first
    worker -> server  ("ready", precision, backend_name) | ("error", kind, message)
    server -> worker  ("score", input_ids, max_batch_size)            any number of times
    worker -> server  ("scores", [(indices, probabilities), ...]) | ("error", kind, message)
    server -> worker  ("stop",), or the connection closes: the worker exits
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from textguard.errors import InvalidScoresError, ModelLoadError, TextguardError

if TYPE_CHECKING:
    import numpy as np

    from textguard.parity import PrecisionChoice

#: Seconds a worker may take to import, load, verify and warm up a model before it counts as failed.
LOAD_TIMEOUT_S = 300.0
#: Seconds a stopped worker gets to exit before it is killed.
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LoadRequest:
    """How a worker loads the model: `Scorer.from_artifact(uri, with_tokenizer=False, **options)`, then
    `threads` intra-op threads (torch) and a warm-up at `warmup_batch` texts (0 = none)."""

    uri: str
    options: dict[str, Any]
    threads: int
    warmup_batch: int


class WorkerProcess:
    """The server's handle on one worker: started at once (it imports torch while it waits for `load`)."""

    def __init__(self, preimport_torch: bool = True) -> None:
        #: Whether it imports torch before `load` arrives (for the torch backend).
        self.preimport_torch = preimport_torch
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", __name__, "--fd", str(theirs.fileno())]
        try:
            self.process = subprocess.Popen(
                command + (["--preimport-torch"] if preimport_torch else []),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self.connection = Connection(ours.detach())

    def load(self, request: LoadRequest) -> None:
        self.connection.send(("load", request.uri, request.options, request.threads, request.warmup_batch))

    def wait_ready(self, timeout: float = LOAD_TIMEOUT_S) -> tuple[PrecisionChoice, str]:
        """(precision chosen, backend name) once loaded; ModelLoadError if it failed or exited."""
        try:
            if not self.connection.poll(timeout):
                raise ModelLoadError(f"the inference process did not load the model within {timeout:.0f} s")
            reply = self.connection.recv()
        except (EOFError, OSError) as exc:
            raise ModelLoadError(
                f"the inference process exited while loading the model (exit code {self.process.poll()})"
            ) from exc
        if reply[0] == "error":
            raise remote_error(reply[1], reply[2])
        _, precision, backend_name = reply
        return precision, backend_name

    def probabilities(
        self, input_ids: Sequence[Sequence[int]], max_batch_size: int | None
    ) -> list[tuple[list[int], np.ndarray]]:
        """`Scorer.iter_probabilities` in the worker. EOFError/OSError: the worker is gone."""
        self.connection.send(("score", input_ids, max_batch_size))
        reply = self.connection.recv()
        if reply[0] == "error":
            raise remote_error(reply[1], reply[2])
        return list(reply[1])

    def discard(self) -> None:
        """Kill a worker that was never given a model (started ahead of a decision that went against
        it): it is importing at most, and would read `stop` only once its imports are done."""
        with contextlib.suppress(OSError):
            self.connection.close()
        self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        with contextlib.suppress(OSError):
            self.connection.send(("stop",))
        with contextlib.suppress(OSError):
            self.connection.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_ERRORS: dict[str, type[Exception]] = {"invalid_scores": InvalidScoresError, "load": ModelLoadError}


def remote_error(kind: str, message: str) -> Exception:
    """The server's exception for an error a worker reported."""
    error = _ERRORS.get(kind)
    return error(message) if error is not None else RuntimeError(f"inference process: {message}")


def describe(exc: BaseException) -> tuple[str, str]:
    """(kind, message) of an exception, to send to the server."""
    if isinstance(exc, InvalidScoresError):
        return "invalid_scores", str(exc)
    if isinstance(exc, TextguardError):
        return "load", str(exc)
    return "other", f"{type(exc).__name__}: {exc}"


# -- the worker ------------------------------------------------------------------------------------------


def serve_connection(connection: Connection) -> None:
    """Load the model the first message names, then score until told to stop or the server is gone."""
    try:
        _, uri, options, threads, warmup_batch = connection.recv()
    except (EOFError, OSError):
        return
    try:
        scorer = _load(uri, options, threads, warmup_batch)
    except Exception as exc:
        with contextlib.suppress(OSError):
            connection.send(("error", *describe(exc)))
        return
    connection.send(("ready", scorer.precision, scorer.backend_name))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message[0] != "score":
            return
        _, input_ids, max_batch_size = message
        try:
            reply: tuple[Any, ...] = ("scores", list(scorer.iter_probabilities(input_ids, max_batch_size)))
        except Exception as exc:  # reported to the drain that asked; the worker keeps serving
            reply = ("error", *describe(exc))
        try:
            connection.send(reply)
        except OSError:
            return


def _load(uri: str, options: dict[str, Any], threads: int, warmup_batch: int) -> Any:
    from textguard.scorer import Scorer, warm_up

    if options.get("backend", "torch") == "torch" and threads:
        import torch

        torch.set_num_threads(threads)
    scorer = Scorer.from_artifact(uri, with_tokenizer=False, **options)
    if warmup_batch:
        warm_up(scorer, warmup_batch)
    return scorer


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="textguard inference worker (started by `textguard serve`)")
    parser.add_argument("--fd", type=int, required=True, help="inherited socket to the server")
    parser.add_argument("--preimport-torch", action="store_true", help="import torch before `load` arrives")
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group: the server decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    connection = Connection(args.fd)
    try:
        if args.preimport_torch:
            import torch  # noqa: F401  (the longest part of a start-up, done while the server starts)

            import textguard.scorer  # noqa: F401
        serve_connection(connection)
    finally:
        with contextlib.suppress(OSError):
            connection.close()
        os._exit(0)  # no interpreter teardown of torch's thread pools


if __name__ == "__main__":
    main()
