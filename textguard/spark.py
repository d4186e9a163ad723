"""Scoring partitioned Parquet archives on Apache Spark through the one decision path, `Moderator`.

    driver:    list the input files (a directory, a glob or one file; local paths or any filesystem
               pyarrow opens: s3://, hdfs://, gs://), plan one unit of work per file (row groups
               split into units of about `unit_rows` rows), check the policy against the model, write
               a manifest (model, policy, options) into the output, and skip every unit whose output
               file exists: a rerun after a failure scores only what is missing
    executors: each Python worker loads the model once (the artefact shipped with `addFile`, or a
               path every executor can read) and keeps it for every unit it runs; a unit streams its
               row groups through `batch.score_frame` (the Scorer batches by tokens) and writes one
               Parquet file, temp name first, renamed when complete: an output file is a finished unit
    progress:  the driver counts finished output files while the job runs

The output mirrors the input's directory layout (Hive partitions like `day=2026-11-01/` included), one
file per unit, with the input's columns plus the decision columns of `textguard score` and
`model_name`, `model_version`, `policy` and `policy_version` on every row. Read it with
`spark.read.parquet(output)` or `pandas.read_parquet(output)`.

pyspark is an optional dependency (`pip install "textguard[spark]"`); this module imports it only when
a job starts. For a DataFrame that is already in Spark, `mlflow.pyfunc.spark_udf` on the registered
model goes through the same Moderator (see textguard/tracking/pyfunc_model.py and docs/spark.md).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textguard.batch import (
    ACTION_COLUMN,
    DEFAULT_CHUNK_SIZE,
    PARQUET_STREAMING,
    PREDICTED_COLUMN,
    _progress,
    arrow_schema,
    arrow_table,
    check_text_column,
    parquet_ready,
    score_frame,
)
from textguard.errors import ConfigError, DataError, TextguardError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from textguard.moderation import Moderator, ServedModel

MANIFEST = "_textguard.json"
SUCCESS = "_SUCCESS"
TMP_PREFIX = "_tmp-"
MODEL_NAME_COLUMN = "model_name"
MODEL_VERSION_COLUMN = "model_version"
POLICY_COLUMN = "policy"
POLICY_VERSION_COLUMN = "policy_version"
#: Rows per unit of work (one Spark task, one output file); row groups are never split.
DEFAULT_UNIT_ROWS = 50_000
INSTALL_HINT = 'pyspark is not installed: pip install "textguard[spark]"'
#: Settings of a session this module starts itself (a `spark-submit` or an active session keeps its own).
LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "1g",
    "spark.python.worker.reuse": "true",
    "spark.ui.showConsoleProgress": "false",
}


@dataclass(frozen=True)
class Unit:
    """Row groups [first, stop) of one input file: one Spark task, one output file."""

    path: str
    relative: str
    first: int
    stop: int
    rows: int
    #: Rows of the file before this unit (numbers rows when there is no `id` column).
    offset: int

    @property
    def output(self) -> str:
        stem = self.relative[: -len(".parquet")] if self.relative.endswith(".parquet") else self.relative
        return f"{stem}.rg{self.first:05d}-{self.stop:05d}.parquet"


@dataclass(frozen=True)
class Job:
    """What every executor needs to score a unit: picklable, small (the policy travels as YAML text)."""

    artifact: str
    shipped: bool
    model_name: str
    model_version: str
    policy_yaml: str | None
    policy_name: str | None
    policy_label: str
    policy_version: str
    text_column: str
    evidence: bool
    chunk_rows: int
    max_tokens: int | None
    batch_size: int | None
    output: str
    backend: str = "torch"
    quantized: bool = False
    precision: str = "auto"

    @property
    def key(self) -> str:
        return (
            f"{self.artifact}|{self.model_version}|{self.max_tokens}|{self.batch_size}|{self.policy_version}"
        )


@dataclass
class ArchiveSummary:
    input: str
    output: str
    units: int
    skipped_units: int
    rows: int
    scored_rows: int
    seconds: float
    positives: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] | None = None

    def describe(self) -> str:
        rate = self.scored_rows / self.seconds if self.seconds > 0 else float("inf")
        text = (
            f"scored {self.scored_rows} rows in {self.seconds:.1f}s ({rate:.0f}/s) on Spark -> {self.output}"
            f" ({self.units} units, {self.skipped_units} already done; {self.rows} rows in the output)"
        )
        text += "; flagged: " + ", ".join(f"{label}={count}" for label, count in self.positives.items())
        if self.actions:
            text += "; actions: " + ", ".join(f"{k}={v}" for k, v in sorted(self.actions.items()))
        return text


# -- inputs and units ------------------------------------------------------------------------------------


def _filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    import pyarrow.fs as pafs

    if "://" in location:
        try:
            return pafs.FileSystem.from_uri(location)
        except (ValueError, OSError) as exc:
            raise DataError(f"cannot open {location}: {exc}") from None
    return pafs.LocalFileSystem(), str(Path(location).expanduser().absolute())


def _is_data_file(relative: str) -> bool:
    return relative.endswith(".parquet") and not any(
        part.startswith(("_", ".")) for part in relative.split("/")
    )


def find_inputs(spec: str) -> tuple[pafs.FileSystem, str, list[str]]:
    """(filesystem, root, files relative to root) for a directory, a glob or one Parquet file."""
    import pyarrow.fs as pafs

    magic = any(char in spec for char in "*?[")
    base = spec
    if magic:
        parts = spec.split("/")
        cut = next(i for i, part in enumerate(parts) if any(char in part for char in "*?["))
        base = "/".join(parts[:cut]) or "/"
    fs, root = _filesystem(base)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"input {spec} not found")
    if info.type == pafs.FileType.File:
        if not root.endswith(".parquet"):
            raise DataError(f"{spec}: --engine spark reads Parquet (a .parquet file, a directory or a glob)")
        parent, _, name = root.rpartition("/")
        return fs, parent, [name]
    root = root.rstrip("/")
    selector = pafs.FileSelector(root, recursive=True)
    found = sorted(
        entry.path[len(root) + 1 :]
        for entry in fs.get_file_info(selector)
        if entry.type == pafs.FileType.File
    )
    files = [relative for relative in found if _is_data_file(relative)]
    if magic:
        pattern = spec[len(base) :].lstrip("/")
        files = [relative for relative in files if fnmatch.fnmatch(relative, pattern)]
    if not files:
        raise DataError(f"no Parquet files in {spec}")
    return fs, root, files


def plan_units(fs: pafs.FileSystem, root: str, files: list[str], unit_rows: int) -> list[Unit]:
    """Units of whole row groups, about `unit_rows` rows each, from each file's footer."""
    import pyarrow.parquet as pq

    units = []
    for relative in files:
        path = f"{root}/{relative}"
        try:
            with fs.open_input_file(path) as handle:
                metadata = pq.ParquetFile(handle).metadata
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        first, rows, offset = 0, 0, 0
        for group in range(metadata.num_row_groups):
            rows += metadata.row_group(group).num_rows
            if rows >= unit_rows or group == metadata.num_row_groups - 1:
                units.append(Unit(path, relative, first, group + 1, rows, offset))
                offset += rows
                first, rows = group + 1, 0
        if metadata.num_row_groups == 0:
            units.append(Unit(path, relative, 0, 0, 0, 0))
    return units


