"""ONNX export (+ dynamic int8 quantisation) of a model artefact, with a parity report.

`export_onnx` writes model.onnx (and model.int8.onnx) into the artefact directory, re-records the
checksums in textguard.json, then scores a sample of texts through the SAME `Scorer` with torch (fp32
and bf16) and the ONNX backends and writes parity.json (max |prob diff| and decision agreement, overall
and per label).
For a model fetched from MLflow the new files also go back to the logged model (so `models:/` URIs
of that version carry the ONNX form) and parity.json to its training run.

Exporter: torch's default `dynamo=True` (torch.export-based; needs the onnxscript package) gives
~1e-8 logit parity on BERT and XLM-R with dynamic batch and sequence axes. The legacy TorchScript
exporter (`exporter="torchscript"`, no extra dependency, deprecated by torch) is just as exact and
~20x faster to run; it is the fallback for environments without onnxscript.

Quantisation: onnxruntime dynamic int8 on MatMul/Gather weights. The FFN output projections
(intermediate -> hidden, after GELU) see the widest activation ranges in BERT-family encoders and lose
the most to int8, so they stay fp32 by default (`exclude_ffn_output`); parity.json records what was
excluded and what it cost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from textguard.artifact import refresh_checksums, resolve_artifact
from textguard.backends import ONNX_FILE, ONNX_INT8_FILE, load_classifier
from textguard.errors import ConfigError, ModelLoadError, TextguardError
from textguard.parity import BF16_VARIANT, PARITY_FILE, bf16_parity, compare, write_parity
from textguard.spec import SPEC_FILENAME, ModelSpec, load_spec, sha256_file, verify_artifact

Exporter = Literal["dynamo", "torchscript"]
Quantization = Literal["int8"]
#: ONNX protobufs cannot exceed 2 GiB; above this many parameter bytes, weights go to a .data file.
EXTERNAL_DATA_BYTES = 1_800_000_000
DEFAULT_SAMPLE_SIZE = 256
#: Neutral meeting phrases used when no sample file is given and the seed set is absent.
FALLBACK_SAMPLE = (
    "can everyone see my screen",
    "let's start with the quarterly numbers",
    "you're on mute",
    "merci pour la présentation",
    "¿pueden repetir la última diapositiva?",
    "ich muss um drei los",
    "the build failed again on the staging server",
    "great work on the launch everyone",
    "who is taking notes today",
    "sorry, my connection dropped for a second",
    "can we move the retro to thursday",
    "obrigado a todos, até amanhã",
)


@dataclass
class ExportResult:
    directory: Path
    onnx_path: Path
    int8_path: Path | None
    parity_path: Path
    parity: dict[str, Any]
    published_to: str | None = None
    publish_error: str | None = None
    notes: list[str] = field(default_factory=list)


# -- sample texts -----------------------------------------------------------------------------------


def load_sample_texts(path: Path | None = None, limit: int = DEFAULT_SAMPLE_SIZE) -> tuple[list[str], str]:
    """Texts for the parity check: a file (txt/jsonl/csv/parquet), else the seed set, else neutral phrases."""
    if path is not None:
        from textguard.batch import read_input

        frame = read_input(path)
        texts = [str(text) for text in frame["text"].tolist()][:limit]
        return texts, str(path)
    from textguard.paths import resources_dir

    seed = resources_dir() / "seed" / "seed.jsonl"
    if seed.is_file():
        texts = []
        with seed.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    if isinstance(record.get("text"), str):
                        texts.append(record["text"])
                if len(texts) >= limit:
                    break
        if texts:
            return texts, "textguard/resources/seed/seed.jsonl"
    return list(FALLBACK_SAMPLE), "built-in neutral phrases"


# -- export ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters and the quantiser warn about things we handle (deprecations, pre-processing)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    torch_logger = logging.getLogger("torch")
    torch_level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        torch_logger.setLevel(torch_level)


def _example_inputs(directory: Path, spec: ModelSpec) -> tuple[Any, Any]:
    """A padded batch of two with a sequence length distinct from the batch size and above 1, so
    torch.export cannot specialise (or equate) the dynamic axes on the example."""
    import torch

    from textguard.encoding import encode, load_tokenizer, pad_batch

    tokenizer = load_tokenizer(directory, spec.max_length)
    texts = ["this is an example sentence used to trace the model for export", "ok"]
    ids_lists = encode(texts, tokenizer, spec.max_length, spec.text_prefix)["input_ids"]
    width = max(len(ids) for ids in ids_lists)
    if width < 3:
        raise ModelLoadError(f"{directory}: max_length {spec.max_length} is too small to export")
    ids, mask = pad_batch(ids_lists, spec.pad_token_id)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def _logits_module(directory: Path) -> Any:
    import torch

    model = load_classifier(directory)

    class LogitsOnly(torch.nn.Module):
        """Positional (input_ids, attention_mask) -> logits: the ONNX graph's exact interface."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    return LogitsOnly(model.eval()).eval()


def _parameter_bytes(module: Any) -> int:
    return int(sum(p.numel() * p.element_size() for p in module.parameters()))


