from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from textguard.errors import ConfigError
from textguard.labels import LABELS
from textguard.paths import project_root
from textguard.policy import DEFAULT_POLICY_PATH, Decision, PolicySet, UnknownPolicyError


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _policy_file(**overrides: Any) -> dict[str, Any]:
    thresholds = {label: {"review": 0.5, "block": 0.8} for label in LABELS}
    data: dict[str, Any] = {"version": 1, "default": "base", "policies": {"base": {"thresholds": thresholds}}}
    data.update(overrides)
    return data


def test_shipped_policy_file_loads_with_a_strict_policy_for_education() -> None:
    policies = PolicySet.load(project_root() / DEFAULT_POLICY_PATH)
    assert policies.default == "default"
    assert {"default", "strict", "lenient", "monitor"} <= set(policies.names)
    default, strict = policies.get("default"), policies.get("strict")
    model_thresholds = dict.fromkeys(LABELS, 0.5)
    strict_review = strict.review_thresholds(model_thresholds)
    default_review = default.review_thresholds(model_thresholds)
    for label in LABELS:
        assert strict_review[label] <= default_review[label]
    # The monitor policy flags like the default one but never blocks.
    scores = dict.fromkeys(LABELS, 0.99)
    assert policies.get("monitor").decide(scores, model_thresholds).action == "review"
    assert default.decide(scores, model_thresholds).action == "block"


def test_review_model_follows_the_thresholds_in_the_model_spec() -> None:
    policies = PolicySet.load(project_root() / DEFAULT_POLICY_PATH)
    default = policies.get("default")
    scores = dict.fromkeys(LABELS, 0.0) | {"violent_threat": 0.3}
    assert default.decide(scores, dict.fromkeys(LABELS, 0.25)).labels == ["violent_threat"]
    assert default.decide(scores, dict.fromkeys(LABELS, 0.35)).action == "allow"
    with pytest.raises(ValueError, match="model's threshold"):
        default.decide(scores)


def test_relative_default_path_resolves_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert PolicySet.load(DEFAULT_POLICY_PATH).get().name == "default"


@pytest.mark.parametrize(
    ("score", "action", "flagged"),
    [
        (0.49, "allow", []),
        (0.5, "review", ["violent_threat"]),
        (0.79, "review", ["violent_threat"]),
        (0.8, "block", ["violent_threat"]),
    ],
)
def test_decide_thresholds_are_inclusive(
    tmp_path: Path, score: float, action: str, flagged: list[str]
) -> None:
    policy = PolicySet.load(_write(tmp_path, _policy_file())).get()
    scores = dict.fromkeys(LABELS, 0.0) | {"violent_threat": score}
    decision = policy.decide(scores)
    assert decision.action == action
    assert decision.labels == flagged


def test_strongest_action_wins_and_labels_keep_canonical_order(tmp_path: Path) -> None:
    policy = PolicySet.load(_write(tmp_path, _policy_file())).get()
    scores = {"hate_dehumanization": 0.9, "extremist_glorification": 0.6, "violent_threat": 0.1}
    decision = policy.decide(scores)
    assert decision.action == "block"
    assert decision.labels == [label for label in LABELS if label != "violent_threat"]


def test_block_null_never_blocks(tmp_path: Path) -> None:
    data = _policy_file()
    data["policies"]["base"]["thresholds"]["violent_threat"] = {"review": 0.5, "block": None}
    policy = PolicySet.load(_write(tmp_path, data)).get()
    assert policy.decide(dict.fromkeys(LABELS, 0.0) | {"violent_threat": 1.0}).action == "review"


def test_unknown_policy_name_lists_the_known_ones(tmp_path: Path) -> None:
    policies = PolicySet.load(_write(tmp_path, _policy_file()))
    with pytest.raises(UnknownPolicyError, match=r"unknown policy 'nope'; this server has \['base'\]"):
        policies.get("nope")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["policies"]["base"]["thresholds"].update({"spam": {"review": 0.5}}),
            r"unknown label\(s\) \['spam'\]",
        ),
        (
            lambda d: d["policies"]["base"]["thresholds"].pop("violent_threat"),
            r"missing label\(s\) \['violent_threat'\]",
        ),
        (
            lambda d: d["policies"]["base"]["thresholds"].update(
                {"violent_threat": {"review": 0.9, "block": 0.5}}
            ),
            "review threshold 0.9 is above the block threshold 0.5",
        ),
        (
            lambda d: d["policies"]["base"]["thresholds"].update({"violent_threat": {"review": 1.5}}),
            "less than or equal to 1",
        ),
        (lambda d: d.update({"default": "other"}), "default policy 'other' is not defined"),
        (
            lambda d: d["policies"].update({"Bad Name": d["policies"]["base"]}),
            "policy names .'Bad Name'. must match",
        ),
        (lambda d: d.update({"taxonomy_version": "0.9.0"}), "written for taxonomy 0.9.0"),
        (lambda d: d["policies"]["base"].update({"treshold": 1}), "policies.base.treshold: unknown key"),
    ],
)
def test_invalid_policy_files_are_refused_with_the_reason(tmp_path: Path, mutate: Any, message: str) -> None:
    data = _policy_file()
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        PolicySet.load(_write(tmp_path, data))


