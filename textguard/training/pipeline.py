"""`train(config)`: fine-tune, calibrate, evaluate, save and register one model.

Read `train` top to bottom: each numbered phase is one small function below it.

    0. resolve      base checkpoint (fails fast offline; an offline backbone is built once), text
                    prefix, precision, folders, resume point
    1. load data    prepared train/validation/test splits (+ augmentation)
    2. tokenise     through textguard.encoding.encode inside datasets.map (with the text prefix)
    3. build model  pretrained encoder + fresh multi-label head, or a tiny random one; freeze what
                    training.freeze asks for
    4. train        HF Trainer: dynamic padding, length grouping, early stopping on validation macro-F1
    5. calibrate    temperature + per-label thresholds on validation logits        (rank 0 from here)
    6. evaluate     test split through the one scoring path; slices, figures
    7. save         artefact directory: weights, tokenizer, textguard.json, model card
    8. log          MLflow artefacts and the registered model (alias "candidate")

Under torchrun every rank runs phases 0-4 (the Trainer shards batches); only rank 0 opens the MLflow
run, calibrates, evaluates and writes the artefact.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from textguard.artifact import build_spec, save_artifact
from textguard.calibration import Calibration, calibrate
from textguard.config import config_hash, flatten
from textguard.errors import ConfigError
from textguard.labels import LABELS, id2label, label2id
from textguard.postprocess import probabilities
from textguard.spec import ModelSpec
from textguard.training.config import TrainConfig
from textguard.training.data import (
    Splits,
    augment_train,
    load_splits,
    multi_hot,
    repeat_hard_negatives,
    tokenise,
    wrap_train,
)
from textguard.training.freeze import ParameterCounts, apply_freeze, parameter_counts
from textguard.training.metrics import classification_metrics, finite
from textguard.training.model_source import resolve_model_dir
from textguard.training.precision import Precision, resolve_precision
from textguard.training.report import EvaluatedSplit

log = logging.getLogger(__name__)

RESUME_AUTO = "auto"
#: Validation texts scored twice (fp32, bf16) for the artefact's parity record: seconds, not minutes.
PARITY_SAMPLE = 512


@dataclass
class RunPlan:
    """Phase 0's decisions, fixed before any heavy work."""

    config: TrainConfig
    model_dir: Path | None
    precision: Precision
    checkpoints_dir: Path
    artifact_dir: Path
    reports_dir: Path
    resume_from: str | None
    rank: int
    world_size: int
    config_path: Path | None
    config_hash: str
    #: Prepended to every text (recorded in the spec, so every scoring path does the same).
    text_prefix: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class Outcome:
    """Metrics at the calibrated thresholds (test is empty when the test split is)."""

    validation: dict[str, float]
    test: dict[str, float]
    #: The split behind the per-language/per-source tables and figures (test, else validation).
    sliced_split: str = "test"


@dataclass
class TrainResult:
    """What `train` returns on rank 0 (other ranks get `rank` and `global_step` only)."""

    rank: int
    global_step: int
    run_id: str | None = None
    artifact_dir: Path | None = None
    model_uri: str | None = None
    registered_version: str | None = None
    spec: ModelSpec | None = None
    validation_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    tracking_uri: str | None = None
    seconds: float = 0.0
    #: The in-memory model and tokenizer (for parity checks right after training).
    model: Any = None
    tokenizer: Any = None