def export_fp32(
    directory: Path, spec: ModelSpec, *, opset: int | None = None, exporter: Exporter = "dynamo"
) -> Path:
    """Write `model.onnx` (inputs input_ids, attention_mask [batch, sequence]; output logits)."""
    import torch

    module = _logits_module(directory)
    ids, mask = _example_inputs(directory, spec)
    external = _parameter_bytes(module) > EXTERNAL_DATA_BYTES
    target = directory / ONNX_FILE
    tmp = directory / f".{ONNX_FILE}.tmp"
    for stale in (tmp, tmp.with_name(tmp.name + ".data")):
        stale.unlink(missing_ok=True)
    names = {"input_names": ["input_ids", "attention_mask"], "output_names": ["logits"]}
    with _quiet(), torch.inference_mode(False), torch.no_grad():
        if exporter == "dynamo":
            try:
                import onnxscript  # noqa: F401  (the dynamo exporter needs it)
            except ImportError:
                raise ConfigError(
                    "the dynamo ONNX exporter needs the onnxscript package: pip install onnxscript, "
                    "or use --exporter torchscript"
                ) from None
            batch = torch.export.Dim("batch", max=65536)
            sequence = torch.export.Dim("sequence", max=spec.max_length)
            try:
                torch.onnx.export(
                    module,
                    (ids, mask),
                    str(tmp),
                    dynamo=True,
                    opset_version=opset,
                    dynamic_shapes={
                        "input_ids": {0: batch, 1: sequence},
                        "attention_mask": {0: batch, 1: sequence},
                    },
                    external_data=external,
                    verbose=False,
                    **names,  # type: ignore[arg-type]
                )
            except Exception as exc:  # torch.export raises many unrelated types for unsupported graphs
                raise TextguardError(
                    f"{directory}: dynamo ONNX export failed ({type(exc).__name__}: {str(exc)[:300]}); "
                    "retry with --exporter torchscript"
                ) from None
        elif exporter == "torchscript":
            axes = {0: "batch", 1: "sequence"}
            torch.onnx.export(
                module,
                (ids, mask),
                str(tmp),
                dynamo=False,
                opset_version=opset or 17,
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
                do_constant_folding=True,
                **names,  # type: ignore[arg-type]
            )
        else:
            raise ConfigError(f"unknown exporter {exporter!r}: choose dynamo or torchscript")
    _finalize_onnx(tmp, target, external)
    return target


def _finalize_onnx(tmp: Path, target: Path, external: bool) -> None:
    """Move the exported file into place; external weights are re-bound to the final file name."""
    data_target = target.with_name(target.name + ".data")
    if external:
        import onnx

        model = onnx.load(str(tmp))  # loads the external tensors into memory
        data_target.unlink(missing_ok=True)
        onnx.save_model(
            model,
            str(target),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_target.name,
        )
        tmp.unlink(missing_ok=True)
        for leftover in tmp.parent.glob(f"{tmp.name}*.data"):
            leftover.unlink()
    else:
        data_target.unlink(missing_ok=True)
        tmp.replace(target)


# -- quantisation ------------------------------------------------------------------------------------


def ffn_output_nodes(onnx_path: Path, config: dict[str, Any]) -> list[str]:
    """MatMul nodes of the FFN output projections (weights [intermediate, hidden]).

    Found by weight shape, not by name: the dynamo exporter names nodes node_MatMul_<n>, the
    TorchScript one by module path, and the shape is the same in both.
    """
    import onnx

    intermediate, hidden = config.get("intermediate_size"), config.get("hidden_size")
    if not intermediate or not hidden or intermediate == hidden:
        return []
    model = onnx.load(str(onnx_path), load_external_data=False)
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    producers = {output: node for node in model.graph.node for output in node.output}
    wanted = (int(intermediate), int(hidden))
    found = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2:
            continue
        weight = node.input[1]
        shape = shapes.get(weight)
        if shape is None and weight in producers and producers[weight].op_type == "Transpose":
            source = shapes.get(producers[weight].input[0])
            shape = tuple(reversed(source)) if source else None
        if shape == wanted:
            found.append(node.name)
    return found


