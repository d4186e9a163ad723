"""Language detection and the decompressed cache of py3langid's tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from py3langid.langid import MODEL_DIR, MODEL_FILE
from py3langid.modelio import load_model

from textguard import language

MODEL = Path(MODEL_DIR) / MODEL_FILE


def _same_tables(ours: tuple, theirs: tuple) -> None:
    assert len(ours) == len(theirs) == 6
    for mine, reference in zip(ours, theirs, strict=True):
        if isinstance(reference, np.ndarray):
            assert mine.dtype == reference.dtype
            np.testing.assert_array_equal(mine, reference)
        else:
            assert type(mine) is type(reference)
            assert mine == reference


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEXTGUARD_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_first_load_writes_the_decompressed_tables_and_later_loads_read_them(cache: Path) -> None:
    reference = load_model(MODEL)
    cached = language.decompressed_path(MODEL)
    assert cached.parent == cache / "langid" and not cached.exists()

    _same_tables(language._tables(MODEL), reference)
    assert cached.is_file()
    assert not list(cached.parent.glob(".partial-*"))

    stamp = cached.stat().st_mtime_ns
    _same_tables(language._tables(MODEL), reference)
    assert cached.stat().st_mtime_ns == stamp  # read, not rewritten


def test_a_damaged_cache_file_is_ignored_and_replaced(cache: Path) -> None:
    cached = language.decompressed_path(MODEL)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not an npz")

    _same_tables(language._tables(MODEL), load_model(MODEL))
    assert not cached.exists()  # removed; the next start writes it again
    language._tables(MODEL)
    assert cached.is_file()


def test_an_unwritable_cache_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache root cannot be a directory here")
    monkeypatch.setenv("TEXTGUARD_CACHE_DIR", str(blocker))
    _same_tables(language._tables(MODEL), load_model(MODEL))


def test_detector_names_languages_and_leaves_short_or_empty_text_undetermined() -> None:
    detector = language.LanguageDetector()
    detector.load()
    assert detector.detect("bonjour à tous, la réunion commence dans cinq minutes") == "fr"
    assert detector.detect("مرحبا بكم جميعا، سيبدأ الاجتماع بعد خمس دقائق") == "ar"
    assert detector.detect("   ") == language.UNDETERMINED
