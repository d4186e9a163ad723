"""textguard.parity: when a scorer runs in bf16, and the parity record that decision rests on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from textguard import hardware
from textguard.artifact import refresh_checksums
from textguard.errors import ConfigError
from textguard.parity import (
    ATTENTION,
    BF16_VARIANT,
    LAST_LAYER,
    LEGACY_ATTENTION,
    LEGACY_LAST_LAYER,
    MAX_PROB_DIFF,
    MIN_AGREEMENT,
    PARITY_FILE,
    bf16_parity,
    choose_precision,
    compare,
    compiles_per_shape,
    read_parity,
    within_limits,
    write_parity,
)
from textguard.scorer import Scorer
from textguard.spec import load_spec, verify_artifact

TEXTS = ["can you share your screen", "merci à tous", "", "ok", "the meeting starts now " * 20]


def _record(max_abs_diff: float, agreement: float, n_texts: int = 500) -> dict[str, Any]:
    return {
        "variants": {
            BF16_VARIANT: {
                "n_texts": n_texts,
                "max_abs_diff": max_abs_diff,
                "decision_agreement": agreement,
            }
        }
    }


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)


def test_auto_runs_bf16_only_with_native_units_and_parity_within_the_limits(native: None) -> None:
    good = _record(MAX_PROB_DIFF / 2, 1.0)
    chosen = choose_precision("auto", backend="torch", device="cpu", parity=good)
    assert chosen.precision == "bf16" and "recorded parity" in chosen.reason

    for record, words in [
        (None, "no bf16 parity recorded"),
        ({"variants": {"onnx_fp32": good["variants"][BF16_VARIANT]}}, "no bf16 parity recorded"),
        (_record(MAX_PROB_DIFF * 2, 1.0), "outside the limits"),
        (_record(0.001, MIN_AGREEMENT - 0.001), "outside the limits"),
        (_record(0.0, 1.0, n_texts=0), "outside the limits"),
    ]:
        chosen = choose_precision("auto", backend="torch", device="cpu", parity=record)
        assert chosen.precision == "fp32" and words in chosen.reason


def test_auto_stays_fp32_where_bf16_would_be_emulated(emulated: None) -> None:
    chosen = choose_precision("auto", backend="torch", device="cpu", parity=_record(0.0, 1.0))
    assert chosen.precision == "fp32" and "no native bf16" in chosen.reason


def test_explicit_choices_and_the_onnx_backend(emulated: None) -> None:
    assert choose_precision("fp32", backend="torch", device="cpu", parity=_record(0, 1)).precision == "fp32"
    # Asked for explicitly, bf16 is the operator's call (even emulated, even without a record).
    assert choose_precision("bf16", backend="torch", device="cpu", parity=None).precision == "bf16"
    assert choose_precision("auto", backend="onnx", device="cpu", parity=_record(0, 1)).precision == "fp32"
    with pytest.raises(ConfigError, match="torch setting"):
        choose_precision("bf16", backend="onnx", device="cpu", parity=None)


def test_within_limits_refuses_malformed_reports() -> None:
    assert within_limits({"n_texts": 3, "max_abs_diff": 0.0, "decision_agreement": 1.0})
    assert not within_limits({"n_texts": 3, "max_abs_diff": "x", "decision_agreement": 1.0})
    assert not within_limits({"max_abs_diff": 0.0})


def test_compare_counts_flips_per_label(tiny_artifact: Path) -> None:
    spec = load_spec(tiny_artifact)
    reference = np.array([[0.49, 0.1, 0.9], [0.2, 0.2, 0.2]])
    candidate = np.array([[0.51, 0.1, 0.9], [0.2, 0.2, 0.2]])
    report = compare(reference, candidate, spec)
    assert report["decision_agreement"] == 0.5 and report["max_abs_diff"] == pytest.approx(0.02)
    first = spec.labels[0]
    assert report["per_label"][first]["flips"] == 1 and report["per_label"][spec.labels[1]]["flips"] == 0


def test_bf16_parity_compares_one_scorer_with_itself_and_restores_its_precision(tiny_artifact: Path) -> None:
    scorer = Scorer.from_artifact(tiny_artifact)
    before = scorer.predict_proba(TEXTS)
    report = bf16_parity(scorer, TEXTS)
    assert report["n_texts"] == len(TEXTS) and 0.0 <= report["max_abs_diff"] < 0.05
    assert report[ATTENTION] == "per-sequence"  # the encoder's layout it measured
    assert report[LAST_LAYER] == "first-token"  # and the rows its last layer computed
    assert scorer.backend.autocast_bf16 is False  # type: ignore[attr-defined]
    np.testing.assert_array_equal(scorer.predict_proba(TEXTS), before)


def test_from_artifact_reads_a_listed_record_only(tiny_artifact: Path, tmp_path: Path, native: None) -> None:
    artefact = tmp_path / "model"
    shutil.copytree(tiny_artifact, artefact)
    assert Scorer.from_artifact(artefact, precision="auto").precision.precision == "fp32"  # no record

    write_parity(artefact, _record(0.001, 1.0)["variants"], sample={"source": "test", "n_texts": 500})
    with pytest.raises(Exception, match="not listed"):  # the closed manifest refuses an unlisted file
        verify_artifact(artefact, load_spec(artefact))
    spec = refresh_checksums(artefact)
    assert read_parity(artefact, spec) is not None
    scorer = Scorer.from_artifact(artefact, precision="auto")
    assert scorer.precision.precision == "bf16" and scorer.backend.autocast_bf16  # type: ignore[attr-defined]
    # The reference stays the library's default.
    assert Scorer.from_artifact(artefact).precision.precision == "fp32"


def test_read_parity_ignores_unreadable_records(tiny_artifact: Path, tmp_path: Path) -> None:
    artefact = tmp_path / "model"
    shutil.copytree(tiny_artifact, artefact)
    (artefact / PARITY_FILE).write_text("[1, 2]", encoding="utf-8")
    assert read_parity(artefact, refresh_checksums(artefact)) is None
    (artefact / PARITY_FILE).write_text("{not json", encoding="utf-8")
    assert read_parity(artefact, refresh_checksums(artefact)) is None
    returned = write_parity(artefact, {}, sample={"source": "s", "n_texts": 0}, device="cpu")
    record = json.loads((artefact / PARITY_FILE).read_text(encoding="utf-8"))
    assert returned == record
    assert record["limits"] == {"max_abs_diff": MAX_PROB_DIFF, "decision_agreement": MIN_AGREEMENT}
    assert record["device"] == "cpu" and record["variants"] == {}


class _CompilingBackend:
    """Sleeps the first time it sees an input shape, as oneDNN's per-shape bf16 kernels did on AMX."""

    def __init__(self, compile_seconds: float) -> None:
        self.compile_seconds = compile_seconds
        self.seen: set[tuple[int, ...]] = set()

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import time

        if ids.shape not in self.seen:
            self.seen.add(ids.shape)
            time.sleep(self.compile_seconds)
        time.sleep(0.002)
        return np.zeros((len(ids), 3), dtype=np.float32)


