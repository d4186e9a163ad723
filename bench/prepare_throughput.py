"""Throughput and peak memory of `textguard data prepare`, against a baseline measured in the same run.

Baseline: the same config with exact de-duplication only (no MinHash/LSH near-duplicates, no caption
copies). Full: the config as written. Each variant runs in a fresh child process so that its peak RSS
(resource.getrusage) is its own; the table reports rows/s by wall clock and by CPU time (CPU time is
the steadier number on a shared machine) and the full/baseline ratios.

    python bench/prepare_throughput.py                      # configs/data/combined.yaml
    python bench/prepare_throughput.py --config configs/data/hateval2019.yaml --set max_rows_per_source=2000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASELINE = ["dedup.near.enabled=false", "caption.enabled=false"]


def child(config: str, overrides: list[str]) -> None:
    """Run one preparation in this process and print its measurements as JSON."""
    from textguard.data.prepare import prepare

    start_wall, start_cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as directory:
        report = prepare(config, Path(directory) / "out", overrides=overrides)
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "rows_read": report["rows_read"],
                "rows_written": sum(report["splits"].values()),
                "wall_s": wall,
                "cpu_s": cpu,
                "peak_rss_mib": peak_kib / 1024,
                "steps_s": report["timings_s"],
            }
        )
    )


def measure(config: str, overrides: list[str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", "--config", config]
    for item in overrides:
        command += ["--set", item]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{result.stderr.strip()}")
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def caption_available() -> bool:
    try:
        import textguard.caption  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/data/combined.yaml")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override (repeatable)"
    )
    parser.add_argument(
        "--json", type=Path, help="also write the measurements here (e.g. bench/results/x.json)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.config, args.overrides)
        return

    full_overrides = list(args.overrides)
    if not caption_available():
        print("note: textguard.caption is not importable; caption copies are off in both variants")
        full_overrides.append("caption.enabled=false")
    variants = {
        "baseline (exact dedup only)": measure(args.config, [*args.overrides, *BASELINE]),
        "full": measure(args.config, full_overrides),
    }
    columns = [
        ("rows read", 11),
        ("written", 9),
        ("wall s", 9),
        ("rows/s", 9),
        ("cpu s", 8),
        ("rows/cpu-s", 12),
    ]
    print(f"{'variant':<30}" + "".join(f"{name:>{width}}" for name, width in [*columns, ("peak MiB", 10)]))
    for name, m in variants.items():
        print(
            f"{name:<30}{m['rows_read']:>11,}{m['rows_written']:>9,}{m['wall_s']:>9.1f}"
            f"{m['rows_read'] / m['wall_s']:>9,.0f}{m['cpu_s']:>8.1f}{m['rows_read'] / m['cpu_s']:>12,.0f}"
            f"{m['peak_rss_mib']:>10.0f}"
        )
    base, full = variants["baseline (exact dedup only)"], variants["full"]
    print(
        f"full / baseline: wall x{full['wall_s'] / base['wall_s']:.2f}, "
        f"cpu x{full['cpu_s'] / base['cpu_s']:.2f}, "
        f"peak RSS x{full['peak_rss_mib'] / base['peak_rss_mib']:.2f}"
    )
    print(
        "full, seconds per step:",
        ", ".join(f"{step} {seconds:.1f}" for step, seconds in full["steps_s"].items()),
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(variants, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
