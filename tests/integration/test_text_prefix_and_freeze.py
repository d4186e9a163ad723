"""The model spec's text prefix reaches every tokenisation; training.freeze trains fewer parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_support import write_prepared

from textguard.errors import ConfigError
from textguard.scorer import Scorer
from textguard.spec import SPEC_FILENAME, load_spec
from textguard.training.config import TrainConfig, load_train_config
from textguard.training.pipeline import (
    build_model,
    load_data,
    load_tokenizer,
    resolve_plan,
    tokenise_splits,
    train,
)

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prepared(
        tmp_path_factory.mktemp("prefix") / "prepared", {"train": 120, "validation": 40, "test": 30}
    )


def tiny_config(prepared: Path, output: Path, *overrides: str) -> TrainConfig:
    return load_train_config(
        SMOKE,
        [f"data={{prepared: {prepared}}}", "training.max_steps=2", "training.eval_steps=2", *overrides],
        output_dir=output,
    )


def test_training_and_scoring_tokenise_identically_with_a_prefix(prepared: Path, tmp_path: Path) -> None:
    config = tiny_config(prepared, tmp_path / "out", "model.text_prefix='query: '", "tracking.enabled=false")
    result = train(config)
    assert result.artifact_dir is not None and result.spec is not None
    assert load_spec(result.artifact_dir).text_prefix == "query: " == result.spec.text_prefix

    # What the Trainer was fed: the pipeline's own phases 0-2 for the same config.
    plan = resolve_plan(config, resume=None, config_path=None)
    splits = load_data(plan)
    tokenised = tokenise_splits(plan, splits, load_tokenizer(plan, splits))
    for name in ("train", "validation", "test"):
        texts = list(getattr(splits, name)["text"])
        trained_on = [list(ids) for ids in tokenised[name]["input_ids"]]
        assert Scorer.from_artifact(result.artifact_dir).encode(texts) == trained_on, name
        assert Scorer.from_model(result.model, result.tokenizer, result.spec).encode(texts) == trained_on
    # The prefix is really there: every sequence starts with the prefix's own tokens.
    scorer = Scorer.from_artifact(result.artifact_dir)
    head = scorer.encode([""])[0][:-1]  # [CLS] + the tokens of "query:" (without [SEP])
    assert len(head) > 1
    unprefixed = scorer.spec.model_copy(update={"text_prefix": ""})
    plain = Scorer(unprefixed, scorer.tokenizer, scorer.backend).encode(list(splits.validation["text"]))
    for ids, plain_ids in zip(tokenised["validation"]["input_ids"], plain, strict=True):
        assert list(ids[: len(head)]) == head and list(ids) != plain_ids


def test_specs_without_a_prefix_still_load(tiny_artifact_copy: Path) -> None:
    path = tiny_artifact_copy / SPEC_FILENAME
    document = json.loads(path.read_text())
    document.pop("text_prefix")  # a spec written before the field existed
    path.write_text(json.dumps(document))
    scorer = Scorer.from_artifact(tiny_artifact_copy)
    assert scorer.spec.text_prefix == ""
    assert scorer.predict_proba(["can you share your screen"]).shape == (1, 3)


def test_freeze_trains_fewer_parameters_and_keeps_frozen_ones(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    # MLFLOW_TRACKING_URI wins over tracking.uri (the Makefile exports one): read the run where it is.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    config = tiny_config(
        prepared,
        tmp_path / "out",
        "model.tiny.num_layers=2",
        "training.freeze={word_embeddings: true, layers: 1}",
        f"tracking.uri={uri}",
        "tracking.register_as=null",
    )
    plan = resolve_plan(config, resume=None, config_path=None)
    splits = load_data(plan)
    initial = build_model(plan, load_tokenizer(plan, splits))  # the same seed as training
    result = train(config)
    trained = result.model

    def same(name: str) -> bool:
        return bool(torch.equal(initial.state_dict()[name], trained.state_dict()[name]))

    assert same("bert.embeddings.word_embeddings.weight")
    assert same("bert.embeddings.position_embeddings.weight")
    assert same("bert.encoder.layer.0.attention.self.query.weight")
    assert not same("bert.encoder.layer.1.attention.self.query.weight")
    assert not same("classifier.weight")

    params = MlflowClient(tracking_uri=uri).get_run(result.run_id).data.params
    total, trainable = int(params["model.parameters"]), int(params["model.parameters_trainable"])
    expected = sum(
        p.numel()
        for n, p in trained.named_parameters()
        if "layer.1." in n or "classifier" in n or "pooler" in n
    )
    assert trainable == expected < total
    assert result.artifact_dir is not None
    card = (result.artifact_dir / "MODEL_CARD.md").read_text()
    assert f"of which {trainable:,} were fine-tuned" in card


def test_freezing_more_layers_than_the_model_has_is_a_config_error(prepared: Path, tmp_path: Path) -> None:
    config = tiny_config(prepared, tmp_path / "out", "training.freeze.layers=5", "tracking.enabled=false")
    with pytest.raises(ConfigError, match=r"training\.freeze\.layers=5 exceeds the model's 1 encoder layers"):
        train(config)