def test_a_backend_that_compiles_per_shape_is_detected() -> None:
    assert compiles_per_shape(_CompilingBackend(0.15))
    assert not compiles_per_shape(_CompilingBackend(0.0))
    # A few milliseconds to create a new shape's primitives is 4x a tiny model's pass, but no compile.
    assert not compiles_per_shape(_CompilingBackend(0.01))


@pytest.mark.parametrize(
    ("key", "attribute", "legacy", "current", "in_reason"),
    [
        (ATTENTION, "attention", LEGACY_ATTENTION, "per-sequence", "padded attention"),
        (LAST_LAYER, "last_layer", LEGACY_LAST_LAYER, "first-token", "last layer on all-tokens"),
    ],
)
def test_bf16_is_served_with_the_encoder_layout_its_record_measured(
    tiny_artifact: Path,
    tmp_path: Path,
    native: None,
    key: str,
    attribute: str,
    legacy: str,
    current: str,
    in_reason: str,
) -> None:
    """The encoder's attention layouts, and its last layer's rows, round differently in bf16: a record
    naming none (written before the faster choice existed) serves bf16 with what it was measured with;
    fp32 and a record naming one get that one."""
    chosen = choose_precision("auto", backend="torch", device="cpu", parity=_record(0.001, 1.0))
    assert getattr(chosen, attribute) == legacy and in_reason in chosen.reason
    artefact = tmp_path / "model"
    shutil.copytree(tiny_artifact, artefact)
    served = {}
    for named in (None, current):
        report = _record(0.001, 1.0)["variants"]
        if named is not None:
            report[BF16_VARIANT][key] = named
        write_parity(artefact, report, sample={"source": "test", "n_texts": 500})
        refresh_checksums(artefact)
        scorer = Scorer.from_artifact(artefact, precision="auto")
        assert scorer.precision.precision == "bf16"
        served[named] = getattr(scorer.backend.model, attribute)  # type: ignore[attr-defined]
    assert served == {None: legacy, current: current}
    assert getattr(Scorer.from_artifact(artefact).backend.model, attribute) == current  # type: ignore[attr-defined]


def test_a_gpu_backend_runs_the_padded_layout_unless_a_record_names_one() -> None:
    """On a GPU the padded batch is one attention kernel, per-sequence attention one per sequence."""
    from textguard.backends import TorchBackend

    class Encoder:  # textguard.encoder's interface, without a device to move to
        attention = "per-sequence"

        def to(self, device: str) -> Encoder:
            return self

        def eval(self) -> Encoder:
            return self

        def set_attention(self, layout: str) -> None:
            self.attention = layout

        def set_precision(self, bf16: bool) -> None:
            pass

    assert TorchBackend(Encoder(), device="cuda:0").model.attention == "padded"
    named = TorchBackend(Encoder(), device="cuda:0", attention="per-sequence")
    assert named.model.attention == "per-sequence"
    assert TorchBackend(Encoder(), device="cpu").model.attention == "per-sequence"
