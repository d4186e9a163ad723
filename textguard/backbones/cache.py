"""Build a backbone directory once, record its files' checksums, and reuse it while they still match.

A directory is valid when its manifest (`textguard-backbone.json`) names the expected build key and
every file it lists has the recorded sha256. Anything else (missing, half-written, edited, an older
converter) is rebuilt. Builds happen in a temporary sibling directory that is renamed into place in
one step, under a lock file, so concurrent processes (torchrun ranks, two terminals) neither see a
half-written directory nor convert twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from textguard.errors import ModelLoadError

log = logging.getLogger(__name__)

MANIFEST_FILE = "textguard-backbone.json"


def read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        document = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def problems(directory: Path, build_key: str) -> list[str]:
    """Why `directory` is not a valid build of `build_key` (empty when it is)."""
    from textguard.spec import sha256_file

    manifest = read_manifest(directory)
    if manifest is None:
        return [f"{MANIFEST_FILE} is missing or unreadable"]
    if manifest.get("build_key") != build_key:
        return [f"built as {manifest.get('build_key')!r}, expected {build_key!r}"]
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return [f"{MANIFEST_FILE} lists no files"]
    found = []
    for name, expected in sorted(files.items()):
        path = directory / name
        if not path.is_file():
            found.append(f"{name} is missing")
        elif sha256_file(path) != expected:
            found.append(f"{name} does not match its recorded sha256")
    return found


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX); elsewhere the atomic rename alone keeps builds safe."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _replaceable(directory: Path) -> bool:
    """Only our own builds and empty folders are ever deleted, never a user's unrelated directory."""
    return (directory / MANIFEST_FILE).is_file() or not any(directory.iterdir())


def _share(directory: Path) -> None:
    """Permissions as if created normally (mkdtemp makes 0700, some writers 0600): a shared cache must
    be readable by everyone the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for path in directory.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def ensure_built(
    directory: Path,
    build_key: str,
    build: Callable[[Path], dict[str, Any]],
) -> tuple[Path, dict[str, Any]]:
    """`directory` as a valid build of `build_key`, building it first when needed.

    `build(tmp)` writes the files into an empty folder and returns manifest fields (provenance); the
    manifest adds the build key and every file's sha256.
    """
    from textguard.spec import compute_checksums

    directory = directory.expanduser().absolute()
    with _locked(directory.with_name(f".{directory.name}.lock")):
        if directory.exists():
            if not directory.is_dir():
                raise ModelLoadError(f"{directory} exists and is not a directory; choose another path")
            found = problems(directory, build_key)
            if not found:
                manifest = read_manifest(directory)
                assert manifest is not None
                return directory, manifest
            if not _replaceable(directory):
                raise ModelLoadError(
                    f"{directory} exists and is not a prepared backbone; remove it or choose another path"
                )
            log.warning("rebuilding %s: %s", directory, "; ".join(found))
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.build-", dir=directory.parent))
        try:
            provenance = build(tmp)
            manifest = {**provenance, "build_key": build_key, "files": compute_checksums(tmp)}
            (tmp / MANIFEST_FILE).write_text(
                json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            _share(tmp)
            if directory.exists():
                stale = directory.with_name(f".{directory.name}.stale-{uuid.uuid4().hex[:8]}")
                os.rename(directory, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.rename(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return directory, manifest