def train(config: TrainConfig, *, resume: str | None = None, config_path: Path | None = None) -> TrainResult:
    started = time.perf_counter()
    # 0. resolve: fails in the first second on a bad checkpoint name, offline hub or precision.
    plan = resolve_plan(config, resume=resume, config_path=config_path)
    # 1. load data
    splits = load_data(plan)
    # 2. tokenise
    tokenizer = load_tokenizer(plan, splits)
    tokenised = tokenise_splits(plan, splits, tokenizer)
    # 3. build model
    model = build_model(plan, tokenizer)
    counts = parameter_counts(model)

    from textguard.tracking import resolve_tracking_uri, training_run

    tracking_uri = resolve_tracking_uri(config.tracking.uri)
    with training_run(
        experiment=config.tracking.experiment,
        tracking_uri=tracking_uri,
        run_name=run_name(plan),
        tags=run_tags(plan),
        params=run_params(plan, splits, counts),
        enabled=config.tracking.enabled and plan.is_main,
    ) as run:
        # 4. train (every rank)
        trainer = fit(plan, model, tokenizer, tokenised, splits, run)
        global_step = int(trainer.state.global_step)
        if not plan.is_main:
            return TrainResult(rank=plan.rank, global_step=global_step)
        # Mixed precision wraps the model's forward in autocast (accelerate): unwrap it, so calibration,
        # evaluation and the parity record score the fp32 weights as `Scorer.from_artifact` will.
        model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        # 5. calibrate (rank 0 from here on)
        validation = score_split(plan, model, tokenizer, splits.validation, "validation")
        calibration, spec = calibrate_model(plan, validation, tokenizer, run.run_id)
        # 6. evaluate on test
        test = score_split(plan, model, tokenizer, splits.test, "test")
        outcome = evaluate(plan, spec, calibration, validation, test)
        # 7. save the artefact
        spec = save_model(plan, model, tokenizer, spec, calibration, splits, outcome, run.run_id)
        # 8. log & register
        registered = log_outputs(plan, run, splits, outcome, global_step)
    return TrainResult(
        rank=0,
        global_step=global_step,
        run_id=run.run_id,
        artifact_dir=plan.artifact_dir,
        model_uri=model_uri(config, run.run_id, registered),
        registered_version=str(registered.version) if registered is not None else None,
        spec=spec,
        validation_metrics=outcome.validation,
        test_metrics=outcome.test,
        tracking_uri=tracking_uri if run.run_id else None,
        seconds=time.perf_counter() - started,
        model=model,
        tokenizer=tokenizer,
    )


# -- 0. resolve ------------------------------------------------------------------------------------


def resolve_plan(config: TrainConfig, *, resume: str | None, config_path: Path | None) -> RunPlan:
    """Everything that can fail cheaply fails here: unknown checkpoint, offline hub, bad precision."""
    from textguard.backbones.registry import default_text_prefix

    model_dir = resolve_model_dir(config.model)
    text_prefix = config.model.text_prefix
    if text_prefix is None:
        text_prefix = default_text_prefix(config.model.base)
    precision = resolve_precision(config.training.precision)
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    output = config.output_dir
    checkpoints = output / "checkpoints"
    resume_from = _resume_point(resume, checkpoints)
    if resume_from is None and rank == 0 and checkpoints.is_dir():
        stale = sorted(checkpoints.glob("checkpoint-*"))
        if stale:
            # A fresh run must not rotate or "resume" into checkpoints of an earlier run.
            log.warning(
                "fresh run: removing %d checkpoint(s) of an earlier run in %s "
                "(use --resume auto to continue it instead)",
                len(stale),
                checkpoints,
            )
            for path in stale:
                shutil.rmtree(path)
    return RunPlan(
        config=config,
        model_dir=model_dir,
        precision=precision,
        checkpoints_dir=checkpoints,
        artifact_dir=output / "model",
        reports_dir=output / "reports",
        resume_from=resume_from,
        rank=rank,
        world_size=world_size,
        config_path=config_path,
        config_hash=settings_hash(config),
        text_prefix=text_prefix,
    )


def settings_hash(config: TrainConfig) -> str:
    """Hash of what determines the model: data, model, training and calibration settings.

    Where outputs and runs go (output_dir, run_name, tracking) is left out, so the same training
    launched into another folder or experiment keeps its hash.
    """
    return config_hash(config.model_dump(mode="json", exclude={"output_dir", "run_name", "tracking"}))


