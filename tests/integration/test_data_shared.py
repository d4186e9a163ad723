"""Every shipped data config prepares and gets a card from the real shared datasets (skipped without them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from textguard.data.cards import write_card
from textguard.data.dataconfig import load_data_config
from textguard.data.prepare import prepare
from textguard.data.prepared import load_prepared
from textguard.data.sources import missing_source_files
from textguard.paths import project_root, shared_datasets_dir

CONFIGS = sorted((project_root() / "configs" / "data").glob("*.yaml"))
#: Enough rows per source to exercise joins, mappings and splits while keeping the suite quick.
QUICK = ["max_rows_per_source=1000"]

pytestmark = [
    pytest.mark.datasets,
    pytest.mark.skipif(not shared_datasets_dir().is_dir(), reason="shared datasets folder not present"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_prepares_and_gets_a_card(config: Path, tmp_path: Path) -> None:
    loaded = load_data_config(config, QUICK)
    if not loaded.config.is_combined and missing_source_files(loaded):
        # Data a user's own workflow writes (reviews imported from the audit store); its own test
        # (tests/integration/test_transparency_report.py) writes it and prepares this config.
        assert all(source.base == "project" for source in loaded.config.sources)
        pytest.skip(f"{config.name} reads data this machine has not written yet")
    report = prepare(config, tmp_path / "prepared", overrides=QUICK)
    assert report["skipped_rows"] == {}  # strict mode: no bad row in the shipped data
    assert sum(report["splits"].values()) > 0
    card = write_card(loaded, tmp_path / "prepared", tmp_path / "card.md").read_text(encoding="utf-8")
    assert "## Dataset Creation" in card and "### Licensing Information" in card
    if loaded.config.eval_only:
        assert report["splits"]["train"] == report["splits"]["validation"] == 0


@pytest.mark.slow
def test_full_combined_prepare(tmp_path: Path) -> None:
    report = prepare(project_root() / "configs" / "data" / "combined.yaml", tmp_path / "combined")
    assert report["splits"]["train"] > 50_000
    dataset = load_prepared(tmp_path / "combined")
    assert "hatecheck_en" not in set(dataset["test"]["dataset"])
    assert set(dataset["train"]["split"]) == {"train"}
