"""Known-content fingerprints compared on public corpora: what survives light edits, false matches, speed.

Methods (each listed item is fingerprinted; a query matches if it is within the method's threshold):
- sha256:       textguard's exact fingerprint of the canonical text (textguard/known_content/fingerprint.py);
- minhash:      textguard's 128-slot MinHash of 5-character shingles of the canonical text, distance <= 64;
- minhash-any:  the same without the 50-character minimum: why short texts (slogans) get the exact hash only;
- tlsh:         TLSH (py-tlsh) of the same canonical text, tlsh.diffxlen <= 30, the threshold of
                ThreatExchange's TextTLSHSignal;
- tx-tlsh:      ThreatExchange's TextTLSHSignal as shipped: TLSH of the raw text, its own compare_hash;
- tx-raw-text:  ThreatExchange's RawTextSignal: Levenshtein distance of its normalised strings within 5%;
                it shares the content itself, not a hash, and is shown as a reference point.

Listed items are Stormfront forum posts (the sentences of one post joined). Light edits of each listed
item: `case` (upper-cased), `punct` (sentence punctuation dropped, "!!" added), `word1` / `word2` (one or
two words of 3-8 letters replaced). False matches: HatEval 2019 (English) and Implicit Hate posts of the
same length bucket, the same topics (hate, immigration, white supremacy) from other corpora, so none is a
copy of a listed post; the share of them that match any listed item. Buckets are canonical-text lengths.
Speed: microseconds to fingerprint one message, and per comparison with one listed entry (the linear scan
the index does; vectorised for minhash as in KnownContentIndex.match). The last table gives minhash's
edit recall and false matches as ratios against tlsh, the fuzzy hash the issue proposed.

    python bench/known_content.py                          # about 1-2 minutes on 2 cores
    python bench/known_content.py --listed 100 --queries 1000

tlsh and the tx-* methods need `pip install py-tlsh threatexchange` (not project dependencies: see
docs/known-content.md); without them those rows are skipped. Skips (exit 0) when the public datasets
(../shared/datasets, or $TEXTGUARD_SHARED_DATASETS) are absent.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from textguard.known_content.fingerprint import (
    MAX_FUZZY_DISTANCE,
    MIN_FUZZY_CHARS,
    canonical_text,
    exact_hash,
    minhash,
)
from textguard.paths import shared_datasets_dir
from textguard.text import normalize

BUCKETS = ((20, 50), (50, 100), (100, 200), (200, 500), (500, 2000))
EDITS = ("case", "punct", "word1", "word2")
REPLACEMENTS = ("people", "them", "today", "never", "really", "house", "brother", "small")
TLSH_THRESHOLD = 30  # ThreatExchange's TLSH_CONFIDENT_MATCH_THRESHOLD


@dataclass
class Method:
    name: str
    fingerprint: Callable[[str], Any]  # raw text -> fingerprint or None (no fingerprint: too short)
    matches: Callable[[Any, Any], bool]  # (listed, query) -> match
    needs_content: bool = False
    errors: int = 0  # comparisons the method could not make (counted as no match)
    queries: int | None = None  # fewer false-match queries than --queries (a slow method)
    timings: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def canonical(text: str) -> str:
    return canonical_text(normalize(text))


def methods() -> list[Method]:
    found = [
        Method("sha256", lambda text: exact_hash(key) if (key := canonical(text)) else None, str.__eq__),
        Method("minhash", lambda text: minhash(canonical(text)), _minhash_matches),
        Method("minhash-any", lambda text: minhash(canonical(text), min_chars=0), _minhash_matches),
    ]
    try:
        import tlsh

        def tlsh_of(text: str) -> str | None:
            value = str(tlsh.hash(canonical(text).encode("utf-8")))
            return None if value == "TNULL" else value

        found.append(Method("tlsh", tlsh_of, lambda a, b: tlsh.diffxlen(a, b) <= TLSH_THRESHOLD))
    except ImportError:
        print("py-tlsh not installed: tlsh skipped (pip install py-tlsh)")
    try:
        from threatexchange.extensions.tlsh.text_tlsh import TextTLSHSignal
        from threatexchange.signal_type.raw_text import RawTextSignal

        found.append(
            Method(
                "tx-tlsh",
                lambda text: TextTLSHSignal.hash_from_str(text) or None,
                lambda a, b: TextTLSHSignal.compare_hash(a, b).match,
            )
        )
        # Levenshtein per pair is slow (about 1 ms): fewer queries keep the run short.
        raw_text = Method(
            "tx-raw-text", lambda text: text, lambda a, b: False, needs_content=True, queries=300
        )

        def raw_text_matches(listed: str, query: str) -> bool:
            try:
                return bool(RawTextSignal.matches_str(listed, query).match)
            except UnicodeEncodeError:  # its Levenshtein library takes ASCII only
                raw_text.errors += 1
                return False

        raw_text.matches = raw_text_matches
        found.append(raw_text)
    except ImportError:
        print("threatexchange not installed: tx-tlsh and tx-raw-text skipped (pip install threatexchange)")
    return found


def _minhash_matches(a: bytes, b: bytes) -> bool:
    return sum(x != y for x, y in zip(a, b, strict=True)) <= MAX_FUZZY_DISTANCE


# -- data ------------------------------------------------------------------------------------------


def load_corpora(root: Path) -> tuple[list[str], list[str]]:
    """Stormfront posts and their sentences (listed); HatEval + Implicit Hate posts (queries)."""
    sentences: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for path in (root / "stormfront" / "all_files").glob("*.txt"):
        post, number = path.stem.rsplit("_", 1)
        sentences[post].append((int(number), path.read_text(encoding="utf-8", errors="replace").strip()))
    listed = [" ".join(text for _, text in sorted(parts)) for _, parts in sorted(sentences.items())]
    # Single sentences too: few whole posts are as short as a slogan.
    listed += [text for _, parts in sorted(sentences.items()) if len(parts) > 1 for _, text in sorted(parts)]
    queries: list[str] = []
    for name in ("hateval2019_en_train.csv", "hateval2019_en_dev.csv", "hateval2019_en_test.csv"):
        with (root / "hateval2019" / name).open(encoding="utf-8", newline="") as handle:
            queries += [row["text"] for row in csv.DictReader(handle)]
    with (root / "implicit_hate" / "implicit_hate_v1_stg1_posts.tsv").open(
        encoding="utf-8", newline=""
    ) as handle:
        queries += [row["post"] for row in csv.DictReader(handle, delimiter="\t")]
    # Links and mentions are noise no listed item shares; drop them so lengths mean text.
    queries = [re.sub(r"https?://\S+|@\w+", "", text).strip() for text in queries]
    return listed, queries


def by_bucket(texts: list[str], count: int, seed: int) -> dict[tuple[int, int], list[str]]:
    buckets: dict[tuple[int, int], list[str]] = {bucket: [] for bucket in BUCKETS}
    seen: set[str] = set()
    for text in texts:
        key = canonical(text)
        if key in seen:
            continue
        seen.add(key)
        for low, high in BUCKETS:
            if low <= len(key) < high:
                buckets[(low, high)].append(text)
    rng = random.Random(seed)
    for bucket, items in buckets.items():
        rng.shuffle(items)
        buckets[bucket] = items[:count]
    return buckets


def edit(text: str, kind: str, rng: random.Random) -> str | None:
    if kind == "case":
        return text.upper()
    if kind == "punct":
        return re.sub(r"[,.!?;:]+(?=\s|$)", "", text) + " !!"
    words = text.split()
    candidates = [index for index, word in enumerate(words) if word.isalpha() and 3 <= len(word) <= 8]
    wanted = 1 if kind == "word1" else 2
    if len(candidates) < wanted:
        return None
    for index in rng.sample(candidates, wanted):
        words[index] = rng.choice([word for word in REPLACEMENTS if word != words[index].lower()])
    return " ".join(words)


# -- measurement -----------------------------------------------------------------------------------


def timed(method: Method, key: str, function: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = function()
    method.timings[key].append(time.perf_counter() - started)
    return result


def measure(method: Method, listed: list[str], queries: list[str], seed: int) -> dict[str, Any]:
    listed_fps = [timed(method, "fingerprint", lambda text=text: method.fingerprint(text)) for text in listed]
    usable = [(text, fp) for text, fp in zip(listed, listed_fps, strict=True) if fp is not None]
    row: dict[str, Any] = {"no_fingerprint": 1 - len(usable) / max(1, len(listed))}
    rng = random.Random(seed)
    for kind in EDITS:
        hits = total = 0
        for text, fp in usable:
            edited = edit(text, kind, rng)
            if edited is None:
                continue
            query = method.fingerprint(edited)
            total += 1
            hits += query is not None and bool(method.matches(fp, query))
        row[kind] = hits / total if total else float("nan")
    queries = queries[: method.queries] if method.queries else queries
    query_fps = [timed(method, "fingerprint", lambda text=text: method.fingerprint(text)) for text in queries]
    listed_only = [fp for _, fp in usable]
    false = 0
    if method.name.startswith("minhash") and listed_only:
        matrix = np.frombuffer(b"".join(listed_only), dtype=np.uint8).reshape(len(listed_only), -1)
        for fp in query_fps:
            if fp is None:
                continue
            distances = matrix.shape[1] - (matrix == np.frombuffer(fp, dtype=np.uint8)).sum(axis=1)
            false += bool((distances <= MAX_FUZZY_DISTANCE).any())
    else:
        for fp in query_fps:
            if fp is None:
                continue
            false += any(method.matches(listed_fp, fp) for listed_fp in listed_only)
    row["false"] = false / max(1, sum(fp is not None for fp in query_fps))
    row["false_count"] = false
    return row


SPEED_ENTRIES = 10_000


def _ratio(kind: str, ours: float, theirs: float) -> str:
    return f"{kind} {ours / theirs:.1f}x" if theirs else f"{kind} {ours:.2f} vs 0"


def print_match_latency(pool: list[str]) -> None:
    """KnownContentIndex.match per message, by length, with SPEED_ENTRIES exact + fuzzy entries."""
    from textguard.known_content import HashEntry, HashList, KnownContentIndex
    from textguard.known_content.fingerprint import fingerprints

    entries = []
    for text in pool[:SPEED_ENTRIES]:
        entries += [HashEntry(kind, value, "2026-01-01T00:00:00Z") for kind, value in fingerprints(text)]
    index = KnownContentIndex([HashList("bench", 1, "2026-01-01T00:00:00Z", tuple(entries))])
    print(f"\nKnownContentIndex.match on normalised text, {len(index):,} entries (median of the bucket):")
    messages = [normalize(text) for text in random.Random(0).sample(pool, min(len(pool), 2000))]
    for low, high in ((50, 100), (100, 300), (300, 1000), (1000, 10_001)):
        sample = [text for text in messages if low <= len(text) < high][:100]
        if high > 10_000:  # the longest messages normalize() lets through
            sample = [" ".join(messages)[:10_000]] * 5
        costs = []
        for text in sample:
            started = time.perf_counter()
            index.match(text)
            costs.append(time.perf_counter() - started)
        if costs:
            median_us = 1e6 * float(np.median(costs))
            print(f"  {low:>5}-{high - 1:<5} chars  {median_us:8.1f} us  ({len(costs)} messages)")


def compare_cost(method: Method, pool: list[str]) -> float:
    """Microseconds per listed entry to compare one query, in the tightest loop the method allows."""
    entries = [fp for fp in (method.fingerprint(text) for text in pool[:SPEED_ENTRIES]) if fp is not None]
    entries = (entries * (SPEED_ENTRIES // max(1, len(entries)) + 1))[:SPEED_ENTRIES]
    queries = [fp for fp in (method.fingerprint(text) for text in pool[-50:]) if fp is not None]
    if method.needs_content:  # about 1 ms per pair: a sample is enough
        entries, queries = entries[:500], queries[:4]
    if not entries or not queries:
        return float("nan")
    started = time.perf_counter()
    if method.name == "sha256":  # a dict lookup, whatever the list size
        table = dict.fromkeys(entries)
        for query in queries:
            _ = query in table
    elif method.name.startswith("minhash"):  # vectorised, as KnownContentIndex.match does
        matrix = np.frombuffer(b"".join(entries), dtype=np.uint8).reshape(len(entries), -1)
        for query in queries:
            agree = (matrix == np.frombuffer(query, dtype=np.uint8)).sum(axis=1, dtype=np.int32)
            _ = matrix.shape[1] - agree <= MAX_FUZZY_DISTANCE
    else:
        for query in queries:
            for entry in entries:
                method.matches(entry, query)
    return 1e6 * (time.perf_counter() - started) / (len(queries) * len(entries))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listed", type=int, default=150, help="listed items per length bucket")
    parser.add_argument("--queries", type=int, default=2000, help="unrelated queries per length bucket")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = shared_datasets_dir()
    if not (root / "stormfront").is_dir() or not (root / "hateval2019").is_dir():
        print(f"public datasets not found under {root}: skipped")
        return 0
    started = time.perf_counter()
    listed_texts, query_texts = load_corpora(root)
    listed = by_bucket(listed_texts, args.listed, args.seed)
    # A query that is the very same text as a listed item (reposted between corpora) is no test of a
    # false match: drop exact copies.
    listed_keys = {canonical(text) for texts in listed.values() for text in texts}
    copies = [text for text in query_texts if canonical(text) in listed_keys]
    query_texts = [text for text in query_texts if canonical(text) not in listed_keys]
    queries = by_bucket(query_texts, args.queries, args.seed + 1)
    print(f"{len(copies)} queries dropped as exact copies of listed items")
    print(f"corpora read in {time.perf_counter() - started:.1f}s (min fuzzy length {MIN_FUZZY_CHARS} chars)")
    results: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    measured = methods()
    for method in measured:
        results[method.name] = {}
        for bucket in BUCKETS:
            results[method.name][bucket] = measure(method, listed[bucket], queries[bucket], args.seed)
        print(f"measured {method.name} ({time.perf_counter() - started:.0f}s)", flush=True)

    header = f"{'method':<12}{'chars':>10}{'listed':>7}{'no fp':>7}" + "".join(f"{kind:>7}" for kind in EDITS)
    print("\nShare of lightly edited copies that still match their listed item; false: share of unrelated")
    print("same-topic texts of the same length that match any listed item (count in brackets).\n")
    print(header + f"{'false':>16}")
    for name, rows in results.items():
        for bucket, row in rows.items():
            edits = "".join(f"{row[kind]:>7.2f}" for kind in EDITS)
            print(
                f"{name:<12}{f'{bucket[0]}-{bucket[1]}':>10}{len(listed[bucket]):>7}{row['no_fingerprint']:>7.2f}"
                f"{edits}{row['false']:>9.4f} ({row['false_count']:>3})"
            )
    print("\nSpeed: fingerprint one message (normalisation included), and compare one query with")
    print(f"{SPEED_ENTRIES:,} listed entries (per entry):")
    pool = [text for texts in queries.values() for text in texts if len(canonical(text)) >= MIN_FUZZY_CHARS]
    for method in measured:
        fingerprint_us = 1e6 * float(np.mean(method.timings["fingerprint"]))
        compare_us = compare_cost(method, pool)
        content = "  (shares the content itself)" if method.needs_content else ""
        if method.errors:
            content += f"  {method.errors:,} comparisons failed (non-ASCII text)"
        timing = f"fingerprint {fingerprint_us:8.1f} us   compare {compare_us:8.3f} us"
        print(f"  {method.name:<12} {timing}{content}")
    print_match_latency(pool)
    if "tlsh" in results:
        print("\nminhash / tlsh (same canonical text): word-edit recall ratio, false-match difference")
        for bucket in BUCKETS[1:]:  # no fuzzy fingerprint below 50 characters
            ours, theirs = results["minhash"][bucket], results["tlsh"][bucket]
            ratios = "  ".join(_ratio(kind, ours[kind], theirs[kind]) for kind in ("word1", "word2"))
            print(f"  {bucket[0]:>4}-{bucket[1]:<5} {ratios}   false {ours['false'] - theirs['false']:+.4f}")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