# -- executors -------------------------------------------------------------------------------------------

#: The model of each Python worker process, loaded on its first unit and kept for the next ones.
_LOADED: dict[str, tuple[Moderator, ServedModel]] = {}
_LOCK = threading.Lock()


def _policies_from_yaml(text: str) -> Any:
    import yaml

    from textguard.config import validate
    from textguard.policy import PolicyFile, PolicySet

    return PolicySet.from_config(validate(PolicyFile, yaml.safe_load(text), "policy"), "policy")


def worker_model(job: Job) -> tuple[Moderator, ServedModel]:
    """This process's Moderator and model for `job`, loaded once."""
    with _LOCK:
        if job.key in _LOADED:
            return _LOADED[job.key]
        import torch

        from textguard.moderation import Moderator, ServedModel
        from textguard.policy import Policy
        from textguard.scorer import Scorer

        directory = job.artifact
        if job.shipped:
            from pyspark import SparkFiles

            directory = SparkFiles.get(job.artifact)
        try:
            from pyspark import TaskContext

            context = TaskContext.get()
            cpus = context.cpus() if context is not None else 1
        except ImportError:
            cpus = 1
        torch.set_num_threads(max(1, int(cpus)))  # one task per core: no oversubscription
        options: dict[str, Any] = {}
        if job.batch_size:
            options["max_batch_size"] = job.batch_size
        if job.max_tokens:
            options["max_tokens"] = job.max_tokens
        scorer = Scorer.from_artifact(
            directory,
            backend=job.backend,  # type: ignore[arg-type]
            quantized=job.quantized,
            precision=job.precision,  # type: ignore[arg-type]
            intra_op_threads=max(1, int(cpus)),
            **options,
        )
        policies = _policies_from_yaml(job.policy_yaml) if job.policy_yaml else Policy.from_model_thresholds()
        served = ServedModel(scorer, job.model_name, job.model_version)
        _LOADED[job.key] = (Moderator(policies), served)
        return _LOADED[job.key]


