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
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textguard.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

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


def _read_jsonl(path: Path) -> pd.DataFrame:
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
    return pd.DataFrame.from_records(records)


def read_input(path: str | Path, text_column: str = "text") -> pd.DataFrame:
    """Read a file to score. txt: one text per line (blank lines skipped, `line` column kept)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} not found")
    suffix = _suffix(path, INPUT_SUFFIXES, "input")
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix == ".jsonl":
            frame = _read_jsonl(path)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
            frame = pd.DataFrame({"line": [n for n, _ in kept], text_column: [text for _, text in kept]})
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (ValueError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read as {suffix[1:]}: {exc}") from None
    if len(frame) and text_column not in frame.columns:
        raise DataError(
            f"{path}: no column {text_column!r} (columns: {', '.join(map(str, frame.columns))}); "
            "choose one with --text-column"
        )
    if not len(frame):
        frame = pd.DataFrame({text_column: pd.Series([], dtype=str)}) if text_column not in frame else frame
    bad = [index for index, value in enumerate(frame[text_column].tolist()) if not isinstance(value, str)]
    if bad:
        where = "line" if suffix in (".jsonl", ".txt") else "row"
        raise DataError(
            f"{path}: {text_column!r} must be text; {len(bad)} {where}(s) are empty/null or not strings "
            f"(first: data {where} {bad[0] + 1})"
        )
    return frame


@dataclass(frozen=True)
class ContextColumns:
    """Where a row's meeting, speaker and send time are (context scoring of an archive)."""

    meeting: str = MEETING_COLUMN
    speaker: str = SPEAKER_COLUMN
    time: str = DEFAULT_TIME_COLUMN


def frame_items(frame: pd.DataFrame, text_column: str, context: ContextColumns | None) -> list[Any]:
    """One Moderator item per row; ids from an `id` column (else the row number)."""
    from textguard.moderation import Item

    texts = [str(text) for text in frame[text_column].tolist()]
    ids = (
        [str(value) for value in frame["id"]]
        if "id" in frame.columns
        else [str(i) for i in range(len(frame))]
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
) -> pd.DataFrame:
    """`frame` plus the decision columns for every row, in input order.

    The action columns are written when the moderator decides with a policy file; `moderator` None
    decides at the model's own thresholds. Rows are decided in chunks of `chunk_size`; the moderator's
    context store carries over from one chunk to the next.
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
    items = frame_items(frame, text_column, context)
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

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled and total > 0
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


def write_output(frame: pd.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write atomically (a temp file renamed into place): an interrupted run leaves no half file."""
    path = Path(path)
    suffix = _suffix(path, OUTPUT_SUFFIXES, "output")
    if path.exists() and not overwrite:
        raise DataError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if suffix == ".csv":
            flat = frame.copy()
            for column in (PREDICTED_COLUMN, FLAGGED_COLUMN, CONTEXT_COLUMN):
                if column in flat.columns:
                    flat[column] = [";".join(values) for values in flat[column]]
            for column in flat.columns:
                if (
                    flat[column]
                    .map(lambda v: isinstance(v, (list, tuple, dict)) or hasattr(v, "tolist"))
                    .any()
                ):
                    flat[column] = flat[column].map(lambda v: json.dumps(_jsonable(v), ensure_ascii=False))
            flat.to_csv(tmp, index=False)
        elif suffix == ".jsonl":
            with tmp.open("w", encoding="utf-8") as handle:
                for record in frame.to_dict(orient="records"):
                    clean = {str(key): _jsonable(value) for key, value in record.items()}
                    handle.write(json.dumps(clean, ensure_ascii=False, default=str) + "\n")
        else:
            nested = frame.copy()
            # Per-label evidence and match records vary in shape from row to row: JSON text in Parquet.
            for column in (MATCHES_COLUMN, EVIDENCE_COLUMN):
                if column in nested.columns:
                    nested[column] = [json.dumps(value, ensure_ascii=False) for value in nested[column]]
            nested.to_parquet(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def score_file(
    model: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    text_column: str = "text",
    backend: str = "torch",
    quantized: bool = False,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    policy_file: str | Path | None = None,
    policy: str | None = None,
    context: ContextColumns | None = None,
    hash_lists: str | Path | None = None,
    evidence: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> BatchSummary:
    """Decide on every row of `input_path` with `model` and write `output_path` (format by suffix).

    With `policy_file`, each row gets the action of `policy` (the file's default when None), after the
    file was checked against the model (`policy.check_against_model`); with `hash_lists` (a `textguard
    hashes` store), rows are matched against the known-content lists.
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
    frame = read_input(input_path, text_column)
    options: dict[str, Any] = {}
    if batch_size:
        options["max_batch_size"] = batch_size
    if max_tokens:
        options["max_tokens"] = max_tokens
    scorer = Scorer.from_artifact(model, backend=backend, quantized=quantized, **options)  # type: ignore[arg-type]
    if isinstance(policies, PolicySet):
        check_against_model(policies, scorer.spec.thresholds, str(model))
    served = ServedModel.local(scorer)
    start = time.perf_counter()
    scored = score_frame(
        served,
        frame,
        text_column,
        moderator=moderator,
        policy=policy,
        context=context,
        evidence=evidence,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    write_output(scored, output_path, overwrite=overwrite)
    positives = {
        label: int(sum(label in row for row in scored[PREDICTED_COLUMN])) for label in scorer.spec.labels
    }
    actions = None
    if policy_file is not None:
        actions = {str(name): int(count) for name, count in scored[ACTION_COLUMN].value_counts().items()}
    return BatchSummary(input_path, output_path, len(scored), seconds, positives, actions)
