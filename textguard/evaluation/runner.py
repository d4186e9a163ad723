"""`textguard evaluate`: score a model on a prepared split, suites and perturbations; log it all to MLflow.

Scoring goes through `Scorer.from_artifact` (the one path: normalise, tokenise into windows, batch,
temperature, thresholds from the model's own spec); functional suites are decided by the library's
`Moderator` at the model's own thresholds, so a case split into caption segments is read as the service
reads a caption stream. Everything derived from the scores is deterministic: the same
model and data give identical numbers, perturbations are seeded per row, and hashes of row ids do not
depend on the run, so `compare` can pair two runs row by row.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from textguard.errors import DataError
from textguard.evaluation import measures, modules, naming
from textguard.evaluation.config import EvaluationConfig
from textguard.evaluation.error_analysis import top_errors
from textguard.evaluation.predictions import (
    CLEAN,
    PREDICTIONS_FILE,
    build_frame,
    perturb_partition,
    suite_partition,
)
from textguard.evaluation.provenance import PROVENANCE_FILE, Provenance, SuiteFile, file_sha256
from textguard.evaluation.redaction import TextHasher, row_key

if TYPE_CHECKING:
    import pandas as pd

    from textguard.evaluation.suites import Suite
    from textguard.scorer import Scorer
    from textguard.tracking.evaluation import EvaluationRun, ModelIdentity

#: Metrics whose change under each perturbation is logged as perturb.<kind>.delta.<metric>.
DELTA_METRICS = ("macro_f1", "micro_f1", "macro_pr_auc", "macro_recall")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class EvaluationRequest:
    model: str
    data: Path
    config: EvaluationConfig
    tracking_uri: str
    suites: tuple[str, ...] = ()
    perturbations: tuple[str, ...] = ()
    seed: int = 0
    show_text: bool = False
    #: "evaluation", or "candidate" / "baseline" when a regression gate compares two models.
    role: str = "evaluation"
    extra_tags: dict[str, str] = field(default_factory=dict)
    #: A policy file to check against the model before scoring (`policy.check_against_model`).
    policy: Path | None = None


@dataclass(frozen=True)
class EvalRows:
    """The rows of one split, in file order."""

    ids: list[str]
    texts: list[str]
    labels: list[list[str]]
    language: list[str]
    source: list[str]
    dataset: list[str]
    frame: pd.DataFrame
    directory: Path

    def gold(self, labels: Sequence[str]) -> np.ndarray:
        """Multi-hot [n, L] in the model's label order (labels the model does not know are ignored)."""
        gold = np.zeros((len(self.labels), len(labels)))
        for row, names in enumerate(self.labels):
            for column, label in enumerate(labels):
                gold[row, column] = float(label in names)
        return gold

    def attributes(self) -> dict[str, Sequence[str]]:
        return {"language": self.language, "source": self.source, "dataset": self.dataset}


@dataclass(frozen=True)
class SuiteTables:
    """One suite's results as tables (CSV artefacts under suites/)."""

    #: One row per functionality: gold, hard_negative, n_cases, accuracy, flagged_rate.
    functionality: list[dict[str, Any]]
    #: One row per language: n_cases, accuracy, balanced_accuracy, hard-negative cases and accuracy.
    languages: list[dict[str, Any]]
    #: One row per functionality, one accuracy column per language (empty where it has no cases).
    by_language: list[dict[str, Any]]


@dataclass
class EvaluationResult:
    run_id: str
    experiment_id: str
    identity: ModelIdentity
    metrics: dict[str, float]
    predictions: pd.DataFrame
    slice_table: list[dict[str, Any]]
    suite_tables: dict[str, SuiteTables]
    data_digest: str
    provenance: Provenance


def load_rows(data: Path, split: str) -> EvalRows:
    from textguard.data.prepared import load_prepared, resolve_prepared_dir

    directory = resolve_prepared_dir(data)  # a data config is prepared on demand
    frame = load_prepared(directory)[split].to_pandas()
    if frame.empty:
        raise DataError(
            f"{directory}: the {split} split is empty; nothing to evaluate (choose another --split)"
        )
    return EvalRows(
        ids=[str(value) for value in frame["id"]],
        texts=[str(value) for value in frame["text"]],
        labels=[list(value) for value in frame["labels"]],
        language=[str(value) for value in frame["language"]],
        source=[str(value) for value in frame["source"]],
        dataset=[str(value) for value in frame["dataset"]],
        frame=frame,
        directory=directory,
    )


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{key}": value for key, value in metrics.items()}


