"""A `--workers N` process trusts the parent's verification only while the artefact's files are as
they were when it was verified."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from textguard.service.preload import VERIFIED_ENV, on_disk, verified_by_parent


def _artefact(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "model.safetensors").write_bytes(b"weights" * 100)
    (directory / "textguard.json").write_text("{}")
    return directory


def test_the_parent_verification_holds_only_for_unchanged_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _artefact(tmp_path)
    monkeypatch.delenv(VERIFIED_ENV, raising=False)
    assert not verified_by_parent(str(directory))  # no parent said so: the process verifies
    monkeypatch.setenv(VERIFIED_ENV, on_disk(directory))
    assert verified_by_parent(str(directory))
    assert not verified_by_parent(str(tmp_path))  # another directory
    assert not verified_by_parent("models:/textguard@production")  # a registry model

    # The same bytes' length, the old modification time put back: the change time still moves (file
    # times tick with the kernel's coarse clock, a few milliseconds: a later write shows).
    weights = directory / "model.safetensors"
    before = weights.stat()
    time.sleep(0.05)
    weights.write_bytes(b"WEIGHTS" * 100)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert not verified_by_parent(str(directory))


def test_a_replaced_or_added_file_changes_the_fingerprint(tmp_path: Path) -> None:
    directory = _artefact(tmp_path)
    original = on_disk(directory)
    assert on_disk(directory) == original
    replacement = tmp_path / "other"
    replacement.write_bytes(b"weights" * 100)
    replacement.replace(directory / "model.safetensors")
    replaced = on_disk(directory)
    assert replaced != original
    (directory / "extra.bin").write_bytes(b"x")
    assert on_disk(directory) != replaced