def _resume_point(resume: str | None, checkpoints: Path) -> str | None:
    if resume is None:
        return None
    from transformers.trainer_utils import get_last_checkpoint

    if resume == RESUME_AUTO:
        last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
        if last is None:
            log.warning("--resume auto: no checkpoint in %s yet; starting from step 0", checkpoints)
        return last
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise ConfigError(
            f"--resume {resume}: not a Trainer checkpoint (no trainer_state.json); "
            f"pass a checkpoint-<step> folder or 'auto'"
        )
    return str(path)


# -- 1. load data ----------------------------------------------------------------------------------


def load_data(plan: RunPlan) -> Splits:
    splits = load_splits(plan.config.data, plan.rank)
    training = plan.config.training
    splits.train = augment_train(splits.train, training.augmentation, training.seed)
    splits.train = wrap_train(splits.train, training.augmentation, training.seed, training.max_length)
    splits.train = repeat_hard_negatives(splits.train, training.hard_negatives)
    log.info(
        "data: %d train, %d validation, %d test rows from %s",
        len(splits.train),
        len(splits.validation),
        len(splits.test),
        splits.directory,
    )
    return splits


# -- 2. tokenise -----------------------------------------------------------------------------------


def load_tokenizer(plan: RunPlan, splits: Splits) -> Any:
    tiny = plan.config.model.tiny
    max_length = plan.config.training.max_length
    if tiny is not None:
        from textguard.training.tiny_model import build_tiny_tokenizer

        # Trained on training texts only: validation/test vocabulary must not leak into the model.
        return build_tiny_tokenizer(
            tiny.architecture, splits.train["text"], vocab_size=tiny.vocab_size, max_length=max_length
        )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(plan.model_dir)
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ConfigError(
            f"model.base {plan.config.model.base}: no fast tokenizer (tokenizer.json) to train with"
        )
    return tokenizer


def tokenise_splits(plan: RunPlan, splits: Splits, tokenizer: Any) -> dict[str, Any]:
    max_length = plan.config.training.max_length
    if plan.text_prefix:
        log.info("text prefix %r prepended to every text", plan.text_prefix)
    return {
        name: tokenise(split, tokenizer, max_length, name, plan.text_prefix) for name, split in splits.items()
    }


# -- 3. build model --------------------------------------------------------------------------------


def build_model(plan: RunPlan, tokenizer: Any) -> Any:
    from transformers import AutoModelForSequenceClassification, set_seed

    training = plan.config.training
    set_seed(training.seed)  # the new classification head is initialised from this seed
    tiny = plan.config.model.tiny
    if tiny is not None:
        from textguard.training.tiny_model import build_tiny_classifier

        model = build_tiny_classifier(
            tiny.architecture,
            tokenizer,
            hidden_size=tiny.hidden_size,
            num_layers=tiny.num_layers,
            num_heads=tiny.num_heads,
            max_length=training.max_length,
            seed=training.seed,
        )
        apply_freeze(model, training.freeze)
        return model
    assert plan.model_dir is not None  # resolved in phase 0 for every non-tiny model
    model = AutoModelForSequenceClassification.from_pretrained(
        plan.model_dir,
        num_labels=len(LABELS),
        id2label=dict(id2label),
        label2id=dict(label2id),
        problem_type="multi_label_classification",
    )
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and training.max_length > positions:
        raise ConfigError(
            f"training.max_length={training.max_length} exceeds the model's {positions} positions"
        )
    apply_freeze(model, training.freeze)
    return model


# -- 4. train --------------------------------------------------------------------------------------


