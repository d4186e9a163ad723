"""The Hugging Face `Trainer` pieces: loss override, arguments, metrics, collator, tracking callback.

Everything else (loop, accumulation, mixed precision, DDP, checkpoints, early stopping, best-model
reload) is the stock Trainer: it is subclassed only for `compute_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import (
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from textguard.spec import ModelSpec
from textguard.training.config import TrainingConfig
from textguard.training.data import LENGTH_COLUMN
from textguard.training.loss import MultiLabelLoss
from textguard.training.metrics import spec_metrics
from textguard.training.precision import Precision


class TextguardTrainer(Trainer):
    """`Trainer` with a multi-label loss (BCE with positive weights, or focal)."""

    # compute_loss returns a per-batch mean, so the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self, *args: Any, loss_fn: MultiLabelLoss, head_learning_rate: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn
        self.head_learning_rate = head_learning_rate

    def create_optimizer(self, model: Any = None) -> Any:
        """The stock optimizer, with the freshly initialised head (pooler, classifier) at its own rate.

        A randomly initialised head needs large steps while the pretrained encoder needs small ones; one
        rate for both either underfits the head or knocks the encoder over (seen on e5 at 1e-4: every
        prediction collapsed to benign within an epoch in two of four runs). The scheduler scales every
        group alike, so warm-up and decay apply to both rates.
        """
        if self.head_learning_rate is None or self.optimizer is not None:
            return super().create_optimizer(model)
        target: Any = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(target))
        groups: dict[tuple[bool, bool], list[Any]] = {}
        for name, parameter in target.named_parameters():
            if parameter.requires_grad:
                groups.setdefault((is_head_parameter(name), name in decay), []).append(parameter)
        optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, target)
        self.optimizer = optimizer_cls(
            [
                {
                    "params": params,
                    "lr": self.head_learning_rate if head else self.args.learning_rate,
                    "weight_decay": self.args.weight_decay if decays else 0.0,
                }
                for (head, decays), params in groups.items()
            ],
            **kwargs,
        )
        return self.optimizer


def is_head_parameter(name: str) -> bool:
    """The task head a sequence-classification model adds on top of its encoder: pooler and classifier."""
    return (
        name.startswith("classifier.")
        or ".pooler." in name
        or name.startswith("pooler.")
        or ".classifier." in name
    )

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = self.loss_fn(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss


class DynamicPaddingCollator:
    """Pads each batch to its own longest text (never to max_length) and drops the length column."""

    def __init__(self, tokenizer: Any, pad_to_multiple_of: int | None = None) -> None:
        self._pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return self._pad([{k: v for k, v in row.items() if k != LENGTH_COLUMN} for row in features])  # type: ignore[no-any-return]


class TrackingCallback(TrainerCallback):
    """Sends every Trainer log (train loss, learning rate, eval metrics) to the tracking run, rank 0 only."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        metrics = {
            _metric_name(name): float(value)
            for name, value in logs.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        }
        if metrics:
            self.run.log_metrics(metrics, step=state.global_step)


def _metric_name(name: str) -> str:
    if name == "train_loss":
        # The Trainer's end-of-training summary: the mean over all steps, not one more step's loss.
        return "train_loss_mean"
    return name if name.startswith(("train_", "eval_", "test_")) or name == "epoch" else f"train_{name}"


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def best_metric_name(config: TrainingConfig) -> tuple[str, bool]:
    """(Trainer metric name, greater_is_better) for checkpoint selection and early stopping."""
    metric = config.early_stopping.metric
    return f"eval_{metric}", metric != "loss"


def training_arguments(
    config: TrainingConfig, checkpoints_dir: Path, precision: Precision
) -> TrainingArguments:
    import torch

    cuda = torch.cuda.is_available()
    metric, greater_is_better = best_metric_name(config)
    every = "steps" if config.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(checkpoints_dir),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.grad_accumulation,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a fraction of all steps in transformers 5
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        data_seed=config.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda,
        # Checkpoints coincide with evaluations so the best one can be reloaded at the end.
        eval_strategy=every,
        save_strategy=every,
        eval_steps=config.eval_steps,
        save_steps=config.eval_steps or 500,  # ignored unless save_strategy is "steps"
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=greater_is_better,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        length_column_name=LENGTH_COLUMN,
        # Keep the length column for the sampler; the collator drops it before the forward pass.
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=config.dataloader_workers,
        # Tracking goes through textguard.tracking only (the one module that imports mlflow).
        report_to="none",
        ddp_backend="gloo" if not cuda and _world_size() > 1 else None,
        # Sequence classifiers use every parameter; searching for unused ones costs a graph walk per step.
        ddp_find_unused_parameters=False,
    )


def compute_metrics_for(spec: ModelSpec) -> Callable[[EvalPrediction], dict[str, float]]:
    """Trainer `compute_metrics`: macro/micro/per-label F1 and PR-AUC from the one post-processing path."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        logits = (
            prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        )
        return spec_metrics(logits, prediction.label_ids, spec)  # type: ignore[arg-type]

    return compute
