"""The one scoring path: texts -> normalise -> tokenise -> length-sorted batches -> logits -> decisions.

Training metrics, evaluation, the HTTP service, the caption stream and batch scoring all go through
`Scorer` (or, for logits a Trainer already computed, through the same `postprocess` functions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textguard.artifact import resolve_artifact
from textguard.backends import (
    ONNX_FILE,
    ONNX_INT8_FILE,
    BackendName,
    InferenceBackend,
    OnnxBackend,
    TorchBackend,
)
from textguard.encoding import backend_tokenizer, encode, load_tokenizer, pad_batch, plan_batches
from textguard.errors import ModelLoadError
from textguard.postprocess import Prediction, probabilities, to_predictions
from textguard.spec import ModelSpec, load_spec, verify_artifact

DEFAULT_BATCH_SIZE = 32
#: Padded tokens per forward pass (batch x longest): bounds memory for long inputs.
DEFAULT_MAX_TOKENS = 32 * 128


class Scorer:
    def __init__(
        self,
        spec: ModelSpec,
        tokenizer: Any,
        backend: InferenceBackend,
        *,
        source: str = "",
        max_batch_size: int = DEFAULT_BATCH_SIZE,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self.spec = spec
        self.tokenizer = backend_tokenizer(tokenizer)
        self.backend = backend
        self.source = source
        self.max_batch_size = max_batch_size
        self.max_tokens = max(max_tokens, spec.max_length)

    @classmethod
    def from_artifact(
        cls,
        uri: str | Path,
        backend: BackendName = "torch",
        *,
        device: str = "cpu",
        quantized: bool = False,
        autocast_bf16: bool = False,
        verify: bool = True,
        intra_op_threads: int | None = None,
        allow_spinning: bool = True,
        **options: Any,
    ) -> Scorer:
        """Load a scorer from a directory, `runs:/<id>/model` or `models:/<name>@<alias>`.

        Checksums recorded in the spec are verified first: a tampered or truncated file is refused.
        `intra_op_threads` and `allow_spinning` configure the ONNX Runtime session (ignored by torch,
        whose threads follow torch.set_num_threads / OMP_NUM_THREADS / OMP_WAIT_POLICY).
        """
        directory = resolve_artifact(uri)
        spec = load_spec(directory)
        if verify:
            verify_artifact(directory, spec)
        tokenizer = load_tokenizer(directory, spec.max_length)
        engine: InferenceBackend
        if backend == "torch":
            engine = TorchBackend.from_directory(directory, device=device, autocast_bf16=autocast_bf16)
        elif backend == "onnx":
            engine = OnnxBackend(
                directory / (ONNX_INT8_FILE if quantized else ONNX_FILE),
                intra_op_threads=intra_op_threads,
                allow_spinning=allow_spinning,
            )
        else:
            raise ModelLoadError(f"unknown backend {backend!r}: choose torch or onnx")
        return cls(spec, tokenizer, engine, source=str(uri), **options)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, spec: ModelSpec, **options: Any) -> Scorer:
        """Wrap an in-memory transformers model (used right after training)."""
        return cls(spec, tokenizer, TorchBackend(model, device=str(model.device)), source="memory", **options)

    # -- the scoring path -------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return encode(texts, self.tokenizer, self.spec.max_length, self.spec.text_prefix)["input_ids"]

    def logits_from_ids(self, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits [n, labels] in input order, computed in length-sorted, token-bounded batches."""
        out = np.zeros((len(input_ids), len(self.spec.labels)), dtype=np.float32)
        lengths = [len(ids) for ids in input_ids]
        for batch in plan_batches(lengths, self.max_batch_size, self.max_tokens):
            ids, mask = pad_batch([input_ids[index] for index in batch], self.spec.pad_token_id)
            out[batch] = self.backend(ids, mask)
        return out

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.spec.labels)), dtype=np.float32)
        return self.logits_from_ids(self.encode(texts))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities [n, labels] (temperature from the spec)."""
        return probabilities(self.logits(texts), self.spec)

    def score(self, texts: Sequence[str]) -> list[Prediction]:
        return to_predictions(self.predict_proba(texts), self.spec)
