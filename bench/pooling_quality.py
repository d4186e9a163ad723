"""Does a mean-pooling head beat BertForSequenceClassification's CLS pooler on multilingual-e5-small?

e5 was pretrained with mean pooling and ships no pooler, so `AutoModelForSequenceClassification`
classifies from a randomly initialised dense+tanh layer over the <s> token. This bench fine-tunes the
same backbone both ways, in one process, with the same data, seeds, frozen word embeddings and
hyper-parameters as configs/quickstart.yaml, and compares:

- cls (baseline): the stock classifier, what textguard trains;
- mean: masked mean of the last hidden states -> dropout -> linear (defined here only).

Metrics: seed test split macro-F1 at thresholds calibrated on validation, seed test macro PR-AUC, and
(with --hatecheck, the English HateCheck suite, evaluation only) PR-AUC and F1 of
hate_dehumanization. Medians over seeds, with the mean/cls ratio.

    python bench/pooling_quality.py                       # 3 seeds, 4 epochs, seed set
    python bench/pooling_quality.py --seeds 1 2 3 4 5 --hatecheck
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def mean_pooling_classifier(model_dir: Path, num_labels: int) -> Any:
    import torch
    from transformers import AutoModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    class MeanPoolingClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(model_dir, add_pooling_layer=False)
            self.config = self.bert.config
            self.dropout = torch.nn.Dropout(self.config.hidden_dropout_prob)
            self.classifier = torch.nn.Linear(self.config.hidden_size, num_labels)
            torch.nn.init.normal_(self.classifier.weight, std=self.config.initializer_range)
            torch.nn.init.zeros_(self.classifier.bias)

        @property
        def base_model(self) -> Any:
            return self.bert

        @property
        def device(self) -> Any:
            return self.classifier.weight.device

        def get_input_embeddings(self) -> Any:
            return self.bert.get_input_embeddings()

        def forward(self, input_ids: Any = None, attention_mask: Any = None, **_: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))

    return MeanPoolingClassifier()


def run(pooling: str, seed: int, args: argparse.Namespace, splits: Any, hatecheck: Any) -> dict[str, float]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    from textguard.artifact import build_spec
    from textguard.calibration import calibrate
    from textguard.labels import LABELS, id2label, label2id
    from textguard.scorer import Scorer
    from textguard.training.config import load_train_config
    from textguard.training.data import multi_hot, tokenise
    from textguard.training.freeze import apply_freeze
    from textguard.training.hf import DynamicPaddingCollator, TextguardTrainer, training_arguments
    from textguard.training.loss import MultiLabelLoss
    from textguard.training.model_source import resolve_model_dir

    config = load_train_config(
        args.config,
        [f"training.seed={seed}", f"training.epochs={args.epochs}", "training.early_stopping.patience=0"],
    )
    training = config.training
    model_dir = resolve_model_dir(config.model)
    assert model_dir is not None
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if pooling == "cls":
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir,
            num_labels=len(LABELS),
            id2label=id2label,
            label2id=label2id,
            problem_type="multi_label_classification",
        )
    else:
        model = mean_pooling_classifier(model_dir, len(LABELS))
    apply_freeze(model, training.freeze)
    prefix = config.model.text_prefix if config.model.text_prefix is not None else "query: "
    train = tokenise(splits["train"], tokenizer, training.max_length, "train", prefix)
    with tempfile.TemporaryDirectory() as directory:
        training_args = training_arguments(training, Path(directory), "fp32")
        training_args.eval_strategy = "no"
        training_args.save_strategy = "no"
        training_args.load_best_model_at_end = False
        training_args.disable_tqdm = True
        trainer = TextguardTrainer(
            model=model,
            args=training_args,
            data_collator=DynamicPaddingCollator(tokenizer),
            train_dataset=train,
            processing_class=tokenizer,
            loss_fn=MultiLabelLoss.from_config(training.loss, multi_hot(splits["train"])),
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    model.eval()
    spec = build_spec(max_length=training.max_length, pad_token_id=tokenizer.pad_token_id, text_prefix=prefix)
    scorer = Scorer.from_model(model, tokenizer, spec, max_batch_size=64)
    from textguard.training.metrics import spec_metrics

    validation_logits = scorer.logits(list(splits["validation"]["text"]))
    fitted = calibrate(
        validation_logits, multi_hot(splits["validation"]), LABELS, policy="max_f1", value=None
    )
    calibrated = spec.model_copy(update=fitted.spec_fields())
    test = spec_metrics(scorer.logits(list(splits["test"]["text"])), multi_hot(splits["test"]), calibrated)
    result = {
        "test_macro_f1": test["macro_f1"],
        "test_macro_pr_auc": test["macro_pr_auc"],
        "train_s": seconds,
    }
    if hatecheck is not None:
        suite = spec_metrics(scorer.logits(list(hatecheck["text"])), multi_hot(hatecheck), calibrated)
        result["hatecheck_pr_auc_hate"] = suite["pr_auc_hate_dehumanization"]
        result["hatecheck_f1_hate"] = suite["f1_hate_dehumanization"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/quickstart.yaml", help="training config (e5 backbone)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--hatecheck", action="store_true", help="also score HateCheck-en (evaluation only)")
    args = parser.parse_args()

    from textguard.data.prepared import load_prepared
    from textguard.training.config import load_train_config
    from textguard.training.data import locate_prepared

    directory, _ = locate_prepared(load_train_config(args.config).data)
    splits = load_prepared(directory)
    hatecheck = None
    if args.hatecheck:
        from textguard.training.config import DataConfig

        suite_dir, _ = locate_prepared(DataConfig(config=Path("configs/data/hatecheck_en.yaml")))
        hatecheck = load_prepared(suite_dir)["test"]
    results: dict[str, list[dict[str, float]]] = {"cls": [], "mean": []}
    for index, seed in enumerate(args.seeds):
        for pooling in ("cls", "mean") if index % 2 == 0 else ("mean", "cls"):
            results[pooling].append(run(pooling, seed, args, splits, hatecheck))
            print(f"seed {seed} {pooling}: {results[pooling][-1]}", flush=True)

    print(f"\nmedians over seeds {args.seeds}, {args.epochs:g} epochs, settings of {args.config}")
    print(f"{'metric':<24} {'cls':>8} {'mean':>8} {'mean/cls':>9}")
    for key in results["cls"][0]:
        cls, mean = (statistics.median(row[key] for row in results[name]) for name in ("cls", "mean"))
        print(f"{key:<24} {cls:>8.4f} {mean:>8.4f} {mean / cls if cls else float('nan'):>8.2f}x")


if __name__ == "__main__":
    main()