def quantize_int8(
    fp32_path: Path, directory: Path, *, exclude_ffn_output: bool = True
) -> tuple[Path, list[str]]:
    """Dynamic int8 quantisation of `model.onnx` -> `model.int8.onnx`; returns it and the excluded nodes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    excluded = ffn_output_nodes(fp32_path, config) if exclude_ffn_output else []
    target = directory / ONNX_INT8_FILE
    tmp = directory / f".{ONNX_INT8_FILE}.tmp"
    external = (fp32_path.with_name(fp32_path.name + ".data")).is_file()
    with _quiet():
        quantize_dynamic(
            model_input=str(fp32_path),
            model_output=str(tmp),
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            use_external_data_format=external,
        )
    _finalize_onnx(tmp, target, external)
    return target, excluded


# -- parity --------------------------------------------------------------------------------------------


def _timed_proba(scorer: Any, texts: Sequence[str]) -> tuple[np.ndarray, float]:
    scorer.predict_proba(texts[:2])  # warm-up: first calls allocate arenas / compile kernels
    start = time.perf_counter()
    probs = scorer.predict_proba(texts)
    return probs, time.perf_counter() - start


def parity_report(directory: Path, texts: Sequence[str], *, int8: bool) -> dict[str, Any]:
    """Score `texts` with torch fp32, torch bf16, ONNX fp32 (and int8) through the same Scorer; compare."""
    from textguard.scorer import Scorer

    torch_scorer = Scorer.from_artifact(directory, backend="torch", precision="fp32")
    reference, torch_seconds = _timed_proba(torch_scorer, texts)
    spec = torch_scorer.spec
    # bf16 autocast of the same torch model: what `precision: auto` serves where the hardware has bf16.
    variants: dict[str, Any] = {BF16_VARIANT: bf16_parity(torch_scorer, texts)}
    timings = {"torch": torch_seconds}
    for name, quantized in (("onnx_fp32", False), ("onnx_int8", True)):
        if quantized and not int8:
            continue
        scorer = Scorer.from_artifact(directory, backend="onnx", quantized=quantized)
        probs, seconds = _timed_proba(scorer, texts)
        variants[name] = compare(reference, probs, spec)
        timings[name] = seconds
    return {"variants": variants, "seconds": timings}


def _opset_of(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(item.version) for item in model.opset_import if item.domain in ("", "ai.onnx")), None)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "onnx", "onnxruntime", "onnxscript"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def export_onnx(
    model: str | Path,
    *,
    quantize: Quantization | None = None,
    opset: int | None = None,
    exporter: Exporter = "dynamo",
    sample_texts: Sequence[str] | None = None,
    sample_source: str | None = None,
    exclude_ffn_output: bool = True,
    publish: bool = True,
) -> ExportResult:
    """Export an artefact (directory, runs:/ or models:/ URI) to ONNX and check parity with torch."""
    if quantize not in (None, "int8"):
        raise ConfigError(f"unknown quantisation {quantize!r}: only int8 is supported")
    directory = resolve_artifact(model)
    spec = load_spec(directory)
    verify_artifact(directory, spec)
    onnx_path = export_fp32(directory, spec, opset=opset, exporter=exporter)
    int8_path: Path | None = None
    excluded: list[str] = []
    if quantize == "int8":
        int8_path, excluded = quantize_int8(onnx_path, directory, exclude_ffn_output=exclude_ffn_output)
    refresh_checksums(directory)

    if sample_texts is None:
        texts, source = load_sample_texts()
    else:
        texts, source = list(sample_texts), sample_source or "caller"
    if not texts:
        raise ConfigError("the parity sample is empty: give at least one text")
    comparison = parity_report(directory, texts, int8=int8_path is not None)
    files = [onnx_path, *([int8_path] if int8_path else [])]
    fields: dict[str, Any] = {
        "model": str(model),
        "exporter": exporter,
        "opset": _opset_of(onnx_path),
        "quantization": (
            {
                "type": "dynamic-int8",
                "weight_type": "QInt8",
                "exclude_ffn_output": exclude_ffn_output,
                "excluded_nodes": excluded,
            }
            if int8_path
            else None
        ),
        "file_bytes": {path.name: path.stat().st_size for path in files},
        "versions": _versions(),
        "seconds": comparison["seconds"],
    }
    parity = write_parity(
        directory, comparison["variants"], sample={"source": source, "n_texts": len(texts)}, **fields
    )
    parity_path = directory / PARITY_FILE
    refresh_checksums(directory)
    result = ExportResult(directory, onnx_path, int8_path, parity_path, parity)
    if publish:
        _publish(result)
    return result


def _publish(result: ExportResult) -> None:
    """Send the new files back to MLflow when the artefact came from there (best effort, reported)."""
    from textguard.tracking.artifacts import log_to_source_run, model_origin, publish_files

    directory = result.directory
    if model_origin(directory) is None:
        return
    files = [result.onnx_path]
    data_file = result.onnx_path.with_name(result.onnx_path.name + ".data")
    if data_file.is_file():
        files.append(data_file)
    if result.int8_path:
        files.append(result.int8_path)
    files += [result.parity_path, directory / SPEC_FILENAME]
    metrics = {}
    variants = result.parity["variants"]
    for variant, report in variants.items():
        metrics[f"export.{variant}.max_abs_diff"] = report["max_abs_diff"]
        metrics[f"export.{variant}.decision_agreement"] = report["decision_agreement"]
    try:
        result.published_to = publish_files(directory, files)
        log_to_source_run(
            directory,
            files={f"export/{PARITY_FILE}": result.parity_path},
            metrics=metrics,
            tags={"textguard.onnx": ",".join(sorted(v for v in variants if v.startswith("onnx")))},
            # The spec changed (checksums of the new files): keep the version's record of it true.
            version_tags={"textguard.spec_sha256": sha256_file(directory / SPEC_FILENAME)},
        )
    except Exception as exc:  # the local export is done; a tracking hiccup must not hide that
        result.publish_error = f"{type(exc).__name__}: {str(exc)[:300]}"
