"""Parity of a faster numeric form against the fp32 reference, and the precision a scorer runs at.

A model can be run faster than in fp32 (ONNX int8, torch bf16 on hardware that has bf16 units), at the
price of slightly different probabilities. Those forms are compared with the fp32 torch reference on a
sample of texts (`compare`: largest probability difference, decision agreement, per label) and the
results are kept in the artefact's `parity.json` (checksummed in the spec like every other file).

`choose_precision` decides what `Scorer.from_artifact` runs at, the same way for the service,
evaluation and batch scoring:

- `fp32`: the reference;
- `bf16`: torch autocast to bfloat16 (matrix products in bf16; autocast keeps ops such as layer_norm
  in fp32), or `textguard.encoder`'s own bf16 weights, which compute the same;
- `auto`: bf16 only where the device computes bf16 natively (CUDA with bf16, or a CPU with AVX512-BF16
  or AMX: the served MiniLM answered 155 against 109 requests/s, README Performance) *and* the
  artefact's recorded bf16 parity
  is within `MAX_PROB_DIFF` and `MIN_AGREEMENT`; fp32 otherwise. Without hardware bf16, autocast
  emulates it and is slower than fp32; without a parity record, nobody has checked that this model's
  decisions survive it. bf16 runs with the attention layout its record was measured with
  (`ATTENTION`: per-sequence attention rounds slightly differently from the padded layout of records
  written before it, and is used for those only once `textguard export` has measured it again), and
  with the last-layer rows it was measured with (`LAST_LAYER`: computing the last layer for the first
  token only rounds slightly differently from computing it for every token, as records written before
  it were measured).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from textguard import hardware
from textguard.errors import ConfigError
from textguard.postprocess import decide
from textguard.spec import ModelSpec

PARITY_FILE = "parity.json"
#: parity.json variant recording torch bf16 autocast against torch fp32.
BF16_VARIANT = "torch_bf16"
#: A faster form is used by default only when no probability moves more than this ...
MAX_PROB_DIFF = 0.01
#: ... and at least this share of texts keeps every label's decision.
MIN_AGREEMENT = 0.995

#: Key of a bf16 report naming `textguard.encoder`'s attention layout it was measured with; bf16 is served
#: with that layout (the layouts round differently in bf16). Reports written before the key existed
#: were measured with `LEGACY_ATTENTION`.
ATTENTION = "attention"
LEGACY_ATTENTION = "padded"
#: Key of a bf16 report naming `textguard.encoder`'s last-layer rows it was measured with (the same way);
#: reports written before the key existed were measured with `LEGACY_LAST_LAYER`.
LAST_LAYER = "last_layer"
LEGACY_LAST_LAYER = "all-tokens"

Precision = Literal["fp32", "bf16"]
RequestedPrecision = Literal["auto", "fp32", "bf16"]


def compare(reference: np.ndarray, candidate: np.ndarray, spec: ModelSpec) -> dict[str, Any]:
    """Probability differences and decision agreement of `candidate` against `reference`."""
    diff = np.abs(np.asarray(candidate, dtype=np.float64) - np.asarray(reference, dtype=np.float64))
    ref_flags, cand_flags = decide(reference, spec), decide(candidate, spec)
    same = ref_flags == cand_flags
    n = len(reference)
    per_label = {
        label: {
            "max_abs_diff": float(diff[:, index].max()) if n else 0.0,
            "mean_abs_diff": float(diff[:, index].mean()) if n else 0.0,
            "decision_agreement": float(same[:, index].mean()) if n else 1.0,
            "flips": int((~same[:, index]).sum()),
            "positives_reference": int(ref_flags[:, index].sum()),
            "positives_candidate": int(cand_flags[:, index].sum()),
        }
        for index, label in enumerate(spec.labels)
    }
    return {
        "n_texts": n,
        "max_abs_diff": float(diff.max()) if n else 0.0,
        "mean_abs_diff": float(diff.mean()) if n else 0.0,
        "decision_agreement": float(same.all(axis=1).mean()) if n else 1.0,
        "per_label": per_label,
    }


def within_limits(report: dict[str, Any]) -> bool:
    """Whether a `compare` report allows the faster form by default."""
    try:
        return (
            int(report["n_texts"]) > 0
            and float(report["max_abs_diff"]) <= MAX_PROB_DIFF
            and float(report["decision_agreement"]) >= MIN_AGREEMENT
        )
    except (KeyError, TypeError, ValueError):
        return False


def bf16_parity(scorer: Any, texts: Sequence[str]) -> dict[str, Any]:
    """`compare` of bf16 autocast against fp32 through one torch `Scorer` (its precision is restored).
    Through `textguard.encoder`, the report names the attention layout (`ATTENTION`) and last-layer rows
    (`LAST_LAYER`) it measured."""
    backend = scorer.backend
    original = backend.autocast_bf16
    try:
        backend.autocast_bf16 = False
        reference = scorer.predict_proba(texts)
        backend.autocast_bf16 = True
        candidate = scorer.predict_proba(texts)
    finally:
        backend.autocast_bf16 = original
    report = compare(reference, candidate, scorer.spec)
    model = getattr(backend, "model", None)
    for key, attribute in ((ATTENTION, "attention"), (LAST_LAYER, "last_layer")):
        value = getattr(model, attribute, None)
        if value is not None:
            report[key] = value
    return report


def read_parity(directory: Path, spec: ModelSpec) -> dict[str, Any] | None:
    """The artefact's parity record, if its manifest lists one (an unlisted file is never read)."""
    if PARITY_FILE not in spec.files:
        return None
    try:
        record = json.loads((directory / PARITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_parity(
    directory: Path, variants: dict[str, Any], *, sample: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """Write parity.json and return what it holds (the caller re-records the artefact's checksums)."""
    from datetime import UTC, datetime

    record = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "limits": {"max_abs_diff": MAX_PROB_DIFF, "decision_agreement": MIN_AGREEMENT},
        "sample": sample,
        "variants": variants,
        **fields,
    }
    path = directory / PARITY_FILE
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return record


#: bf16 is refused where a forward pass of a shape seen for the first time takes this many times as long
#: as the same shape again, and at least PER_SHAPE_COMPILE_SECONDS longer: oneDNN then compiles a kernel
#: per shape (measured on an AMX Xeon: 0.3-1.4 s per new batch shape), and chat traffic brings new shapes
#: for a long time. Creating a primitive for a new shape costs a few milliseconds everywhere (on a tiny
#: model that alone is 4x a pass), which the absolute bound tells apart.
PER_SHAPE_COMPILE_RATIO = 4.0
PER_SHAPE_COMPILE_SECONDS = 0.1


def compiles_per_shape(backend: Any) -> bool:
    """Time two new shapes twice each through `backend` (bf16 on): whether first sight costs a compile."""
    import time

    rng = np.random.default_rng(0)
    slow_first_passes = []
    for batch, length in ((2, 11), (3, 17), (5, 29)):  # the first only initialises
        ids = rng.integers(5, 200, (batch, length)).astype(np.int64)
        mask = np.ones_like(ids)
        times = []
        for _ in range(2):
            started = time.perf_counter()
            backend(ids, mask)
            times.append(time.perf_counter() - started)
        slow = (
            times[0] > PER_SHAPE_COMPILE_RATIO * times[1] and times[0] - times[1] > PER_SHAPE_COMPILE_SECONDS
        )
        slow_first_passes.append(slow)
    return all(slow_first_passes[1:])


@dataclass(frozen=True)
class PrecisionChoice:
    precision: Precision
    #: Why, in words an operator can act on (logged at load, shown in the model's details).
    reason: str
    #: `textguard.encoder`'s attention layout to run, when the parity record that chose bf16 names one
    #: (None: the encoder's default).
    attention: str | None = None
    #: `textguard.encoder`'s last-layer rows to run, the same way.
    last_layer: str | None = None


def choose_precision(
    requested: RequestedPrecision, *, backend: str, device: str, parity: dict[str, Any] | None
) -> PrecisionChoice:
    """The precision a scorer runs at (see the module docstring)."""
    if requested == "fp32":
        return PrecisionChoice("fp32", "fp32 requested")
    if backend != "torch":
        if requested == "bf16":
            raise ConfigError("precision bf16 is a torch setting; ONNX runs its graph's own types")
        return PrecisionChoice("fp32", f"the {backend} backend runs the exported graph's own types")
    if requested == "bf16":
        return PrecisionChoice("bf16", "bf16 requested")
    if not hardware.native_bf16(device):
        return PrecisionChoice("fp32", f"{device} has no native bf16 (emulated, it is slower than fp32)")
    report = ((parity or {}).get("variants") or {}).get(BF16_VARIANT)
    if report is None:
        return PrecisionChoice(
            "fp32",
            f"no bf16 parity recorded in {PARITY_FILE}: `textguard export` measures it "
            "(training records it for new models)",
        )
    if not within_limits(report):
        return PrecisionChoice(
            "fp32",
            f"bf16 parity outside the limits (max |prob diff| {report.get('max_abs_diff')}, decision "
            f"agreement {report.get('decision_agreement')}; limits {MAX_PROB_DIFF}, {MIN_AGREEMENT})",
        )
    layout = str(report.get(ATTENTION, LEGACY_ATTENTION))
    last_layer = str(report.get(LAST_LAYER, LEGACY_LAST_LAYER))
    return PrecisionChoice(
        "bf16",
        f"native bf16 and recorded parity: max |prob diff| {float(report['max_abs_diff']):.2g}, "
        f"decision agreement {float(report['decision_agreement']):.4f} on {report['n_texts']} texts "
        f"({layout} attention, last layer on {last_layer})",
        attention=layout,
        last_layer=last_layer,
    )