def test_missing_policy_file_says_how_to_point_at_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"policy file not found: nowhere.yaml \(give --policy PATH"):
        PolicySet.load("nowhere.yaml")


def test_describe_lists_every_policy_and_threshold(tmp_path: Path) -> None:
    described = PolicySet.load(_write(tmp_path, _policy_file())).describe()
    assert described["default"] == "base"
    assert described["policies"] == {
        "base": {
            "description": "",
            "thresholds": {label: {"review": 0.5, "block": 0.8} for label in LABELS},
            "known_content": {"exact": "block", "fuzzy": "review"},
        }
    }


# -- policies checked against the model they run with ------------------------------------------------

#: The model from the issue: its own hate threshold is 0.169.
MODEL_THRESHOLDS = {"violent_threat": 0.31, "extremist_glorification": 0.27, "hate_dehumanization": 0.169}


def _thresholds(**review: float | str) -> dict[str, dict[str, Any]]:
    return {label: {"review": review.get(label, "model"), "block": 0.95} for label in LABELS}


def _policies(tmp_path: Path, policies: dict[str, dict[str, Any]]) -> PolicySet:
    default = next(iter(policies))
    return PolicySet.load(_write(tmp_path, {"version": 1, "default": default, "policies": policies}))


def test_a_strict_policy_laxer_than_the_model_is_refused(tmp_path: Path) -> None:
    from textguard.policy import PolicyModelMismatch, check_against_model

    # The shape of the old shipped `strict`: pinned 0.35 while the model flags hate from 0.169.
    policies = _policies(
        tmp_path,
        {"strict": {"thresholds": _thresholds(hate_dehumanization=0.35), "allow_laxer_than_model": True}},
    )
    with pytest.raises(
        PolicyModelMismatch, match=r"'strict' is strict but laxer.*hate_dehumanization reviews at 0.35"
    ):
        check_against_model(policies, MODEL_THRESHOLDS, "textguard v3")
    # Named strict as a word counts too; equal to the model is not laxer.
    for name in ("strict-edu", "school_strict"):
        marked = _policies(tmp_path, {name: {"thresholds": _thresholds(violent_threat=0.5)}})
        with pytest.raises(PolicyModelMismatch, match=f"'{name}' is strict"):
            check_against_model(marked, MODEL_THRESHOLDS)
    at_model = _policies(tmp_path, {"strict": {"thresholds": _thresholds(hate_dehumanization=0.169)}})
    assert check_against_model(at_model, MODEL_THRESHOLDS) == []


def test_a_laxer_policy_needs_the_explicit_flag_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from textguard.policy import PolicyModelMismatch, check_against_model

    lax = {"thresholds": _thresholds(violent_threat=0.7)}
    with pytest.raises(PolicyModelMismatch, match="allow_laxer_than_model: true"):
        check_against_model(_policies(tmp_path, {"newsroom": lax}), MODEL_THRESHOLDS)
    allowed = _policies(tmp_path, {"newsroom": {**lax, "allow_laxer_than_model": True}})
    with caplog.at_level("WARNING", logger="textguard.policy"):
        found = check_against_model(allowed, MODEL_THRESHOLDS, "textguard v3")
    assert [(item.policy, item.label, item.review, item.model) for item in found] == [
        ("newsroom", "violent_threat", 0.7, 0.31)
    ]
    assert "'newsroom' is laxer than textguard v3" in caplog.text


