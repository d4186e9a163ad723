"""What an evaluation run was measured on, and whether two runs can be compared row by row.

`compare` pairs two runs' predictions by row id and draws the same bootstrap resamples for both: the
differences it reports mean something only if both runs scored the same rows, with the same gold
labels, under the same perturbations, for the same label set. Every evaluation run records that here
(tags for the MLflow UI, `provenance.json` for tools); `mismatches` names what differs.

What is compared, and why each one matters:
- data digest: the content digest of the evaluated split (ids, texts, gold labels, slice columns);
- suite files: the sha256 of each functional suite's CSV, per suite name both runs share;
- perturbation seed: perturbed copies are drawn per row from the seed, so two seeds give two different
  sets of perturbed texts (only checked when both runs evaluated perturbations);
- label set: the labels the model predicts (metrics per label and every average depend on it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "provenance.json"
TAG_LABELS = "textguard.eval.labels"
TAG_SEED = "textguard.eval.perturbation_seed"
TAG_PERTURBATIONS = "textguard.eval.perturbations"
TAG_DATA_DIGEST = "textguard.data.digest"
TAG_SUITES = "textguard.eval.suites"
#: One tag per suite: textguard.suite.<name>.sha256.
SUITE_TAG = "textguard.suite.{name}.sha256"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class SuiteFile:
    path: str
    sha256: str
    cases: int


@dataclass(frozen=True)
class Provenance:
    """The inputs of one evaluation run that decide whether its rows pair with another run's."""

    data_digest: str | None
    labels: tuple[str, ...] | None
    perturbations: tuple[str, ...] = ()
    seed: int | None = None
    suites: dict[str, SuiteFile] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        tags = {
            TAG_LABELS: ",".join(self.labels or ()),
            TAG_PERTURBATIONS: ",".join(self.perturbations),
            TAG_SUITES: ",".join(sorted(self.suites)),
        }
        if self.seed is not None:
            tags[TAG_SEED] = str(self.seed)
        if self.data_digest:
            tags[TAG_DATA_DIGEST] = self.data_digest
        for name, suite in self.suites.items():
            tags[SUITE_TAG.format(name=name)] = suite.sha256
        return tags

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_run(cls, tags: Mapping[str, str], params: Mapping[str, str]) -> Provenance:
        """Read it back from a run's tags (runs logged before these tags existed: from their params)."""
        labels = tags.get(TAG_LABELS)
        raw_seed = tags.get(TAG_SEED) or params.get("seed")
        perturbations = tags.get(TAG_PERTURBATIONS)
        if perturbations is None:
            perturbations = ",".join(_json_list(params.get("perturbations")))
        suite_names = tags.get(TAG_SUITES)
        names = suite_names.split(",") if suite_names else _json_list(params.get("suites"))
        suites = {
            name: SuiteFile(path="", sha256=tags.get(SUITE_TAG.format(name=name), ""), cases=0)
            for name in names
            if name
        }
        return cls(
            data_digest=tags.get(TAG_DATA_DIGEST) or None,
            labels=tuple(labels.split(",")) if labels else None,
            perturbations=tuple(item for item in perturbations.split(",") if item),
            seed=int(raw_seed) if raw_seed not in (None, "") else None,
            suites=suites,
        )


def _json_list(raw: str | None) -> list[str]:
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [str(item) for item in value] if isinstance(value, list) else []


@dataclass(frozen=True)
class Comparability:
    """`differences` make a row-by-row comparison meaningless; `unknown` are facts a run did not record."""

    differences: list[str]
    unknown: list[str]

    @property
    def comparable(self) -> bool:
        return not self.differences


def comparability(reference: Provenance, other: Provenance, names: Sequence[str]) -> Comparability:
    """What differs between two runs (`names`: how to call them in the messages), one line each.

    Anything a run does not record (an evaluation from before these tags existed) is listed as
    unknown rather than assumed equal.
    """
    first, second = names
    runs = (reference, other)
    differences: list[str] = []
    unknown: list[str] = []

    def missing(what: str, absent: Sequence[bool]) -> None:
        who = ", ".join(name for name, flag in zip(names, absent, strict=True) if flag)
        unknown.append(f"{what} not recorded by run {who}")

    if reference.data_digest and other.data_digest:
        if reference.data_digest != other.data_digest:
            differences.append(
                f"data digest differs: {first} evaluated rows {reference.data_digest}, "
                f"{second} evaluated rows {other.data_digest} (another split or data version)"
            )
    else:
        missing("data digest", [not run.data_digest for run in runs])
    if reference.labels is not None and other.labels is not None:
        if set(reference.labels) != set(other.labels):
            differences.append(
                f"label set differs: {first} predicts {list(reference.labels)}, "
                f"{second} predicts {list(other.labels)}"
            )
    else:
        missing("label set", [run.labels is None for run in runs])
    shared = sorted(set(reference.perturbations) & set(other.perturbations))
    if shared:
        if reference.seed is None or other.seed is None:
            missing("perturbation seed", [run.seed is None for run in runs])
        elif reference.seed != other.seed:
            differences.append(
                f"perturbation seed differs: {first} used seed {reference.seed}, {second} used seed "
                f"{other.seed}, so their perturbed copies ({', '.join(shared)}) are different texts"
            )
    for suite in sorted(set(reference.suites) & set(other.suites)):
        digests = (reference.suites[suite].sha256, other.suites[suite].sha256)
        if all(digests) and digests[0] != digests[1]:
            differences.append(
                f"suite file {suite!r} differs: {first} used sha256 {digests[0][:12]}, "
                f"{second} used {digests[1][:12]}"
            )
        elif not all(digests):
            missing(f"suite file {suite!r} digest", [not digest for digest in digests])
    return Comparability(differences, unknown)
