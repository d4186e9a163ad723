"""Inference backends: token ids in, logits out. Nothing here knows about text or thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from textguard.errors import ModelLoadError

BackendName = Literal["torch", "onnx"]
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"


class InferenceBackend(Protocol):
    name: str

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """A transformers sequence-classification model, loaded from safetensors only."""

    name = "torch"

    def __init__(
        self,
        model: Any,
        device: str = "cpu",
        autocast_bf16: bool = False,
        attention: str | None = None,
        last_layer: str | None = None,
    ) -> None:
        import torch

        self._torch = torch
        self.model = model.to(device).eval()
        if hasattr(self.model, "set_attention"):  # textguard.encoder
            if attention is not None:
                self.model.set_attention(attention)  # the layout a bf16 parity record was measured with
            elif not device.startswith("cpu"):
                # Per-sequence attention is a loop of small kernels; a GPU runs the padded batch as one
                # (not measured here: no GPU; the CPU figures are in bench/encoder_layouts.py).
                self.model.set_attention("padded")
            if last_layer is not None:
                self.model.set_last_layer(last_layer)  # likewise, as the parity record was measured
        self.device = device
        #: textguard.encoder's classifier holds bf16 copies of its weights itself (cast once, not on
        #: every pass as autocast does: a quarter of a bf16 pass's time on short chat batches).
        self._native_precision = hasattr(self.model, "set_precision")
        self._bf16 = False
        self.autocast_bf16 = autocast_bf16

    @property
    def autocast_bf16(self) -> bool:
        """Whether forward passes compute in bf16 (autocast's choice of operators)."""
        return self._bf16

    @autocast_bf16.setter
    def autocast_bf16(self, bf16: bool) -> None:
        if self._native_precision:
            self.model.set_precision(bf16)
        self._bf16 = bf16

    @classmethod
    def from_directory(
        cls,
        directory: Path,
        device: str = "cpu",
        autocast_bf16: bool = False,
        attention: str | None = None,
        last_layer: str | None = None,
    ) -> TorchBackend:
        model = load_inference_model(directory)
        return cls(
            model, device=device, autocast_bf16=autocast_bf16, attention=attention, last_layer=last_layer
        )

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        # Thread-safe: the service runs one forward per inference worker at a time, each on its own
        # intra-op threads (torch.set_num_threads in that worker).
        with torch.inference_mode():
            ids = torch.from_numpy(input_ids).to(self.device)
            mask = torch.from_numpy(attention_mask).to(self.device)
            device_type = "cuda" if self.device.startswith("cuda") else "cpu"
            autocast = self._bf16 and not self._native_precision
            with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=autocast):
                output = self.model(input_ids=ids, attention_mask=mask)
                logits = output.logits if hasattr(output, "logits") else output
            return logits.float().cpu().numpy()


def load_inference_model(directory: Path) -> Any:
    """The artefact's classifier for scoring: textguard.encoder's plain-torch BERT/XLM-R when the
    config is one of those (no transformers import: most of a server's cold start), else transformers'."""
    from textguard import encoder

    config = encoder.read_config(directory)
    if not encoder.supports(config):
        return load_classifier(directory)
    try:
        return encoder.load(directory, config)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"{directory}: cannot load the model weights: {exc}") from None


def scoring_model(model: Any) -> Any:
    """What scores with an in-memory transformers model's weights: textguard.encoder's classifier when
    it runs that architecture (as `load_inference_model` would load the saved artefact), else the model."""
    from textguard import encoder

    return encoder.from_transformers(model) or model


def load_classifier(directory: Path) -> Any:
    """The transformers classifier of an artefact: safetensors only, no remote code, copied into memory.

    Memory-mapped weights would *be* the file: rewriting it in place would silently change a running
    server's answers, and truncating it would crash the process with SIGBUS.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(
            directory, use_safetensors=True, trust_remote_code=False, disable_mmap=True
        )
    except (OSError, ValueError, SafetensorError) as exc:
        raise ModelLoadError(f"{directory}: cannot load the model weights: {exc}") from None


class OnnxBackend:
    """ONNX Runtime session: no torch import, fast cold start."""

    name = "onnx"

    def __init__(self, path: Path, intra_op_threads: int | None = None, allow_spinning: bool = True) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise ModelLoadError(
                f"{path} not found: export it first with "
                f"`textguard export --model {path.parent} --format onnx`"
            )
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        if not allow_spinning:
            # Idle intra-op threads spin for a while before sleeping. On cores shared with an event
            # loop (the server) or other processes, that spinning is CPU taken from them: turning it
            # off cut CPU per message by ~35% and raised throughput ~1.5x on a loaded 2-core machine,
            # with identical logits (bench/serve_load.py prints CPU ms per message).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
            raise ModelLoadError(f"{path}: not a loadable ONNX model: {exc}") from None
        self.input_names = {item.name for item in self.session.get_inputs()}
        self.path = path

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        (logits,) = self.session.run(["logits"], feeds)
        return np.asarray(logits, dtype=np.float32)
