"""Evaluation settings (configs/evaluation/default.yaml) and the regression gate (gate.yaml beside it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from textguard.config import StrictModel, load_config
from textguard.evaluation.measures import DEFAULT_ECE_BINS
from textguard.paths import project_root

SliceDimension = Literal["language", "source", "dataset"]
DEFAULT_CONFIG = Path("configs/evaluation/default.yaml")
DEFAULT_GATE = Path("configs/evaluation/gate.yaml")


def _every_dimension() -> list[SliceDimension]:
    return ["language", "source", "dataset"]


def _gate_dimensions() -> list[SliceDimension]:
    # Datasets are not gated by default: a dataset slice is one source's labelling, not a user group.
    return ["language", "source"]


class EvaluationConfig(StrictModel):
    #: MLflow experiment for evaluation and comparison runs (training runs live in their own).
    experiment: str = "textguard-evaluation"
    tracking_uri: str | None = None
    split: Literal["train", "validation", "test"] = "test"
    #: False-positive-rate budget of the recall_at_fpr_<p>pct metrics.
    max_fpr: float = Field(default=0.01, gt=0.0, lt=1.0)
    #: Equal-width bins of the ECE (`measures.bin_index` is the one binning rule).
    ece_bins: int = Field(default=DEFAULT_ECE_BINS, ge=2, le=100)
    slice_dimensions: list[SliceDimension] = Field(default_factory=_every_dimension)
    #: Slices with fewer rows are listed in the slice table but get no metrics (too noisy to log).
    min_slice_rows: int = Field(default=1, ge=1)
    #: Highest-scoring false positives and lowest-scoring false negatives kept per label.
    top_errors: int = Field(default=20, ge=0)
    batch_size: int = Field(default=32, ge=1)
    #: torch precision, as the service chooses it (textguard.parity): auto = bf16 where the hardware
    #: has bf16 units and the artefact's recorded parity holds. fp32 gives the reference figures.
    precision: Literal["auto", "fp32", "bf16"] = "auto"


class GateConfig(StrictModel):
    """When `evaluate --fail-on-regression` refuses a candidate against its baseline."""

    #: Metrics (evaluation metric names) that must not drop.
    metrics: list[str] = Field(
        default_factory=lambda: [
            "macro_f1",
            "f1_violent_threat",
            "f1_extremist_glorification",
            "f1_hate_dehumanization",
            "macro_pr_auc",
        ]
    )
    #: Checked on every slice of `slice_dimensions` with at least `min_slice_rows` rows.
    slice_metrics: list[str] = Field(default_factory=lambda: ["macro_f1"])
    slice_dimensions: list[SliceDimension] = Field(default_factory=_gate_dimensions)
    min_slice_rows: int = Field(default=50, ge=1)
    #: A drop larger than this (absolute, in metric units) is a regression...
    margin: float = Field(default=0.02, ge=0.0)
    #: ...with per-metric overrides (a metric name -> its margin).
    margins: dict[str, float] = Field(default_factory=dict)
    #: ...and, when true, only if the paired bootstrap also finds the drop significant at `alpha`.
    require_significance: bool = True
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    resamples: int = Field(default=1000, ge=100)
    seed: int = 0

    @field_validator("metrics", "slice_metrics")
    @classmethod
    def _known_names(cls, names: list[str]) -> list[str]:
        from textguard.evaluation.named_metrics import metric_function

        for name in names:
            metric_function(name)  # raises ConfigError naming the bad metric
        return names

    def margin_for(self, name: str) -> float:
        if name in self.margins:
            return self.margins[name]
        base = name.split(".")[-1]
        return self.margins.get(base, self.margin)


def _resolve(path: Path | None, default: Path) -> Path | None:
    if path is not None:
        return path
    candidate = project_root() / default
    return candidate if candidate.is_file() else None


def load_evaluation_config(path: Path | None = None, overrides: tuple[str, ...] = ()) -> EvaluationConfig:
    resolved = _resolve(path, DEFAULT_CONFIG)
    if resolved is None:
        return EvaluationConfig()
    return load_config(EvaluationConfig, resolved, overrides)


def load_gate_config(path: Path | None = None) -> GateConfig:
    resolved = _resolve(path, DEFAULT_GATE)
    return GateConfig() if resolved is None else load_config(GateConfig, resolved)