def fit(
    plan: RunPlan, model: Any, tokenizer: Any, tokenised: dict[str, Any], splits: Splits, run: Any
) -> Any:
    from transformers import EarlyStoppingCallback

    from textguard.training.hf import (
        DynamicPaddingCollator,
        TextguardTrainer,
        TrackingCallback,
        best_metric_name,
        compute_metrics_for,
        training_arguments,
    )
    from textguard.training.loss import MultiLabelLoss

    training = plan.config.training
    loss = MultiLabelLoss.from_config(training.loss, multi_hot(splits.train))
    callbacks: list[Any] = [TrackingCallback(run)]
    if training.early_stopping.patience > 0:
        callbacks.append(
            EarlyStoppingCallback(training.early_stopping.patience, training.early_stopping.min_delta)
        )
    # Tensor cores want multiples of 8; on CPU it would only add padding.
    multiple = 8 if plan.precision != "fp32" else None
    trainer = TextguardTrainer(
        model=model,
        args=training_arguments(training, plan.checkpoints_dir, plan.precision),
        data_collator=DynamicPaddingCollator(tokenizer, pad_to_multiple_of=multiple),
        train_dataset=tokenised["train"],
        eval_dataset=tokenised["validation"],
        processing_class=tokenizer,
        compute_metrics=compute_metrics_for(training_spec(plan, tokenizer)),
        callbacks=callbacks,
        loss_fn=loss,
        head_learning_rate=training.head_learning_rate,
    )
    # The disabled run on other ranks ignores these calls.
    run.log_dict(
        {
            "pos_weight": dict(zip(LABELS, loss.pos_weight or [], strict=False)),
            "loss": loss.kind,
            "precision": plan.precision,
        },
        "training/loss.json",
    )
    trainer.train(resume_from_checkpoint=plan.resume_from)
    state = trainer.state
    if state.best_metric is not None:
        metric, _ = best_metric_name(training)
        # The checkpoint reloaded at the end (early stopping may have trained past it).
        run.log_metrics({f"best_{metric}": float(state.best_metric)}, step=int(state.global_step))
    return trainer


def training_spec(plan: RunPlan, tokenizer: Any) -> ModelSpec:
    """The spec used for metrics during training: temperature 1, thresholds 0.5."""
    return build_spec(
        max_length=plan.config.training.max_length,
        pad_token_id=tokenizer.pad_token_id or 0,
        base_model=plan.config.model.name,
        config_hash=plan.config_hash,
        text_prefix=plan.text_prefix,
    )


# -- 5. calibrate ----------------------------------------------------------------------------------


def score_split(plan: RunPlan, model: Any, tokenizer: Any, split: Any, name: str) -> EvaluatedSplit:
    """Logits of a raw split through `Scorer` (normalise, encode, length-sorted batches)."""
    from textguard.scorer import Scorer

    scorer = Scorer.from_model(
        model, tokenizer, training_spec(plan, tokenizer), max_batch_size=plan.config.training.eval_batch_size
    )
    texts = list(split["text"]) if len(split) else []
    return EvaluatedSplit(
        name=name,
        logits=scorer.logits(texts),
        y_true=multi_hot(split) if len(split) else np.zeros((0, len(LABELS)), dtype=np.float32),
        columns={
            column: [str(v) for v in split[column]]
            for column in ("language", "source")
            if column in split.column_names
        },
    )


def calibrate_model(
    plan: RunPlan, validation: EvaluatedSplit, tokenizer: Any, run_id: str | None
) -> tuple[Calibration, ModelSpec]:
    settings = plan.config.calibration
    policy = settings.thresholds
    calibration = calibrate(
        validation.logits,
        validation.y_true,
        LABELS,
        policy=policy.policy,
        value=getattr(policy, "value", None),
        plateau=getattr(policy, "plateau", 0.0),
        temperature=settings.temperature,
    )
    log.info(
        "calibration: T=%.3f, ECE %.4f -> %.4f, thresholds %s",
        calibration.temperature,
        calibration.ece_before,
        calibration.ece_after,
        {label: round(value, 3) for label, value in calibration.thresholds.items()},
    )
    spec = build_spec(
        max_length=plan.config.training.max_length,
        pad_token_id=tokenizer.pad_token_id or 0,
        base_model=plan.config.model.name,
        config_hash=plan.config_hash,
        text_prefix=plan.text_prefix,
        training_run_id=run_id,
        **calibration.spec_fields(),
    )
    return calibration, spec


# -- 6. evaluate -----------------------------------------------------------------------------------