class _Evaluator:
    """One model's evaluation; collects metrics, tables and predictions, then logs them."""

    def __init__(
        self, request: EvaluationRequest, scorer: Scorer, rows: EvalRows, progress: Progress
    ) -> None:
        self.request = request
        self.config = request.config
        self.scorer = scorer
        self.spec = scorer.spec
        self.labels = list(scorer.spec.labels)
        self.rows = rows
        self.progress = progress
        self.row_ids = [row_key(identifier) for identifier in rows.ids]
        self.gold = rows.gold(self.labels)
        self.metrics: dict[str, float] = {}
        self.frames: list[pd.DataFrame] = []
        self.hasher = TextHasher()

    # -- scoring ----------------------------------------------------------------------------------

    def _score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        from textguard.postprocess import decide

        probs = self.scorer.predict_proba(list(texts))
        return probs, decide(probs, self.spec)

    def _decide_cases(self, suite: Suite) -> tuple[np.ndarray, np.ndarray]:
        """Each case as a caption stream of its segments, through the Moderator (model thresholds).

        A case is flagged with a label when any of its segments is (the stream caught it); its scores
        are each label's highest over its segments.
        """
        from textguard.moderation import ContextLimits, Item, MemoryContextStore, Moderator, ServedModel
        from textguard.policy import Policy

        moderator = Moderator(Policy.from_model_thresholds(), context=MemoryContextStore(ContextLimits()))
        items, owner = [], []
        for case, parts in enumerate(suite.segments):
            for number, part in enumerate(parts):
                meeting = f"suite-case-{case}"
                start = 3.0 * number  # one segment every 3 caption-seconds, well inside the window
                items.append(
                    Item(
                        id=f"{case}:{number}",
                        text=part,
                        source="caption",
                        language="und",
                        meeting_id=meeting,
                        speaker_id="speaker",
                        start=start,
                        end=start + 3,
                    )
                )
                owner.append(case)
        outcome = moderator.decide(items, ServedModel.local(self.scorer))
        probs = np.zeros((suite.size, len(self.labels)))
        decisions = np.zeros((suite.size, len(self.labels)), dtype=bool)
        for case, decision in zip(owner, outcome.decisions, strict=True):
            probs[case] = np.maximum(probs[case], [decision.scores[label] for label in self.labels])
            decisions[case] |= [label in decision.labels for label in self.labels]
        return probs, decisions

    def _metric_set(self, gold: np.ndarray, probs: np.ndarray, decisions: np.ndarray) -> dict[str, float]:
        return modules.classification_metrics(
            gold, probs, decisions, self.labels, max_fpr=self.config.max_fpr, ece_bins=self.config.ece_bins
        )

    def _text_columns(self, ids: Sequence[str], texts: Sequence[str]) -> dict[str, Sequence[str]]:
        return {"id": list(ids), "text": list(texts)} if self.request.show_text else {}

    # -- parts ------------------------------------------------------------------------------------

    def clean(self) -> tuple[np.ndarray, np.ndarray]:
        self.progress(f"scoring {len(self.rows.texts)} rows")
        probs, decisions = self._score(self.rows.texts)
        self.metrics.update(self._metric_set(self.gold, probs, decisions))
        self.frames.append(
            build_frame(
                CLEAN,
                self.row_ids,
                self.labels,
                self.gold,
                probs,
                decisions,
                {**self.rows.attributes(), **self._text_columns(self.rows.ids, self.rows.texts)},
            )
        )
        return probs, decisions

    def slices(self, probs: np.ndarray, decisions: np.ndarray) -> list[dict[str, Any]]:
        table: list[dict[str, Any]] = []
        for dimension in self.config.slice_dimensions:
            values = np.asarray(self.rows.attributes()[dimension])
            for value in sorted(set(values.tolist())):
                rows = values == value
                entry: dict[str, Any] = {"dimension": dimension, "value": value, "n_rows": int(rows.sum())}
                for column, label in enumerate(self.labels):
                    entry[f"support_{label}"] = int(self.gold[rows, column].sum())
                if rows.sum() >= self.config.min_slice_rows:
                    values_in_slice = self._metric_set(self.gold[rows], probs[rows], decisions[rows])
                    self.metrics.update(_prefixed(naming.slice_prefix(dimension, value), values_in_slice))
                    for key in ("macro_f1", "micro_f1", "macro_pr_auc", "macro_recall", "macro_precision"):
                        entry[key] = values_in_slice.get(key)
                    for label in self.labels:
                        entry[f"f1_{label}"] = values_in_slice.get(f"f1_{label}")
                        entry[f"pr_auc_{label}"] = values_in_slice.get(f"pr_auc_{label}")
                table.append(entry)
        return table

    def perturbations(self, decisions: np.ndarray) -> None:
        from textguard.evaluation.robustness import perturb_texts

        for kind in self.request.perturbations:
            self.progress(f"perturbation {kind}")
            texts = perturb_texts(self.rows.texts, self.rows.ids, kind, self.request.seed)
            probs_p, decisions_p = self._score(texts)
            values = self._metric_set(self.gold, probs_p, decisions_p)
            prefix = naming.perturb_prefix(kind)
            self.metrics.update(_prefixed(prefix, values))
            for name in (*DELTA_METRICS, *(f"f1_{label}" for label in self.labels)):
                if name in values and name in self.metrics:
                    self.metrics[f"{prefix}delta.{name}"] = values[name] - self.metrics[name]
            self.metrics[f"{prefix}changed_fraction"] = float(
                np.mean([a != b for a, b in zip(texts, self.rows.texts, strict=True)])
            )
            # Share of rows whose decision set changed: robustness independent of the gold labels.
            self.metrics[f"{prefix}flip_rate"] = float(np.mean((decisions_p != decisions).any(axis=1)))
            self.frames.append(
                build_frame(
                    perturb_partition(kind),
                    self.row_ids,
                    self.labels,
                    self.gold,
                    probs_p,
                    decisions_p,
                    {**self.rows.attributes(), **self._text_columns(self.rows.ids, texts)},
                )
            )

    def suite(self, suite: Suite) -> SuiteTables:
        from textguard.evaluation.named_metrics import metric_function
        from textguard.evaluation.predictions import partitions
        from textguard.labels import LABELS

        self.progress(f"suite {suite.name} ({suite.size} cases)")
        probs, decisions = self._decide_cases(suite)
        flagged = np.asarray(decisions.any(axis=1), dtype=bool)
        # The suite's gold is per taxonomy label; reorder it to the model's label order.
        gold = np.stack([suite.gold[:, LABELS.index(label)] for label in self.labels], axis=1)
        report = modules.functional_metrics(flagged, suite.hateful, suite.functionality, suite.language)
        name = suite.name
        for measure in ("accuracy", "balanced_accuracy", "n_cases"):
            self.metrics[naming.suite_metric(name, measure)] = report[measure]
        for group in naming.SUITE_SUMMARY_GROUPS:
            self.metrics[naming.suite_metric(name, "accuracy", group)] = report[f"{group}_accuracy"]
        for functionality, values in report["functionality"].items():
            self.metrics[naming.suite_metric(name, "accuracy", "func", functionality)] = values["accuracy"]
        for language, values in report["language"].items():
            for measure in ("accuracy", "balanced_accuracy", "n_cases"):
                self.metrics[naming.suite_metric(name, measure, "language", language)] = values[measure]
            hard = naming.suite_metric(name, "accuracy", "language", language, subgroup="hard_negative")
            self.metrics[hard] = values["hard_negative_accuracy"]
            count = naming.suite_metric(name, "n_cases", "language", language, subgroup="hard_negative")
            self.metrics[count] = values["hard_negative_n_cases"]
        frame = build_frame(
            suite_partition(name),
            [row_key(f"{name}:{case_id}") for case_id in suite.case_ids],
            self.labels,
            gold,
            probs,
            decisions,
            {
                "language": suite.language,
                "source": ["suite"] * suite.size,
                "dataset": [name] * suite.size,
                "functionality": suite.functionality,
                "hateful": suite.hateful.astype(float).tolist(),
                **self._text_columns(suite.case_ids, suite.texts),
            },
        )
        self.frames.append(frame)
        if suite.has_label_gold:
            exact = naming.suite_metric(name, "label_exact_match")
            self.metrics[exact] = metric_function(exact).value(partitions(frame)[suite_partition(name)])
        return _suite_tables(suite, flagged, report)


