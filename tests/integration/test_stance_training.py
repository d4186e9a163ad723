"""The stance set reaches training whole: languages, stance types, families and wrapped copies.

A tiny model is trained on the quickstart mixture (seed + stance) so the real path runs: data config ->
prepare (families kept in one split, thinned whole, decontaminated against the suites) -> load ->
stance wrappers -> train. The prepared report's counts by language and category are what training saw.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from textguard.data.prepare import prepare
from textguard.training.config import load_train_config
from textguard.training.pipeline import load_data, resolve_plan, train

ROOT = Path(__file__).resolve().parents[2]
SEED_LANGUAGES = {"en", "fr", "es", "de", "pt", "it", "ar", "nl", "pl", "tr", "ru", "id", "hi"}
STANCE_TYPES = {"counter_speech", "quoting_to_criticise", "negation", "neutral_identity_mention"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("stance") / "quickstart"
    report = prepare(ROOT / "configs" / "data" / "quickstart.yaml", output)
    return output, report


def test_the_report_counts_every_language_and_stance_type(prepared: tuple[Path, dict]) -> None:
    _, report = prepared
    train_counts = report["categories"]["train"]
    assert set(train_counts) == SEED_LANGUAGES
    for language, kinds in train_counts.items():
        assert set(kinds) >= STANCE_TYPES, language
    # Every written row names its category, so the category counts are the split sizes.
    for split, size in report["splits"].items():
        assert sum(sum(kinds.values()) for kinds in report["categories"][split].values()) == size
    # The suites the model is evaluated on decontaminate the mixture.
    assert report["decontamination"]["rows"] > 0


def test_training_sees_the_prepared_languages_and_wrapped_copies(
    prepared: tuple[Path, dict], tmp_path: Path
) -> None:
    directory, report = prepared
    config = load_train_config(
        ROOT / "configs" / "smoke.yaml",
        [
            f"data={{prepared: {directory}}}",
            "training.max_steps=3",
            "training.eval_steps=3",
            "training.augmentation.wrap_rate=0.5",
            "tracking.enabled=false",
        ],
        output_dir=tmp_path / "out",
    )
    splits = load_data(resolve_plan(config, resume=None, config_path=None))
    train_rows = splits.train
    original = [i for i, row_id in enumerate(train_rows["id"]) if not row_id.endswith("~wrap")]
    by_language = Counter(train_rows.select(original)["language"])
    expected = {lang: sum(kinds.values()) for lang, kinds in report["categories"]["train"].items()}
    assert dict(by_language) == expected

    wrapped = train_rows.filter(lambda row: row["id"].endswith("~wrap"))
    assert len(wrapped) > 0
    harmful_chat = sum(
        1
        for labels, source in zip(train_rows["labels"], train_rows["source"], strict=True)
        if labels and source == "chat"
    )
    assert len(wrapped) <= 0.6 * harmful_chat
    flipped = [labels for labels in wrapped["labels"] if not labels]
    assert 0 < len(flipped) < len(wrapped)  # condemned copies are benign, endorsed ones keep labels
    assert len(set(wrapped["language"])) >= 10

    result = train(config)
    assert result.artifact_dir is not None and (result.artifact_dir / "MODEL_CARD.md").is_file()
