"""The declarative label mapping and the shipped data configs (validation only, no data read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from textguard.config import validate
from textguard.data.dataconfig import LabelSpec, load_data_config, load_members
from textguard.data.labelling import LabelMapper, describe_spec
from textguard.data.problems import RowProblem
from textguard.errors import ConfigError
from textguard.paths import project_root

CONFIG_DIR = project_root() / "configs" / "data"


def _mapper(spec: dict[str, Any]) -> LabelMapper:
    return LabelMapper(validate(LabelSpec, spec, "labels"))


def test_when_rules_add_labels_as_a_union() -> None:
    mapper = _mapper(
        {
            "rules": [
                {"when": {"column": "isHate", "op": ">=", "value": 0.5}, "labels": ["hate_dehumanization"]},
                {"when": {"column": "violence", "op": ">=", "value": 0.5}, "labels": ["violent_threat"]},
            ],
            "drop": [
                {
                    "when": {
                        "all": [
                            {"column": "isHate", "op": ">", "value": 0.2},
                            {"column": "isHate", "op": "<", "value": 0.5},
                        ]
                    }
                }
            ],
        }
    )
    assert mapper.labels({"isHate": "0.9", "violence": "0.6"}) == ["violent_threat", "hate_dehumanization"]
    assert mapper.labels({"isHate": "0.9", "violence": None}) == [
        "hate_dehumanization"
    ]  # missing never matches
    assert mapper.labels({"isHate": "0.1"}) == []
    assert mapper.labels({"isHate": "0.3"}) is None
    assert mapper.hits == {"rules[0]": 2, "rules[1]": 1, "drop[0]": 1}


def test_map_rule_with_token_separator_and_drop() -> None:
    mapper = _mapper(
        {
            "rules": [
                {
                    "column": "sentiment",
                    "sep": "_",
                    "map": {"hateful": ["hate_dehumanization"], "normal": [], "spam": "drop"},
                }
            ]
        }
    )
    assert mapper.labels({"sentiment": "hateful_normal"}) == ["hate_dehumanization"]
    assert mapper.labels({"sentiment": "normal"}) == []
    assert mapper.labels({"sentiment": "normal_spam"}) is None
    with pytest.raises(
        RowProblem, match=r"unknown label value 'angry' \(expected one of hateful, normal, spam\)"
    ):
        mapper.labels({"sentiment": "hateful_angry"})


def test_values_compare_numerically_and_ids_stay_exact() -> None:
    mapper = _mapper({"rules": [{"column": "class", "map": {0: ["hate_dehumanization"], 1: []}}]})
    assert mapper.labels({"class": "0"}) == ["hate_dehumanization"]
    assert mapper.labels({"class": "0.0"}) == ["hate_dehumanization"]
    assert mapper.labels({"class": 1}) == []
    big = _mapper(
        {
            "rules": [
                {
                    "when": {"column": "id", "op": "==", "value": 908144546831314944},
                    "labels": ["violent_threat"],
                }
            ]
        }
    )
    assert big.labels({"id": "908144546831314944"}) == ["violent_threat"]
    assert big.labels({"id": "908144546831314945"}) == []  # would be equal as floats


def test_compound_conditions() -> None:
    condition = {
        "any": [
            {
                "all": [
                    {"column": "a", "op": "in", "value": ["x", "y"]},
                    {"not": {"column": "b", "op": "present"}},
                ]
            },
            {"column": "c", "op": "has", "value": "t", "sep": ";"},
        ]
    }
    mapper = _mapper({"rules": [{"when": condition, "labels": ["extremist_glorification"]}]})
    assert mapper.labels({"a": "x", "b": ""}) == ["extremist_glorification"]
    assert mapper.labels({"a": "x", "b": "set"}) == []
    assert mapper.labels({"a": "z", "c": "s; t"}) == ["extremist_glorification"]


def test_from_column_validates_taxonomy_names() -> None:
    mapper = _mapper({"rules": [{"from_column": "labels", "sep": ";"}]})
    assert mapper.labels({"labels": ["violent_threat"]}) == ["violent_threat"]
    assert mapper.labels({"labels": "hate_dehumanization; violent_threat"}) == [
        "violent_threat",
        "hate_dehumanization",
    ]
    with pytest.raises(RowProblem, match=r"unknown label\(s\) \['threat'\]"):
        mapper.labels({"labels": "threat"})


def test_condition_value_must_fit_the_operator() -> None:
    with pytest.raises(ConfigError, match=r"op 'in' needs a list value"):
        validate(
            LabelSpec,
            {"rules": [{"when": {"column": "a", "op": "in", "value": "x"}, "labels": []}]},
            "labels",
        )


def test_describe_spec_gives_the_mapping_table_rows() -> None:
    spec = validate(
        LabelSpec,
        {
            "rules": [
                {
                    "column": "label",
                    "map": {"hate": ["hate_dehumanization"], "relation": "drop"},
                    "why": "because",
                }
            ]
        },
        "labels",
    )
    rows = [(row.kind, row.condition, row.labels, row.why) for row in describe_spec(spec)]
    assert rows == [
        ("label", "label == hate", ("hate_dehumanization",), "because"),
        ("drop", "label == relation", None, "because"),
    ]


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda path: path.stem)
def test_shipped_configs_validate(path: Path) -> None:
    loaded = load_data_config(path)
    members = load_members(loaded)
    assert members
    if loaded.config.eval_only:
        assert all(source.split_hints() <= {"auto", "test"} for source in loaded.config.sources)
    for member, _ in members:
        for source in member.config.sources:
            assert source.labels is not None or member.config.labels is not None


def test_overrides_reach_list_items_by_index_or_name() -> None:
    loaded = load_data_config(
        CONFIG_DIR / "hateval2019.yaml",
        ["sources.en_test.max_rows=5", "sources.0.language=en-GB", "split.seed=7"],
    )
    by_name = {source.name: source for source in loaded.config.sources}
    assert by_name["en_test"].max_rows == 5 and by_name["en_train"].language == "en-GB"
    assert loaded.config.split.seed == 7
    combined = load_data_config(CONFIG_DIR / "combined.yaml", ["include.told_br.train_fraction=0.25"])
    assert {member.config: member.train_fraction for member in combined.config.include}["told_br"] == 0.25
    with pytest.raises(ConfigError, match=r"no list item 'nope'"):
        load_data_config(CONFIG_DIR / "hateval2019.yaml", ["sources.nope.max_rows=5"])


def test_hatecheck_config_cannot_be_put_in_train() -> None:
    with pytest.raises(ConfigError, match=r"hatecheck_en is evaluation-only"):
        load_data_config(CONFIG_DIR / "hatecheck_en.yaml", ["sources.cases.split=train"])


def test_matches_is_a_case_insensitive_regular_expression() -> None:
    mapper = _mapper(
        {
            "rules": [
                {
                    "when": {"column": "text", "op": "matches", "value": r"flüchtl|\bmigra"},
                    "labels": ["hate_dehumanization"],
                }
            ]
        }
    )
    assert mapper.labels({"text": "Die FLÜCHTLINGE ..."}) == ["hate_dehumanization"]
    assert mapper.labels({"text": "Migranten"}) == ["hate_dehumanization"]
    assert mapper.labels({"text": "Immigranten"}) == []  # \b holds
    assert mapper.labels({"text": None}) == []  # a missing cell never matches
    spec = validate(
        LabelSpec, {"rules": [{"when": {"column": "t", "op": "matches", "value": "a|b"}, "labels": []}]}, "x"
    )
    assert describe_spec(spec)[0].condition == "t matches /a|b/i"
    with pytest.raises(ConfigError, match=r"op 'matches' needs a regular expression"):
        validate(
            LabelSpec,
            {"rules": [{"when": {"column": "t", "op": "matches", "value": "(a"}, "labels": []}]},
            "x",
        )


def test_label_fix_precision_must_fit_its_sample() -> None:
    rule = {
        "when": {"column": "a", "op": "==", "value": 1},
        "fix": {"lesson": "insults taught as hate", "sample": 50, "correct": 41},
    }
    spec = validate(LabelSpec, {"drop": [rule]}, "labels")
    fix = spec.drop[0].fix
    assert fix is not None and fix.share_correct == pytest.approx(0.82)
    with pytest.raises(ConfigError, match=r"correct \(51\) cannot exceed sample \(50\)"):
        validate(LabelSpec, {"drop": [{**rule, "fix": {**rule["fix"], "correct": 51}}]}, "labels")


def _labels_of(name: str, row: dict[str, Any]) -> list[str] | None:
    loaded = load_data_config(CONFIG_DIR / f"{name}.yaml")
    spec = loaded.config.labels
    assert spec is not None
    return LabelMapper(spec).labels(row)


def test_shipped_label_fixes_change_only_untargeted_rows() -> None:
    # GermEval: ABUSE at a party is dropped, ABUSE naming a group stays hate, INSULT stays benign.
    germeval = {"coarse": "OFFENSE", "fine": "ABUSE"}
    assert _labels_of("germeval2018", {**germeval, "text": "Die Faschisten der SPD, nennt sie so!"}) is None
    assert _labels_of("germeval2018", {**germeval, "text": "Die Asylanten nehmen Wohnungen weg"}) == [
        "hate_dehumanization"
    ]
    assert _labels_of("germeval2018", {"coarse": "OFFENSE", "fine": "INSULT", "text": "Du Honk"}) == []
    # HatEval: hate speech stays hate, including a misogynist slur at one woman (the measured relabel to
    # benign was not kept: see the config's rejected_fixes).
    hateval = {"HS": 1, "TR": 1, "AG": 1}
    assert _labels_of("hateval2019", {**hateval, "text": "@user cállate puta"}) == ["hate_dehumanization"]
    assert _labels_of("hateval2019", {"HS": 0, "TR": 0, "AG": 0, "text": "debate sobre migración"}) == []
    # MLMA: "hateful" at an individual is benign in English and French, not in Arabic script.
    mlma = {"sentiment": "hateful_offensive", "target": "other", "group": "individual"}
    assert _labels_of("mlma", {**mlma, "tweet": "what a twat"}) == []
    assert _labels_of("mlma", {**mlma, "tweet": "يا خنزير"}) == ["hate_dehumanization"]
    assert _labels_of("mlma", {**mlma, "group": "arabs", "tweet": "sale arabe"}) == ["hate_dehumanization"]
    assert _labels_of("mlma", {**mlma, "target": "origin", "tweet": "x"}) == ["hate_dehumanization"]
    # Davidson: the in-group AAE form alone is benign; with a second slur it stays hate.
    assert _labels_of("davidson_hate_offensive", {"class": 0, "tweet": "where dat nicca at? lol"}) == []
    assert _labels_of("davidson_hate_offensive", {"class": 0, "tweet": "that nigga a faggot"}) == [
        "hate_dehumanization"
    ]
    assert _labels_of("davidson_hate_offensive", {"class": 1, "tweet": "my nigga"}) == []
    # ETHOS: the two named counter-speech comments are benign, other hateful comments are not.
    condemn = "This sick, disgusting, white terrorist/fascist killed more than 50 innocent people."
    assert _labels_of("ethos", {"isHate": 1.0, "comment": condemn}) == []
    assert _labels_of("ethos", {"isHate": 1.0, "comment": "FUCK GAYS disgusting"}) == ["hate_dehumanization"]
