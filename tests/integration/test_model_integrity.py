"""Model integrity: only checksummed safetensors/ONNX weights are loaded, never pickle, never remote code.

- at start-up, a tampered, truncated or missing file makes the service refuse the model: /readyz says
  why, /v1/score answers 503 not_ready, nothing is ever scored with it; the batch CLI fails in one line;
- an attacker who can also rewrite the spec's checksums still cannot get a pickle unpickled (a pickle
  saved as model.safetensors or model.onnx) or code run from the artefact (config auto_map);
- during a hot swap, a new version whose weights are tampered is refused with a log line naming the
  file while the old model keeps serving with no failed request; once repaired it is swapped in;
- the spec is a closed manifest: a file it does not list (weights whose entry was deleted, an added file)
  is refused at load and at hot swap, and entries outside the artefact (absolute, `..`, a symlink out)
  are refused with one wording whether or not such a file exists;
- a model whose output is not a probability (NaN) never yields a decision: 500, not "allow";
- (expected to fail until textguard/backends.py stops memory-mapping the weights) rewriting the
  weights file in place must not change the model a running server answers with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from serve_support import Traffic, live_server, service_settings, wait_for

from textguard.artifact import refresh_checksums
from textguard.errors import ModelLoadError
from textguard.scorer import Scorer
from textguard.service.app import create_app
from textguard.spec import load_spec, save_spec

WEIGHTS = "model.safetensors"
BODY = {"messages": [{"id": "m", "text": "see you all at the standup tomorrow"}]}


def _counter(metrics: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", metrics, flags=re.MULTILINE)
    assert match, f"{name} is not in /metrics"
    return float(match.group(1))


class Records(logging.Handler):
    """Collects the records of one logger (attached directly: the JSON log config may stop propagation)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(name)
        self.records: list[logging.LogRecord] = []

    def __enter__(self) -> Records:
        self.logger.addHandler(self)
        self._level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def matching(self, message: str) -> list[dict[str, Any]]:
        return [dict(getattr(r, "fields", {})) for r in list(self.records) if r.getMessage() == message]


