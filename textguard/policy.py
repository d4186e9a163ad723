"""Moderation policies: calibrated probabilities -> flagged labels and one action (allow, review, block).

A policy file names several policies (a platform default, a strict one for education tenants, a
lenient one for newsrooms and researchers, a monitor-only one for rollouts), each with a review and a
block threshold per label. The thresholds apply to *calibrated* probabilities, so one number means the
same thing for every model version that shares the taxonomy. `review: model` uses the threshold the
model spec carries (chosen on validation by the training config's threshold policy), so the platform
default follows each model's calibration while stricter tenants can pin their own numbers.

    version: 1
    taxonomy_version: "1.0.0"
    default: default
    policies:
      default:
        description: ...
        thresholds:
          violent_threat: {review: model, block: 0.85}
          ...

Every label of the taxonomy must be listed in every policy: a forgotten label would otherwise be
silently never flagged. `block: null` means the label never blocks on its own (review only).

Policies are checked against the model they run with (`check_against_model`, called when a model is
loaded or hot-swapped and by `textguard score --policy`): a review threshold above the model's own
calibrated threshold makes the policy *laxer* than the model for that label (content the model flags
is allowed). A policy whose name marks it strict (`strict`, `strict-edu`, `school_strict`) is refused
if it is laxer for any label; any other laxer policy needs `allow_laxer_than_model: true` and is
logged as a warning whenever it is validated.
A policy also decides what a known-content match (a hash list entry: see textguard.known_content) does,
by kind of hash: `known_content: {exact: block, fuzzy: review}` are the defaults. An exact hash of the
normalised text is the listed passage itself; a fuzzy (MinHash) match is a near copy that a person should
look at before it is withheld.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import Field, model_validator

from textguard.config import StrictModel, read_yaml, validate
from textguard.errors import ConfigError, TextguardError
from textguard.labels import LABELS, TAXONOMY_VERSION
from textguard.paths import project_root

Action = Literal["allow", "review", "block"]
#: Actions from weakest to strongest: a decision takes the strongest that anything triggers.
ACTION_ORDER: tuple[Action, ...] = ("allow", "review", "block")
POLICY_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
DEFAULT_POLICY_PATH = Path("configs/policies/default.yaml")


class UnknownPolicyError(TextguardError):
    """A request named a policy that the loaded policy file does not define (the service answers 422)."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown policy {name!r}; this server has {known}")
        self.name = name
        self.known = known


#: `review: model` defers to the threshold in the model spec.
MODEL_THRESHOLD: Literal["model"] = "model"


class LabelThresholds(StrictModel):
    review: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["model"]
    block: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _review_not_above_block(self) -> LabelThresholds:
        if self.block is not None and isinstance(self.review, float) and self.review > self.block:
            raise ValueError(f"review threshold {self.review} is above the block threshold {self.block}")
        return self


class KnownContentActions(StrictModel):
    """What a match against a known-content hash list does, by kind of hash."""

    exact: Action = "block"
    #: Any near-duplicate hash (MinHash): lightly edited copies of a listed text.
    fuzzy: Action = "review"


class KnownContentMatch(Protocol):
    """What a policy needs to know of a hash-list match (textguard.known_content.HashMatch)."""

    @property
    def kind(self) -> str: ...
    @property
    def label(self) -> str | None: ...


class PolicyConfig(StrictModel):
    description: str = ""
    thresholds: dict[str, LabelThresholds]
    #: Review thresholds above the model's own are intended (e.g. a newsroom policy); see the docstring.
    allow_laxer_than_model: bool = False
    known_content: KnownContentActions = Field(default_factory=KnownContentActions)

    @model_validator(mode="after")
    def _covers_the_taxonomy(self) -> PolicyConfig:
        unknown = sorted(set(self.thresholds) - set(LABELS))
        missing = [label for label in LABELS if label not in self.thresholds]
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}; the taxonomy has {list(LABELS)}")
        if missing:
            raise ValueError(f"missing label(s) {missing}: every policy must set thresholds for every label")
        return self


