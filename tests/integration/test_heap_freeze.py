"""freeze_heap: once the model is in, start-up objects leave the garbage collector's full scans, and a
model replaced by a hot swap is still collected, reference cycles included.

gc.freeze() is process-wide, so the server runs in a child process of its own (the suite turns the
setting off for its in-process servers: tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import gc, json, sys, time, weakref
    from pathlib import Path

    import httpx
    from pydantic import SecretStr

    sys.path.insert(0, {tests!r})
    from serve_support import live_server, wait_for
    from textguard.service.app import create_app
    from textguard.service.settings import ServiceSettings
    from textguard.spec import load_spec, save_spec

    artefact = Path({artefact!r})
    settings = ServiceSettings(
        model=str(artefact),
        audit_url="sqlite:///" + str(artefact.parent / "audit.db"),
        audit_hash_key=SecretStr("k"),
        model_poll_seconds=0.2,
        inference_processes=False,
        freeze_heap={freeze},
    )
    report = {{"frozen_before": gc.get_freeze_count()}}
    app = create_app(settings)
    with live_server(app) as base_url:
        report["frozen_when_ready"] = gc.get_freeze_count()
        old = app.state.model_manager.current.scorer
        old.self_reference = old  # a reference cycle: only the cyclic collector can free it
        gone = weakref.ref(old)
        del old
        save_spec(load_spec(artefact).model_copy(update={{"temperature": 3.0}}), artefact)
        wait_for(lambda: httpx.get(base_url + "/v1/model").json()["temperature"] == 3.0, timeout=30)
        if {freeze}:
            # The swap's grace (2 s), a collection that frees the old model, then the freeze again.
            wait_for(lambda: gone() is None and gc.get_freeze_count() > 0, timeout=30)
        else:
            time.sleep(3)  # past the swap's grace: nothing collects the cycle at once
        report["old_model_collected"] = gone() is None
        report["frozen_after_swap"] = gc.get_freeze_count()
        answer = httpx.post(base_url + "/v1/score", json={{"messages": [{{"id": "m", "text": "hi all"}}]}})
        report["status_after_swap"] = answer.status_code
    print(json.dumps(report))
    """
)


def _run_server(tiny_artifact: Path, tmp_path: Path, freeze: bool) -> dict[str, object]:
    artefact = tmp_path / "model"
    shutil.copytree(tiny_artifact, artefact)
    code = CHILD.format(tests=str(Path(__file__).parent), artefact=str(artefact), freeze=freeze)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_heap_is_frozen_once_ready_and_a_swapped_out_model_is_still_collected(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    report = _run_server(tiny_artifact, tmp_path, freeze=True)
    assert report["frozen_before"] == 0
    assert int(report["frozen_when_ready"]) > 10_000  # the web stack, the tokenizer, the model
    assert report["old_model_collected"] is True
    assert int(report["frozen_after_swap"]) > 10_000  # frozen again once the old model was collected
    assert report["status_after_swap"] == 200


def test_without_freeze_heap_nothing_is_frozen(tiny_artifact: Path, tmp_path: Path) -> None:
    report = _run_server(tiny_artifact, tmp_path, freeze=False)
    assert report["frozen_when_ready"] == 0 and report["frozen_after_swap"] == 0
    assert report["status_after_swap"] == 200
