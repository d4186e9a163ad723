"""Duplicate detection: exact keys and MinHash-LSH near-duplicate pairs, plus the label-conflict rule.

Exact duplicates share the hash of their normalised, casefolded text. Near duplicates are pairs
whose shingle sets have an estimated Jaccard similarity at or above the threshold: MinHashLSH
proposes candidates, and the pair's own signatures confirm them, so LSH false positives do not
remove rows. Deciding which copy to drop lives in `prepare`, because it depends on splits.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator

from textguard.data.dataconfig import NearDedupSpec

CONFLICT_RULE = (
    "majority_then_union: the label set carried by most copies wins; when several label sets tie "
    "for most copies, the kept row gets their union"
)


def exact_key(text: str) -> str:
    """Key of a normalised text: equal keys = the same text up to letter case."""
    return hashlib.blake2b(text.casefold().encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def resolve_labels(label_sets: Iterable[tuple[str, ...]]) -> tuple[tuple[str, ...], str]:
    """Apply CONFLICT_RULE; returns the labels and how they were decided ("agreed", "majority", "union")."""
    from textguard.labels import LABELS

    counts = Counter(label_sets)
    if len(counts) == 1:
        return next(iter(counts)), "agreed"
    ranked = counts.most_common()
    top = ranked[0][1]
    tied = [labels for labels, count in ranked if count == top]
    if len(tied) == 1:
        return tied[0], "majority"
    union = set().union(*tied)
    return tuple(label for label in LABELS if label in union), "union"


def shingles(text: str, spec: NearDedupSpec) -> list[bytes]:
    folded = text.casefold()
    if spec.shingle == "char":
        width = spec.size
        if len(folded) <= width:
            return [folded.encode("utf-8", "surrogatepass")]
        grams = {folded[start : start + width] for start in range(len(folded) - width + 1)}
    else:
        words = folded.split()
        width = spec.size
        if len(words) <= width:
            return [" ".join(words).encode("utf-8", "surrogatepass")]
        grams = {" ".join(words[start : start + width]) for start in range(len(words) - width + 1)}
    return [gram.encode("utf-8", "surrogatepass") for gram in grams]


def near_duplicate_pairs(
    texts: list[str], spec: NearDedupSpec, *, progress: bool = False
) -> Iterator[tuple[int, int, float]]:
    """(i, j, similarity) with i < j for every confirmed near-duplicate pair among `texts`."""
    import numpy as np
    from datasketch import LeanMinHash, MinHash, MinHashLSH
    from tqdm.auto import tqdm

    eligible = [index for index, text in enumerate(texts) if len(text) >= spec.min_chars]
    if len(eligible) < 2:
        return
    signatures = np.empty((len(eligible), spec.num_perm), dtype=np.uint32)
    lsh = MinHashLSH(threshold=spec.threshold, num_perm=spec.num_perm)
    generator = MinHash.generator(
        (shingles(texts[index], spec) for index in eligible),
        num_perm=spec.num_perm,
        # CRC-32 is a stable C-speed 32-bit hash: SHA-1 (the datasketch default) costs several
        # times more per shingle, and its extra bits are wasted on the affine32 scheme.
        hashfunc=zlib.crc32,
        scheme="affine32",
    )
    with lsh.insertion_session() as session:
        for row, minhash in enumerate(
            tqdm(generator, total=len(eligible), desc="minhash", unit=" rows", disable=not progress)
        ):
            signatures[row] = minhash.hashvalues
            session.insert(row, minhash, check_duplication=False)
    needed = spec.threshold * spec.num_perm
    for row in tqdm(range(len(eligible)), desc="near-duplicates", unit=" rows", disable=not progress):
        probe = LeanMinHash(seed=1, hashvalues=signatures[row], scheme="affine32")
        for other in lsh.query(probe):
            if other <= row:
                continue
            agree = int(np.count_nonzero(signatures[row] == signatures[other]))
            if agree >= needed:
                yield eligible[row], eligible[other], agree / spec.num_perm