def _suite_tables(suite: Suite, flagged: np.ndarray, report: dict[str, Any]) -> SuiteTables:
    functions = np.asarray(suite.functionality)
    gold_of: dict[str, str] = {}
    table = []
    for functionality, values in report["functionality"].items():
        members = functions == functionality
        gold_of[functionality] = (
            "hateful"
            if suite.hateful[members].all()
            else ("non-hateful" if not suite.hateful[members].any() else "mixed")
        )
        table.append(
            {
                "functionality": functionality,
                "hard_negative": functionality.endswith("_nh"),
                "gold": gold_of[functionality],
                "n_cases": int(values["n_cases"]),
                "accuracy": values["accuracy"],
                "flagged_rate": float(flagged[members].mean()),
            }
        )
    languages = [
        {
            "language": code,
            "n_cases": int(values["n_cases"]),
            "accuracy": values["accuracy"],
            "balanced_accuracy": values["balanced_accuracy"],
            "hard_negative_cases": int(values["hard_negative_n_cases"]),
            "hard_negative_accuracy": values["hard_negative_accuracy"],
        }
        for code, values in report["language"].items()
    ]
    codes = list(report["language"])
    by_language = [
        {
            "functionality": functionality,
            "gold": gold_of[functionality],
            "n_cases": int(report["functionality"][functionality]["n_cases"]),
            "accuracy": report["functionality"][functionality]["accuracy"],
            **{code: cells[code]["accuracy"] if code in cells else None for code in codes},
        }
        for functionality, cells in report["functionality_language"].items()
    ]
    return SuiteTables(table, languages, by_language)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def _figures(
    outdir: Path, labels: list[str], gold: np.ndarray, probs: np.ndarray, decisions: np.ndarray, ece_bins: int
) -> None:
    from textguard.evaluation.plots import reliability_per_label
    from textguard.plots import confusion_matrices, pr_curve, reliability_diagram, save_figure

    plots = outdir / "plots"
    save_figure(pr_curve(gold, probs, labels, title="PR curves"), plots / "pr_curves.png")
    save_figure(
        confusion_matrices(gold, decisions, labels, title="Confusion matrices"),
        plots / "confusion_matrices.png",
    )
    save_figure(
        reliability_diagram(gold, {"all labels": probs}, n_bins=ece_bins, title="Reliability (all labels)"),
        plots / "reliability_diagram.png",
    )
    save_figure(
        reliability_per_label(gold, probs, labels, ece_bins, title="Reliability per label"),
        plots / "reliability_per_label.png",
    )


