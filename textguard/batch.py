"""Batch scoring of files (csv, jsonl, parquet, txt) through the one decision path, `Moderator`.

The output keeps every input column (ids included) and adds `score_<label>` (calibrated probability
per label, each label's highest window of the whole text), `predicted_labels` (labels at or above the
model's thresholds) and, when a policy is given, `action` and `flagged_labels` (the labels the policy
flags). `predicted_labels` does not reuse the name `labels`, so scoring a prepared dataset keeps its gold
labels next to the predictions. With hash lists, `matches` lists the known-content matches of each row;
with evidence, `evidence` holds per flagged label the spans of text that drove it.

With `context`, rows that carry a meeting and a speaker are scored with that speaker's recent messages
like live chat: rows are read in file order and placed in time by a time column (epoch seconds or
ISO-8601), so an archive is decided as it was sent. The `context` column lists the rows (by id) scored
together.

Files are streamed: `iter_input` reads `chunk_size` rows at a time (csv and jsonl by line, Parquet by
record batch within its row groups) and the output is appended chunk by chunk to a temp file renamed into
place at the end, so memory follows the chunk, not the file (a Parquet row group is read whole).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textguard.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from textguard.moderation import ItemDecision, Moderator, ServedModel

INPUT_SUFFIXES = (".csv", ".jsonl", ".parquet", ".txt")
OUTPUT_SUFFIXES = (".csv", ".jsonl", ".parquet")
SCORE_PREFIX = "score_"
PREDICTED_COLUMN = "predicted_labels"
ACTION_COLUMN = "action"
FLAGGED_COLUMN = "flagged_labels"
CONTEXT_COLUMN = "context"
MATCHES_COLUMN = "matches"
EVIDENCE_COLUMN = "evidence"
#: Columns that place a row in a meeting for context scoring.
MEETING_COLUMN = "meeting_id"
SPEAKER_COLUMN = "speaker_id"
DEFAULT_TIME_COLUMN = "sent_at"
#: Texts handed to the scorer at once: it sorts and token-batches inside a chunk, and the progress
#: bar advances per chunk. Large enough that length sorting still removes most padding.
DEFAULT_CHUNK_SIZE = 2048
#: ParquetFile options of a streaming read (read ahead 1 MiB at a time, nothing pre-buffered).
PARQUET_STREAMING: dict[str, Any] = {"buffer_size": 1 << 20, "pre_buffer": False}


@dataclass(frozen=True)
class BatchSummary:
    input: Path
    output: Path
    rows: int
    seconds: float
    positives: dict[str, int]
    actions: dict[str, int] | None = None

    def describe(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else float("inf")
        flagged = ", ".join(f"{label}={count}" for label, count in self.positives.items())
        text = f"scored {self.rows} rows in {self.seconds:.1f}s ({rate:.0f}/s) -> {self.output}"
        text += f"; flagged: {flagged}"
        if self.actions:
            text += "; actions: " + ", ".join(
                f"{name}={count}" for name, count in sorted(self.actions.items())
            )
        return text


def _suffix(path: Path, allowed: Sequence[str], role: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise DataError(
            f"{path}: unsupported {role} format {suffix or '(none)'}; use one of {', '.join(allowed)}"
        )
    return suffix


def _iter_jsonl(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pandas as pd

    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
            if len(records) >= chunk_size:
                yield pd.DataFrame.from_records(records)
                records = []
    if records:
        yield pd.DataFrame.from_records(records)


def _iter_txt(path: Path, text_column: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pandas as pd

    numbers: list[int] = []
    texts: list[str] = []
    with path.open(encoding="utf-8", newline=None) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            numbers.append(number)
            texts.append(line)
            if len(texts) >= chunk_size:
                yield pd.DataFrame({"line": numbers, text_column: texts})
                numbers, texts = [], []
    if texts:
        yield pd.DataFrame({"line": numbers, text_column: texts})


def _iter_parquet(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    # Without threads and pre-buffering, the reader holds one row group, not the next ones too.
    with pq.ParquetFile(path, **PARQUET_STREAMING) as parquet:
        for batch in parquet.iter_batches(batch_size=chunk_size, use_threads=False):
            yield batch.to_pandas()


def input_rows(path: str | Path) -> int | None:
    """Rows of a Parquet file from its footer (for the progress bar); None for the text formats."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix.lower() != ".parquet" or not path.is_file():
        return None
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError):
        return None