def evaluate(
    plan: RunPlan,
    spec: ModelSpec,
    calibration: Calibration,
    validation: EvaluatedSplit,
    test: EvaluatedSplit,
) -> Outcome:
    """Metrics at the calibrated thresholds; tables and figures into the reports folder."""
    from textguard.training.report import reliability_figure, write_figures, write_slice_tables

    reports = plan.reports_dir
    if reports.exists():
        shutil.rmtree(reports)
    reports.mkdir(parents=True)
    validation_probs = probabilities(validation.logits, spec)
    validation_metrics = classification_metrics(
        validation.y_true, validation_probs, spec.threshold_list(), LABELS
    )
    reliability_figure(validation, calibration, reports)
    test_metrics: dict[str, float] = {}
    # Slices and curves on test when there is one; on validation otherwise (seed-only runs).
    shown = test if len(test) else validation
    shown_probs = probabilities(shown.logits, spec)
    if len(test):
        test_metrics = classification_metrics(test.y_true, shown_probs, spec.threshold_list(), LABELS)
    write_figures(shown, shown_probs, spec, reports)
    write_slice_tables(shown, shown_probs, spec, reports)
    log.info(
        "validation macro-F1 %.4f (calibrated), test macro-F1 %s",
        validation_metrics["macro_f1"],
        f"{test_metrics['macro_f1']:.4f}" if test_metrics else "n/a (empty test split)",
    )
    return Outcome(validation=validation_metrics, test=test_metrics, sliced_split=shown.name)


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}{key}": float(value) for key, value in metrics.items()}


# -- 7. save ---------------------------------------------------------------------------------------


