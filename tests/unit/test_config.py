from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from textguard.config import StrictModel, apply_overrides, config_hash, flatten, load_config
from textguard.errors import ConfigError


class Training(StrictModel):
    learning_rate: float = 5e-5
    epochs: int = 3
    tags: list[str] = Field(default_factory=list)


class Config(StrictModel):
    name: str
    training: Training = Training()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_overrides_are_typed_and_nested(tmp_path: Path) -> None:
    path = write(tmp_path, "name: run\ntraining:\n  epochs: 2\n")
    config = load_config(Config, path, ["training.learning_rate=3e-5", "training.tags=[a, b]", "name=other"])
    assert config.training.learning_rate == pytest.approx(3e-5)
    assert config.training.epochs == 2
    assert config.training.tags == ["a", "b"]
    assert config.name == "other"


def test_unknown_key_names_the_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "name: run\ntraining:\n  learning_rat: 1\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: training\.learning_rat: unknown key"):
        load_config(Config, path)


def test_wrong_type_and_bad_override(tmp_path: Path) -> None:
    path = write(tmp_path, "name: run\n")
    with pytest.raises(ConfigError, match=r"training\.epochs"):
        load_config(Config, path, ["training.epochs=many"])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(Config, path, ["training.epochs"])


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(Config, tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Config, write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Config, write(tmp_path, "- a\n- b\n"))


def test_flatten_and_hash_are_stable() -> None:
    config = Config(name="x")
    assert flatten(config)["training.learning_rate"] == pytest.approx(5e-5)
    assert config_hash(config) == config_hash(Config(name="x"))
    assert config_hash(config) != config_hash(Config(name="y"))
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}
