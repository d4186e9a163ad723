"""ONNX export of the tiny BERT and XLM-R artefacts: parity with torch through the same Scorer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from textguard.backends import ONNX_FILE, ONNX_INT8_FILE
from textguard.errors import ConfigError, ModelLoadError
from textguard.export import PARITY_FILE, export_onnx, ffn_output_nodes
from textguard.labels import LABELS
from textguard.scorer import Scorer
from textguard.spec import load_spec

# Odd batch sizes and lengths (empty, long past max_length) exercise both dynamic axes.
TEXTS = [
    "can you share your screen",
    "merci à tous",
    "",
    "the meeting starts now " * 40,
    "ok",
    "¿qué tal?",
    "a b c",
]


@pytest.fixture
def artefact(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    source: Path = request.getfixturevalue(request.param)
    target = tmp_path / "model"
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize("artefact", ["tiny_artifact", "tiny_xlmr_artifact"], indirect=True)
def test_dynamo_export_matches_torch_and_int8_agreement_is_reported(artefact: Path) -> None:
    pytest.importorskip("onnxscript", reason="the default (dynamo) exporter needs onnxscript")
    result = export_onnx(artefact, quantize="int8", exporter="dynamo", sample_texts=TEXTS, publish=False)

    assert result.onnx_path == artefact / ONNX_FILE and result.int8_path == artefact / ONNX_INT8_FILE
    spec = load_spec(artefact)
    assert {ONNX_FILE, ONNX_INT8_FILE, PARITY_FILE} <= set(spec.files)  # checksums re-recorded
    parity = json.loads((artefact / PARITY_FILE).read_text())
    assert parity == json.loads(json.dumps(result.parity))
    fp32, int8 = parity["variants"]["onnx_fp32"], parity["variants"]["onnx_int8"]
    assert fp32["n_texts"] == len(TEXTS) and fp32["max_abs_diff"] < 1e-4 and fp32["decision_agreement"] == 1.0
    assert set(int8["per_label"]) == set(LABELS)
    assert 0.0 <= int8["decision_agreement"] <= 1.0 and int8["max_abs_diff"] < 0.05
    # FFN output projections (one per layer of the 2-layer tiny model) stay fp32.
    assert len(parity["quantization"]["excluded_nodes"]) == 2
    assert parity["exporter"] == "dynamo" and parity["opset"] >= 17

    # The exported graphs load through the normal path (checksums verified) with any batch/length.
    reference = Scorer.from_artifact(artefact).predict_proba(TEXTS)
    onnx_probs = Scorer.from_artifact(artefact, backend="onnx", max_batch_size=3).predict_proba(TEXTS)
    np.testing.assert_allclose(onnx_probs, reference, atol=1e-4)
    int8_probs = Scorer.from_artifact(artefact, backend="onnx", quantized=True).predict_proba(TEXTS[:1])
    assert int8_probs.shape == (1, len(LABELS))


def test_torchscript_exporter_and_full_int8(tiny_artifact_copy: Path) -> None:
    result = export_onnx(
        tiny_artifact_copy,
        quantize="int8",
        exporter="torchscript",
        opset=17,
        sample_texts=TEXTS,
        exclude_ffn_output=False,
        publish=False,
    )
    assert result.parity["opset"] == 17
    assert result.parity["variants"]["onnx_fp32"]["max_abs_diff"] < 1e-4
    assert result.parity["quantization"]["excluded_nodes"] == []
    config = json.loads((tiny_artifact_copy / "config.json").read_text())
    assert len(ffn_output_nodes(result.onnx_path, config)) == config["num_hidden_layers"]
    assert result.published_to is None  # a local directory has nowhere to publish to


def test_export_refuses_tampered_artefacts_and_bad_options(tiny_artifact_copy: Path) -> None:
    with pytest.raises(ConfigError, match="only int8"):
        export_onnx(tiny_artifact_copy, quantize="int4", publish=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="parity sample is empty"):
        export_onnx(tiny_artifact_copy, exporter="torchscript", sample_texts=[], publish=False)
    weights = tiny_artifact_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ModelLoadError, match="does not match"):
        export_onnx(tiny_artifact_copy, exporter="torchscript", publish=False)


def test_export_command(tiny_artifact_copy: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from textguard.cli import app

    sample = tmp_path / "sample.txt"
    sample.write_text("\n".join([TEXTS[0], TEXTS[1], TEXTS[4], TEXTS[5]]) + "\n", encoding="utf-8")
    runner = CliRunner()
    args = ["export", "--model", str(tiny_artifact_copy), "--format", "onnx", "--exporter", "torchscript"]
    result = runner.invoke(app, [*args, "--quantize", "int8", "--sample", str(sample)])
    assert result.exit_code == 0, result.output
    assert "onnx_fp32: max |prob diff|" in result.output and "onnx_int8" in result.output
    assert json.loads((tiny_artifact_copy / PARITY_FILE).read_text())["sample"]["n_texts"] == 4

    bad = runner.invoke(app, [*args[:3], "--format", "tflite"])
    assert isinstance(bad.exception, ConfigError) and "only onnx" in str(bad.exception)
