from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from textguard.encoding import encode, pad_batch, plan_batches
from textguard.errors import ModelLoadError
from textguard.labels import LABELS
from textguard.postprocess import probabilities, sigmoid
from textguard.scorer import Scorer
from textguard.spec import SPEC_FILENAME, load_spec

TEXTS = ["can you share your screen", "merci à tous", "x" * 500, "the meeting starts now", ""]


@pytest.mark.parametrize("fixture", ["tiny_artifact", "tiny_xlmr_artifact"])
def test_scorer_matches_plain_transformers(fixture: str, request: pytest.FixtureRequest) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textguard.text import normalize

    directory: Path = request.getfixturevalue(fixture)
    scorer = Scorer.from_artifact(directory)
    probs = scorer.predict_proba(TEXTS)
    assert probs.shape == (len(TEXTS), len(LABELS))

    # The artefact also loads with plain transformers and gives the same probabilities one by one.
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert model.config.problem_type == "multi_label_classification"
    for row, text in enumerate(TEXTS):
        batch = tokenizer(normalize(text), truncation=True, max_length=64, return_tensors="pt")
        with torch.inference_mode():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        np.testing.assert_allclose(torch.sigmoid(logits).numpy()[0], probs[row], atol=1e-5)


def test_batching_does_not_change_scores(tiny_artifact: Path) -> None:
    one_by_one = np.vstack([Scorer.from_artifact(tiny_artifact).predict_proba([t]) for t in TEXTS])
    batched = Scorer.from_artifact(tiny_artifact, max_batch_size=2, max_tokens=64).predict_proba(TEXTS)
    np.testing.assert_allclose(one_by_one, batched, atol=1e-5)


def test_temperature_and_thresholds_come_from_the_spec(tiny_artifact: Path) -> None:
    scorer = Scorer.from_artifact(tiny_artifact)
    logits = scorer.logits(TEXTS)
    spec = scorer.spec.model_copy(update={"temperature": 2.0, "thresholds": dict.fromkeys(LABELS, 0.0)})
    np.testing.assert_allclose(probabilities(logits, spec), sigmoid(logits / 2.0))
    scorer.spec = spec
    assert all(prediction.labels == list(LABELS) for prediction in scorer.score(TEXTS))


def test_tampered_weights_are_refused(tiny_artifact_copy: Path) -> None:
    weights = tiny_artifact_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match=r"model\.safetensors does not match"):
        Scorer.from_artifact(tiny_artifact_copy)


def test_pickle_weights_are_refused(tiny_artifact_copy: Path) -> None:
    (tiny_artifact_copy / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="pickle"):
        Scorer.from_artifact(tiny_artifact_copy)


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        Scorer.from_artifact(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match=SPEC_FILENAME):
        Scorer.from_artifact(tmp_path)


def test_spec_records_checksums(tiny_artifact: Path) -> None:
    spec = load_spec(tiny_artifact)
    assert "model.safetensors" in spec.files and "tokenizer.json" in spec.files
    assert json.loads((tiny_artifact / SPEC_FILENAME).read_text())["labels"] == list(LABELS)


def test_plan_batches_sorts_and_bounds_tokens() -> None:
    lengths = [5, 50, 3, 40, 7, 60]
    batches = plan_batches(lengths, max_batch_size=2, max_tokens=90)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 2
        assert len(batch) * max(lengths[i] for i in batch) <= 90 or len(batch) == 1


def test_encode_normalises_then_truncates(tiny_artifact: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_artifact / "tokenizer.json"))
    plain = encode(["share\u200b screen"], tokenizer, 64)["input_ids"][0]
    assert plain == encode(["share screen"], tokenizer, 64)["input_ids"][0]
    assert len(encode(["word " * 300], tokenizer, 16)["input_ids"][0]) == 16
    ids, mask = pad_batch([[1, 2, 3], [4]], pad_token_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
