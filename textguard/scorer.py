"""The one scoring path: texts -> normalise -> tokenise into windows -> length-sorted batches -> logits ->
calibrated probabilities, the maximum over a text's windows per label.

Training metrics, evaluation, the HTTP service, the caption stream and batch scoring all go through
`Scorer` (or, for logits a Trainer already computed, through the same `postprocess` functions). Decisions
(policy, context, known content, audit) are made around it by `textguard.moderation.Moderator`.

Windows: a text longer than the model's max_length is read in overlapping windows (see
`encoding.encode_windows`) and each label takes its highest window, so words past the first max_length
tokens are scored too. The maximum of logits and the maximum of probabilities pick the same window
(temperature scaling and the sigmoid are increasing), so calibration fitted on `logits()` holds for
`predict_proba()`.

Fail closed: a non-finite logit anywhere raises `InvalidScoresError` instead of becoming a score.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

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
from textguard.encoding import (
    EncodedWindows,
    backend_tokenizer,
    encode,
    encode_windows,
    load_tokenizer,
    pad_batch,
    plan_batches,
    truncating_copy,
    untruncated_copy,
)
from textguard.errors import InvalidScoresError, ModelLoadError
from textguard.parity import (
    PrecisionChoice,
    RequestedPrecision,
    choose_precision,
    compiles_per_shape,
    read_parity,
)
from textguard.postprocess import Prediction, probabilities, to_predictions
from textguard.spec import ModelSpec, load_spec, verify_artifact

DEFAULT_BATCH_SIZE = 32
#: Padded tokens per forward pass (batch x longest): bounds memory for long inputs.
DEFAULT_MAX_TOKENS = 32 * 128


@dataclass(frozen=True)
class WindowScores:
    """Calibrated probabilities of every window of some texts, and which text each window belongs to."""

    #: [windows, labels]
    probabilities: np.ndarray
    #: [windows] index of the text each window belongs to (a text's windows are contiguous)
    owner: np.ndarray
    #: [start, end) character span of each window in its text's normalised form
    spans: list[tuple[int, int]]
    n_texts: int

    def per_text(self) -> np.ndarray:
        """[texts, labels]: each label's highest window."""
        out = np.full((self.n_texts, self.probabilities.shape[1]), -np.inf)
        np.maximum.at(out, self.owner, self.probabilities)
        return out

    def windows_of(self, text: int) -> np.ndarray:
        return np.flatnonzero(self.owner == text)

    def best_window(self, text: int, label: int) -> int:
        """Global index of the window that gives `text` its score for `label` (the first, on ties)."""
        windows = self.windows_of(text)
        return int(windows[int(np.argmax(self.probabilities[windows, label]))])

    def select(self, first_text: int, n_texts: int) -> WindowScores:
        """The windows of texts [first_text, first_text + n_texts), renumbered from 0."""
        rows = np.flatnonzero((self.owner >= first_text) & (self.owner < first_text + n_texts))
        return WindowScores(
            self.probabilities[rows],
            self.owner[rows] - first_text,
            [self.spans[row] for row in rows],
            n_texts,
        )


class DrainScores(NamedTuple):
    """What scoring a batch of texts yields: which text each window belongs to, the windows' character
    spans, and (indices, calibrated probabilities) per forward pass, in the order they ran."""

    owner: np.ndarray
    spans: list[tuple[int, int]]
    batches: Iterable[tuple[list[int], np.ndarray]]

    def collect(self, labels: int, n_texts: int) -> WindowScores:
        """Every pass's probabilities put in window order: the scores of all `n_texts` texts at once."""
        probabilities = np.zeros((len(self.owner), labels), dtype=np.float64)
        for batch, values in self.batches:
            probabilities[batch] = values
        return WindowScores(probabilities, self.owner, list(self.spans), n_texts)


class ScoringModel(Protocol):
    """What deciding needs of a model: `Scorer` in this process, or the service's
    `textguard.service.inference_process.ProcessScorer` (the same scorer in worker processes)."""

    spec: ModelSpec
    #: The precision the forward passes run in, and why it was chosen.
    precision: PrecisionChoice

    @property
    def backend_name(self) -> str: ...

    def score_drain(self, texts: Sequence[str], max_batch_size: int | None = None) -> DrainScores: ...

    def score_windows(self, texts: Sequence[str]) -> WindowScores: ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