def _errors_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| label | kind | rank | probability | text | language | source | dataset |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        text = str(row["text"]).replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {row['label']} | {row['kind']} | {row['rank']} | {row['probability']:.4f} | {text} | "
            f"{row['language']} | {row['source']} | {row['dataset']} |"
        )
    return "\n".join(lines) + "\n"


def _model_directory(model: str, tracking_uri: str) -> Path:
    """A local artefact directory; runs:/ and models:/ URIs are fetched from *this* tracking store."""
    from textguard.artifact import REMOTE_SCHEMES, resolve_artifact

    if model.startswith(REMOTE_SCHEMES):
        from textguard.tracking.evaluation import fetch_model

        return fetch_model(model, tracking_uri)
    return resolve_artifact(model)


def evaluate_model(request: EvaluationRequest, progress: Progress | None = None) -> EvaluationResult:
    """Evaluate one model and log an evaluation run; returns what was logged.

    The run records the evaluated model (tags, and its MLflow LoggedModel as a run input), what it
    was measured on (`provenance`), the headline metrics (linked to the model and the dataset) and
    every value and table as artefacts (see `textguard.evaluation.headline`).
    """
    import pandas as pd

    from textguard.evaluation.headline import headline
    from textguard.evaluation.suites import load_suite
    from textguard.scorer import Scorer
    from textguard.tracking.evaluation import describe_model, evaluation_run
    from textguard.tracking.runs import dataframe_digest

    say = progress or (lambda message: None)
    config = request.config
    suites = [load_suite(argument) for argument in request.suites]
    rows = load_rows(request.data, config.split)
    directory = _model_directory(request.model, request.tracking_uri)
    scorer = Scorer.from_artifact(directory, max_batch_size=config.batch_size, precision=config.precision)
    say(f"precision {scorer.precision.precision}: {scorer.precision.reason}")
    identity = describe_model(request.model, directory, scorer.spec, request.tracking_uri)
    policy_tags = _check_policy(request.policy, scorer.spec.thresholds, identity.describe())
    say(f"evaluating {identity.describe()} on {rows.directory.name}/{config.split}")

    evaluator = _Evaluator(request, scorer, rows, say)
    probs, decisions = evaluator.clean()
    slice_table = evaluator.slices(probs, decisions)
    evaluator.perturbations(decisions)
    suite_tables = {suite.name: evaluator.suite(suite) for suite in suites}
    predictions = pd.concat(evaluator.frames, ignore_index=True)

    dataset_name = f"{rows.directory.name}-{config.split}"
    provenance = Provenance(
        data_digest=dataframe_digest(rows.frame),
        labels=tuple(scorer.spec.labels),
        perturbations=tuple(request.perturbations),
        seed=request.seed,
        suites={
            suite.name: SuiteFile(str(suite.path.resolve()), file_sha256(suite.path), suite.size)
            for suite in suites
        },
    )
    tags = {
        **identity.tags(),
        **provenance.tags(),
        "textguard.data.name": dataset_name,
        "textguard.data.path": str(rows.directory.resolve()),
        "textguard.data.split": config.split,
        "textguard.eval.role": request.role,
        "textguard.eval.text_hash_key": evaluator.hasher.key_source,
        "textguard.eval.show_text": str(request.show_text).lower(),
        **policy_tags,
        **request.extra_tags,
    }
    params: dict[str, Any] = {
        "model": request.model,
        "data": str(request.data),
        "split": config.split,
        "seed": request.seed,
        "suites": [suite.name for suite in suites],
        "perturbations": list(request.perturbations),
        "max_fpr": config.max_fpr,
        "ece_bins": config.ece_bins,
        "min_slice_rows": config.min_slice_rows,
        "slice_dimensions": list(config.slice_dimensions),
        "temperature": scorer.spec.temperature,
        "precision": scorer.precision.precision,
        "precision_requested": config.precision,
        **{f"threshold.{label}": value for label, value in scorer.spec.thresholds.items()},
    }
    run_name = f"eval {identity.describe()} on {dataset_name}"
    with (
        evaluation_run(
            tracking_uri=request.tracking_uri, experiment=config.experiment, run_name=run_name, tags=tags
        ) as run,
        tempfile.TemporaryDirectory(prefix="textguard-eval-") as workdir,
    ):
        outdir = Path(workdir)
        digest = run.log_dataset(rows.frame, name=dataset_name, source=str(rows.directory.resolve()))
        if identity.model_id:
            run.link_model(identity.model_id)
        run.log_params(params)
        run.log_metrics(
            headline(evaluator.metrics), model_id=identity.model_id, dataset=(dataset_name, digest)
        )
        _write_json(outdir / PROVENANCE_FILE, provenance.to_dict())
        _log_artifacts(run, outdir, evaluator, predictions, slice_table, suite_tables, probs, decisions)
        result = EvaluationResult(
            run_id=run.run_id,
            experiment_id=run.experiment_id,
            identity=identity,
            metrics=dict(evaluator.metrics),
            predictions=predictions,
            slice_table=slice_table,
            suite_tables=suite_tables,
            data_digest=digest,
            provenance=provenance,
        )
    return result