def score_unit(job: Job, unit: Unit) -> dict[str, Any]:
    """Score one unit and write its output file (temp name, then renamed); returns its counts."""
    import pyarrow.parquet as pq

    moderator, served = worker_model(job)
    fs, out_root = _filesystem(job.output)
    out_root = out_root.rstrip("/")
    final = f"{out_root}/{unit.output}"
    directory = final.rpartition("/")[0]
    tmp = f"{directory}/{TMP_PREFIX}{uuid.uuid4().hex}.parquet"
    fs.create_dir(directory, recursive=True)
    started = time.perf_counter()
    rows = 0
    with fs.open_input_file(unit.path) as handle:
        parquet = pq.ParquetFile(handle, **PARQUET_STREAMING)
        input_schema = parquet.schema_arrow
        writer = None
        try:
            sink = fs.open_output_stream(tmp)
            batches = parquet.iter_batches(
                batch_size=job.chunk_rows,
                row_groups=list(range(unit.first, unit.stop)),
                use_threads=False,
            )
            for batch in batches:
                frame = batch.to_pandas()
                check_text_column(frame, job.text_column, unit.path, first_row=unit.offset + rows)
                scored = _decorate(
                    score_frame(
                        served,
                        frame,
                        job.text_column,
                        moderator=moderator,
                        policy=job.policy_name,
                        evidence=job.evidence,
                        chunk_size=job.chunk_rows,
                        progress=False,
                        first_row=unit.offset + rows,
                    ),
                    job,
                )
                if writer is None:
                    writer = pq.ParquetWriter(sink, arrow_schema(parquet_ready(scored), input_schema))
                writer.write_table(arrow_table(scored, writer.schema, unit.path))
                rows += len(scored)
            if writer is None:  # a unit without rows still writes the columns
                empty = _decorate(
                    score_frame(
                        served,
                        input_schema.empty_table().to_pandas(),
                        job.text_column,
                        moderator=moderator,
                        policy=job.policy_name,
                        evidence=job.evidence,
                        progress=False,
                    ),
                    job,
                )
                writer = pq.ParquetWriter(sink, arrow_schema(parquet_ready(empty), input_schema))
            writer.close()
            writer = None
            sink.close()
            fs.move(tmp, final)
        except BaseException:
            if writer is not None:
                writer.close()
            if fs.get_file_info(tmp).type.name == "File":
                fs.delete_file(tmp)
            raise
    return {"unit": unit.output, "rows": rows, "seconds": time.perf_counter() - started, "pid": os.getpid()}


