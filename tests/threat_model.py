"""A tiny model that really knows a threat, for the checks of the decision path (split messages, windows).

Tiny random models know nothing, and the checks must fail when the path is wrong, so no mocks and no
hand-set weights: `train_threat_model` FINE-TUNES a tiny BERT for a few seconds (real gradient descent,
fixed seed) on the English `threat_split_caption_h` rows of the meeting functional suite, where each test
case is a threat in two parts joined by " || ". Every step draws a fresh batch: positives are the two
parts joined with a space (exactly how the moderator joins a speaker's messages) after a cut of everyday
chat of up to half a window or after a benign caption; negatives are either part alone in the same
places, benign captions, the suite's other non-hateful rows, and everyday chat cut anywhere (the middle
windows of a long message start mid-sentence) and long enough to fill every position of the model. Fresh
cuts every step are what make it learn the threat rather than the positions of the words around it.

So, by construction and checked by the tests before they rely on it: each part alone scores below the
review threshold, the joined threat above it, chat below it. With windows that overlap by half, a threat of
up to half a window always lies in some window behind at most half a window of other text, which is what
the model learned to see through. What this does not show is that a production model generalises to
unseen threats: that is the evaluation suite's job.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from textguard.paths import project_root

SUITE = Path("textguard/resources/suites/meeting_functional.csv")
#: The default policy's review threshold for every label, and the spec thresholds of the model.
REVIEW = 0.5
MAX_LENGTH = 64
#: Tokens of text in half a window ([CLS] and [SEP] aside): the most chat the model reads past.
HALF_WINDOW = (MAX_LENGTH - 2) // 2
STEPS = 400
BATCH = 32


def suite_rows() -> list[dict[str, str]]:
    with (project_root() / SUITE).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def split_pairs() -> list[tuple[str, str]]:
    """The English split threats of the meeting suite: (first part, second part)."""
    pairs = []
    for row in suite_rows():
        if row["functionality"] == "threat_split_caption_h" and row["language"] == "en":
            first, second = row["test_case"].split(" || ")
            pairs.append((first, second))
    return pairs


def benign_captions() -> list[str]:
    """The English benign captions of the meeting suite (hard negatives: "shoot me an email")."""
    return [
        row["test_case"].replace(" || ", " ")
        for row in suite_rows()
        if row["functionality"] == "caption_benign_nh" and row["language"] == "en"
    ]


def other_benign() -> list[str]:
    """Text the model must also allow: the suite's non-hateful rows and chat in other languages."""
    corpus = Path(__file__).parent / "data" / "tokenizer_corpus.txt"
    rows = [
        row["test_case"].replace(" || ", " ")
        for row in suite_rows()
        if row["functionality"].endswith("_nh") and row["language"] == "en"
    ]
    return rows + [line for line in corpus.read_text(encoding="utf-8").splitlines() if line]


def chat_lines() -> list[str]:
    """Everyday English meeting chat (the test tokenizer corpus)."""
    corpus = Path(__file__).parent / "data" / "tokenizer_corpus.txt"
    return [line for line in corpus.read_text(encoding="utf-8").splitlines() if line][:8]


def padding(characters: int = 400) -> str:
    """Benign chat of at least `characters` characters (everyday meeting chat, repeated in turn)."""
    lines = chat_lines()
    parts: list[str] = []
    while len(" ".join(parts)) < characters:
        parts.append(lines[len(parts) % len(lines)])
    return " ".join(parts)


def train_threat_model(directory: Path) -> Path:
    """Fine-tune a tiny BERT on the split-threat pattern (see the module docstring) and save it."""
    import torch

    from textguard.artifact import build_spec, save_artifact
    from textguard.labels import label2id
    from textguard.text import normalize
    from textguard.training.tiny_model import build_tiny_model

    pairs, benign, chat, others = split_pairs(), benign_captions(), chat_lines(), other_benign()
    assert len(pairs) >= 4 and len(benign) >= 4, "the meeting suite lost its English caption rows"
    words = padding(1200).split()
    rng = random.Random(0)

    def chat_cut(count: int) -> str:
        start = rng.randrange(len(words) - count)
        return " ".join(words[start : start + count])

    def positive() -> str:
        a, b = rng.choice(pairs)
        draw = rng.random()
        prefix = chat_cut(rng.randrange(0, HALF_WINDOW)) if draw < 0.8 else rng.choice(benign)
        return f"{prefix} {a} {b}".strip()

    def negative() -> str:
        a, b = rng.choice(pairs)
        draw = rng.random()
        if draw < 0.5:
            # Either part after chat, sometimes cut short as a window boundary would cut it.
            part = rng.choice([a, b]).split()
            if rng.random() < 0.3:
                part = part[: rng.randrange(1, len(part))]
            return f"{chat_cut(rng.randrange(0, HALF_WINDOW))} {' '.join(part)}".strip()
        if draw < 0.66:
            caption, part = rng.choice(benign), rng.choice([a, b])
            return f"{part} {caption}" if draw < 0.58 else f"{caption} {part}"
        if draw < 0.85:
            return chat_cut(70)
        if draw < 0.9:
            return f"{rng.choice(benign)} {rng.choice(benign)}"
        return rng.choice(chat + benign + others)

    torch.set_num_threads(1)  # the CI machine is small and shared; one thread is the fastest here
    torch.manual_seed(0)
    model, tokenizer = build_tiny_model(
        "bert",
        [*chat, *benign, *others, *(f"{a} {b}" for a, b in pairs)],
        vocab_size=1000,
        max_length=MAX_LENGTH,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    labels = torch.zeros((BATCH, 3))
    labels[: BATCH // 2, label2id["violent_threat"]] = 1.0
    model.eval()  # no dropout: deterministic steps
    for _step in range(STEPS):
        texts = [positive() for _ in range(BATCH // 2)] + [negative() for _ in range(BATCH // 2)]
        batch = tokenizer(
            [normalize(text) for text in texts],
            padding=True,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
        )
        optimizer.zero_grad()
        loss = loss_fn(model(**batch).logits, labels)
        loss.backward()
        optimizer.step()
    final_loss = float(loss.detach())
    assert final_loss < 0.1, f"the threat model did not learn (loss {final_loss:.3f} after {_step + 1} steps)"
    spec = build_spec(
        max_length=MAX_LENGTH, pad_token_id=tokenizer.pad_token_id, base_model="tiny-bert-threats"
    )
    save_artifact(model, tokenizer, spec, directory)
    return directory