def _check_policy(path: Path | None, thresholds: dict[str, float], model: str) -> dict[str, str]:
    """Fail before scoring when the policy file would be refused with this model (as the service would
    refuse it at hot swap); otherwise tags naming the policies allowed to be laxer than the model."""
    if path is None:
        return {}
    from textguard.policy import PolicySet, check_against_model

    policies = PolicySet.load(path)
    allowed = check_against_model(policies, thresholds, model)
    return {
        "textguard.eval.policy_file": policies.source,
        "textguard.eval.policies_laxer_than_model": ",".join(
            f"{item.policy}:{item.label}" for item in allowed
        ),
    }


def label_table(metrics: dict[str, float], labels: list[str]) -> list[dict[str, Any]]:
    """Macro, micro and per-label rows of every measure of the evaluated split (tables/labels.csv)."""
    fpr = next((key[len("macro_") :] for key in metrics if key.startswith("macro_recall_at_fpr_")), None)
    measures_shown = ["f1", "precision", "recall", "pr_auc", "roc_auc", *([fpr] if fpr else []), "ece"]
    rows: list[dict[str, Any]] = []
    for scope in ("macro", "micro"):
        rows.append({"scope": scope, **{m: metrics.get(f"{scope}_{m}") for m in measures_shown}})
    for label in labels:
        row: dict[str, Any] = {"scope": label, **{m: metrics.get(f"{m}_{label}") for m in measures_shown}}
        row["support"] = metrics.get(f"support_{label}")
        row["predicted"] = metrics.get(f"predicted_{label}")
        rows.append(row)
    return rows