def test_shipped_policies_fit_the_issue_model_and_strict_flags_what_default_flags() -> None:
    from textguard.policy import check_against_model

    policies = PolicySet.load(project_root() / DEFAULT_POLICY_PATH)
    allowed = check_against_model(policies, MODEL_THRESHOLDS)
    assert {item.policy for item in allowed} == {"lenient"}  # the one policy that says it is laxer
    # "Les terroristes sont des héros" scored 0.222 for hate: flagged under default AND strict.
    scores = dict.fromkeys(LABELS, 0.0) | {"hate_dehumanization": 0.222}
    for name in ("default", "strict"):
        assert policies.get(name).decide(scores, MODEL_THRESHOLDS).labels == ["hate_dehumanization"], name
    # Strict is never laxer than default, for review or for block, whatever the model's thresholds.
    for thresholds in (MODEL_THRESHOLDS, dict.fromkeys(LABELS, 0.9)):
        strict = policies.get("strict").review_thresholds(thresholds)
        default = policies.get("default").review_thresholds(thresholds)
        assert all(strict[label] <= default[label] for label in LABELS)
    for label in LABELS:
        assert (policies.get("strict").block[label] or 1.0) <= (policies.get("default").block[label] or 1.0)


def test_the_service_refuses_a_strict_policy_laxer_than_the_model_at_load_and_at_hot_swap(
    tmp_path: Path, tiny_artifact: Path
) -> None:
    """The model manager validates the policy file when a model loads and when a new one swaps in."""
    import asyncio
    import shutil

    from pydantic import SecretStr

    from textguard.artifact import refresh_checksums
    from textguard.policy import PolicyModelMismatch
    from textguard.scorer import Scorer
    from textguard.service.model_manager import ModelManager
    from textguard.service.settings import ServiceSettings
    from textguard.spec import load_spec

    strict_at_030 = _write(
        tmp_path,
        {
            "version": 1,
            "default": "strict",
            "policies": {"strict": {"thresholds": _thresholds(hate_dehumanization=0.3)}},
        },
    )
    model = tmp_path / "model"
    shutil.copytree(tiny_artifact, model)  # thresholds 0.5: the strict 0.3 is stricter, fine
    settings = ServiceSettings(
        model=str(model),
        policy=strict_at_030,
        audit_hash_key=SecretStr("k"),
        model_poll_seconds=0,
        warmup=False,
    )

    async def scenario() -> ModelManager:
        manager = ModelManager(settings)
        assert await manager.refresh() and manager.ready
        served = manager.current.version
        # A retrained model whose hate threshold is 0.169 replaces the artefact: strict would be laxer.
        spec = load_spec(model)
        refresh_checksums(
            model, spec.model_copy(update={"thresholds": {**spec.thresholds, "hate_dehumanization": 0.169}})
        )
        assert not await manager.refresh()
        assert manager.current.version == served  # the old model keeps serving under a valid policy
        return manager

    asyncio.run(scenario())
    # At load: nothing is served.
    cold = ModelManager(settings)
    assert not asyncio.run(cold.refresh()) and not cold.ready
    assert cold.error is not None and "'strict' is strict but laxer" in cold.error
    with pytest.raises(PolicyModelMismatch):
        asyncio.run(ModelManager(settings, scorer=Scorer.from_artifact(model)).start())


@dataclass(frozen=True)
class _Match:
    kind: str
    label: str | None


def test_known_content_matches_take_the_action_the_policy_gives_their_kind(tmp_path: Path) -> None:
    data = _policy_file()
    data["policies"]["base"]["known_content"] = {"exact": "review", "fuzzy": "allow"}
    custom = PolicySet.load(_write(tmp_path, data)).get()
    shipped = PolicySet.load(project_root() / DEFAULT_POLICY_PATH).get("default")
    calm = dict.fromkeys(LABELS, 0.01)
    model = dict.fromkeys(LABELS, 0.5)
    exact, fuzzy = _Match("exact", "extremist_glorification"), _Match("tlsh", None)
    # Defaults: an exact match blocks and flags its list's label, a fuzzy match goes to review.
    assert shipped.decide(calm, model, [exact]) == Decision(["extremist_glorification"], "block")
    assert shipped.decide(calm, model, [fuzzy]) == Decision([], "review")
    assert shipped.decide(calm, model) == Decision([], "allow")
    # A policy can soften either kind; a stronger model decision still wins.
    assert custom.decide(calm, model, [exact]).action == "review"
    assert custom.decide(calm, model, [fuzzy]).action == "allow"
    assert custom.decide(dict.fromkeys(LABELS, 0.9), model, [fuzzy]).action == "block"
    with pytest.raises(ConfigError, match="known_content"):
        data["policies"]["base"]["known_content"] = {"exact": "delete"}
        PolicySet.load(_write(tmp_path, data))