def check_text_column(
    frame: pd.DataFrame, text_column: str, where: str, *, first_row: int = 0, unit: str = "row"
) -> None:
    """A clear error for a missing text column or rows whose text is not a string."""
    if len(frame) and text_column not in frame.columns:
        raise DataError(
            f"{where}: no column {text_column!r} (columns: {', '.join(map(str, frame.columns))}); "
            "choose one with --text-column"
        )
    if text_column not in frame.columns:
        return
    bad = [index for index, value in enumerate(frame[text_column].tolist()) if not isinstance(value, str)]
    if bad:
        raise DataError(
            f"{where}: {text_column!r} must be text; {len(bad)} {unit}(s) are empty/null or not strings "
            f"(first: data {unit} {first_row + bad[0] + 1})"
        )


def iter_input(
    path: str | Path, text_column: str = "text", chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Iterator[pd.DataFrame]:
    """Stream a file to score in frames of at most `chunk_size` rows, each checked as it is read.

    txt: one text per line (blank lines skipped, `line` column kept). Errors name the file and the data
    row (line for jsonl and txt) counted from the start of the file.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} not found")
    suffix = _suffix(path, INPUT_SUFFIXES, "input")
    if chunk_size < 1:
        raise DataError(f"chunk size must be at least 1, got {chunk_size}")
    unit = "line" if suffix in (".jsonl", ".txt") else "row"
    chunks: Iterator[pd.DataFrame]
    if suffix == ".csv":
        chunks = iter(pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=chunk_size))
    elif suffix == ".jsonl":
        chunks = _iter_jsonl(path, chunk_size)
    elif suffix == ".parquet":
        chunks = _iter_parquet(path, chunk_size)
    else:
        chunks = _iter_txt(path, text_column, chunk_size)
    first_row = 0
    while True:
        try:
            frame = next(chunks)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except pd.errors.EmptyDataError:
            return
        except (ValueError, OSError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{path}: cannot read as {suffix[1:]}: {exc}") from None
        frame = frame.reset_index(drop=True)
        check_text_column(frame, text_column, str(path), first_row=first_row, unit=unit)
        yield frame
        first_row += len(frame)


def read_input(path: str | Path, text_column: str = "text") -> pd.DataFrame:
    """Read a whole file to score (see `iter_input`, which streams it)."""
    import pandas as pd

    frames = list(iter_input(path, text_column))
    if not frames:
        return pd.DataFrame({text_column: pd.Series([], dtype=str)})
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class ContextColumns:
    """Where a row's meeting, speaker and send time are (context scoring of an archive)."""

    meeting: str = MEETING_COLUMN
    speaker: str = SPEAKER_COLUMN
    time: str = DEFAULT_TIME_COLUMN


def frame_items(
    frame: pd.DataFrame, text_column: str, context: ContextColumns | None, first_row: int = 0
) -> list[Any]:
    """One Moderator item per row; ids from an `id` column (else the row number in the file)."""
    from textguard.moderation import Item

    texts = [str(text) for text in frame[text_column].tolist()]
    ids = (
        [str(value) for value in frame["id"]]
        if "id" in frame.columns
        else [str(first_row + i) for i in range(len(frame))]
    )
    if context is None:
        return [Item(identifier, text) for identifier, text in zip(ids, texts, strict=True)]
    missing = [name for name in (context.meeting, context.speaker, context.time) if name not in frame.columns]
    if missing:
        raise DataError(
            f"context scoring needs the column(s) {missing} (columns: {', '.join(map(str, frame.columns))})"
        )
    times = _seconds(frame[context.time], context.time)
    items = []
    for row, (identifier, text) in enumerate(zip(ids, texts, strict=True)):
        meeting, speaker = frame[context.meeting].iloc[row], frame[context.speaker].iloc[row]
        items.append(
            Item(
                identifier,
                text,
                meeting_id=str(meeting) if _present(meeting) else None,
                speaker_id=str(speaker) if _present(speaker) else None,
                start=times[row],
                end=times[row],
            )
        )
    return items


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() != "" and str(value) != "nan"


def _seconds(column: pd.Series, name: str) -> list[float]:
    """Epoch seconds from numbers or ISO-8601 timestamps; names the first row that is neither."""
    import pandas as pd

    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        return [float(value) for value in numeric]
    parsed = pd.to_datetime(column, errors="coerce", utc=True, format="ISO8601")
    bad = [index for index, value in enumerate(parsed) if pd.isna(value)]
    if bad:
        raise DataError(
            f"column {name!r} must hold epoch seconds or ISO-8601 times; data row {bad[0] + 1} is "
            f"{column.iloc[bad[0]]!r}"
        )
    return [value.timestamp() for value in parsed]


def score_frame(
    model: ServedModel,
    frame: pd.DataFrame,
    text_column: str = "text",
    *,
    moderator: Moderator | None = None,
    policy: str | None = None,
    context: ContextColumns | None = None,
    evidence: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    first_row: int = 0,
) -> pd.DataFrame:
    """`frame` plus the decision columns for every row, in input order.

    The action columns are written when the moderator decides with a policy file; `moderator` None
    decides at the model's own thresholds. Rows are decided in chunks of `chunk_size`; the moderator's
    context store carries over from one chunk to the next. `first_row` numbers rows without an `id`
    column when `frame` is one chunk of a longer file.
    """
    import numpy as np
    import pandas as pd

    from textguard.moderation import ContextLimits, MemoryContextStore, Moderator
    from textguard.policy import Policy, PolicySet
    from textguard.postprocess import decide

    with_policy = moderator is not None and isinstance(moderator.policies, PolicySet)
    if moderator is None:
        moderator = Moderator(
            Policy.from_model_thresholds(),
            context=MemoryContextStore(ContextLimits()) if context is not None else None,
        )
    items = frame_items(frame, text_column, context, first_row)
    labels = list(model.spec.labels)
    decisions: list[ItemDecision] = []
    with _progress(progress, len(items)) as advance:
        for start in range(0, len(items), chunk_size):
            chunk = items[start : start + chunk_size]
            decisions += moderator.decide(chunk, model, policy=policy, evidence=evidence).decisions
            advance(len(chunk))
    probs = np.asarray([[d.scores[label] for label in labels] for d in decisions], dtype=np.float64)
    probs = probs.reshape(len(decisions), len(labels))
    predicted = decide(probs, model.spec)
    out = frame.copy()
    for index, label in enumerate(labels):
        out[f"{SCORE_PREFIX}{label}"] = probs[:, index]
    out[PREDICTED_COLUMN] = [
        [label for label, on in zip(labels, row, strict=True) if on] for row in predicted
    ]
    if with_policy:
        out[ACTION_COLUMN] = [d.action for d in decisions]
        out[FLAGGED_COLUMN] = [list(d.labels) for d in decisions]
    if context is not None:
        out[CONTEXT_COLUMN] = [list(d.context) for d in decisions]
    if moderator.known_content is not None:
        matches = [[asdict(match) for match in d.matches] for d in decisions]
        out[MATCHES_COLUMN] = pd.Series(matches, index=out.index, dtype=object)
    if evidence:
        spans = [
            {label: [asdict(span) for span in found] for label, found in (d.evidence or {}).items()}
            for d in decisions
        ]
        out[EVIDENCE_COLUMN] = pd.Series(spans, index=out.index, dtype=object)
    return out


class _progress:
    """A rich progress bar on stderr (a no-op when disabled), used as `with ... as advance`."""

    def __init__(self, enabled: bool, total: int | None) -> None:
        self.enabled = enabled and total != 0
        self.total = total
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda _n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task("score", total=self.total)
        return lambda n: self._bar.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


#: Types of the columns scoring adds, fixed so every chunk (and every Spark partition) writes one schema.
def _added_type(column: str) -> pa.DataType | None:
    import pyarrow as pa

    if column.startswith(SCORE_PREFIX):
        return pa.float64()
    if column in (PREDICTED_COLUMN, FLAGGED_COLUMN, CONTEXT_COLUMN):
        return pa.list_(pa.string())
    if column in (ACTION_COLUMN, MATCHES_COLUMN, EVIDENCE_COLUMN):
        return pa.string()
    return None


def arrow_schema(frame: pd.DataFrame, input_schema: pa.Schema | None = None) -> pa.Schema:
    """The Parquet schema of scored output: added columns typed by name, input columns as read.

    Input columns keep `input_schema`'s type when given (a Parquet input), else the type of this frame
    (a column that is all null here is written as text).
    """
    import pyarrow as pa

    inferred = pa.Schema.from_pandas(frame, preserve_index=False)
    fields = []
    for field in inferred:
        kind = _added_type(field.name)
        if kind is None and input_schema is not None and field.name in input_schema.names:
            kind = input_schema.field(field.name).type
        if kind is None:
            kind = pa.string() if pa.types.is_null(field.type) else field.type
            if pa.types.is_list(kind) and pa.types.is_null(kind.value_type):
                kind = pa.list_(pa.string())
        fields.append(pa.field(field.name, kind))
    return pa.schema(fields)


def parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-label evidence and match records vary in shape from row to row: JSON text in Parquet."""
    nested = frame
    for column in (MATCHES_COLUMN, EVIDENCE_COLUMN):
        if column in nested.columns:
            if nested is frame:
                nested = frame.copy()
            nested[column] = [json.dumps(value, ensure_ascii=False) for value in nested[column]]
    return nested


def arrow_table(frame: pd.DataFrame, schema: pa.Schema, where: str) -> pa.Table:
    """`frame` in `schema`; a column whose type changed from one chunk to the next is a clear error."""
    import pyarrow as pa

    frame = parquet_ready(frame)
    if list(frame.columns) != schema.names:
        raise DataError(f"{where}: columns changed within the file: {list(frame.columns)} vs {schema.names}")
    try:
        return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise DataError(f"{where}: a column changed type within the file ({exc})") from None


def _csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    flat = frame.copy()
    for column in (PREDICTED_COLUMN, FLAGGED_COLUMN, CONTEXT_COLUMN):
        if column in flat.columns:
            flat[column] = [";".join(values) for values in flat[column]]
    for column in flat.columns:
        if flat[column].map(lambda v: isinstance(v, (list, tuple, dict)) or hasattr(v, "tolist")).any():
            flat[column] = flat[column].map(lambda v: json.dumps(_jsonable(v), ensure_ascii=False))
    return flat


class OutputWriter:
    """Appends scored chunks to a temp file next to `path`; `commit` renames it into place.

    Leaving the `with` block without `commit` (an error, an interrupt) removes the temp file, so an
    interrupted run never leaves a half-written output.
    """

    def __init__(self, path: str | Path, *, input_schema: pa.Schema | None = None) -> None:
        self.path = Path(path)
        self.suffix = _suffix(self.path, OUTPUT_SUFFIXES, "output")
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.input_schema = input_schema
        self._parquet: Any = None
        self._schema: pa.Schema | None = None
        self._chunks = 0

    def __enter__(self) -> OutputWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, frame: pd.DataFrame) -> None:
        if self.suffix == ".csv":
            _csv_ready(frame).to_csv(self.tmp, index=False, mode="a", header=self._chunks == 0)
        elif self.suffix == ".jsonl":
            with self.tmp.open("a", encoding="utf-8") as handle:
                for record in frame.to_dict(orient="records"):
                    clean = {str(key): _jsonable(value) for key, value in record.items()}
                    handle.write(json.dumps(clean, ensure_ascii=False, default=str) + "\n")
        else:
            import pyarrow.parquet as pq

            if self._schema is None:
                self._schema = arrow_schema(parquet_ready(frame), self.input_schema)
                self._parquet = pq.ParquetWriter(self.tmp, self._schema)
            self._parquet.write_table(arrow_table(frame, self._schema, str(self.path)))
        self._chunks += 1

    def commit(self) -> Path:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if not self.tmp.exists():  # nothing written (an empty jsonl input): an empty file
            self.tmp.touch()
        self.tmp.replace(self.path)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self._parquet is not None:
            self._parquet.close()
        self.tmp.unlink(missing_ok=True)


def write_output(frame: pd.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write atomically (a temp file renamed into place): an interrupted run leaves no half file."""
    path = Path(path)
    _suffix(path, OUTPUT_SUFFIXES, "output")
    if path.exists() and not overwrite:
        raise DataError(f"{path} exists; pass --overwrite to replace it")
    with OutputWriter(path) as writer:
        writer.write(frame)
        return writer.commit()


def score_file(
    model: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    text_column: str = "text",
    backend: str = "torch",
    quantized: bool = False,
    precision: str = "auto",
    batch_size: int | None = None,
    max_tokens: int | None = None,
    policy_file: str | Path | None = None,
    policy: str | None = None,
    context: ContextColumns | None = None,
    hash_lists: str | Path | None = None,
    evidence: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> BatchSummary:
    """Decide on every row of `input_path` with `model` and write `output_path` (format by suffix).

    With `policy_file`, each row gets the action of `policy` (the file's default when None), after the
    file was checked against the model (`policy.check_against_model`); with `hash_lists` (a `textguard
    hashes` store), rows are matched against the known-content lists. The file is streamed in chunks
    of `chunk_size` rows (see `iter_input`): memory follows the chunk, not the file.
    """
    from textguard.known_content import KnownContentIndex
    from textguard.moderation import ContextLimits, MemoryContextStore, Moderator, ServedModel
    from textguard.policy import Policy, PolicySet, check_against_model
    from textguard.scorer import Scorer

    input_path, output_path = Path(input_path), Path(output_path)
    _suffix(output_path, OUTPUT_SUFFIXES, "output")  # fail before loading a model
    if output_path.exists() and not overwrite:
        raise DataError(f"{output_path} exists; pass --overwrite to replace it")
    if input_path.resolve() == output_path.resolve():
        raise DataError(f"{output_path}: the output must not overwrite the input")
    # Everything that can be wrong with the options fails before the model loads.
    policies = PolicySet.load(policy_file) if policy_file is not None else Policy.from_model_thresholds()
    if isinstance(policies, PolicySet):
        policies.get(policy)
    index = KnownContentIndex.load(hash_lists) if hash_lists is not None else None
    store = MemoryContextStore(ContextLimits()) if context is not None else None
    moderator = Moderator(policies, context=store, known_content=index)
    if not input_path.is_file():
        raise DataError(f"input file {input_path} not found")
    _suffix(input_path, INPUT_SUFFIXES, "input")
    options: dict[str, Any] = {}
    if batch_size:
        options["max_batch_size"] = batch_size
    if max_tokens:
        options["max_tokens"] = max_tokens
    scorer = Scorer.from_artifact(
        model,
        backend=backend,  # type: ignore[arg-type]
        quantized=quantized,
        precision=precision,  # type: ignore[arg-type]
        **options,
    )
    if isinstance(policies, PolicySet):
        check_against_model(policies, scorer.spec.thresholds, str(model))
    served = ServedModel.local(scorer)
    labels = list(scorer.spec.labels)
    positives = dict.fromkeys(labels, 0)
    action_counts: dict[str, int] = {}
    rows = 0
    input_schema = None
    if input_path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        input_schema = pq.read_schema(input_path)
    start = time.perf_counter()
    with (
        OutputWriter(output_path, input_schema=input_schema) as writer,
        _progress(progress, input_rows(input_path)) as advance,
    ):
        for frame in iter_input(input_path, text_column, chunk_size):
            scored = score_frame(
                served,
                frame,
                text_column,
                moderator=moderator,
                policy=policy,
                context=context,
                evidence=evidence,
                chunk_size=chunk_size,
                progress=False,
                first_row=rows,
            )
            writer.write(scored)
            rows += len(scored)
            for row in scored[PREDICTED_COLUMN]:
                for label in row:
                    positives[label] += 1
            if policy_file is not None:
                for name in scored[ACTION_COLUMN]:
                    action_counts[str(name)] = action_counts.get(str(name), 0) + 1
            advance(len(scored))
        if rows == 0:  # an empty input still gets an output with every column
            writer.write(
                score_frame(
                    served,
                    read_input(input_path, text_column),
                    text_column,
                    moderator=moderator,
                    policy=policy,
                    context=context,
                    evidence=evidence,
                    progress=False,
                )
            )
        writer.commit()
    seconds = time.perf_counter() - start
    actions = action_counts if policy_file is not None else None
    return BatchSummary(input_path, output_path, rows, seconds, positives, actions)
