"""Garbage-collection pauses in a loaded server, with and without `freeze_heap`.

Starts `textguard serve` (as bench/serve_load.py does, MiniLM by default) once with `--freeze-heap` and
once with `--no-freeze-heap`, drives each with wrk at `--concurrency` for `--duration` seconds, and
records every collection the server process runs under load through a `gc.callbacks` probe loaded
with a sitecustomize module (the service itself is unchanged). Prints per generation the number of
collections and their total and longest pause, and the wrk cell beside them.

    python bench/gc_pauses.py
    python bench/gc_pauses.py --backbone e5 --concurrency 64
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from serve_load import (
    build_artifact,
    free_port,
    load_texts,
    measure_wrk,
    start_server,
    stop_server,
    wait_ready,
)

PROBE = """
import gc, json, os, threading, time
_started = [0.0]
_pauses = []
def _record(phase, info):
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _pauses.append((time.time(), info["generation"], time.perf_counter() - _started[0]))
def _dump():
    while True:
        time.sleep(1)
        path = os.path.join(os.environ["TEXTGUARD_GC_PROBE_DIR"], f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as handle:
            json.dump(list(_pauses), handle)
        os.replace(path + ".tmp", path)
if os.environ.get("TEXTGUARD_GC_PROBE_DIR"):
    gc.callbacks.append(_record)
    threading.Thread(target=_dump, daemon=True).start()
"""


def run(freeze: bool, model: Path, work: Path, args: argparse.Namespace) -> None:
    probe_dir = work / ("frozen" if freeze else "unfrozen")
    probe_dir.mkdir()
    (work / "sitecustomize.py").write_text(PROBE)
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(work), *filter(None, [saved.get("PYTHONPATH")])])
    os.environ["TEXTGUARD_GC_PROBE_DIR"] = str(probe_dir)
    port = free_port()
    flag = "--freeze-heap" if freeze else "--no-freeze-heap"
    try:
        server = start_server("textguard-torch", model, port, work, args, extra=(flag,))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        loaded_from = time.time()  # the warm-up request of measure_wrk runs after this too
        cell = measure_wrk(flag, server.pid, port, load_texts(2000), args.concurrency, 1, args, work)
        time.sleep(1.5)  # the probe writes every second
    finally:
        stop_server(server)
    pauses = json.loads((probe_dir / f"{server.pid}.json").read_text())
    under_load = [(generation, seconds) for at, generation, seconds in pauses if at >= loaded_from]
    print(f"\n{flag}: {cell.messages_per_s:.1f} msgs/s, p50 {cell.p50_ms:.0f} ms, p99 {cell.p99_ms:.0f} ms")
    print("| generation | collections | total ms | longest ms |")
    print("|---|---|---|---|")
    for generation in (0, 1, 2):
        times = [seconds * 1000 for gen, seconds in under_load if gen == generation]
        longest = f"{max(times):.1f}" if times else "-"
        print(f"| {generation} | {len(times)} | {sum(times):.1f} | {longest} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", choices=["minilm", "e5"], default="minilm")
    parser.add_argument("--model", type=Path, help="an artefact directory (default: built from --backbone)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    # What serve_load.start_server and measure_wrk read.
    extra = {"batch_max_size": 32, "backend": "torch", "quantized": False, "threads": 0}
    vars(args).update(extra | {"precision": "auto", "warmup": 2.0})
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        model = args.model or build_artifact(work / "model", args.backbone, max_length=128)
        for freeze in (False, True):
            run(freeze, model, work, args)


if __name__ == "__main__":
    main()