# -- tampering ---------------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _replace_atomically(path: Path, data: bytes) -> None:
    """How a deployment should update a file that a running server may have open: a new inode, renamed."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


TAMPERINGS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "truncated weights": (WEIGHTS, _truncate, "does not match its recorded sha256 (tampered or truncated)"),
    "one flipped bit": (
        WEIGHTS,
        _flip_one_byte,
        "does not match its recorded sha256 (tampered or truncated)",
    ),
    "edited tokenizer": ("tokenizer.json", _flip_one_byte, "does not match its recorded sha256"),
    "missing weights": (WEIGHTS, Path.unlink, "is not a file inside the artefact directory"),
}


@pytest.mark.parametrize("case", list(TAMPERINGS))
def test_a_tampered_artifact_at_start_up_is_refused_and_never_serves(
    case: str, tiny_artifact_copy: Path, tmp_path: Path
) -> None:
    name, tamper, reason = TAMPERINGS[case]
    tamper(tiny_artifact_copy / name)
    with (
        Records("textguard.service.model") as logs,
        TestClient(create_app(service_settings(tiny_artifact_copy, tmp_path))) as client,
    ):
        wait_for(lambda: bool(logs.matching("model load failed")))
        ready = client.get("/readyz")
        scored = client.post("/v1/score", json=BODY)
        metrics = client.get("/metrics").text
    assert ready.status_code == 503 and ready.json()["error"]["type"] == "not_ready"
    message = ready.json()["error"]["message"]
    assert "model integrity check failed" in message and f"{name} {reason}" in message
    assert scored.status_code == 503 and scored.json()["error"]["type"] == "not_ready"
    assert _counter(metrics, "textguard_model_load_failures_total") >= 1
    failure = logs.matching("model load failed")[0]
    assert f"{name} {reason}" in failure["reason"]


def test_the_batch_cli_refuses_a_tampered_model_in_one_line(tiny_artifact_copy: Path, tmp_path: Path) -> None:
    _truncate(tiny_artifact_copy / WEIGHTS)
    texts = tmp_path / "in.txt"
    texts.write_text("hello\n", encoding="utf-8")
    output = tmp_path / "out.csv"
    result = subprocess.run(
        [sys.executable, "-m", "textguard", "score", "--model", str(tiny_artifact_copy),
         "--input", str(texts), "--output", str(output), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "model integrity check failed" in lines[0]
    assert f"{WEIGHTS} does not match its recorded sha256 (tampered or truncated)" in lines[0]
    assert not output.exists()


# -- formats: no pickle, no remote code, even with re-recorded checksums -----------------------------------


class _TouchOnUnpickle:
    """Unpickling this creates a marker file: proof that a pickle was loaded (harmless otherwise)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(
    ("backend", "target", "refusal"),
    [
        ("torch", WEIGHTS, f"model integrity check failed: {WEIGHTS} is not in safetensors format"),
        ("onnx", "model.onnx", "model.onnx: not a loadable ONNX model"),
    ],
)
def test_a_pickle_posing_as_weights_is_never_unpickled(
    backend: str, target: str, refusal: str, tiny_artifact_copy: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    (tiny_artifact_copy / target).write_bytes(pickle.dumps(_TouchOnUnpickle(marker)))
    refresh_checksums(tiny_artifact_copy)  # the attacker rewrote the spec's checksums too
    with pytest.raises(ModelLoadError, match=refusal):
        Scorer.from_artifact(tiny_artifact_copy, backend=backend)  # type: ignore[arg-type]
    assert not marker.exists()


def test_pickle_weight_files_are_refused_even_when_checksummed(
    tiny_artifact_copy: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    (tiny_artifact_copy / WEIGHTS).unlink()
    (tiny_artifact_copy / "pytorch_model.bin").write_bytes(pickle.dumps(_TouchOnUnpickle(marker)))
    refresh_checksums(tiny_artifact_copy)
    with pytest.raises(ModelLoadError, match=r"refusing pickle-based weight files \['pytorch_model.bin'\]"):
        Scorer.from_artifact(tiny_artifact_copy)
    assert not marker.exists()


def test_code_shipped_in_an_artifact_is_never_run(tiny_artifact_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    module = f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
    (tiny_artifact_copy / "modeling_marker.py").write_text(module, encoding="utf-8")
    (tiny_artifact_copy / "configuration_marker.py").write_text(module, encoding="utf-8")
    for config_file, auto_map in (
        ("config.json", {"AutoConfig": "configuration_marker.MarkerConfig",
                         "AutoModelForSequenceClassification": "modeling_marker.MarkerModel"}),
        ("tokenizer_config.json", {"AutoTokenizer": ["modeling_marker.MarkerTokenizer", None]}),
    ):  # fmt: skip
        path = tiny_artifact_copy / config_file
        config = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps({**config, "auto_map": auto_map}), encoding="utf-8")
    refresh_checksums(tiny_artifact_copy)
    try:
        scorer = Scorer.from_artifact(tiny_artifact_copy)
    except ModelLoadError:
        pass  # refusing is as good as ignoring the code
    else:
        # transformers' own class, or textguard.encoder's: never a class from the artefact.
        model_class = type(scorer.backend.model).__name__  # type: ignore[attr-defined]
        assert model_class in ("EncoderClassifier", "BertForSequenceClassification")
        assert scorer.predict_proba(["hello"]).shape == (1, 3)
    assert not marker.exists()


# -- hot swap to a tampered version --------------------------------------------------------------------


@pytest.fixture
def served_copy(tiny_artifact_copy: Path, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with live_server(
        create_app(service_settings(tiny_artifact_copy, tmp_path, model_poll_seconds=0.2))
    ) as base_url:
        yield tiny_artifact_copy, base_url


def test_a_tampered_new_version_is_refused_while_the_old_one_keeps_serving(
    served_copy: tuple[Path, str],
) -> None:
    artifact, base_url = served_copy
    before = httpx.get(f"{base_url}/v1/model", timeout=10).json()
    weights = artifact / WEIGHTS
    good_weights = weights.read_bytes()
    with Records("textguard.service.model") as logs, Traffic(base_url, BODY) as traffic:
        wait_for(lambda: len(traffic.results) >= 5)
        # A new version lands with damaged weights: the spec (the version) changes, the file does not match.
        _replace_atomically(weights, good_weights[:-100])
        save_spec(load_spec(artifact).model_copy(update={"temperature": 3.0}), artifact)
        wait_for(lambda: len(logs.matching("model refresh failed; still serving the old one")) >= 2)
        served_during = len(traffic.results)
        wait_for(lambda: len(traffic.results) >= served_during + 5)
        during = httpx.get(f"{base_url}/v1/model", timeout=10).json()
        ready = httpx.get(f"{base_url}/readyz", timeout=10)
        metrics = httpx.get(f"{base_url}/metrics", timeout=10).text
        refused = list(traffic.results)
        # Repaired: the same new version, now intact, is swapped in.
        _replace_atomically(weights, good_weights)
        wait_for(lambda: httpx.get(f"{base_url}/v1/model", timeout=10).json()["temperature"] == 3.0)
        after = httpx.get(f"{base_url}/v1/model", timeout=10).json()
        wait_for(lambda: traffic.results[-1][1] == after["version"])
    failures = [result for result in traffic.results if result[0] != 200]
    assert not failures, failures[:3]
    assert {version for _, version in refused} == {before["version"]}
    assert (during["version"], during["temperature"]) == (before["version"], before["temperature"])
    assert ready.status_code == 200
    assert _counter(metrics, "textguard_model_load_failures_total") >= 2
    assert _counter(metrics, "textguard_model_swaps_total") == 0
    reason = logs.matching("model refresh failed; still serving the old one")[0]["reason"]
    assert f"{WEIGHTS} does not match its recorded sha256 (tampered or truncated)" in reason
    assert after["version"] != before["version"]
    versions = [version for _, version in traffic.results]
    first_new = versions.index(after["version"])
    assert set(versions[:first_new]) == {before["version"]} and set(versions[first_new:]) == {
        after["version"]
    }


# -- the manifest is closed and confined to the artefact --------------------------------------------


def _drop_entry(artifact: Path, name: str) -> None:
    spec = load_spec(artifact)
    save_spec(spec.model_copy(update={"files": {k: v for k, v in spec.files.items() if k != name}}), artifact)


def _add_unlisted_file(artifact: Path, name: str = "added_tokens.json") -> None:
    (artifact / name).write_text("{}", encoding="utf-8")


def _list_entry(artifact: Path, entry: str, digest: str) -> None:
    spec = load_spec(artifact)
    save_spec(spec.model_copy(update={"files": {**spec.files, entry: digest}}), artifact)


def _load_error(artifact: Path) -> str:
    with pytest.raises(ModelLoadError) as caught:
        Scorer.from_artifact(artifact)
    return str(caught.value)


def test_weights_whose_entry_was_deleted_are_refused(tiny_artifact_copy: Path) -> None:
    _drop_entry(tiny_artifact_copy, WEIGHTS)
    message = _load_error(tiny_artifact_copy)
    assert f"{WEIGHTS} is not listed in textguard.json (no recorded sha256)" in message
    assert "textguard.json lists no weights file" in message


def test_a_file_the_spec_does_not_list_is_refused(tiny_artifact_copy: Path) -> None:
    _add_unlisted_file(tiny_artifact_copy, "special_tokens_map.json")
    (tiny_artifact_copy / "sub").mkdir()
    _add_unlisted_file(tiny_artifact_copy / "sub", "model.safetensors")
    message = _load_error(tiny_artifact_copy)
    assert (
        "special_tokens_map.json is not listed" in message
        and "sub/model.safetensors is not listed" in message
    )


def test_entries_outside_the_artifact_get_one_wording_whether_or_not_the_file_exists(
    tiny_artifact_copy: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the model\n", encoding="utf-8")
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    (tiny_artifact_copy / "escape.json").symlink_to(outside)
    (tiny_artifact_copy / "dangling.json").symlink_to(tmp_path / "no-such-file.txt")
    depth = "../" * len(tiny_artifact_copy.parts)
    entries = {
        "existing, by ..": os.path.relpath(outside, tiny_artifact_copy),
        "missing, by ..": os.path.relpath(tmp_path / "no-such-file.txt", tiny_artifact_copy),
        "existing, absolute": str(outside),
        "missing, absolute": str(tmp_path / "no-such-file.txt"),
        "existing, via the root": depth + "etc/hostname",
        "existing, by symlink": "escape.json",
        "missing, by symlink": "dangling.json",
        "missing, inside": "no-such-file.json",
    }
    wordings = {}
    for case, entry in entries.items():
        artifact = tmp_path / f"artifact-{len(wordings)}"
        shutil.copytree(tiny_artifact_copy, artifact, symlinks=True)
        _list_entry(artifact, entry, digest)
        message = _load_error(artifact)
        assert str(outside) not in message.replace(entry, "")  # nothing but the entry itself is echoed
        wordings[case] = message.split(": model integrity check failed: ")[1].replace(entry, "<entry>")
    assert {wording.split("; ")[0] for wording in wordings.values()} == {
        "<entry> is not a file inside the artefact directory"
    }, wordings


def test_a_symlink_inside_the_artifact_to_a_listed_file_is_fine(tiny_artifact_copy: Path) -> None:
    (tiny_artifact_copy / "tokenizer.json").rename(tiny_artifact_copy / "tokenizer.real.json")
    (tiny_artifact_copy / "tokenizer.json").symlink_to("tokenizer.real.json")
    refresh_checksums(tiny_artifact_copy)
    assert Scorer.from_artifact(tiny_artifact_copy).predict_proba(["hello"]).shape == (1, 3)


@pytest.mark.parametrize(
    ("case", "tamper", "reason"),
    [
        (
            "deleted weights entry",
            lambda a: _drop_entry(a, WEIGHTS),
            f"{WEIGHTS} is not listed in textguard.json",
        ),
        ("unlisted file", _add_unlisted_file, "added_tokens.json is not listed in textguard.json"),
        (
            "entry outside",
            lambda a: _list_entry(a, "../../etc/hostname", "0" * 64),
            "../../etc/hostname is not a file inside the artefact directory",
        ),
    ],
)
def test_a_new_version_with_an_open_manifest_is_refused_at_hot_swap(
    served_copy: tuple[Path, str], case: str, tamper: Callable[[Path], None], reason: str
) -> None:
    artifact, base_url = served_copy
    before = httpx.get(f"{base_url}/v1/model", timeout=10).json()
    with Records("textguard.service.model") as logs:
        tamper(artifact)
        # A new version (its spec changed) that the manager tries to load.
        save_spec(load_spec(artifact).model_copy(update={"temperature": 2.5}), artifact)
        wait_for(lambda: bool(logs.matching("model refresh failed; still serving the old one")))
    after = httpx.get(f"{base_url}/v1/model", timeout=10).json()
    assert (after["version"], after["temperature"]) == (before["version"], before["temperature"])
    assert reason in logs.matching("model refresh failed; still serving the old one")[0]["reason"]
    assert httpx.post(f"{base_url}/v1/score", json=BODY, timeout=10).status_code == 200


# -- what is served stays what was verified --------------------------------------------------------------


def _nan_classifier(artifact: Path) -> None:
    """Valid checksums and format, a classifier bias of NaN: a broken model rather than a tampered file."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = artifact / WEIGHTS
    tensors = load_file(weights)
    tensors["classifier.bias"] = torch.full_like(tensors["classifier.bias"], float("nan"))
    save_file(tensors, weights, metadata={"format": "pt"})
    refresh_checksums(artifact)


def test_a_model_whose_warm_up_gives_non_finite_scores_is_never_served(
    tiny_artifact_copy: Path, tmp_path: Path
) -> None:
    _nan_classifier(tiny_artifact_copy)
    with TestClient(create_app(service_settings(tiny_artifact_copy, tmp_path))) as client:
        wait_for(lambda: "invalid scores" in client.get("/readyz").text)
        assert client.get("/readyz").status_code == 503
        assert client.post("/v1/score", json=BODY).json()["error"]["type"] == "not_ready"


def test_non_finite_scores_never_become_a_decision(tiny_artifact_copy: Path, tmp_path: Path) -> None:
    # Without a warm-up the broken model is served: the scorer's check on every forward must catch it.
    _nan_classifier(tiny_artifact_copy)
    segment = {"segment_id": "s1", "speaker_id": "a", "text": "hello", "start": 0, "end": 1, "final": True}
    with (
        Records("textguard.service.batcher") as logs,
        TestClient(create_app(service_settings(tiny_artifact_copy, tmp_path, warmup=False))) as client,
    ):
        wait_for(lambda: client.get("/readyz").status_code == 200)
        scored = client.post("/v1/score", json=BODY)
        moderated = client.post("/v1/moderations", json={"input": "hello"})
        with client.websocket_connect("/v1/meetings/m1/captions") as socket_:
            socket_.send_json(segment)
            caption = socket_.receive_json()
    for response in (scored, moderated):
        assert response.status_code == 500, response.text
        assert response.json()["error"]["type"] == "internal_error"
    assert caption["error"]["type"] == "internal_error" and "scores" not in caption
    assert logs.matching("the model produced non-finite scores; failing the requests of this drain")
    with sqlite3.connect(tmp_path / "audit.db") as db:
        assert db.execute("SELECT COUNT(*) FROM audit_decisions").fetchone() == (0,)


def test_rewriting_the_weights_file_in_place_does_not_change_the_served_model(
    tiny_artifact_copy: Path, tmp_path: Path
) -> None:
    with TestClient(create_app(service_settings(tiny_artifact_copy, tmp_path))) as client:
        wait_for(lambda: client.get("/readyz").status_code == 200)
        before = client.post("/v1/score", json=BODY).json()["results"][0]["scores"]
        weights = tiny_artifact_copy / WEIGHTS
        data = bytearray(weights.read_bytes())
        for index in range(len(data) // 2, len(data), 7):  # same size: a truncation would be SIGBUS
            data[index] ^= 0x55
        weights.write_bytes(bytes(data))  # in place: same inode, as `cp` or a sync tool would do it
        after = client.post("/v1/score", json=BODY)
    assert after.status_code == 200, after.text
    assert after.json()["results"][0]["scores"] == before