def _decorate(frame: Any, job: Job) -> Any:
    frame[MODEL_NAME_COLUMN] = job.model_name
    frame[MODEL_VERSION_COLUMN] = job.model_version
    frame[POLICY_COLUMN] = job.policy_label
    frame[POLICY_VERSION_COLUMN] = job.policy_version
    return frame


# -- driver ----------------------------------------------------------------------------------------------


def spark_session(master: str | None, conf: dict[str, str] | None = None) -> tuple[Any, bool]:
    """The active session (a `spark-submit` or a caller's), else a new one; True when this made it."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    # Local workers run this interpreter (the one textguard is installed in), not the first python3 on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("textguard-score")
    if master:
        builder = builder.master(master)
    for key, value in {**LOCAL_DEFAULTS, **(conf or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate(), True


def _done_units(fs: pafs.FileSystem, out_root: str) -> set[str]:
    import pyarrow.fs as pafs

    if fs.get_file_info(out_root).type != pafs.FileType.Directory:
        return set()
    return {
        entry.path[len(out_root) + 1 :]
        for entry in fs.get_file_info(pafs.FileSelector(out_root, recursive=True))
        if entry.type == pafs.FileType.File
        and entry.path.endswith(".parquet")
        and not entry.base_name.startswith(TMP_PREFIX)
    }


def _clean_temps(fs: pafs.FileSystem, out_root: str) -> None:
    import pyarrow.fs as pafs

    if fs.get_file_info(out_root).type != pafs.FileType.Directory:
        return
    for entry in fs.get_file_info(pafs.FileSelector(out_root, recursive=True)):
        if entry.type == pafs.FileType.File and entry.base_name.startswith(TMP_PREFIX):
            fs.delete_file(entry.path)


def score_archive(
    model: str | Path,
    input: str,
    output: str,
    *,
    master: str | None = None,
    text_column: str = "text",
    policy_file: str | Path | None = None,
    policy: str | None = None,
    evidence: bool = False,
    max_tokens: int | None = None,
    batch_size: int | None = None,
    backend: str = "torch",
    quantized: bool = False,
    precision: str = "auto",
    unit_rows: int = DEFAULT_UNIT_ROWS,
    chunk_rows: int = DEFAULT_CHUNK_SIZE,
    overwrite: bool = False,
    progress: bool = True,
    spark_conf: dict[str, str] | None = None,
    ship_model: bool = True,
    on_unit_done: Callable[[int, int], None] | None = None,
) -> ArchiveSummary:
    """Score every row of a Parquet archive on Spark into `output` (a directory of Parquet files).

    A rerun with the same model, policy and input resumes: finished units are skipped. A different
    model or policy than the manifest records is refused (pass `overwrite` to start again).
    `ship_model` False reads `model` from a path every executor has (no copy through Spark).
    """
    import pyarrow.parquet as pq

    from textguard.artifact import resolve_artifact
    from textguard.policy import Policy, PolicySet, check_against_model
    from textguard.spec import load_spec, spec_fingerprint

    if unit_rows < 1 or chunk_rows < 1:
        raise DataError("unit and chunk sizes must be at least 1")
    # Everything that can be wrong fails before Spark starts.
    policy_text = None
    policies = None
    if policy_file is not None:
        from textguard.policy import resolve_policy_path

        resolved_policy = resolve_policy_path(policy_file)
        policy_text = resolved_policy.read_text(encoding="utf-8")
        policies = PolicySet.load(resolved_policy)
        policies.get(policy)
    in_fs, in_root, files = find_inputs(str(input))
    out_fs, out_root = _filesystem(str(output))
    out_root = out_root.rstrip("/")
    inside = out_root == in_root or out_root.startswith(in_root + "/")
    if inside and not str(input).endswith(".parquet"):
        raise DataError(f"{output}: the output must not be inside the input")
    directory = resolve_artifact(model)  # a registry alias is pinned here, once, for every executor
    spec = load_spec(directory)
    if policies is not None:
        check_against_model(policies, spec.thresholds, str(model))
    schema = pq.read_schema(in_fs.open_input_file(f"{in_root}/{files[0]}"))
    if text_column not in schema.names:
        raise DataError(
            f"{in_root}/{files[0]}: no column {text_column!r} (columns: {', '.join(schema.names)}); "
            "choose one with --text-column"
        )
    units = plan_units(in_fs, in_root, files, unit_rows)
    version = "local-" + spec_fingerprint(spec)
    chosen = policies.get(policy) if policies is not None else Policy.from_model_thresholds()
    label = chosen.name  # "model" without a policy file
    manifest = {
        "input": str(input),
        "model": str(model),
        "model_name": spec.name,
        "model_version": version,
        "policy_file": str(policy_file) if policy_file else None,
        "policy": label,
        # The fingerprint of what decides, as audit rows and the transparency report record it.
        "policy_version": chosen.version,
        "text_column": text_column,
        "evidence": evidence,
        "unit_rows": unit_rows,
        "units": len(units),
        "backend": backend,
        "quantized": quantized,
        "precision": precision,
    }
    manifest_path = f"{out_root}/{MANIFEST}"
    import pyarrow.fs as pafs

    if out_fs.get_file_info(out_root).type != pafs.FileType.NotFound:
        if overwrite:
            out_fs.delete_dir(out_root)
        elif out_fs.get_file_info(manifest_path).type == pafs.FileType.File:
            with out_fs.open_input_stream(manifest_path) as handle:
                previous = json.loads(handle.read().decode("utf-8"))
            changed = sorted(key for key in manifest if previous.get(key) != manifest[key])
            if changed:
                raise DataError(
                    f"{output} holds a run with a different {', '.join(changed)}; resume with the same "
                    "options, or pass --overwrite to start again"
                )
        elif _done_units(out_fs, out_root):
            raise DataError(f"{output} holds files that are not a textguard run; choose another --output")
    out_fs.create_dir(out_root, recursive=True)
    with out_fs.open_output_stream(manifest_path) as handle:
        handle.write(json.dumps(manifest, indent=2).encode("utf-8"))
    _clean_temps(out_fs, out_root)  # the leftovers of tasks a failure interrupted
    done = _done_units(out_fs, out_root)
    pending = [unit for unit in units if unit.output not in done]
    total_rows = sum(unit.rows for unit in units)
    started = time.perf_counter()
    scored_rows = 0
    if pending:
        spark, created = spark_session(master, spark_conf)
        try:
            artifact, shipped = str(directory), False
            if ship_model:
                artifact, shipped = _ship(spark, directory, version), True
            job = Job(
                artifact=artifact,
                shipped=shipped,
                model_name=spec.name,
                model_version=version,
                policy_yaml=policy_text,
                policy_name=policy,
                policy_label=label,
                policy_version=chosen.version,
                text_column=text_column,
                evidence=evidence,
                chunk_rows=chunk_rows,
                max_tokens=max_tokens,
                batch_size=batch_size,
                output=out_root if out_fs.type_name == "local" else str(output),
                backend=backend,
                quantized=quantized,
                precision=precision,
            )
            results = _run(spark, job, pending, out_fs, out_root, done, progress, on_unit_done)
            scored_rows = sum(result["rows"] for result in results)
        finally:
            if created:
                _unship(spark)
                spark.stop()
    seconds = time.perf_counter() - started
    summary = _summarize(out_fs, out_root, units, len(units) - len(pending), scored_rows, seconds, spec)
    summary.input, summary.output = str(input), str(output)
    summary.actions = summary.actions if policy_file is not None else None
    if summary.rows != total_rows:
        raise DataError(f"{output}: {summary.rows} rows written but the input has {total_rows}")
    with out_fs.open_output_stream(f"{out_root}/{SUCCESS}") as handle:
        handle.write(json.dumps(asdict(summary), indent=2).encode("utf-8"))
    return summary


#: Artefact copies added to a SparkContext with `addFile`, per (application, model version): Spark
#: registers a name once per context, so a second job with the same model reuses the first copy.
_SHIPPED: dict[tuple[str, str], tuple[str, str]] = {}


def _ship(spark: Any, directory: Path, version: str) -> str:
    """Add the artefact to the SparkContext (executors fetch it once); returns its SparkFiles name."""
    key = (spark.sparkContext.applicationId, version)
    if key not in _SHIPPED:
        staged = tempfile.mkdtemp(prefix="textguard-spark-")
        name = f"textguard-model-{version}"
        shutil.copytree(directory, Path(staged) / name)
        spark.sparkContext.addFile(str(Path(staged) / name), recursive=True)
        _SHIPPED[key] = (staged, name)
    return _SHIPPED[key][1]


def _unship(spark: Any) -> None:
    """Remove the staged copies of a context this module is about to stop."""
    application = spark.sparkContext.applicationId
    for key in [key for key in _SHIPPED if key[0] == application]:
        shutil.rmtree(_SHIPPED.pop(key)[0], ignore_errors=True)


def _run(
    spark: Any,
    job: Job,
    pending: list[Unit],
    fs: pafs.FileSystem,
    out_root: str,
    done: set[str],
    progress: bool,
    on_unit_done: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    """The Spark job (one task per unit), with a thread counting finished output files for progress."""
    rows_of = {unit.output: unit.rows for unit in pending}
    finished = threading.Event()

    seen: set[str] = set()

    def look(advance: Callable[[int], None]) -> None:
        new = ((_done_units(fs, out_root) - done) & set(rows_of)) - seen
        if new:
            advance(sum(rows_of[name] for name in new))
            seen.update(new)
            if on_unit_done is not None:
                on_unit_done(len(seen), len(pending))

    def watch(advance: Callable[[int], None]) -> None:
        while not finished.wait(0.5):
            look(advance)

    with _progress(progress, sum(rows_of.values())) as advance:
        watcher = threading.Thread(target=watch, args=(advance,), daemon=True)
        watcher.start()
        try:
            rdd = spark.sparkContext.parallelize(pending, len(pending))
            results: list[dict[str, Any]] = rdd.map(lambda unit: score_unit(job, unit)).collect()
        except Exception as exc:
            raise _job_error(exc) from None
        finally:
            finished.set()
            watcher.join()
        look(advance)
    return results


def _job_error(exc: Exception) -> TextguardError:
    """A failed task's own error (a textguard error raised on an executor), in one line, with the way on."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("textguard.errors.")]
    kind: type[TextguardError] = TextguardError
    if ours:
        name, _, message = ours[-1].partition(": ")
        kind = (
            DataError if name.endswith("DataError") else ConfigError if name.endswith("ConfigError") else kind
        )
    else:
        message = next(
            (line for line in reversed(lines) if "Error" in line or "Exception" in line), type(exc).__name__
        )
    return kind(f"the Spark job failed: {message}; finished units are kept, rerun the same command to resume")


def _summarize(
    fs: pafs.FileSystem,
    out_root: str,
    units: list[Unit],
    skipped: int,
    scored_rows: int,
    seconds: float,
    spec: Any,
) -> ArchiveSummary:
    """Counts over the whole output (resumed units included), reading only the decision columns."""
    import pyarrow.parquet as pq

    positives = dict.fromkeys(spec.labels, 0)
    actions: dict[str, int] = {}
    rows = 0
    for unit in units:
        path = f"{out_root}/{unit.output}"
        with fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            names = [n for n in (PREDICTED_COLUMN, ACTION_COLUMN) if n in parquet.schema_arrow.names]
            table = parquet.read(columns=names)
        rows += table.num_rows
        for labels in table.column(PREDICTED_COLUMN).to_pylist():
            for label in labels or []:
                positives[label] += 1
        if ACTION_COLUMN in names:
            for action in table.column(ACTION_COLUMN).to_pylist():
                actions[str(action)] = actions.get(str(action), 0) + 1
    return ArchiveSummary("", "", len(units), skipped, rows, scored_rows, seconds, positives, actions)