class PolicyFile(StrictModel):
    version: Literal[1] = 1
    taxonomy_version: str = TAXONOMY_VERSION
    default: str
    policies: dict[str, PolicyConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_and_default(self) -> PolicyFile:
        bad = [name for name in self.policies if not POLICY_NAME.match(name)]
        if bad:
            raise ValueError(f"policy names {bad} must match {POLICY_NAME.pattern}")
        if self.default not in self.policies:
            raise ValueError(f"default policy {self.default!r} is not defined (have {sorted(self.policies)})")
        if self.taxonomy_version != TAXONOMY_VERSION:
            raise ValueError(
                f"written for taxonomy {self.taxonomy_version}, but this textguard uses {TAXONOMY_VERSION}: "
                "review the thresholds against the current label definitions, then update taxonomy_version"
            )
        return self


@dataclass(frozen=True)
class Decision:
    #: Labels at or above their review threshold, in canonical order (blocked labels included).
    labels: list[str]
    action: Action


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    review: dict[str, float | Literal["model"]]
    block: dict[str, float | None]
    allow_laxer_than_model: bool = False
    known_content: KnownContentActions = field(default_factory=KnownContentActions)

    def review_thresholds(self, model_thresholds: Mapping[str, float] | None) -> dict[str, float]:
        """Numeric review thresholds, `model` entries taken from the model spec's thresholds."""
        resolved = {}
        for label, value in self.review.items():
            if value == MODEL_THRESHOLD:
                if model_thresholds is None:
                    raise ValueError(
                        f"policy {self.name!r} defers {label} to the model's threshold; pass them"
                    )
                resolved[label] = float(model_thresholds[label])
            else:
                resolved[label] = float(value)
        return resolved

    def decide(
        self,
        scores: dict[str, float],
        model_thresholds: Mapping[str, float] | None = None,
        matches: Sequence[KnownContentMatch] = (),
    ) -> Decision:
        """The strongest action any label or known-content match triggers: block > review > allow.

        A match the policy does not allow also flags the label its list entry carries (a taxonomy label).
        """
        review = self.review_thresholds(model_thresholds)
        blocked_labels = [
            label for label in LABELS if (limit := self.block[label]) is not None and scores[label] >= limit
        ]
        flagged = {label for label in LABELS if scores[label] >= review[label] or label in blocked_labels}
        action: Action = "block" if blocked_labels else "review" if flagged else "allow"
        for match in matches:
            match_action = self.match_action(match)
            if match_action != "allow":
                action = max(action, match_action, key=ACTION_ORDER.index)
                flagged |= {match.label} & set(LABELS) if match.label else set()
        return Decision(labels=[label for label in LABELS if label in flagged], action=action)

    def match_action(self, match: KnownContentMatch) -> Action:
        return self.known_content.exact if match.kind == "exact" else self.known_content.fuzzy

    @classmethod
    def from_model_thresholds(cls) -> Policy:
        """Flag (review) at the model's own thresholds, never block: decisions without a policy file."""
        return cls(
            name="model",
            description="the model's own thresholds (no policy file given)",
            review=dict.fromkeys(LABELS, MODEL_THRESHOLD),
            block=dict.fromkeys(LABELS, None),
        )

    @cached_property
    def version(self) -> str:
        """Fingerprint of what decides (thresholds, known-content actions): audit rows and reports carry it,
        so a transparency report says which thresholds were in force, not only the policy's name.
        Computed once: every audit row asks for it (a JSON encoding and a hash each time cost 2% of the
        server process's time at c=32), and a policy is never changed, only replaced."""
        import hashlib
        import json

        described = self.describe()
        described.pop("description")
        encoded = json.dumps(described, sort_keys=True, default=str).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()[:12]

    def describe(self) -> dict[str, object]:
        return {
            "description": self.description,
            "thresholds": {
                label: {"review": self.review[label], "block": self.block[label]} for label in LABELS
            },
            "known_content": self.known_content.model_dump(),
        }


class PolicySet:
    """The policies of one file; `get(None)` is the file's default."""

    def __init__(self, policies: dict[str, Policy], default: str, source: str = "") -> None:
        self.policies = policies
        self.default = default
        self.source = source

    @property
    def names(self) -> list[str]:
        return sorted(self.policies)

    def get(self, name: str | None = None) -> Policy:
        if name is None:
            return self.policies[self.default]
        try:
            return self.policies[name]
        except KeyError:
            raise UnknownPolicyError(name, self.names) from None

    @classmethod
    def from_config(cls, config: PolicyFile, source: str = "") -> PolicySet:
        policies = {
            name: Policy(
                name=name,
                description=policy.description,
                review={label: policy.thresholds[label].review for label in LABELS},
                block={label: policy.thresholds[label].block for label in LABELS},
                allow_laxer_than_model=policy.allow_laxer_than_model,
                known_content=policy.known_content,
            )
            for name, policy in config.policies.items()
        }
        return cls(policies, config.default, source)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_POLICY_PATH) -> PolicySet:
        """Load and validate a policy file; a relative path missing from the cwd is tried in the checkout."""
        resolved = resolve_policy_path(path)
        return cls.from_config(validate(PolicyFile, read_yaml(resolved), str(resolved)), str(resolved))

    def describe(self) -> dict[str, object]:
        return {
            "default": self.default,
            "policies": {name: self.policies[name].describe() for name in self.names},
        }


