"""Training data: prepared splits in, tokenised `datasets` out (through `textguard.encoding.encode`)."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from textguard.errors import DataError
from textguard.labels import to_multi_hot
from textguard.paths import project_root
from textguard.training.config import AugmentationConfig, DataConfig, HardNegativesConfig

log = logging.getLogger(__name__)

#: Token count per example, stored by tokenisation so length grouping never re-reads input_ids.
LENGTH_COLUMN = "length"
#: How long non-zero ranks wait for rank 0 to prepare a data config (large corpora take minutes).
PREPARE_WAIT_S = 3600.0


@dataclass
class Splits:
    """Prepared splits (datasets.Dataset each) plus where they came from."""

    train: Any
    validation: Any
    test: Any
    directory: Path
    report: dict[str, Any] = field(default_factory=dict)
    data_config: Path | None = None

    def items(self) -> list[tuple[str, Any]]:
        return [("train", self.train), ("validation", self.validation), ("test", self.test)]


def _existing(path: Path) -> Path:
    """A relative path as given, else relative to the checkout (so configs work from any cwd)."""
    if path.is_absolute() or path.exists():
        return path
    fallback = project_root() / path
    return fallback if fallback.exists() else path


def locate_prepared(config: DataConfig, rank: int = 0) -> tuple[Path, Path | None]:
    """(prepared folder, data config path or None); a data config is prepared when its folder is missing.

    Under torchrun only rank 0 prepares; the other ranks wait for its report.json instead of racing it.
    """
    from textguard.data.prepared import REPORT_FILE, default_output_dir, resolve_prepared_dir

    if config.prepared is not None:
        directory = _existing(config.prepared)
        if not (directory / REPORT_FILE).is_file():
            raise DataError(
                f"data.prepared {config.prepared}: not a prepared dataset (no {REPORT_FILE}); create it with "
                "`textguard data prepare --config configs/data/<name>.yaml` or set data.config instead"
            )
        return directory, None
    assert config.config is not None
    data_config = _existing(config.config)
    if not data_config.is_file():
        raise DataError(f"data.config {config.config}: file not found")
    if rank == 0:
        return resolve_prepared_dir(data_config), data_config
    from textguard.data.dataconfig import load_data_config

    directory = default_output_dir(load_data_config(data_config).name)
    deadline = time.monotonic() + PREPARE_WAIT_S
    while not (directory / REPORT_FILE).is_file():
        if time.monotonic() > deadline:
            raise DataError(
                f"rank {rank}: gave up waiting {PREPARE_WAIT_S:.0f} s for rank 0 to prepare {directory}"
            )
        time.sleep(1.0)
    return directory, data_config


def load_splits(config: DataConfig, rank: int = 0) -> Splits:
    from textguard.data.prepared import load_prepared, read_report

    directory, data_config = locate_prepared(config, rank)
    loaded = load_prepared(directory, prepare_if_missing=False)
    splits = Splits(
        train=loaded["train"],
        validation=loaded["validation"],
        test=loaded["test"],
        directory=directory,
        report=read_report(directory),
        data_config=data_config,
    )
    for name in ("train", "validation"):
        if len(getattr(splits, name)) == 0:
            raise DataError(
                f"{directory}: the {name} split is empty; training needs train and validation rows "
                "(check the split settings of the data config)"
            )
    return splits


def multi_hot(split: Any) -> np.ndarray:
    """[n, labels] 0/1 matrix in canonical label order."""
    return np.asarray([to_multi_hot(labels) for labels in split["labels"]], dtype=np.float32).reshape(
        len(split), -1
    )


def augment_train(train: Any, config: AugmentationConfig, seed: int) -> Any:
    """Add perturbed copies (obfuscation, caption style...) of a `rate` fraction of training rows."""
    if config.rate <= 0 or len(train) == 0:
        return train
    from datasets import concatenate_datasets

    from textguard.perturb import augment
    from textguard.text import normalize

    texts = list(train["text"])
    # Normalised like every text before tokenisation; a perturbation the normaliser undoes (zero-width
    # characters, homoglyphs) would only duplicate its row, so those copies are dropped.
    augmented = [
        normalize(text) for text in augment(texts, rate=config.rate, kinds=config.kinds or None, seed=seed)
    ]
    changed = [index for index, (old, new) in enumerate(zip(texts, augmented, strict=True)) if new != old]
    if not changed:
        return train
    copies = train.select(changed)
    new_texts = [augmented[index] for index in changed]
    copies = copies.map(
        lambda row, index: {"text": new_texts[index], "id": f"{row['id']}~aug"},
        with_indices=True,
        keep_in_memory=True,
        desc="augment",
    )
    log.info("augmentation added %d perturbed training rows", len(copies))
    return concatenate_datasets([train, copies.cast(train.features)])


#: A framed copy longer than this many characters per token of `max_length` is skipped, so that
#: truncation rarely cuts its frame. A conservative guess, not measured per language and vocabulary:
#: a very dense script can still lose the end of a suffix frame.
_CHARS_PER_TOKEN_BOUND = 3


def wrap_train(train: Any, config: AugmentationConfig, seed: int, max_length: int) -> Any:
    """Add stance-framed copies of a `wrap_rate` share of harmful training rows (see stance_wrappers)."""
    if config.wrap_rate <= 0 or len(train) == 0:
        return train
    from datasets import concatenate_datasets

    from textguard.data.stance_wrappers import wrap_harmful
    from textguard.text import normalize

    wrapped = wrap_harmful(
        list(train["text"]),
        [bool(labels) for labels in train["labels"]],
        list(train["language"]),
        list(train["source"]),
        rate=config.wrap_rate,
        endorse_share=config.endorse_share,
        max_chars=_CHARS_PER_TOKEN_BOUND * max_length,
        seed=seed,
    )
    if not wrapped:
        return train
    by_index = {item.index: item for item in wrapped}
    copies = train.select(sorted(by_index))

    def framed(row: dict[str, Any]) -> dict[str, Any]:
        item = by_index[row["__index"]]
        return {
            "text": normalize(item.text),
            "id": f"{row['id']}~wrap",
            "labels": [] if item.benign else row["labels"],
        }

    copies = copies.add_column("__index", sorted(by_index))
    copies = copies.map(framed, keep_in_memory=True, desc="stance wrap").remove_columns("__index")
    benign = sum(item.benign for item in wrapped)
    log.info(
        "stance wrappers added %d copies (%d condemned -> benign, %d endorsed)",
        len(wrapped),
        benign,
        len(wrapped) - benign,
    )
    return concatenate_datasets([train, copies.cast(train.features)])


def repeat_hard_negatives(train: Any, config: HardNegativesConfig) -> Any:
    """Repeat the training rows a mined file names (`repeat - 1` extra copies each)."""
    if config.file is None or config.repeat <= 1:
        return train
    from datasets import concatenate_datasets

    from textguard.data.mining import read_mined_ids

    wanted = set(read_mined_ids(config.file))
    matched = [
        index
        for index, (row_id, labels) in enumerate(zip(train["id"], train["labels"], strict=True))
        if row_id in wanted and not labels
    ]
    log.info(
        "hard negatives: %d of %d mined rows are in this training split, each repeated %dx",
        len(matched),
        len(wanted),
        config.repeat,
    )
    if not matched:
        return train
    copies = [
        train.select(matched).map(
            lambda row, k=k: {"id": f"{row['id']}~hn{k}"}, keep_in_memory=True, desc="hard negatives"
        )
        for k in range(1, config.repeat)
    ]
    return concatenate_datasets([train, *copies])


def tokenise(split: Any, tokenizer: Any, max_length: int, name: str, text_prefix: str = "") -> Any:
    """input_ids, attention_mask, multi-hot float labels and token count; nothing padded yet.

    `text_prefix` must be the one the model spec records, so training and scoring see the same ids.
    """
    from textguard.encoding import encode

    def encode_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        encoded = encode(batch["text"], tokenizer, max_length, text_prefix)
        return {
            **encoded,
            "labels": [to_multi_hot(labels) for labels in batch["labels"]],
            LENGTH_COLUMN: [len(ids) for ids in encoded["input_ids"]],
        }

    from datasets import Features, List, Value

    features = Features(
        {
            "input_ids": List(Value("int32")),
            "attention_mask": List(Value("int8")),
            "labels": List(Value("float32")),
            LENGTH_COLUMN: Value("int32"),
        }
    )
    return split.map(
        encode_batch,
        batched=True,
        batch_size=1000,
        remove_columns=split.column_names,
        features=features,
        # In memory and never cached: a tokenizer closure cannot be fingerprinted reliably, and a
        # stale cache tokenised by another tokenizer would silently train on the wrong ids.
        keep_in_memory=True,
        load_from_cache_file=False,
        new_fingerprint=f"textguard-tokenise-{name}-{secrets.token_hex(8)}",
        desc=f"tokenise {name}",
    )
