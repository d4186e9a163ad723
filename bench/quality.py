"""Model quality: the reference recipe trained and measured, and the table the README shows.

What it does, in one run (every step through the library code the CLI uses):

1. prepares the reference mixture (configs/data/reference.yaml: seed + stance set + capped public corpora);
2. optionally mines hard negatives from a previous model (`--mine-from`, e.g. the `make demo` champion):
   the benign training rows it flags are repeated in training (`training.hard_negatives`);
3. trains configs/reference.yaml (about 25 minutes on 2 idle CPU cores) and, unless `--skip-public`, the same
   recipe without the stance set (configs/reference-public.yaml): the comparison for the target "no public
   dataset's test macro-F1 falls by more than 2 points";
4. evaluates each model with `evaluate_model` (the code behind `textguard evaluate`) on the reference test
   split, English HateCheck (evaluation only) and both meeting suites;
5. prints the tables (HateCheck functionalities, the multilingual suite per language, each public dataset's
   test macro-F1, calibration) with every target met or missed, writes them to
   bench/results/quality/<date>-<name>.md and .json, logs them to the evaluation run and appends them to
   the registered model version's description (its model card).

    python bench/quality.py                                   # train the reference model, measure it
    python bench/quality.py --mine-from models:/textguard@champion --skip-public
    python bench/quality.py --model models:/textguard@champion --name demo   # measure an existing model
    python bench/quality.py --set training.epochs=1           # overrides for both training configs

HateCheck and the public corpora come from ../shared/datasets (or $TEXTGUARD_SHARED_DATASETS); without
them the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textguard.evaluation.runner import EvaluationResult

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "quality"
REFERENCE = ROOT / "configs" / "reference.yaml"
REFERENCE_PUBLIC = ROOT / "configs" / "reference-public.yaml"
SUITES = ROOT / "textguard" / "resources" / "suites"
MULTILINGUAL = "meeting_multilingual"

#: (functionality or group, target accuracy) from the stance issue; None: reported, no target.
HATECHECK_ROWS: list[tuple[str, str, float | None]] = [
    ("balanced accuracy", "balanced", 0.85),
    ("hateful cases", "hateful", None),
    ("non-hateful cases", "non_hateful", None),
    ("counter-speech quoting hate (counter_quote_nh)", "counter_quote_nh", 0.70),
    ("counter-speech referencing hate (counter_ref_nh)", "counter_ref_nh", 0.70),
    ("negated hate (negate_neg_nh)", "negate_neg_nh", 0.80),
    ("neutral identity mention (ident_neutral_nh)", "ident_neutral_nh", 0.90),
    ("positive identity mention (ident_pos_nh)", "ident_pos_nh", 0.90),
    ("direct threats (threat_dir_h)", "threat_dir_h", 0.95),
    ("normative threats (threat_norm_h)", "threat_norm_h", 0.95),
    ("spelling variants (spell_*, mean)", "spell", None),
]
MULTILINGUAL_BALANCED_TARGET = 0.85
MULTILINGUAL_HARD_NEGATIVE_TARGET = 0.80
PUBLIC_DROP_LIMIT = 0.02


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def shared_file(relative: str) -> Path:
    from textguard.paths import shared_datasets_dir

    return shared_datasets_dir() / relative


# -- training --------------------------------------------------------------------------------------


def train_recipe(
    config_path: Path, overrides: list[str], tracking_uri: str, hard_negatives: Path | None
) -> str:
    """Train one recipe through `train()`; returns the artefact directory."""
    from textguard.training.config import load_train_config
    from textguard.training.pipeline import train

    extra = [f"tracking.uri={tracking_uri}"]
    if hard_negatives is not None:
        extra.append(f"training.hard_negatives.file={hard_negatives}")
    config = load_train_config(config_path, [*extra, *overrides])
    say(f"training {config_path.name} (data {config.data.config or config.data.prepared})")
    started = time.perf_counter()
    result = train(config, config_path=config_path)
    say(
        f"trained {config_path.name} in {(time.perf_counter() - started) / 60:.1f} min: validation macro-F1 "
        f"{result.validation_metrics.get('macro_f1', float('nan')):.4f}, run {result.run_id}"
    )
    assert result.artifact_dir is not None
    return str(result.artifact_dir)


def prepared_dir(data_config: Path) -> Path:
    from textguard.data.prepared import resolve_prepared_dir

    return resolve_prepared_dir(data_config)  # prepares on demand


def mine(model: str, prepared: Path) -> Path:
    from textguard.data.mining import mine_hard_negatives, write_mined
    from textguard.data.prepared import load_prepared
    from textguard.scorer import Scorer

    scorer = Scorer.from_artifact(model)
    train = load_prepared(prepared, prepare_if_missing=False)["train"]
    say(f"mining hard negatives from {model} over {len(train)} training rows")
    rows = mine_hard_negatives(
        scorer.predict_proba, list(scorer.spec.labels), scorer.spec.threshold_list(), train
    )
    output = ROOT / "data" / "mined" / f"{prepared.name}.jsonl"
    summary = write_mined(rows, output, {"model": model, "prepared": str(prepared)})
    say(f"mined {summary['rows']} benign rows the model flags: {summary['by_dataset']}")
    return output


# -- evaluation ------------------------------------------------------------------------------------


def evaluate(model: str, data: Path, tracking_uri: str, name: str) -> EvaluationResult:
    from textguard.config import validate
    from textguard.evaluation.config import EvaluationConfig, load_evaluation_config
    from textguard.evaluation.runner import EvaluationRequest, evaluate_model

    settings = load_evaluation_config()
    settings = validate(
        EvaluationConfig, {**settings.model_dump(), "experiment": "textguard-quality"}, "bench/quality.py"
    )
    request = EvaluationRequest(
        model=model,
        data=data,
        config=settings,
        tracking_uri=tracking_uri,
        suites=(
            f"hatecheck_en={shared_file('hatecheck_en/test_suite_cases.csv')}",
            str(SUITES / "meeting_multilingual.csv"),
            str(SUITES / "meeting_functional.csv"),
        ),
        extra_tags={"textguard.bench": "quality", "textguard.bench.model": name},
    )
    say(f"evaluating {name}: {model}")
    return evaluate_model(request, progress=lambda message: say(f"  {message}"))


# -- tables ----------------------------------------------------------------------------------------


def functionality_accuracy(result: EvaluationResult, suite: str) -> dict[str, float]:
    table = result.suite_tables[suite].functionality
    return {str(row["functionality"]): float(row["accuracy"]) for row in table}


def hatecheck_figures(result: EvaluationResult) -> dict[str, float]:
    metrics = result.metrics
    by_function = functionality_accuracy(result, "hatecheck_en")
    spelling = [value for key, value in by_function.items() if key.startswith("spell_")]
    return {
        "balanced": metrics.get("suite.hatecheck_en.balanced_accuracy", math.nan),
        "hateful": metrics.get("suite.hatecheck_en.hateful.accuracy", math.nan),
        "non_hateful": metrics.get("suite.hatecheck_en.non_hateful.accuracy", math.nan),
        "spell": sum(spelling) / len(spelling) if spelling else math.nan,
        **by_function,
    }


def pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def verdict(value: float, target: float | None) -> str:
    if target is None or math.isnan(value):
        return ""
    return "met" if value >= target else f"missed by {100 * (target - value):.1f} pts"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(
    name: str,
    model: str,
    result: EvaluationResult,
    public: EvaluationResult | None,
    seconds: dict[str, float],
) -> tuple[str, dict[str, Any]]:
    figures = hatecheck_figures(result)
    hatecheck_rows = [
        [
            label,
            pct(figures.get(key, math.nan)),
            pct(target) if target else "",
            verdict(figures.get(key, math.nan), target),
        ]
        for label, key, target in HATECHECK_ROWS
    ]
    clean_hateful = figures["hateful"]
    if not math.isnan(figures["spell"]):
        gap = clean_hateful - figures["spell"]
        hatecheck_rows.append(
            [
                "spelling variants vs hateful cases (gap)",
                f"{100 * gap:.1f} pts",
                "<= 5 pts",
                "met" if gap <= 0.05 else f"missed by {100 * (gap - 0.05):.1f} pts",
            ]
        )

    languages = result.suite_tables[MULTILINGUAL].languages
    language_rows = []
    for row in languages:
        balanced = float(row.get("balanced_accuracy", math.nan))
        hard = float(row.get("hard_negative_accuracy", math.nan))
        language_rows.append(
            [
                str(row["language"]),
                str(row.get("n_cases", "")),
                pct(balanced),
                verdict(balanced, MULTILINGUAL_BALANCED_TARGET) or "",
                pct(hard),
                verdict(hard, MULTILINGUAL_HARD_NEGATIVE_TARGET) or "",
            ]
        )
    stance_functions = functionality_accuracy(result, MULTILINGUAL)

    datasets = sorted(
        {
            key.split(".")[2]
            for key in result.metrics
            if key.startswith("slice.dataset.") and key.endswith(".macro_f1")
        }
    )
    public_rows = []
    for dataset in datasets:
        mine = result.metrics.get(f"slice.dataset.{dataset}.macro_f1", math.nan)
        entry = [dataset, f"{mine:.3f}"]
        if public is not None:
            other = public.metrics.get(f"slice.dataset.{dataset}.macro_f1", math.nan)
            delta = mine - other
            entry += [
                f"{other:.3f}",
                f"{delta:+.3f}",
                "met"
                if math.isnan(delta) or delta >= -PUBLIC_DROP_LIMIT
                else f"missed by {100 * (-delta - PUBLIC_DROP_LIMIT):.1f} pts",
            ]
        public_rows.append(entry)
    public_header = ["dataset (test split)", "macro-F1"] + (
        ["without stance set", "delta", "target: drop <= 2 pts"] if public is not None else []
    )
    calibration = [
        ["macro ECE (test split, calibrated)", f"{result.metrics.get('macro_ece', math.nan):.4f}"],
        ["micro ECE", f"{result.metrics.get('micro_ece', math.nan):.4f}"],
        ["test macro-F1 (all rows)", f"{result.metrics.get('macro_f1', math.nan):.4f}"],
    ]

    date = datetime.now(UTC).strftime("%Y-%m-%d")
    parts = [
        f"## Quality of `{name}` ({date}, 2 CPU cores)",
        "",
        f"Model: `{model}`. Measured by bench/quality.py (evaluation run `{result.run_id}`).",
        *(f"Time: {key} {value / 60:.1f} min." for key, value in seconds.items()),
        "",
        "### English HateCheck (3,728 cases, evaluation only)",
        "",
        table(["", "accuracy", "target", ""], hatecheck_rows),
        "",
        "### Multilingual meeting suite, per language",
        "",
        table(
            ["language", "cases", "balanced", "target >= 85%", "hard negatives", "target >= 80%"],
            language_rows,
        ),
        "",
        "Per functionality (all languages): "
        + ", ".join(f"{key} {pct(value)}" for key, value in sorted(stance_functions.items())),
        "",
        "### Public datasets",
        "",
        table(public_header, public_rows) if public_rows else "(no public dataset in the test split)",
        "",
        "### Calibration",
        "",
        table(["", "value"], calibration),
    ]
    payload = {
        "name": name,
        "model": model,
        "date": date,
        "evaluation_run": result.run_id,
        "hatecheck": figures,
        "multilingual_languages": languages,
        "multilingual_functionalities": stance_functions,
        "public": {d: result.metrics.get(f"slice.dataset.{d}.macro_f1") for d in datasets},
        "public_without_stance": (
            {d: public.metrics.get(f"slice.dataset.{d}.macro_f1") for d in datasets}
            if public is not None
            else None
        ),
        "calibration": {
            "macro_ece": result.metrics.get("macro_ece"),
            "micro_ece": result.metrics.get("micro_ece"),
        },
        "seconds": seconds,
    }
    return "\n".join(parts) + "\n", payload


def publish(markdown: str, payload: dict[str, Any], result: EvaluationResult, tracking_uri: str) -> Path:
    """Write the report files, log them to the evaluation run, append them to the model version's card."""
    from mlflow import MlflowClient

    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"{payload['date']}-{payload['name']}"
    path = RESULTS / f"{stem}.md"
    path.write_text(markdown, encoding="utf-8")
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    client = MlflowClient(tracking_uri=tracking_uri)
    client.log_text(result.run_id, markdown, "quality/QUALITY.md")
    identity = result.identity
    if identity.name and identity.version is not None:
        version = client.get_model_version(identity.name, str(identity.version))
        marker = "\n\n<!-- bench/quality.py -->\n"
        card = (version.description or "").split(marker)[0]
        client.update_model_version(
            identity.name, str(identity.version), description=card + marker + markdown
        )
        say(f"appended the table to {identity.name} version {identity.version}'s description")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", help="Measure this model only (no training): path, runs:/ or models:/ URI."
    )
    parser.add_argument("--name", default=None, help="Name in the report (default: reference or the model).")
    parser.add_argument("--mine-from", help="Mine hard negatives from this (previous) model before training.")
    parser.add_argument(
        "--skip-public", action="store_true", help="Do not train the recipe without stance data."
    )
    parser.add_argument("--public-model", help="An already trained model of the recipe without stance data.")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite)."
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="Training override (repeatable)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    if not shared_file("hatecheck_en/test_suite_cases.csv").is_file():
        say("the shared datasets (HateCheck, the public corpora) are not on this machine: nothing to measure")
        return 0
    from textguard.tracking.uris import resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    data = prepared_dir(ROOT / "configs" / "data" / "reference.yaml")
    seconds: dict[str, float] = {}
    if args.model:
        model, name = args.model, args.name or args.model.rsplit("/", 1)[-1]
    else:
        hard_negatives = mine(args.mine_from, data) if args.mine_from else None
        started = time.perf_counter()
        model = train_recipe(REFERENCE, args.overrides, tracking_uri, hard_negatives)
        seconds["training the reference model"] = time.perf_counter() - started
        name = args.name or "reference"
    public_model = args.public_model
    if public_model is None and not args.skip_public and not args.model:
        prepared_dir(ROOT / "configs" / "data" / "reference-public.yaml")
        started = time.perf_counter()
        public_model = train_recipe(REFERENCE_PUBLIC, args.overrides, tracking_uri, None)
        seconds["training the recipe without stance data"] = time.perf_counter() - started

    started = time.perf_counter()
    result = evaluate(model, data, tracking_uri, name)
    public = evaluate(public_model, data, tracking_uri, f"{name}-without-stance") if public_model else None
    seconds["evaluation"] = time.perf_counter() - started
    markdown, payload = report(name, model, result, public, seconds)
    print()
    print(markdown)
    path = publish(markdown, payload, result, tracking_uri)
    say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
