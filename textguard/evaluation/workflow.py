"""`textguard evaluate` as one library call: the candidate, optionally its baseline and the regression gate.

The CLI parses arguments and prints; everything it runs is here, so a notebook or a CI script gets the
same behaviour with `evaluate_with_gate(...)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textguard.errors import ConfigError
from textguard.evaluation.config import EvaluationConfig
from textguard.evaluation.gate import GateResult
from textguard.evaluation.runner import EvaluationRequest, EvaluationResult, Progress


@dataclass(frozen=True)
class EvaluationOutcome:
    candidate: EvaluationResult
    baseline: EvaluationResult | None = None
    gate: GateResult | None = None
    #: The baseline as the user named it (a URI, path or run id).
    baseline_model: str | None = None


def evaluation_settings(
    config: Path | None,
    overrides: Sequence[str] = (),
    *,
    split: str | None = None,
    experiment: str | None = None,
) -> EvaluationConfig:
    """The evaluation config file with --set overrides, then --split / --experiment on top."""
    from textguard.config import validate
    from textguard.evaluation.config import load_evaluation_config

    settings = load_evaluation_config(config, tuple(overrides))
    updates: dict[str, Any] = {}
    if split:
        updates["split"] = split
    if experiment:
        updates["experiment"] = experiment
    if updates:
        settings = validate(type(settings), {**settings.model_dump(), **updates}, "command line")
    return settings


def evaluate_with_gate(
    *,
    model: str,
    data: Path,
    settings: EvaluationConfig,
    tracking_uri: str,
    suites: Sequence[str] = (),
    perturbations: Sequence[str] = (),
    seed: int = 0,
    show_text: bool = False,
    baseline: str | None = None,
    gate_config: Path | None = None,
    policy: Path | None = None,
    progress: Progress | None = None,
) -> EvaluationOutcome:
    """Evaluate `model` (an evaluation run); with `baseline`, evaluate it on the same rows (a second
    run) and run the regression gate, whose verdict is logged on the candidate's run.

    `model` and `baseline` are artefact paths, `runs:/` or `models:/` URIs, or run ids (full or a
    unique prefix) of an evaluation run (its model version) or a training run (its logged model).
    With `policy`, the policy file is checked against the candidate before anything is scored.
    """
    from textguard.evaluation.config import load_gate_config
    from textguard.evaluation.gate import check_inputs, check_regression
    from textguard.evaluation.robustness import expand_kinds
    from textguard.evaluation.runner import evaluate_model
    from textguard.evaluation.suites import default_name, parse_suite_argument
    from textguard.tracking.run_index import model_reference

    kinds = tuple(expand_kinds(list(perturbations)))
    gate_settings = load_gate_config(gate_config) if baseline else None
    if gate_settings is not None:
        names = [name or default_name(path) for name, path in map(parse_suite_argument, suites)]
        check_inputs(gate_settings, names, list(kinds))
    candidate_model = model_reference(model, tracking_uri)
    baseline_model = model_reference(baseline, tracking_uri) if baseline else None

    def request(model_uri: str, role: str, extra: dict[str, str]) -> EvaluationRequest:
        return EvaluationRequest(
            model=model_uri,
            data=data,
            config=settings,
            tracking_uri=tracking_uri,
            suites=tuple(suites),
            perturbations=kinds,
            seed=seed,
            show_text=show_text,
            role=role,
            extra_tags=extra,
            policy=policy if role != "baseline" else None,
        )

    candidate = evaluate_model(
        request(candidate_model, "candidate" if baseline_model else "evaluation", {}), progress
    )
    if baseline_model is None or gate_settings is None:
        return EvaluationOutcome(candidate)
    base = evaluate_model(
        request(baseline_model, "baseline", {"textguard.eval.candidate_run_id": candidate.run_id}), progress
    )
    gate = check_regression(
        base.predictions, candidate.predictions, gate_settings, ece_bins=settings.ece_bins
    )
    log_gate(candidate, base, gate, baseline_model, tracking_uri)
    return EvaluationOutcome(candidate, base, gate, baseline)


def log_gate(
    candidate: EvaluationResult,
    baseline: EvaluationResult,
    gate: GateResult,
    baseline_model: str,
    tracking_uri: str,
) -> None:
    """The gate's verdict on the candidate's run: gate.json, status tags and two metrics."""
    from textguard.tracking.evaluation import EvaluationRun

    handle = EvaluationRun(candidate.run_id, tracking_uri, candidate.experiment_id)
    handle.log_dict(
        {**gate.to_dict(), "baseline_run_id": baseline.run_id, "baseline_model": baseline_model}, "gate.json"
    )
    handle.set_tags(
        {
            "textguard.eval.baseline_run_id": baseline.run_id,
            "textguard.gate.status": "passed" if gate.passed else "failed",
        }
    )
    handle.log_metrics(
        {"gate.passed": 1.0 if gate.passed else 0.0, "gate.failures": float(len(gate.failures))},
        model_id=candidate.identity.model_id,
    )


def require_baseline(fail_on_regression: bool, baseline: str | None) -> None:
    if fail_on_regression and not baseline:
        raise ConfigError(
            "--fail-on-regression needs --baseline (the model the candidate must not fall below)"
        )