def robustness_table(metrics: dict[str, float]) -> list[dict[str, Any]]:
    """One row per perturbation (tables/robustness.csv)."""
    kinds = sorted({key.split(".")[1] for key in metrics if key.startswith("perturb.")})
    columns = (
        "macro_f1",
        "micro_f1",
        "macro_pr_auc",
        "delta.macro_f1",
        "delta.micro_f1",
        "delta.macro_pr_auc",
        "flip_rate",
        "changed_fraction",
    )
    return [
        {"perturbation": kind, **{column: metrics.get(f"perturb.{kind}.{column}") for column in columns}}
        for kind in kinds
    ]


def _log_artifacts(
    run: EvaluationRun,
    outdir: Path,
    evaluator: _Evaluator,
    predictions: pd.DataFrame,
    slice_table: list[dict[str, Any]],
    suite_tables: dict[str, SuiteTables],
    probs: np.ndarray,
    decisions: np.ndarray,
) -> None:
    labels, config = evaluator.labels, evaluator.config
    predictions.to_parquet(outdir / PREDICTIONS_FILE, index=False)
    _write_json(outdir / "metrics.json", dict(sorted(evaluator.metrics.items())))
    _write_csv(outdir / "tables" / "labels.csv", label_table(evaluator.metrics, labels))
    robustness = robustness_table(evaluator.metrics)
    if robustness:
        _write_csv(outdir / "tables" / "robustness.csv", robustness)
    _write_csv(outdir / "slices.csv", slice_table)
    _write_json(outdir / "slices.json", slice_table)
    for name, tables in suite_tables.items():
        _write_csv(outdir / "suites" / f"{name}_functionality.csv", tables.functionality)
        _write_csv(outdir / "suites" / f"{name}_languages.csv", tables.languages)
        _write_csv(outdir / "suites" / f"{name}_functionality_by_language.csv", tables.by_language)
    _write_json(
        outdir / "calibration.json",
        {
            label: measures.reliability_bins(evaluator.gold[:, column], probs[:, column], config.ece_bins)
            for column, label in enumerate(labels)
        },
    )
    errors = top_errors(
        labels=labels,
        gold=evaluator.gold,
        probs=probs,
        decisions=decisions,
        row_ids=evaluator.row_ids,
        texts=evaluator.rows.texts,
        attributes=evaluator.rows.attributes(),
        k=config.top_errors,
        redact=None if evaluator.request.show_text else evaluator.hasher,
    )
    _write_json(outdir / "errors.json", errors)
    (outdir / "errors.md").write_text(_errors_markdown(errors), encoding="utf-8")
    _figures(outdir, labels, evaluator.gold, probs, decisions, config.ece_bins)
    run.log_dir(outdir)
