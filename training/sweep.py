"""Grid sweep over `textguard train` runs: one MLflow run per combination, ranked by validation macro-F1.

    python training/sweep.py training/sweeps/quickstart-lr.yaml
    python training/sweep.py training/sweeps/quickstart-lr.yaml --dry-run     # print the commands only

The sweep file names a training config, fixed `set` overrides and a `grid` (dotted key -> values).
Each combination runs `textguard train` in a child process (a failed run does not stop the sweep),
with its own output folder and run name, in the sweep's MLflow experiment. For a scheduler or several
machines, run the printed commands (--dry-run) through it instead.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    products = itertools.product(*(grid[key] for key in keys))
    return [dict(zip(keys, values, strict=True)) for values in products]


def run_name(stem: str, index: int, combo: dict[str, Any]) -> str:
    parts = [f"{key.rsplit('.', 1)[-1]}-{value}" for key, value in combo.items()]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{stem}-{index:02d}_" + "_".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    sweep = yaml.safe_load(args.sweep.read_text(encoding="utf-8"))
    root = Path(sweep.get("output_root", f"outputs/sweeps/{args.sweep.stem}"))
    results = []
    for index, combo in enumerate(combinations(sweep["grid"])):
        name = run_name(args.sweep.stem, index, combo)
        overrides = [*sweep.get("set", []), f"run_name={name}"]
        if "experiment" in sweep:
            overrides.append(f"tracking.experiment={sweep['experiment']}")
        overrides += [f"{key}={value}" for key, value in combo.items()]
        command = [sys.executable, "-m", "textguard", "train", "--config", sweep["config"]]
        command += [item for override in overrides for item in ("--set", override)]
        command += ["--output-dir", str(root / name)]
        print(" ".join(command), flush=True)
        if args.dry_run:
            continue
        code = subprocess.run(command, check=False).returncode
        spec_path = root / name / "model" / "textguard.json"
        metrics = json.loads(spec_path.read_text())["metrics"] if code == 0 and spec_path.is_file() else {}
        results.append((name, code, metrics.get("validation_macro_f1"), metrics.get("test_macro_f1")))
    if results:
        print(f"\n{'run':<60} {'exit':>4} {'val macro-F1':>13} {'test macro-F1':>14}")
        for name, code, val, test in sorted(results, key=lambda row: -(row[2] or -1)):
            val_text = f"{val:.4f}" if val is not None else "-"
            test_text = f"{test:.4f}" if test is not None else "-"
            print(f"{name:<60} {code:>4} {val_text:>13} {test_text:>14}")


if __name__ == "__main__":
    main()
