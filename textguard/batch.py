"""Batch scoring of files (csv, jsonl, parquet, txt) through the one scoring path, `Scorer`.

The output keeps every input column (ids included) and adds `score_<label>` (calibrated probability
per label), `predicted_labels` (labels at or above the model's thresholds) and, when a policy is
given, `action`. `predicted_labels` does not reuse the name `labels`, so scoring a prepared dataset
keeps its gold labels next to the predictions.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textguard.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from textguard.policy import PolicySet
    from textguard.postprocess import Prediction
    from textguard.scorer import Scorer

INPUT_SUFFIXES = (".csv", ".jsonl", ".parquet", ".txt")
OUTPUT_SUFFIXES = (".csv", ".jsonl", ".parquet")
SCORE_PREFIX = "score_"
PREDICTED_COLUMN = "predicted_labels"
ACTION_COLUMN = "action"
#: Texts handed to the scorer at once: it sorts and token-batches inside a chunk, and the progress
#: bar advances per chunk. Large enough that length sorting still removes most padding.
DEFAULT_CHUNK_SIZE = 2048

#: Maps one prediction to a moderation action (e.g. "allow" / "review" / "block").
ActionFn = Callable[["Prediction"], str]


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


def score_frame(
    scorer: Scorer,
    frame: pd.DataFrame,
    text_column: str = "text",
    *,
    action: ActionFn | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
) -> pd.DataFrame:
    """`frame` plus score_<label>, predicted_labels (and action) for every row, in input order."""
    import numpy as np

    texts = [str(text) for text in frame[text_column].tolist()]
    labels = list(scorer.spec.labels)
    probs = np.zeros((len(texts), len(labels)), dtype=np.float64)
    predicted: list[list[str]] = []
    actions: list[str] = []
    with _progress(progress, len(texts)) as advance:
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start : start + chunk_size]
            predictions = scorer.score(chunk)
            for offset, prediction in enumerate(predictions):
                probs[start + offset] = [prediction.scores[label] for label in labels]
                predicted.append(prediction.labels)
                if action is not None:
                    actions.append(action(prediction))
            advance(len(chunk))
    out = frame.copy()
    for index, label in enumerate(labels):
        out[f"{SCORE_PREFIX}{label}"] = probs[:, index]
    out[PREDICTED_COLUMN] = predicted
    if action is not None:
        out[ACTION_COLUMN] = actions
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
            flat[PREDICTED_COLUMN] = [";".join(labels) for labels in flat[PREDICTED_COLUMN]]
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
            frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def policy_action(
    policies: PolicySet, name: str | None, model_thresholds: dict[str, float], model: str
) -> ActionFn:
    """The action of policy `name` (the file's default when None), once the file fits the model."""
    from textguard.policy import check_against_model

    check_against_model(policies, model_thresholds, model)
    chosen = policies.get(name)
    return lambda prediction: chosen.decide(prediction.scores, model_thresholds).action


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
    action: ActionFn | None = None,
    progress: bool = True,
    overwrite: bool = False,
    policies: PolicySet | None = None,
    policy_name: str | None = None,
) -> BatchSummary:
    """Score every row of `input_path` with `model` and write `output_path` (format by suffix).

    With `policies`, the `action` column is the named policy's decision (default: the file's default
    policy), after the file was checked against the model (`policy.check_against_model`).
    """
    from textguard.scorer import Scorer

    input_path, output_path = Path(input_path), Path(output_path)
    _suffix(output_path, OUTPUT_SUFFIXES, "output")  # fail before loading a model
    if output_path.exists() and not overwrite:
        raise DataError(f"{output_path} exists; pass --overwrite to replace it")
    if input_path.resolve() == output_path.resolve():
        raise DataError(f"{output_path}: the output must not overwrite the input")
    frame = read_input(input_path, text_column)
    options: dict[str, Any] = {}
    if batch_size:
        options["max_batch_size"] = batch_size
    if max_tokens:
        options["max_tokens"] = max_tokens
    scorer = Scorer.from_artifact(model, backend=backend, quantized=quantized, **options)  # type: ignore[arg-type]
    if policies is not None:
        action = policy_action(policies, policy_name, scorer.spec.thresholds, str(model))
    start = time.perf_counter()
    scored = score_frame(scorer, frame, text_column, action=action, progress=progress)
    seconds = time.perf_counter() - start
    write_output(scored, output_path, overwrite=overwrite)
    positives = {
        label: int(sum(label in row for row in scored[PREDICTED_COLUMN])) for label in scorer.spec.labels
    }
    actions = None
    if action is not None:
        actions = {str(name): int(count) for name, count in scored[ACTION_COLUMN].value_counts().items()}
    return BatchSummary(input_path, output_path, len(scored), seconds, positives, actions)
