"""Finding runs across experiments: id prefixes, the `textguard runs` listing, models behind a run.

Run ids are 32 hex characters; people copy the first 8. Every command that takes a run id
(`compare`, `evaluate --baseline`, `promote --run`) resolves it here: a full id, or a prefix that
matches exactly one run in the store (any experiment, deleted runs excluded). An ambiguous prefix is
refused with the candidates, an unknown one with the hint to list runs.

Training and evaluation runs log the same metrics under different names. The listing shows them
under the evaluation names with ONE mapping: a training run's `test_<metric>` (the held-out test split
at the calibrated thresholds, what `textguard evaluate` measures on the same split) is shown as
`<metric>`; a training run without a test split shows its `calibrated_validation_<metric>` instead,
marked as validation figures. Nothing else is renamed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from textguard.errors import ConfigError, TextguardError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

RUN_TYPE_TAG = "textguard.run_type"
#: Shortest prefix printed (and accepted without a warning of ambiguity).
MIN_PREFIX = 8
#: A run id or a prefix of one (an ambiguous prefix is refused with the candidates).
RUN_PREFIX = re.compile(r"^[0-9a-f]{1,32}$")
#: What `evaluate --model/--baseline` treats as a run id rather than a path: as `textguard runs` prints.
PRINTED_RUN_ID = re.compile(r"^[0-9a-f]{8,32}$")
#: Training metric prefixes shown under the evaluation names, in order of preference.
TRAINING_METRIC_SOURCES = (("test_", "test"), ("calibrated_validation_", "validation"))
#: Runs read per search call, and at most this many in one listing (newest first).
PAGE_SIZE = 1000
MAX_RUNS = 50_000


def _client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _experiments(client: MlflowClient, names: Sequence[str] | None, tracking_uri: str) -> dict[str, str]:
    """id -> name of the active experiments, or of the named ones (unknown names are an error)."""
    found = {item.experiment_id: item.name for item in client.search_experiments()}
    if not names:
        return found
    by_name = {name: experiment_id for experiment_id, name in found.items()}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ConfigError(
            f"experiment(s) {unknown} not found at {tracking_uri}; experiments there: {sorted(by_name)}"
        )
    return {by_name[name]: name for name in names}


def _search(client: MlflowClient, experiment_ids: list[str], filter_string: str = "") -> list[Run]:
    runs: list[Run] = []
    token: str | None = None
    while len(runs) < MAX_RUNS:
        page = client.search_runs(
            experiment_ids,
            filter_string,
            max_results=PAGE_SIZE,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def resolve_run_id(reference: str, tracking_uri: str) -> str:
    """The full id of the run `reference` names (a full id or a unique prefix, any experiment)."""
    from mlflow.exceptions import MlflowException

    from textguard.tracking.uris import check_store

    value = reference.strip().lower()
    if not RUN_PREFIX.match(value):
        raise ConfigError(
            f"{reference!r} is not a run id: give a run id or its first characters (hex digits) as "
            "`textguard runs` prints them"
        )
    check_store(tracking_uri, f"run {reference}", error=TextguardError)
    client = _client(tracking_uri)
    experiments = _experiments(client, None, tracking_uri)
    if not experiments:
        raise TextguardError(f"run {reference} not found at {tracking_uri}: the store has no experiments")
    try:
        matches = _search(client, list(experiments), f"attributes.run_id LIKE '{value}%'")
    except MlflowException as exc:
        raise TextguardError(f"cannot search runs at {tracking_uri}: {exc.message}") from None
    if not matches:
        raise TextguardError(f"run {reference} not found at {tracking_uri}; list runs with `textguard runs`")
    if len(matches) > 1:
        shown = ", ".join(
            f"{run.info.run_id} ({run.info.run_name or '-'}, {experiments.get(run.info.experiment_id, '?')})"
            for run in matches[:5]
        )
        more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
        raise ConfigError(
            f"run id prefix {reference!r} is ambiguous: it matches {len(matches)} runs ({shown}{more}); "
            "give more characters"
        )
    return str(matches[0].info.run_id)


def resolve_run_ids(references: Sequence[str], tracking_uri: str) -> list[str]:
    return [resolve_run_id(reference, tracking_uri) for reference in references]


def unique_prefixes(run_ids: Sequence[str], minimum: int = MIN_PREFIX) -> dict[str, str]:
    """The shortest prefix (at least `minimum` characters) that tells each id apart from all others."""
    ordered = sorted(set(run_ids))
    prefixes = {}
    for index, run_id in enumerate(ordered):
        length = minimum
        for neighbour in (
            ordered[index - 1] if index else None,
            ordered[index + 1] if index + 1 < len(ordered) else None,
        ):
            if neighbour is None:
                continue
            shared = next(
                (position for position, (a, b) in enumerate(zip(run_id, neighbour, strict=False)) if a != b),
                min(len(run_id), len(neighbour)),
            )
            length = max(length, shared + 1)
        prefixes[run_id] = run_id[: min(length, len(run_id))]
    return prefixes


# -- what a run evaluated or trained --------------------------------------------------------------


def run_type(tags: dict[str, str]) -> str:
    return tags.get(RUN_TYPE_TAG) or ("training" if tags.get("textguard.base_model") else "")


def registered_version_of(run: Run, client: MlflowClient) -> tuple[str, str]:
    """(registered name, version) of the model a run evaluated, or registered, or ("", "")."""
    from mlflow.exceptions import MlflowException

    tags = run.data.tags
    name, version = tags.get("textguard.model.name", ""), tags.get("textguard.model.version", "")
    if version or run_type(tags) == "evaluation":
        return name, version
    try:
        versions = list(client.search_model_versions(f"run_id = '{run.info.run_id}'"))
    except MlflowException:
        versions = []
    if not versions:
        return "", ""
    newest = max(versions, key=lambda mv: int(mv.version))
    return str(newest.name), str(newest.version)


def model_reference(value: str, tracking_uri: str) -> str:
    """A model URI or artefact path as given; a run id (or prefix) becomes the model of that run.

    An evaluation run names the model version it evaluated (`models:/<name>/<version>`, or the URI it
    was given); a training run its logged model (`runs:/<id>/model`).
    """
    from pathlib import Path

    text = value.strip()
    if "/" in text or ":" in text or Path(text).exists() or not PRINTED_RUN_ID.match(text.lower()):
        return text
    run_id = resolve_run_id(text, tracking_uri)
    run = _client(tracking_uri).get_run(run_id)
    tags = run.data.tags
    if run_type(tags) == "evaluation":
        name, version = tags.get("textguard.model.name"), tags.get("textguard.model.version")
        if name and version:
            return f"models:/{name}/{version}"
        if tags.get("textguard.model.uri"):
            return tags["textguard.model.uri"]
        raise TextguardError(f"evaluation run {run_id} does not record which model it evaluated")
    if run_type(tags) == "comparison":
        raise ConfigError(f"run {run_id} is a comparison run; give an evaluation or training run")
    return f"runs:/{run_id}/model"


# -- the listing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    """One line of `textguard runs`."""

    run_id: str
    short_id: str
    run_name: str
    experiment: str
    run_type: str
    status: str
    start_time: int
    model: str
    model_uri: str
    version: str
    aliases: list[str]
    base_model: str
    data_digest: str
    #: Metrics under the evaluation names (see the module docstring for training runs).
    metrics: dict[str, float]
    #: Where `metrics` come from: "evaluated split", "test" or "validation" (training runs).
    metrics_from: str
    gate: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def display_metrics(run_kind: str, metrics: dict[str, float]) -> tuple[dict[str, float], str]:
    """A run's metrics under the evaluation names, and where they come from."""
    if run_kind != "training":
        return dict(metrics), "evaluated split" if run_kind == "evaluation" else ""
    for prefix, source in TRAINING_METRIC_SOURCES:
        mapped = {key[len(prefix) :]: value for key, value in metrics.items() if key.startswith(prefix)}
        if mapped:
            return mapped, source
    return {}, ""


