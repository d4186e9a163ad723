"""`sha256_file` reads in large chunks (few interpreter-lock hand-overs while a busy thread holds it):
the digest is the file's whatever the chunk size and however the file's length falls against it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from textguard.spec import sha256_file


@pytest.mark.parametrize("size", [0, 1, 7, 64, 1000])
def test_the_digest_is_the_files_for_any_chunking(tmp_path: Path, size: int) -> None:
    path = tmp_path / "weights.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    for chunk_size in (1, 7, 64, 1 << 20):
        assert sha256_file(path, chunk_size=chunk_size) == expected
    assert sha256_file(path) == expected
