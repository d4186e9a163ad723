"""What a training run leaves behind for people: slice tables, figures, thresholds and the model card."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textguard import plots
from textguard.calibration import Calibration
from textguard.labels import DEFINITIONS, LABELS, Label
from textguard.postprocess import decide
from textguard.spec import ModelSpec
from textguard.training.freeze import ParameterCounts
from textguard.training.metrics import sliced_metrics

MODEL_CARD_FILE = "MODEL_CARD.md"
SLICE_COLUMNS = ("language", "source")


@dataclass
class EvaluatedSplit:
    """Logits, labels and slice columns of one split scored through the one scoring path."""

    name: str
    logits: np.ndarray
    y_true: np.ndarray
    columns: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.y_true)


def write_slice_tables(
    split: EvaluatedSplit, probs: np.ndarray, spec: ModelSpec, directory: Path
) -> list[Path]:
    """metrics per language and per source, as CSV (for people) and JSON (for tools)."""
    import pandas as pd

    written = []
    for column in SLICE_COLUMNS:
        values = split.columns.get(column)
        if not values:
            continue
        table = sliced_metrics(split.y_true, probs, spec, values)
        stem = directory / f"{split.name}_metrics_by_{column}"
        frame = pd.DataFrame.from_dict(table, orient="index").rename_axis(column).sort_values("support")
        frame.iloc[::-1].to_csv(stem.with_suffix(".csv"), float_format="%.4f")
        # Undefined metrics (NaN) become null: NaN is not JSON.
        defined = {
            group: {key: (value if math.isfinite(value) else None) for key, value in row.items()}
            for group, row in table.items()
        }
        stem.with_suffix(".json").write_text(
            json.dumps(defined, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        written += [stem.with_suffix(".csv"), stem.with_suffix(".json")]
    return written


def write_figures(split: EvaluatedSplit, probs: np.ndarray, spec: ModelSpec, directory: Path) -> list[Path]:
    """PR curves and confusion matrices of `split` as PNG files."""
    figures = {
        f"pr_curves_{split.name}.png": plots.pr_curve(
            split.y_true, probs, spec.labels, title=f"{split.name}: precision-recall per label"
        ),
        f"confusion_matrices_{split.name}.png": plots.confusion_matrices(
            split.y_true, decide(probs, spec), spec.labels, title=f"{split.name} at the calibrated thresholds"
        ),
    }
    return [plots.save_figure(figure, directory / filename) for filename, figure in figures.items()]


def reliability_figure(validation: EvaluatedSplit, calibration: Calibration, directory: Path) -> Path:
    from textguard.postprocess import sigmoid

    # The figure's bins are the ECE's bins: the points drawn are the terms the labelled ECE sums.
    figure = plots.reliability_diagram(
        validation.y_true,
        {
            f"T=1 (ECE {calibration.ece_before:.3f})": sigmoid(validation.logits),
            f"T={calibration.temperature:.2f} (ECE {calibration.ece_after:.3f})": sigmoid(
                validation.logits / calibration.temperature
            ),
        },
        n_bins=calibration.ece_bins,
        title=f"validation reliability (ECE over {calibration.ece_bins} bins)",
    )
    return plots.save_figure(figure, directory / "reliability_validation.png")


def thresholds_document(spec: ModelSpec, calibration: Calibration) -> dict[str, Any]:
    return {
        "policy": spec.threshold_policy,
        "temperature": spec.temperature,
        "thresholds": spec.thresholds,
        "per_label": calibration.per_label,
        "ece_before": calibration.ece_before,
        "ece_after": calibration.ece_after,
    }


def _datasets_section(report: dict[str, Any], data_licences: list[tuple[str, str, str]]) -> list[str]:
    lines = ["## Training data", ""]
    if data_licences:
        lines += ["| dataset | licence | description |", "|---|---|---|"]
        lines += [f"| {name} | {licence} | {description} |" for name, licence, description in data_licences]
        lines.append("")
    counts = report.get("counts") or report.get("splits")
    if isinstance(counts, dict):
        lines += [
            "Rows per split: " + ", ".join(f"{key} {value}" for key, value in counts.items() if key),
            "",
        ]
    return lines


def _metric_rows(metrics: dict[str, float], prefix: str) -> list[str]:
    keys = ["macro_f1", "micro_f1", "macro_pr_auc"] + [
        f"{kind}_{label}" for label in LABELS for kind in ("f1", "precision", "recall", "pr_auc")
    ]
    return [f"| {prefix} | {key} | {_number(metrics[key])} |" for key in keys if key in metrics]


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _backbone_section(manifest: dict[str, Any] | None) -> list[str]:
    """Where converted base weights came from and what the conversion changed."""
    if not manifest or "package" not in manifest:
        return []
    lines = [
        "## Base weights",
        "",
        f"- Source: Python package `{manifest['package']}` {manifest.get('package_version', '?')}, file "
        f"`{manifest.get('source_file', '?')}` (sha256 `{manifest.get('source_sha256', '?')}`), "
        f"licence {manifest.get('licence', 'see the package')}",
        f"- Converted by textguard (converter version {manifest.get('converter_version', '?')}): "
        f"{manifest.get('quantisation', 'not quantised')}.",
    ]
    if manifest.get("quantisation_note"):
        lines.append(f"- What that means: {manifest['quantisation_note']}")
    parity = manifest.get("engine_parity")
    if isinstance(parity, dict):
        lines.append(
            f"- Sentence embeddings of the converted encoder match the package's own engine at median cosine "
            f"{parity['median_cosine']:.4f} (lowest {parity['min_cosine']:.4f}) over {parity['sentences']} "
            "multilingual sentences, measured when the backbone was built."
        )
    elif parity:
        lines.append(f"- Agreement with the package's own engine: {parity}")
    return [*lines, ""]


def _precision_lines(precision: str, bf16_parity: dict[str, Any] | None) -> list[str]:
    from textguard.parity import MAX_PROB_DIFF, MIN_AGREEMENT, within_limits

    mixed = " mixed precision (fp32 master weights; the saved weights are fp32)"
    lines = [f"- Trained in {precision}{mixed if precision != 'fp32' else ''}"]
    if bf16_parity is not None:
        verdict = "within" if within_limits(bf16_parity) else "outside"
        lines.append(
            f"- Scoring in bf16 against fp32 on {bf16_parity['n_texts']} validation texts: max probability "
            f"difference {bf16_parity['max_abs_diff']:.4f}, decisions unchanged for "
            f"{bf16_parity['decision_agreement']:.1%} ({verdict} the limits {MAX_PROB_DIFF} / "
            f"{MIN_AGREEMENT:.1%}: `precision: auto` serves bf16 only within them, on bf16 hardware)"
        )
    return lines


def model_card(
    *,
    spec: ModelSpec,
    calibration: Calibration,
    validation_metrics: dict[str, float],
    test_metrics: dict[str, float],
    language_table: dict[str, dict[str, float]] | None,
    language_split: str,
    report: dict[str, Any],
    data_licences: list[tuple[str, str, str]],
    run_id: str | None,
    base_model: str,
    backbone: dict[str, Any] | None = None,
    parameters: ParameterCounts | None = None,
    precision: str = "fp32",
    bf16_parity: dict[str, Any] | None = None,
) -> str:
    """The model card (Markdown) written beside the weights and logged with the run.

    `backbone` is the manifest of a converted offline backbone (where its weights came from);
    `precision` is what training ran in, `bf16_parity` the parity record's bf16 entry (textguard.parity).
    """
    lines = [
        f"# textguard model card: {spec.name} ({base_model})",
        "",
        f"- Base model: `{base_model}`",
        f"- Taxonomy version {spec.taxonomy_version}, normaliser version {spec.normalizer_version}",
        f"- Training config hash `{spec.config_hash}`, MLflow run `{run_id or 'not tracked'}`",
        f"- Max length {spec.max_length} tokens; problem type {spec.problem_type} (sigmoid per label)",
    ]
    if spec.text_prefix:
        lines.append(f"- Text prefix `{spec.text_prefix!r}` prepended to every text before tokenisation")
    if parameters is not None:
        lines.append(
            f"- Parameters: {parameters.total:,}, of which {parameters.trainable:,} were fine-tuned "
            f"({parameters.frozen:,} frozen at their pretrained values)"
        )
    lines += _precision_lines(precision, bf16_parity)
    lines += [
        "",
        *_backbone_section(backbone),
        "## Intended use",
        "",
        "Flag terrorist and violent extremist content in video-meeting chat and live captions for review",
        "by trained moderators. Scores are calibrated probabilities; decisions use the per-label thresholds",
        "below.",
        "",
        "## Out of scope",
        "",
        "Automated sanctions without human review; content outside chat and captions (images, audio, long",
        "documents); judging the legality of content; identifying or profiling people.",
        "",
        "## Labels",
        "",
    ]
    for label in spec.labels:
        lines.append(f"- `{label}`: {DEFINITIONS[Label(label)].summary}")
    lines += ["", *_datasets_section(report, data_licences)]
    lines += [
        "## Calibration",
        "",
        f"Temperature {spec.temperature:.3f} fitted on validation (ECE {calibration.ece_before:.4f} -> "
        f"{calibration.ece_after:.4f}); thresholds by policy `{spec.threshold_policy}`:",
        "",
        "| label | threshold | validation precision | validation recall | note |",
        "|---|---|---|---|---|",
    ]
    for label in spec.labels:
        detail = calibration.per_label.get(label, {})
        lines.append(
            f"| {label} | {spec.thresholds[label]:.4f} | {detail.get('precision', 0):.3f} | "
            f"{detail.get('recall', 0):.3f} | {detail.get('note', '')} |"
        )
    lines += ["", "## Metrics", "", "| split | metric | value |", "|---|---|---|"]
    lines += _metric_rows(validation_metrics, "validation")
    lines += _metric_rows(test_metrics, "test")
    if not test_metrics:
        lines.append("| test | (empty test split: no held-out metrics) | |")
    if language_table:
        lines += [
            "",
            f"### Macro-F1 per language ({language_split} split)",
            "",
            "| language | texts | with a label | macro-F1 |",
            "|---|---|---|---|",
        ]
        for language, row in sorted(language_table.items(), key=lambda item: -item[1]["support"]):
            lines.append(
                f"| {language} | {int(row['support'])} | {int(row.get('positives') or 0)} "
                f"| {_number(row['macro_f1'], 3)} |"
            )
    lines += [
        "",
        "## Limitations",
        "",
        "- Quality varies by language and is lowest where training data is thin (see the table above);",
        "  languages absent from training are not supported.",
        "- Counter-speech, news reporting, quotations and fiction are known hard negatives; check the",
        "  functional suites before promoting a model.",
        "- Coded language and new slang drift quickly: re-evaluate on fresh samples regularly.",
        "- Dataset annotations carry their annotators' biases; see each dataset's data card.",
        "",
    ]
    return "\n".join(lines)
