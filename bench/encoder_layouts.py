"""Forward-pass cost of textguard.encoder's computation choices, in the same process, taking turns.

Two choices, each compared with the other option held at its default (`--compare`):

- attention: per-sequence (the default: each sequence of a drain attends alone over its real tokens, no
  mask) against padded (the drain scattered back into [batch, length], attending at once under a
  padding mask: the layout of bf16 parity records written before per-sequence attention existed);
- last-layer: first-token (the default: the last layer computes only each sequence's first-token row,
  all the pooler reads) against all-tokens (every row, as transformers does and as bf16 parity records
  written before first-token existed were measured).

Everything but attention runs on the real tokens only in every variant. For each drain size, random
drains of the bench texts (the seed set, as bench/serve_load.py uses) go through
`Scorer.predict_proba` (tokenise, forward, probabilities) on one thread, as one inference worker runs
them; the two options alternate six times and the median ms per text of each is printed with their
ratio. Then how far apart their probabilities are on 512 texts, in fp32 (should be ~1e-7) and in bf16
(rounding: the reason a bf16 parity record names both choices).

    python bench/encoder_layouts.py                            # MiniLM, bf16, drains of 1-32, attention
    python bench/encoder_layouts.py --compare last-layer
    python bench/encoder_layouts.py --backbone e5 --drains 8 32
    python bench/encoder_layouts.py --precision fp32
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from serve_load import build_artifact, load_texts  # noqa: E402

#: --compare -> (the encoder's setter, its two options: the default first)
CHOICES = {
    "attention": ("set_attention", ("per-sequence", "padded")),
    "last-layer": ("set_last_layer", ("first-token", "all-tokens")),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", choices=["minilm", "e5"], default="minilm")
    parser.add_argument("--model", type=Path, help="an existing artefact directory (default: build one)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--compare", choices=sorted(CHOICES), default="attention")
    parser.add_argument("--drains", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--turns", type=int, default=6, help="alternations per drain size (median taken)")
    parser.add_argument("--texts-per-turn", type=int, default=256)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="textguard-layouts-") as tmp:
        model = args.model or build_artifact(Path(tmp) / "model", args.backbone, 128)
        run(model, args)


def run(model: Path, args: argparse.Namespace) -> None:
    from textguard.scorer import Scorer

    scorer = Scorer.from_artifact(model, precision=args.precision, intra_op_threads=1)
    encoder = scorer.backend.model  # type: ignore[attr-defined]
    setter_name, options = CHOICES[args.compare]
    if not hasattr(encoder, setter_name):
        raise SystemExit(f"{model} is not run by textguard.encoder: no {args.compare} options to compare")
    setter = getattr(encoder, setter_name)
    ours_name, theirs_name = options
    texts = load_texts(2000)
    rng = random.Random(0)
    print(f"{model} ({args.precision}, one thread, {args.compare})", end="; ")
    print(f"ms per text, median of {args.turns} turns\n")
    print(f"| texts per drain | {ours_name} | {theirs_name} | {theirs_name} / {ours_name} |")
    print("|---|---|---|---|")
    for size in args.drains:
        drains = [rng.sample(texts, size) for _ in range(max(8, args.texts_per_turn // size))]
        for option in options:  # warm-up: oneDNN primitives for these shapes
            setter(option)
            for drain in drains[:3]:
                scorer.predict_proba(drain)
        times: dict[str, list[float]] = {option: [] for option in options}
        for turn in range(args.turns):
            for option in options if turn % 2 == 0 else options[::-1]:
                setter(option)
                started = time.perf_counter()
                for drain in drains:
                    scorer.predict_proba(drain)
                times[option].append((time.perf_counter() - started) * 1000 / (len(drains) * size))
        ours, theirs = (statistics.median(times[option]) for option in options)
        print(f"| {size} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.2f}x |")
    sample = texts[:512]
    for bf16 in (False, True):
        scorer.backend.autocast_bf16 = bf16  # type: ignore[attr-defined]
        probabilities = {}
        for option in options:
            setter(option)
            probabilities[option] = scorer.predict_proba(sample)
        difference = float(np.abs(probabilities[ours_name] - probabilities[theirs_name]).max())
        name = "bf16" if bf16 else "fp32"
        print(f"\n{name}: max |prob diff| between the options on {len(sample)} texts: {difference:.2g}")


if __name__ == "__main__":
    main()
