"""The training config schema (`configs/*.yaml` for `textguard train`).

Sections: run naming and output directory, data, model, training, calibration, tracking. Every section
is a `StrictModel`, so a misspelt key is an error that names it rather than a silent default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from textguard.backbones.registry import PACKAGE_PREFIX
from textguard.config import StrictModel, load_config

__all__ = ["PACKAGE_PREFIX"]


class DataConfig(StrictModel):
    """Where the prepared train/validation/test splits come from: exactly one of the two."""

    #: A prepared dataset folder (train/validation/test parquet, written by `textguard data prepare`).
    prepared: Path | None = None
    #: A data config (configs/data/<name>.yaml); prepared on the fly when its output folder is missing.
    config: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.prepared is None) == (self.config is None):
            raise ValueError(
                "set exactly one of data.prepared (a prepared folder) or data.config (a data YAML)"
            )
        return self


class TinyModelConfig(StrictModel):
    """A randomly initialised encoder with a tokenizer trained on the training texts (tests, smoke runs)."""

    architecture: Literal["bert", "xlm-roberta"] = "bert"
    vocab_size: int = Field(default=1000, ge=100)
    hidden_size: int = Field(default=32, ge=8)
    num_layers: int = Field(default=2, ge=1)
    num_heads: int = Field(default=2, ge=1)


class ModelConfig(StrictModel):
    #: Hub id ("xlm-roberta-base"), local directory, or "package:<name>" (an offline backbone:
    #: `textguard models list`).
    base: str | None = None
    #: Hub revision (branch, tag or commit) for hub ids; ignored for local paths.
    revision: str | None = None
    tiny: TinyModelConfig | None = None
    #: Prepended to every text before tokenisation, in training and (through the model spec) in every
    #: scoring path. None: the backbone's own ("query: " for multilingual-e5-small, else "").
    text_prefix: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.base is None) == (self.tiny is None):
            raise ValueError("set exactly one of model.base (hub id, path or package:...) or model.tiny")
        return self

    @property
    def name(self) -> str:
        """What `ModelSpec.base_model` records."""
        if self.tiny is not None:
            return f"tiny-{self.tiny.architecture}"
        assert self.base is not None
        return self.base if self.revision is None else f"{self.base}@{self.revision}"


class LossConfig(StrictModel):
    kind: Literal["bce", "focal"] = "bce"
    #: "auto": per-label negatives/positives on the training split (capped), to counter rare labels.
    pos_weight: Literal["auto", "none"] = "auto"
    max_pos_weight: float = Field(default=20.0, ge=1.0)
    #: Focal loss focusing parameter (ignored for bce): 0 is plain BCE.
    gamma: float = Field(default=2.0, ge=0.0)


class AugmentationConfig(StrictModel):
    #: Fraction of training texts that get one perturbed copy added (0 disables augmentation).
    rate: float = Field(default=0.0, ge=0.0, le=1.0)
    #: Perturbation kinds of `textguard.perturb` (empty: all of them).
    kinds: list[str] = Field(default_factory=list)
    #: Share of harmful chat rows that get one copy inside a stance frame (textguard.data.stance_wrappers):
    #: a condemning frame ("someone posted '...', reported") makes the copy benign, an endorsing one keeps
    #: its labels. 0 disables it.
    wrap_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    #: Of the wrapped copies, the share framed as agreement (labels kept) rather than condemnation.
    endorse_share: float = Field(default=0.25, ge=0.0, le=1.0)

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        from textguard.perturb import PERTURBATIONS

        unknown = [kind for kind in kinds if kind not in PERTURBATIONS]
        if unknown:
            raise ValueError(f"unknown perturbation kind(s) {unknown}; known: {', '.join(PERTURBATIONS)}")
        return kinds


class HardNegativesConfig(StrictModel):
    """Benign training rows a previous model flagged (`textguard data mine-negatives`), repeated."""

    #: The mined JSONL; its ids are matched against this run's training split (other rows are ignored).
    file: Path | None = None
    #: How many times each matched row appears in training (1: no extra weight).
    repeat: int = Field(default=2, ge=1, le=10)


class EarlyStoppingConfig(StrictModel):
    #: Evaluations without improvement before stopping (0 disables early stopping).
    patience: int = Field(default=3, ge=0)
    #: Validation metric that picks the best checkpoint (higher is better except for loss).
    metric: Literal["macro_f1", "micro_f1", "macro_pr_auc", "loss"] = "macro_f1"
    min_delta: float = Field(default=0.0, ge=0.0)


class FreezeConfig(StrictModel):
    """Parameters kept at their pretrained values (fewer to train: faster steps, less optimiser memory)."""

    #: The word-embedding matrix (96M of multilingual-e5-small's 118M parameters). Freezing it also
    #: keeps the pretrained cross-lingual alignment of words the fine-tuning data never shows.
    word_embeddings: bool = False
    #: The whole embedding block plus the bottom N encoder layers (0: none). Nothing below the first
    #: trainable layer needs gradients, so the backward pass stops there.
    layers: int = Field(default=0, ge=0)


class TrainingConfig(StrictModel):
    learning_rate: float = Field(default=5e-5, gt=0)
    #: Rate of the task head (pooler + classifier, initialised at random) when it should differ from the
    #: encoder's; None: the same rate for everything.
    head_learning_rate: float | None = Field(default=None, gt=0)
    epochs: float = Field(default=3.0, gt=0)
    #: Stop after this many optimiser steps (overrides epochs); for smoke runs.
    max_steps: int | None = Field(default=None, gt=0)
    #: Per-device batch size (texts); the effective batch is x grad_accumulation x processes.
    batch_size: int = Field(default=32, gt=0)
    eval_batch_size: int = Field(default=64, gt=0)
    grad_accumulation: int = Field(default=1, gt=0)
    #: Linear warm-up as a fraction of all optimiser steps.
    warmup_ratio: float = Field(default=0.06, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    seed: int = 42
    #: Tokens per text after truncation (chat messages are short; captions arrive in segments).
    max_length: int = Field(default=128, gt=8, le=8192)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    #: Evaluate and checkpoint every N optimiser steps; None = once per epoch.
    eval_steps: int | None = Field(default=None, gt=0)
    logging_steps: int = Field(default=20, gt=0)
    save_total_limit: int = Field(default=2, ge=1)
    #: Batch texts of similar length together: far less padding on chat traffic.
    group_by_length: bool = True
    dataloader_workers: int = Field(default=0, ge=0)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    hard_negatives: HardNegativesConfig = Field(default_factory=HardNegativesConfig)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)


class MaxF1Policy(StrictModel):
    policy: Literal["max_f1"] = "max_f1"
    #: 0: the threshold of the best validation F1. > 0: the middle of the thresholds whose F1 is within
    #: this much of the best (steadier from one training run to the next; textguard.calibration).
    plateau: float = Field(default=0.0, ge=0.0, lt=1.0)


class TargetPrecisionPolicy(StrictModel):
    policy: Literal["target_precision"]
    #: Lowest threshold whose validation precision reaches this value.
    value: float = Field(gt=0.0, le=1.0)


class MaxFprPolicy(StrictModel):
    policy: Literal["max_fpr"]
    #: Lowest threshold whose validation false-positive rate stays at or below this value.
    value: float = Field(ge=0.0, lt=1.0)


ThresholdPolicy = Annotated[MaxF1Policy | TargetPrecisionPolicy | MaxFprPolicy, Field(discriminator="policy")]


class CalibrationConfig(StrictModel):
    #: Fit temperature scaling on validation logits.
    temperature: bool = True
    thresholds: ThresholdPolicy = Field(default_factory=MaxF1Policy)


class TrackingConfig(StrictModel):
    enabled: bool = True
    #: MLflow tracking URI; env MLFLOW_TRACKING_URI wins; default sqlite:///mlflow.db.
    uri: str | None = None
    experiment: str = "textguard"
    #: Registered model name (None: log the model without registering it).
    register_as: str | None = "textguard"
    alias: str | None = "candidate"
    #: Extra run tags.
    tags: dict[str, str] = Field(default_factory=dict)


class TrainConfig(StrictModel):
    #: MLflow run name (default: the config file's stem plus the time).
    run_name: str | None = None
    #: Checkpoints go to <output_dir>/checkpoints, the artefact to <output_dir>/model, reports to
    #: <output_dir>/reports.
    output_dir: Path = Path("outputs/train")
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)


def load_train_config(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), output_dir: Path | None = None
) -> TrainConfig:
    """Load and validate a training config; `--set a.b=value` overrides and `--output-dir` applied."""
    config = load_config(TrainConfig, path, overrides)
    if output_dir is not None:
        config.output_dir = output_dir
    return config
