"""The served model's first load, started as early as a server process can.

`textguard serve` starts it before it imports the web stack and builds the app; each process of
`textguard serve --workers N` starts it when its turn to load comes (`textguard.service.asgi`), also
before the app is built. Either way the inference worker's torch import and the model's load run on
one core while the web stack imports on the other, instead of one after the other. A single
`textguard serve` starts its first inference worker earlier still, before the settings are built
(`start_first_worker`), since that worker's torch import is the longest step of a start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textguard.inference_worker import WorkerProcess

#: Set by `textguard serve --workers N` to the `on_disk` fingerprint of the artefact it has just
#: verified: a process finding the same fingerprint loads the artefact without hashing it again; one
#: that does not (a file rewritten or replaced since, as before a process respawned later) verifies it.
#: A process manager running the ASGI entry itself does not set it, and its processes verify.
VERIFIED_ENV = "TEXTGUARD_VERIFIED_ARTEFACT"


def on_disk(directory: Path) -> str:
    """What the files of an artefact directory are on disk: each file's name, size, inode and
    modification and change times. Writing, replacing or renaming a file changes it (a file's change
    time cannot be set back by a process). Taken before hashing, so a change during it shows too."""
    import hashlib

    directory = directory.expanduser().resolve()
    entries = [str(directory)]
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            st = path.stat()
            name = path.relative_to(directory)
            entries.append(f"{name}:{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}")
    return hashlib.sha256("\n".join(entries).encode("utf-8")).hexdigest()


def verified_by_parent(model: str) -> bool:
    """Whether `textguard serve` verified the artefact `model` names and its files are as they were."""
    expected = os.environ.get(VERIFIED_ENV)
    directory = Path(model).expanduser()
    return expected is not None and directory.is_dir() and on_disk(directory) == expected


#: Values of a boolean TEXTGUARD_* variable that turn a setting off (as pydantic reads them).
_OFF = frozenset({"0", "off", "f", "false", "n", "no"})


def setting_hint(flags: Mapping[str, Any], name: str, default: str) -> str:
    """A setting as the flags or its TEXTGUARD_* variable give it, lower-cased, before the settings
    are built (their module's import and validation take 0.3 s): a hint, which the settings confirm."""
    value = flags.get(name, os.environ.get(f"TEXTGUARD_{name.upper()}", default))
    return str(value).strip().lower()


def start_first_worker(flags: Mapping[str, Any]) -> WorkerProcess | None:
    """The first inference worker process, started before the settings are built, or None where the
    flags or TEXTGUARD_* variables turn inference processes off.

    Its torch import (1.3-1.9 s of one core on the bench machines) is the longest step of a start, and
    the settings' import and validation take the main thread another 0.3 s, while the other core is
    idle: started before them, the worker started 0.2 s sooner (e5, fourteenth session; the ready
    time moved by less than the machine's noise, README Performance). `first_worker_for` checks it
    against the settings once they are built.
    """
    if setting_hint(flags, "inference_processes", "true") in _OFF:
        return None
    from textguard.inference_worker import WorkerProcess

    return WorkerProcess(preimport_torch=setting_hint(flags, "backend", "torch") == "torch")


def first_worker_for(settings: Any, worker: WorkerProcess | None) -> WorkerProcess | None:
    """`worker` (from `start_first_worker`) where `settings` use it as `Preload` would have started it:
    inference processes on, torch imported ahead for the torch backend only. Otherwise (no settings,
    or a TEXTGUARD_* value spelled unlike `setting_hint` reads it) it is discarded and None returned."""
    if worker is None:
        return None
    if (
        settings is not None
        and settings.inference_processes
        and worker.preimport_torch == (settings.backend == "torch")
    ):
        return worker
    worker.discard()
    return None


class Preload:
    """The served model's first load, started before the web stack is imported and the app built (both
    take ~0.5 s of the main thread; e5's load ~2.5 s). A local artefact's checksums are hashed once,
    beside the load (hashlib releases the GIL: e5's 470 MB took 0.4-0.7 s on the bench machines), and
    the load is handed to the service only once they matched."""

    def __init__(
        self,
        settings: Any,
        directory: Path | None,
        *,
        verified: bool = False,
        first_worker: WorkerProcess | None = None,
    ) -> None:
        """`directory`: a local artefact whose checksums are hashed here, beside the load; None: the
        loader checks the model itself (a registry download), unless `verified` says the caller has
        just verified it (`VERIFIED_ENV`). `first_worker`: with `inference_processes`, the first
        inference worker, started by the caller before this (`start_first_worker`); one is started
        here otherwise."""
        from concurrent.futures import Future
        from threading import Thread

        self.verified: Future[None] = Future()
        self.loaded: Future[Any] = Future()
        self._first_worker = first_worker
        if settings.inference_processes and first_worker is None:
            from textguard.inference_worker import WorkerProcess

            # Its torch import runs on the other core from here on, beside everything below.
            self._first_worker = WorkerProcess(preimport_torch=settings.backend == "torch")
        if directory is None:
            self.verified.set_result(None)
        else:
            Thread(target=self._verify, args=(directory,), name="textguard-verify", daemon=True).start()
        Thread(
            target=self._load,
            args=(settings, directory is not None or verified),
            name="textguard-preload",
            daemon=True,
        ).start()

    def _verify(self, directory: Path) -> None:
        from textguard.spec import load_spec, verify_artifact

        try:
            verify_artifact(directory, load_spec(directory))
        except BaseException as exc:  # handed to the CLI, which reports it in one line
            self.verified.set_exception(exc)
        else:
            self.verified.set_result(None)

    def _load(self, settings: Any, verified: bool) -> None:
        try:
            from textguard.service.model_manager import ModelManager

            loaded = ModelManager(settings, first_worker=self._first_worker).load_now(verified=verified)
        except BaseException as exc:  # a tampered file explains a failed load best: report that
            self.loaded.set_exception(self.verified.exception() or exc)
            return
        failure = self.verified.exception()  # waits for the checksums: never serve what failed them
        if failure is not None:
            self.loaded.set_exception(failure)
        else:
            self.loaded.set_result(loaded)

    def wait_verified(self) -> None:
        """Return once the checksums matched; raise what verification raised."""
        self.verified.result()