def save_model(
    plan: RunPlan,
    model: Any,
    tokenizer: Any,
    spec: ModelSpec,
    calibration: Calibration,
    splits: Splits,
    outcome: Outcome,
    run_id: str | None,
) -> ModelSpec:
    """Weights, tokenizer, spec (with metrics) and model card, written once and checksummed."""
    import json

    from textguard.backbones.registry import provenance
    from textguard.training.report import MODEL_CARD_FILE, model_card, thresholds_document

    metrics = finite({**_prefixed(outcome.validation, "validation_"), **_prefixed(outcome.test, "test_")})
    spec = spec.model_copy(update={"metrics": metrics})
    directory = plan.artifact_dir
    if directory.exists():
        shutil.rmtree(directory)  # stale files would otherwise enter the checksums
    directory.mkdir(parents=True)
    bf16 = measure_bf16_parity(plan, model, tokenizer, spec, splits)
    language_file = plan.reports_dir / f"{outcome.sliced_split}_metrics_by_language.json"
    card = model_card(
        spec=spec,
        calibration=calibration,
        validation_metrics=outcome.validation,
        test_metrics=outcome.test,
        language_table=json.loads(language_file.read_text()) if language_file.is_file() else None,
        language_split=outcome.sliced_split,
        report=splits.report,
        data_licences=data_licences(splits),
        run_id=run_id,
        base_model=plan.config.model.name,
        backbone=provenance(plan.model_dir),
        parameters=parameter_counts(model),
        precision=plan.precision,
        bf16_parity=bf16[0] if bf16 else None,
    )
    (directory / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    (plan.reports_dir / "thresholds.json").write_text(
        json.dumps(thresholds_document(spec, calibration), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    if bf16 is not None:
        from textguard.parity import BF16_VARIANT, write_parity

        report, sample = bf16
        write_parity(directory, {BF16_VARIANT: report}, sample=sample, device=str(model.device))
    saved = save_artifact(model, tokenizer, spec, directory)
    log.info("artefact written to %s", directory)
    return saved


def measure_bf16_parity(
    plan: RunPlan, model: Any, tokenizer: Any, spec: ModelSpec, splits: Splits
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """bf16 against fp32 on validation texts, for parity.json and the card: `precision: auto` serves bf16
    only with it. None without validation texts."""
    from textguard.parity import bf16_parity
    from textguard.scorer import Scorer

    validation = splits.validation
    texts = [str(text) for text in validation["text"][:PARITY_SAMPLE]] if len(validation) else []
    if not texts:
        return None
    scorer = Scorer.from_model(model, tokenizer, spec, max_batch_size=plan.config.training.eval_batch_size)
    report = bf16_parity(scorer, texts)
    log.info(
        "bf16 parity on %d validation texts: max |prob diff| %.2g, decision agreement %.4f",
        len(texts),
        report["max_abs_diff"],
        report["decision_agreement"],
    )
    return report, {"source": "validation split (first texts)", "n_texts": len(texts)}


def data_licences(splits: Splits) -> list[tuple[str, str, str]]:
    """(dataset, licence, description) of every dataset behind the prepared splits, from its data config."""
    if splits.data_config is None:
        recorded = splits.report.get("licenses") or splits.report.get("licences") or {}
        return (
            [(name, str(value), "") for name, value in recorded.items()] if isinstance(recorded, dict) else []
        )
    from textguard.data.dataconfig import load_data_config, load_members

    loaded = load_data_config(splits.data_config)
    return [
        (member.name, member.config.license, member.config.description) for member, _ in load_members(loaded)
    ]


# -- 8. log ----------------------------------------------------------------------------------------


def log_outputs(plan: RunPlan, run: Any, splits: Splits, outcome: Outcome, step: int) -> Any:
    """Final metrics, datasets, resolved config, reports and the model (registered under its alias)."""
    from textguard.training.report import MODEL_CARD_FILE

    final = {**_prefixed(outcome.validation, "calibrated_validation_"), **_prefixed(outcome.test, "test_")}
    run.log_metrics(final, step=step)

    for name, split in splits.items():
        frame = split.to_pandas()
        run.log_dataset(
            frame,
            name=f"{splits.directory.name}-{name}",
            context=name,
            source=str(splits.directory.resolve() / f"{name}.parquet"),
        )
    config = plan.config.model_dump(mode="json")
    run.log_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), "config/resolved_config.yaml")
    run.log_dir(plan.reports_dir, "reports")
    run.log_file(plan.artifact_dir / MODEL_CARD_FILE, "model_card")
    tracking = plan.config.tracking
    return run.log_model(plan.artifact_dir, registered_model_name=tracking.register_as, alias=tracking.alias)


def model_uri(config: TrainConfig, run_id: str | None, registered: Any) -> str | None:
    """How to load the model back: the alias when registered, else the run's model."""
    if registered is not None:
        alias = config.tracking.alias
        return (
            f"models:/{registered.name}@{alias}"
            if alias
            else f"models:/{registered.name}/{registered.version}"
        )
    return f"runs:/{run_id}/model" if run_id else None


def run_name(plan: RunPlan) -> str:
    if plan.config.run_name:
        return plan.config.run_name
    stem = plan.config_path.stem if plan.config_path else "train"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_tags(plan: RunPlan) -> dict[str, str]:
    """Tags beyond the ones every tracked run gets (git commit, taxonomy and normaliser versions)."""
    tags = {
        "textguard.base_model": plan.config.model.name,
        "textguard.config_hash": plan.config_hash,
        "textguard.precision": plan.precision,
        "textguard.world_size": str(plan.world_size),
        **plan.config.tracking.tags,
    }
    if plan.config_path is not None:
        tags["textguard.config_file"] = str(plan.config_path)
    if plan.resume_from:
        tags["textguard.resumed_from"] = plan.resume_from
    return tags


def run_params(plan: RunPlan, splits: Splits, counts: ParameterCounts) -> dict[str, Any]:
    params = flatten(plan.config)
    params.update(
        {
            "data.train_rows": len(splits.train),
            "data.validation_rows": len(splits.validation),
            "data.test_rows": len(splits.test),
            "world_size": plan.world_size,
            "model.text_prefix_resolved": plan.text_prefix,
            "model.parameters": counts.total,
            "model.parameters_trainable": counts.trainable,
        }
    )
    return params
