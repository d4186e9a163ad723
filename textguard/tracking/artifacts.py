"""Fetch logged models to a local artefact directory, and publish derived files (ONNX) back.

`download_model("models:/textguard@champion")` returns a directory that `Scorer.from_artifact` loads
like any local artefact. Downloads land in a cache (`$TEXTGUARD_CACHE_DIR`, else
`~/.cache/textguard/models`), one folder per tracking store and model version; a cached copy is reused
only while its textguard.json is byte-identical to the remote one, and since that file records the
sha256 of every other file (checked again at load), an equal spec means equal content.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textguard.errors import ModelLoadError
from textguard.spec import SPEC_FILENAME
from textguard.tracking.model_logging import ARTIFACT_SUBDIR

if TYPE_CHECKING:
    from mlflow import MlflowClient

CACHE_ENV = "TEXTGUARD_CACHE_DIR"
ORIGIN_FILE = ".textguard-origin.json"

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)/?$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)/?$")
_RUN_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-zA-Z]+)/(?P<path>[^?#]+?)/?$")


@dataclass(frozen=True)
class ModelOrigin:
    """Where a downloaded artefact came from (written beside it, read by `textguard export`)."""

    uri: str
    tracking_uri: str
    download_uri: str
    run_id: str | None = None
    model_id: str | None = None
    name: str | None = None
    version: int | None = None
    #: Path of the artefact directory inside what `download_uri` names ("" = its root).
    subdir: str = ARTIFACT_SUBDIR
    #: For plain run artefacts (no LoggedModel): the artifact path inside the run.
    run_artifact_path: str | None = None
    #: Storage URI of the LoggedModel's files (models:/<model_id>/<path> URIs are not resolvable).
    artifact_location: str | None = None


def cache_root() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "textguard" / "models"


def _fail(uri: str, tracking_uri: str, detail: str) -> ModelLoadError:
    return ModelLoadError(f"cannot load model {uri} from MLflow tracking store {tracking_uri}: {detail}")


def _message(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or exc).strip().splitlines()[0][:500]


def _resolve(uri: str, client: MlflowClient, tracking_uri: str) -> tuple[ModelOrigin, str]:
    """The concrete origin of `uri` and a cache key that changes whenever the content can."""
    from mlflow.exceptions import MlflowException

    try:
        if match := _ALIAS_URI.match(uri):
            mv = client.get_model_version_by_alias(match["name"], match["alias"])
            return _from_version(uri, tracking_uri, match["name"], mv)
        if match := _VERSION_URI.match(uri):
            mv = client.get_model_version(match["name"], match["version"])
            return _from_version(uri, tracking_uri, match["name"], mv)
        if match := _LOGGED_MODEL_URI.match(uri):
            model = client.get_logged_model(match["model_id"])
            origin = ModelOrigin(uri, tracking_uri, uri, run_id=model.source_run_id, model_id=model.model_id)
            return origin, f"logged/{model.model_id}"
        if match := _RUN_URI.match(uri):
            return _from_run(uri, tracking_uri, client, match["run_id"], match["path"])
    except MlflowException as exc:
        raise _fail(uri, tracking_uri, _message(exc)) from None
    raise ModelLoadError(
        f"unsupported model URI {uri!r}: use runs:/<run_id>/model, models:/<name>@<alias> or "
        "models:/<name>/<version>"
    )


def _from_version(uri: str, tracking_uri: str, name: str, mv: Any) -> tuple[ModelOrigin, str]:
    source = str(mv.source or "")
    logged = _LOGGED_MODEL_URI.match(source)
    model_id = logged["model_id"] if logged else None
    download_uri = source if logged else f"models:/{name}/{mv.version}"
    origin = ModelOrigin(
        uri,
        tracking_uri,
        download_uri,
        run_id=mv.run_id or None,
        model_id=model_id,
        name=name,
        version=int(mv.version),
    )
    return origin, f"{name}/v{mv.version}-{model_id or 'src'}"


def _from_run(
    uri: str, tracking_uri: str, client: MlflowClient, run_id: str, path: str
) -> tuple[ModelOrigin, str]:
    run = client.get_run(run_id)  # raises RESOURCE_DOES_NOT_EXIST for an unknown run
    # MLflow 3 keeps a run's models as LoggedModels; `runs:/<id>/<name>` means the one called <name>.
    for output in getattr(run.outputs, "model_outputs", None) or []:
        model = client.get_logged_model(output.model_id)
        if model.name == path:
            origin = ModelOrigin(
                uri, tracking_uri, f"models:/{model.model_id}", run_id=run_id, model_id=model.model_id
            )
            return origin, f"runs/{run_id}/{path}"
    # A plain directory of run artifacts (e.g. logged with log_dir).
    origin = ModelOrigin(uri, tracking_uri, uri, run_id=run_id, subdir="", run_artifact_path=path)
    return origin, f"runs/{run_id}/{path}"


def _store_key(tracking_uri: str) -> str:
    return hashlib.sha256(tracking_uri.encode("utf-8")).hexdigest()[:12]


def _download(artifact_uri: str, destination: Path, tracking_uri: str) -> Path:
    import mlflow

    from textguard.tracking.uris import global_tracking_uri

    destination.mkdir(parents=True, exist_ok=True)
    # MLflow 3.17 resolves `models:/m-<id>` (the LoggedModel behind a registered version) against the
    # process-wide tracking URI even when `download_artifacts` is given another one.
    with global_tracking_uri(tracking_uri):
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=artifact_uri, dst_path=str(destination), tracking_uri=tracking_uri
            )
        )


def find_artifact_dir(root: Path) -> Path:
    """The folder holding textguard.json inside a downloaded model (pyfunc layout or a bare directory)."""
    for candidate in (root / ARTIFACT_SUBDIR, root):
        if (candidate / SPEC_FILENAME).is_file():
            return candidate
    found = sorted(root.rglob(SPEC_FILENAME))
    if len(found) == 1:
        return found[0].parent
    if not found:
        raise ModelLoadError(
            f"{root}: the downloaded model has no {SPEC_FILENAME}; it is not a textguard model"
        )
    raise ModelLoadError(f"{root}: the downloaded model holds several {SPEC_FILENAME} files: {found}")


def _remote_spec(origin: ModelOrigin, workdir: Path) -> bytes | None:
    """The remote textguard.json alone (cheap), or None if the layout is not the usual one."""
    from mlflow.exceptions import MlflowException

    relative = f"{origin.subdir}/{SPEC_FILENAME}" if origin.subdir else SPEC_FILENAME
    base = origin.artifact_location or origin.download_uri
    try:
        path = _download(f"{base.rstrip('/')}/{relative}", workdir, origin.tracking_uri)
    except (MlflowException, OSError):
        return None
    return path.read_bytes() if path.is_file() else None


def _swap_into_place(fresh: Path, target: Path) -> None:
    """Replace `target` by `fresh` without a window where a half-written copy is visible."""
    if target.exists():
        trash = target.with_name(f"{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        fresh.rename(target)
    except OSError:
        # Another process put a copy in place first: keep theirs (same content by construction).
        shutil.rmtree(fresh, ignore_errors=True)


def download_model(uri: str, *, tracking_uri: str | None = None) -> Path:
    """A local artefact directory (with textguard.json) for a runs:/ or models:/ URI.

    Raises ModelLoadError naming the URI and the tracking store when the run, model, alias or version
    does not exist, or the tracking server does not answer.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from textguard.tracking.uris import check_store, current_tracking_uri

    store = tracking_uri or current_tracking_uri()
    if uri.startswith("mlflow-artifacts:/"):
        check_store(store, f"model {uri}")
        origin = ModelOrigin(uri, store, uri, subdir="")
        key = "artifacts/" + hashlib.sha256(uri.encode()).hexdigest()[:16]
    else:
        check_store(store, f"model {uri}")
        client = MlflowClient(tracking_uri=store, registry_uri=store)
        origin, key = _resolve(uri, client, store)
        if origin.model_id:
            try:
                location = client.get_logged_model(origin.model_id).artifact_location
            except MlflowException as exc:
                raise _fail(uri, store, _message(exc)) from None
            origin = _with(origin, artifact_location=location)

    target = cache_root() / _store_key(store) / key
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spec-", dir=target.parent) as spec_dir:
        remote_spec = _remote_spec(origin, Path(spec_dir))
    if remote_spec is not None and target.is_dir():
        try:
            cached = find_artifact_dir(target)
        except ModelLoadError:
            cached = None
        if cached is not None and (cached / SPEC_FILENAME).read_bytes() == remote_spec:
            return cached

    fresh = target.with_name(f"{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        root = _download(origin.download_uri, fresh, store)
        artifact_dir = find_artifact_dir(root)
        relative = artifact_dir.relative_to(fresh).as_posix()
        origin = _with(origin, subdir=_subdir_of(root, artifact_dir))
        (fresh / ORIGIN_FILE).write_text(json.dumps(asdict(origin), indent=2) + "\n", encoding="utf-8")
    except MlflowException as exc:
        shutil.rmtree(fresh, ignore_errors=True)
        raise _fail(uri, store, _message(exc)) from None
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    _swap_into_place(fresh, target)
    return target / relative if relative != "." else target


def _subdir_of(root: Path, artifact_dir: Path) -> str:
    relative = artifact_dir.relative_to(root).as_posix()
    return "" if relative == "." else relative


def _with(origin: ModelOrigin, **changes: Any) -> ModelOrigin:
    return ModelOrigin(**{**asdict(origin), **changes})


def model_origin(directory: Path) -> ModelOrigin | None:
    """The MLflow origin of an artefact directory that `download_model` produced (else None)."""
    directory = directory.resolve()
    for folder in (directory, *directory.parents[:3]):
        path = folder / ORIGIN_FILE
        if path.is_file():
            try:
                return ModelOrigin(**json.loads(path.read_text(encoding="utf-8")))
            except (TypeError, ValueError):
                return None
    return None


def publish_files(directory: Path, files: list[Path]) -> str | None:
    """Upload files of a downloaded artefact back to where it came from; returns where, or None.

    Files go into the LoggedModel (so `models:/` URIs of the same version include them) or, for a
    plain run directory, into the run's artifacts at the same path.
    """
    from mlflow import MlflowClient

    origin = model_origin(directory)
    if origin is None:
        return None
    client = MlflowClient(tracking_uri=origin.tracking_uri)
    for path in files:
        relative_parent = path.parent.resolve().relative_to(directory.resolve()).as_posix()
        inner = "" if relative_parent == "." else relative_parent
        if origin.model_id:
            destination = "/".join(part for part in (origin.subdir, inner) if part) or None
            client.log_model_artifact(origin.model_id, str(path), destination)
        elif origin.run_id and origin.run_artifact_path:
            destination = "/".join(part for part in (origin.run_artifact_path, inner) if part)
            client.log_artifact(origin.run_id, str(path), destination)
        else:
            return None
    return (
        f"models:/{origin.model_id}"
        if origin.model_id
        else f"runs:/{origin.run_id}/{origin.run_artifact_path}"
    )


def log_to_source_run(
    directory: Path,
    *,
    files: dict[str, Path] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    version_tags: dict[str, str] | None = None,
) -> str | None:
    """Attach files (artifact path -> local file), metrics and tags to the run that produced a model;
    `tags` also go on the registered version the model was fetched as, `version_tags` only there."""
    from mlflow import MlflowClient

    origin = model_origin(directory)
    if origin is None or not origin.run_id:
        return None
    client = MlflowClient(tracking_uri=origin.tracking_uri, registry_uri=origin.tracking_uri)
    for artifact_path, local in (files or {}).items():
        folder = os.path.dirname(artifact_path) or None
        if Path(local).name != os.path.basename(artifact_path):
            with tempfile.TemporaryDirectory() as tmp:
                renamed = Path(tmp) / os.path.basename(artifact_path)
                shutil.copy2(local, renamed)
                client.log_artifact(origin.run_id, str(renamed), folder)
        else:
            client.log_artifact(origin.run_id, str(local), folder)
    if metrics:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(origin.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    for key, value in (tags or {}).items():
        client.set_tag(origin.run_id, key, value)
    if origin.name and origin.version is not None:
        for key, value in {**(tags or {}), **(version_tags or {})}.items():
            client.set_model_version_tag(origin.name, str(origin.version), key, value)
    return origin.run_id