class Scorer:
    def __init__(
        self,
        spec: ModelSpec,
        tokenizer: Any | None,
        backend: InferenceBackend,
        *,
        source: str = "",
        max_batch_size: int = DEFAULT_BATCH_SIZE,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        """`tokenizer` None: a scorer of token ids only (`iter_probabilities`), as the service's inference
        processes run it, whose server tokenises."""
        self.spec = spec
        self._truncating: Any = None
        self._truncating_lock = threading.Lock()
        self.window_tokenizer: Any = None
        if tokenizer is not None:
            given = backend_tokenizer(tokenizer)
            if given.truncation is None and given.padding is None:
                # Already untruncated (from_artifact): windows use it, and `encode()`'s truncating copy
                # is made on first use. The service only ever needs windows; each copy of e5's
                # 250k-piece tokenizer costs half a second of cold start.
                self.window_tokenizer = given
            else:
                self._truncating = given
                # Windows read whole texts: a private copy that never truncates
                # (encoding.untruncated_copy).
                self.window_tokenizer = untruncated_copy(given)
        self.backend = backend
        self.source = source
        self.max_batch_size = max_batch_size
        self.max_tokens = max(max_tokens, spec.max_length)
        # from_artifact replaces this with the choice it made and why.
        bf16 = bool(getattr(backend, "autocast_bf16", False))
        self.precision = PrecisionChoice("bf16" if bf16 else "fp32", "as the backend given was built")

    @classmethod
    def from_artifact(
        cls,
        uri: str | Path,
        backend: BackendName = "torch",
        *,
        device: str = "cpu",
        quantized: bool = False,
        precision: RequestedPrecision = "fp32",
        verify: bool = True,
        verified: bool = False,
        intra_op_threads: int | None = None,
        allow_spinning: bool = True,
        with_tokenizer: bool = True,
        **options: Any,
    ) -> Scorer:
        """Load a scorer from a directory, `runs:/<id>/model` or `models:/<name>@<alias>`.

        Checksums recorded in the spec are verified: a tampered or truncated file is refused (nothing
        is returned). The hashing runs beside the loading (hashlib releases the GIL: e5's 470 MB take
        0.4 s, as long as its tokenizer); `verified=True` says the caller has just verified this
        directory itself (`textguard serve` does, before it binds), so it is not hashed twice.
        `precision` (torch): fp32 (the reference), bf16, or auto = bf16 where the device has bf16 units
        and the artefact's recorded bf16 parity holds (textguard.parity.choose_precision). The service,
        `textguard evaluate` and batch scoring default to auto, so on one machine they score alike;
        `scorer.precision` says what was chosen and why.
        `intra_op_threads` and `allow_spinning` configure the ONNX Runtime session (ignored by torch,
        whose threads follow torch.set_num_threads / OMP_NUM_THREADS / OMP_WAIT_POLICY).
        """
        directory = resolve_artifact(uri)
        spec = load_spec(directory)
        with verified_beside(directory, spec, enabled=verify and not verified):
            tokenizer = load_tokenizer(directory, spec.max_length, truncate=False) if with_tokenizer else None
            # The parity record is read only from a verified artefact (its checksum is in the manifest).
            chosen = choose_precision(
                precision,
                backend=backend,
                device=device,
                parity=read_parity(directory, spec) if verify else None,
            )
            engine = _engine(directory, backend, device, quantized, chosen, intra_op_threads, allow_spinning)
            if precision == "auto" and chosen.precision == "bf16" and compiles_per_shape(engine):
                engine.autocast_bf16 = False  # type: ignore[attr-defined]
                chosen = PrecisionChoice(
                    "fp32",
                    "bf16 compiles a kernel per new input shape on this CPU (first passes measured slow)",
                )
        scorer = cls(spec, tokenizer, engine, source=str(uri), **options)
        scorer.precision = chosen
        return scorer

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, spec: ModelSpec, **options: Any) -> Scorer:
        """Score with an in-memory transformers model (used right after training), through the module
        that will serve its artefact (textguard.encoder where it runs the architecture), so calibration,
        test metrics and the bf16 parity record describe what is served."""
        from textguard.backends import scoring_model

        backend = TorchBackend(scoring_model(model), device=str(model.device))
        return cls(spec, tokenizer, backend, source="memory", **options)

    @property
    def tokenizer(self) -> Any:
        """The truncating tokenizer of `encode()` (what training sees)."""
        with self._truncating_lock:
            if self._truncating is None:
                self._truncating = truncating_copy(self._window_tokenizer(), self.spec.max_length)
            return self._truncating

    # -- the scoring path -------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """One truncated sequence per text (its first window): what training sees, and warm-ups use."""
        return encode(texts, self.tokenizer, self.spec.max_length, self.spec.text_prefix)["input_ids"]

    def windows(self, texts: Sequence[str]) -> EncodedWindows:
        """Normalise and tokenise whole texts into windows of the model's max_length."""
        return encode_windows(
            texts, self._window_tokenizer(), self.spec.max_length, prefix=self.spec.text_prefix
        )

    def _window_tokenizer(self) -> Any:
        if self.window_tokenizer is None:
            raise ModelLoadError("this scorer was loaded without a tokenizer: it scores token ids only")
        return self.window_tokenizer

    def iter_logits(
        self, input_ids: Sequence[Sequence[int]], max_batch_size: int | None = None
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """(indices, logits) per forward pass, in length-sorted, token-bounded batches.

        Every batch is checked before it is handed on: a non-finite logit raises InvalidScoresError.
        """
        lengths = [len(ids) for ids in input_ids]
        for batch in plan_batches(lengths, max_batch_size or self.max_batch_size, self.max_tokens):
            ids, mask = pad_batch([input_ids[index] for index in batch], self.spec.pad_token_id)
            logits = np.asarray(self.backend(ids, mask))
            if not np.isfinite(logits).all():
                raise InvalidScoresError("the model produced invalid scores; the texts were not scored")
            yield batch, logits

    def iter_probabilities(
        self, input_ids: Sequence[Sequence[int]], max_batch_size: int | None = None
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """(indices, calibrated probabilities) per forward pass; see `iter_logits`."""
        for batch, logits in self.iter_logits(input_ids, max_batch_size):
            yield batch, probabilities(logits, self.spec)

    def score_drain(self, texts: Sequence[str], max_batch_size: int | None = None) -> DrainScores:
        """Windows of `texts` and their probabilities, one forward pass at a time (lazily: the service's
        batcher answers a request as soon as the pass holding its last window is done)."""
        windows = self.windows(texts)
        return DrainScores(
            np.asarray(windows.owner, dtype=np.int64),
            windows.spans,
            self.iter_probabilities(windows.input_ids, max_batch_size),
        )

    @property
    def backend_name(self) -> str:
        return str(getattr(self.backend, "name", type(self.backend).__name__))

    def logits_from_ids(self, input_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits [n, labels] in input order, one row per id sequence."""
        out = np.zeros((len(input_ids), len(self.spec.labels)), dtype=np.float32)
        for batch, logits in self.iter_logits(input_ids):
            out[batch] = logits
        return out

    def score_windows(self, texts: Sequence[str]) -> WindowScores:
        """Calibrated probabilities of every window of `texts`."""
        return self.score_drain(texts).collect(len(self.spec.labels), len(texts))

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Logits [n, labels]: per label, the text's highest window (what calibration is fitted on)."""
        if not texts:
            return np.zeros((0, len(self.spec.labels)), dtype=np.float32)
        windows = self.windows(texts)
        out = np.full((len(texts), len(self.spec.labels)), -np.inf, dtype=np.float32)
        owner = np.asarray(windows.owner, dtype=np.int64)
        for batch, logits in self.iter_logits(windows.input_ids):
            np.maximum.at(out, owner[batch], logits)
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities [n, labels] (temperature from the spec), whole texts covered."""
        return probabilities(self.logits(texts), self.spec)

    def score(self, texts: Sequence[str]) -> list[Prediction]:
        return to_predictions(self.predict_proba(texts), self.spec)


#: Warm-up sequences, in tokens besides the two special ones: short chat, typical, and (added in
#: `warm_up`) one full window of the model's max_length. Several windows in one pass (512 words) cost
#: e5 0.45 s of its cold start.
WARMUP_WORDS = (4, 24)


def warm_up(scorer: Scorer, batch_size: int) -> None:
    """Forward passes at a few lengths and at the serving batch size, so the first requests don't pay
    for lazy initialisation (allocator growth, kernel selection, oneDNN primitive caches). Token ids
    only (what ids they are does not matter), so a scorer without a tokenizer warms up alike."""
    # Every length alone, the shortest also at the serving batch size: a long text at the full batch
    # size cost e5 about a second of cold start and primes nothing the others do not.
    filler = scorer.spec.pad_token_id + 1
    for words in (*WARMUP_WORDS, scorer.spec.max_length):
        length = min(words + 2, scorer.spec.max_length)  # the words and the two special tokens
        for size in sorted({1, batch_size}) if words == min(WARMUP_WORDS) else (1,):
            scorer.logits_from_ids([[filler] * length] * size)


@contextmanager
def verified_beside(directory: Path, spec: ModelSpec, *, enabled: bool) -> Iterator[None]:
    """Hash the artefact's files in a thread while the body loads them (hashlib releases the GIL), and
    raise its integrity error at the end: what was built from a tampered file is never returned, and a
    load that failed on one reports the tampering rather than its own error."""
    if not enabled:
        yield
        return
    with ThreadPoolExecutor(1, thread_name_prefix="textguard-verify") as pool:
        verification = pool.submit(verify_artifact, directory, spec)
        try:
            yield
        except Exception:
            verification.result()
            raise
        verification.result()


def _engine(
    directory: Path,
    backend: BackendName,
    device: str,
    quantized: bool,
    chosen: PrecisionChoice,
    intra_op_threads: int | None,
    allow_spinning: bool,
) -> InferenceBackend:
    if backend == "torch":
        return TorchBackend.from_directory(
            directory,
            device=device,
            autocast_bf16=chosen.precision == "bf16",
            attention=chosen.attention,
            last_layer=chosen.last_layer,
        )
    if backend == "onnx":
        return OnnxBackend(
            directory / (ONNX_INT8_FILE if quantized else ONNX_FILE),
            intra_op_threads=intra_op_threads,
            allow_spinning=allow_spinning,
        )
    raise ModelLoadError(f"unknown backend {backend!r}: choose torch or onnx")