def resolve_policy_path(path: str | Path) -> Path:
    candidate = Path(path).expanduser()
    if candidate.is_file() or candidate.is_absolute():
        return candidate
    fallback = project_root() / candidate
    if fallback.is_file():
        return fallback
    raise ConfigError(f"policy file not found: {candidate} (give --policy PATH or TEXTGUARD_POLICY)")


# -- validation against the model a policy runs with -------------------------------------------------

#: A policy is strict when its name says so as a word: strict, strict-edu, school_strict.
STRICT_NAME = re.compile(r"(^|[-_])strict($|[-_])")
logger = logging.getLogger("textguard.policy")


class PolicyModelMismatch(ConfigError):
    """A policy would allow what the model flags, and is not allowed to (strict, or not marked)."""


@dataclass(frozen=True)
class LaxLabel:
    policy: str
    label: str
    review: float
    model: float

    def describe(self) -> str:
        return f"{self.label} reviews at {self.review:g} above the model's {self.model:g}"


def laxer_labels(policy: Policy, model_thresholds: Mapping[str, float]) -> list[LaxLabel]:
    """Labels whose review threshold is above the model's calibrated threshold (content the model
    flags that this policy would allow)."""
    review = policy.review_thresholds(model_thresholds)
    return [
        LaxLabel(policy.name, label, review[label], float(model_thresholds[label]))
        for label in LABELS
        if label in model_thresholds and review[label] > float(model_thresholds[label])
    ]


def check_against_model(
    policies: PolicySet, model_thresholds: Mapping[str, float], model: str = "the model"
) -> list[LaxLabel]:
    """Refuse policies that are laxer than the model where they may not be; log the allowed ones.

    Raises PolicyModelMismatch naming every offending policy and label: a strict policy laxer than
    the model for any label, or any other policy laxer without `allow_laxer_than_model: true`.
    Returns the laxer labels that are allowed (each also logged as a warning).
    """
    refused: list[str] = []
    allowed: list[LaxLabel] = []
    for name in policies.names:
        policy = policies.get(name)
        lax = laxer_labels(policy, model_thresholds)
        if not lax:
            continue
        detail = "; ".join(item.describe() for item in lax)
        if STRICT_NAME.search(name):
            refused.append(
                f"policy {name!r} is strict but laxer than {model} ({detail}): a strict policy may never "
                "allow what the model flags; use `review: model` or thresholds at or below the model's"
            )
        elif not policy.allow_laxer_than_model:
            refused.append(
                f"policy {name!r} is laxer than {model} ({detail}); lower those review thresholds, or set "
                "`allow_laxer_than_model: true` on the policy if it is meant to allow them"
            )
        else:
            allowed += lax
            logger.warning(
                "policy %r is laxer than %s (%s); allowed by allow_laxer_than_model",
                name,
                model,
                detail,
                extra={"fields": {"policy": name, "model": model, "laxer_labels": detail}},
            )
    if refused:
        source = f" ({policies.source})" if policies.source else ""
        raise PolicyModelMismatch(f"policy file{source} does not fit {model}: " + " | ".join(refused))
    return allowed