def _dataset_digest(run: Run) -> str:
    inputs = getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []
    by_context = {}
    for item in inputs:
        context = next((tag.value for tag in item.tags if tag.key == "mlflow.data.context"), "")
        by_context[context] = item.dataset.digest
    return by_context.get("evaluation") or by_context.get("test") or next(iter(by_context.values()), "")


@dataclass(frozen=True)
class RunListing:
    rows: list[RunRow]
    #: Metric names the listed runs have (what --sort accepts).
    known_metrics: list[str]
    experiments: list[str]


def list_runs(
    tracking_uri: str,
    *,
    experiments: Sequence[str] | None = None,
    run_types: Sequence[str] | None = None,
    sort: str | None = None,
    limit: int | None = 20,
) -> RunListing:
    """Runs across experiments (or the named ones), newest first or by `sort` descending.

    `sort` must be a metric some listed run has (under the evaluation names); runs without it come
    last. An unknown metric is a ConfigError that lists the known ones.
    """
    from mlflow.exceptions import MlflowException

    from textguard.tracking.uris import check_store

    check_store(tracking_uri, "the run listing", error=TextguardError)
    client = _client(tracking_uri)
    every = _experiments(client, None, tracking_uri)
    chosen = _experiments(client, experiments, tracking_uri)
    try:
        runs = _search(client, list(every)) if every else []
    except MlflowException as exc:
        raise TextguardError(f"cannot search runs at {tracking_uri}: {exc.message}") from None
    # Prefixes unique in the whole store: what resolve_run_id will accept back.
    prefixes = unique_prefixes([run.info.run_id for run in runs])
    selected = [
        run
        for run in runs
        if run.info.experiment_id in chosen
        and (not run_types or (run_type(run.data.tags) or "other") in run_types)
    ]
    converted = [(run, *display_metrics(run_type(run.data.tags), dict(run.data.metrics))) for run in selected]
    known = sorted({name for _, metrics, _ in converted for name in metrics})
    if sort is not None and sort not in known:
        raise ConfigError(
            f"unknown --sort metric {sort!r}; the listed runs have: {', '.join(known) or '(no metrics)'}"
        )
    if sort is not None:
        # Stable sort: runs without the metric keep their newest-first order after the others.
        converted.sort(key=lambda item: (sort not in item[1], -item[1].get(sort, 0.0)))
    if limit is not None:
        converted = converted[:limit]
    aliases: dict[tuple[str, str], list[str]] = {}
    rows = []
    for run, metrics, metrics_from in converted:
        tags = run.data.tags
        name, version = registered_version_of(run, client)
        if name and version and (name, version) not in aliases:
            try:
                aliases[(name, version)] = sorted(client.get_model_version(name, version).aliases)
            except MlflowException:
                aliases[(name, version)] = []
        rows.append(
            RunRow(
                run_id=run.info.run_id,
                short_id=prefixes.get(run.info.run_id, run.info.run_id),
                run_name=run.info.run_name or "",
                experiment=chosen.get(run.info.experiment_id, ""),
                run_type=run_type(tags),
                status=run.info.status,
                start_time=int(run.info.start_time or 0),
                model=name,
                model_uri=tags.get("textguard.model.uri", ""),
                version=version,
                aliases=aliases.get((name, version), []),
                base_model=tags.get("textguard.base_model", ""),
                data_digest=tags.get("textguard.data.digest") or _dataset_digest(run),
                metrics=metrics,
                metrics_from=metrics_from,
                gate=tags.get("textguard.gate.status", ""),
            )
        )
    return RunListing(rows, known, sorted(chosen.values()))
