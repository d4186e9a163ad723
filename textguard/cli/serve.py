"""CLI commands: `serve` (the HTTP service), `keys new` (mint a tenant's API key) and `api-key` (a bare
key and its digest, the format before tenants).

Every `ServiceSettings` field is a flag here and a TEXTGUARD_* environment variable; a flag given on
the command line wins over the environment. Secrets are taken only from files (`--api-keys-file`,
`--audit-hash-key-file`) or the environment, never as flag values, which `ps` would show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from textguard.errors import ConfigError

SERVE_HELP = """Serve the scoring API (POST /v1/score, /v1/moderations; GET /healthz, /readyz, /metrics).

The model loads once, in the background: /readyz answers 503 until it is loaded and warmed up.
With a models:/<name>@<alias> model the registry is polled and a promoted version is hot-swapped.

Example:

    textguard serve --model models:/textguard@champion --port 8000 --policy configs/policies/default.yaml
"""

API_KEY_HELP = """Make a new random API key and print it with the sha256 digest the server stores.

Give the key to the client; append the digest line to the file named by TEXTGUARD_API_KEYS_FILE. Such a
key belongs to the tenant `default` with every scope; `textguard keys new` makes tenant keys.

Example:

    textguard api-key            # prints "key tg_..." and "digest 3f2a..."
"""

KEYS_NEW_HELP = """Mint an API key for a tenant with scopes; the key is printed once, only its digest is kept.

Scopes: score (POST /v1/score, /v1/moderations, caption streams), report (the transparency report),
review, admin (everything, every tenant's report, full /readyz reasons). With --file the entry is
appended to that key file (created if missing); point TEXTGUARD_API_KEYS_FILE at it and restart or
roll the servers.

Example:

    textguard keys new --tenant acme --scope score --file keys.yaml
"""

keys_app = typer.Typer(help="API keys: tenants and scopes (docs/serving.md).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("serve", help=SERVE_HELP)(serve)
    app.command("api-key", help=API_KEY_HELP)(api_key)
    keys_app.command("new", help=KEYS_NEW_HELP)(keys_new)
    app.add_typer(keys_app, name="keys")


def serve(
    model: str | None = typer.Option(
        None, help="artefact dir, runs:/<id>/model, models:/<name>@<alias> or /<version>"
    ),
    host: str | None = typer.Option(None, help="bind address [127.0.0.1]"),
    port: int | None = typer.Option(None, help="TCP port [8000]"),
    workers: int | None = typer.Option(None, help="worker processes, each with its own model [1]"),
    reuse_port: bool | None = typer.Option(
        None,
        "--reuse-port/--no-reuse-port",
        help="with --workers N: a listening socket per process (SO_REUSEPORT, Linux), so connections "
        "spread between them [on]",
    ),
    backend: str | None = typer.Option(None, help="torch or onnx [torch]"),
    quantized: bool | None = typer.Option(
        None, "--quantized/--no-quantized", help="ONNX: use model.int8.onnx"
    ),
    precision: str | None = typer.Option(
        None, help="torch: auto (bf16 where the hardware has it and parity holds), fp32 or bf16 [auto]"
    ),
    policy: Path | None = typer.Option(None, help="policy YAML [configs/policies/default.yaml]"),
    log_level: str | None = typer.Option(None, help="debug, info, warning or error [info]"),
    warmup: bool | None = typer.Option(
        None, "--warmup/--no-warmup", help="warm-up forwards before ready [on]"
    ),
    audit_url: str | None = typer.Option(
        None, help="SQLAlchemy URL of the audit store [sqlite:///textguard_audit.db]"
    ),
    audit_hash_key_file: Path | None = typer.Option(None, help="file holding the audit HMAC key"),
    audit_store_text: bool | None = typer.Option(
        None, "--audit-store-text/--no-audit-store-text", help="store message text in the audit log [off]"
    ),
    report_min_count: int | None = typer.Option(
        None, help="transparency report: counts below this are shown as <k; callers may only raise it [10]"
    ),
    report_min_meetings: int | None = typer.Option(
        None, help="transparency report: rows from fewer distinct meetings are withheld [3]"
    ),
    api_keys_file: Path | None = typer.Option(
        None, help="file of accepted API-key sha256 digests, one per line"
    ),
    rate_limit_per_minute: int | None = typer.Option(
        None, help="messages/minute per API key (per client IP without keys); 0=off [0]"
    ),
    tenant_rate_limit_per_minute: int | None = typer.Option(
        None, help="messages/minute per tenant, all its keys together; 0=off [0]"
    ),
    rate_limit_redis_url: str | None = typer.Option(
        None, help="redis://host:port/db shared by all replicas [unset: per process]"
    ),
    trusted_proxies: str | None = typer.Option(
        None, help="comma-separated CIDRs whose X-Forwarded-For is believed [none]"
    ),
    max_body_bytes: int | None = typer.Option(None, help="largest request body [1000000]"),
    max_messages: int | None = typer.Option(None, help="messages per request [128]"),
    max_text_chars: int | None = typer.Option(None, help="characters per message [4096]"),
    max_header_bytes: int | None = typer.Option(None, help="request line + headers, bytes [16384]"),
    max_headers: int | None = typer.Option(None, help="header fields per request [100]"),
    header_timeout_seconds: float | None = typer.Option(None, help="time to send all headers [10]"),
    body_timeout_seconds: float | None = typer.Option(None, help="time to send the body after them [30]"),
    keep_alive_seconds: int | None = typer.Option(None, help="idle keep-alive connections close after [5]"),
    max_connections: int | None = typer.Option(None, help="open connections before answering 503 [1000]"),
    drain_timeout_seconds: int | None = typer.Option(None, help="SIGTERM: time for requests to finish [20]"),
    deadline_ms: int | None = typer.Option(
        None, help="refuse at once (503) what cannot be answered within this many ms [1000]"
    ),
    deadline_min_ms: int | None = typer.Option(None, help="shortest X-Deadline-Ms a client may ask [50]"),
    deadline_max_ms: int | None = typer.Option(None, help="longest X-Deadline-Ms a client may ask [30000]"),
    retry_hold_ms: int | None = typer.Option(
        None, help="hold a client that comes back before its Retry-After, up to this long; 0=never [1000]"
    ),
    max_queue: int | None = typer.Option(None, help="queued texts before answering 503 [1024]"),
    batch_max_size: int | None = typer.Option(None, help="texts per forward pass [32]"),
    batch_drain_max: int | None = typer.Option(
        None, help="texts an inference worker takes from the queue at once; 0=all queued [8]"
    ),
    batch_gather_ms: float | None = typer.Option(
        None,
        help="while another worker is busy, wait up to this long for a full batch [0 with inference "
        "processes, 25 with threads]",
    ),
    inference_workers: int | None = typer.Option(None, help="forward passes run at once; 0=one per core [0]"),
    inference_threads: int | None = typer.Option(
        None, help="threads per forward pass (torch and ONNX); 0=cores / workers [0]"
    ),
    inference_processes: bool | None = typer.Option(
        None,
        "--inference-processes/--no-inference-processes",
        help="run each inference worker's forward passes in a process of its own, or in threads of the "
        "server [processes]",
    ),
    freeze_heap: bool | None = typer.Option(
        None,
        "--freeze-heap/--no-freeze-heap",
        help="once the model is in, keep start-up objects out of the garbage collector's full scans [on]",
    ),
    model_poll_seconds: float | None = typer.Option(None, help="model refresh poll period, 0=off [30]"),
    hash_lists: Path | None = typer.Option(
        None, help="hash list store of known content (`textguard hashes`), reloaded on change [none]"
    ),
    hash_lists_poll_seconds: float | None = typer.Option(None, help="hash list change check period [2]"),
    caption_window_segments: int | None = typer.Option(None, help="caption segments per speaker window [5]"),
    caption_window_seconds: float | None = typer.Option(None, help="caption window span in seconds [30]"),
    caption_max_meetings: int | None = typer.Option(None, help="live meetings tracked at once [10000]"),
    caption_meeting_ttl_seconds: float | None = typer.Option(None, help="idle meeting eviction [600]"),
    chat_window_messages: int | None = typer.Option(
        None, help="chat messages per speaker window, the current one included [4]"
    ),
    chat_window_seconds: float | None = typer.Option(None, help="chat window span in seconds [60]"),
    context_max_speakers: int | None = typer.Option(None, help="speakers kept per meeting [64]"),
    context_max_chars: int | None = typer.Option(None, help="characters kept per earlier message [1000]"),
    context_backend: str | None = typer.Option(None, help="meeting context store: memory or redis [memory]"),
    context_redis_url: str | None = typer.Option(
        None, help="Redis URL for --context-backend redis [redis://127.0.0.1:6379/0]"
    ),
) -> None:
    flags = {name: value for name, value in locals().items() if value is not None}
    from textguard.service.preload import setting_hint, start_first_worker

    early = None
    if setting_hint(flags, "workers", "1") == "1":  # the processes of --workers N start their own
        _passive_omp_threads()  # the worker's OpenMP runtime reads it when torch loads
        early = start_first_worker(flags)
    try:
        settings = build_settings(flags)
    except BaseException:
        if early is not None:
            early.discard()
        raise
    run(settings, early)


def _passive_omp_threads() -> None:
    """Idle OpenMP (torch) threads sleep instead of spinning, unless the operator chose otherwise.

    Spinning workers take CPU from the event loop and from other processes on the same cores: on a
    loaded 2-core machine, PASSIVE cut torch's CPU per message from 25-58 ms to 7.6 ms with identical
    logits. It must be in the environment before torch loads its OpenMP runtime, hence here.
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def build_settings(flags: dict[str, Any]) -> Any:
    """ServiceSettings from the environment overridden by `flags`; invalid values -> one-line ConfigError."""
    from pydantic import ValidationError

    from textguard.config import format_validation_error
    from textguard.service.settings import ServiceSettings

    try:
        return ServiceSettings(**flags)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "serve settings")) from None


def run(settings: Any, early: Any = None) -> None:
    """Serve with `settings`; `early`: the first inference worker, if `start_first_worker` started one."""
    import os

    from textguard.artifact import REMOTE_SCHEMES
    from textguard.service.preload import VERIFIED_ENV, Preload, first_worker_for, on_disk

    _passive_omp_threads()  # before the preload thread imports torch
    early = first_worker_for(settings if settings.workers == 1 else None, early)
    preload = None
    if not settings.model.startswith(REMOTE_SCHEMES):
        directory = Path(settings.model).expanduser()
        if not directory.is_dir():
            if early is not None:
                early.discard()
            raise ConfigError(
                f"model {settings.model!r} is not an artefact directory; give a path, runs:/<id>/model or "
                "models:/<name>@<alias>"
            )
        if settings.workers == 1:
            preload = Preload(settings, directory, first_worker=early)
        else:
            from textguard.spec import load_spec, verify_artifact

            fingerprint = on_disk(directory)
            verify_artifact(directory, load_spec(directory))
            # Each process loads what was just verified without hashing it again, while the files are
            # as they were (e5: 0.7 s of CPU each, on the cores the first process needs to get ready).
            os.environ[VERIFIED_ENV] = fingerprint
    elif settings.workers == 1:
        preload = Preload(settings, None, first_worker=early)

    import uvicorn

    from textguard.service.connection import uvicorn_options
    from textguard.service.logging import configure_logging, logging_config

    configure_logging(settings.log_level)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": logging_config(settings.log_level),
        "access_log": False,
    }
    if preload is not None:
        from textguard.service.app import create_app

        app = create_app(settings, preload=preload.loaded)
        # A local artefact that fails its checksums would never become ready: say so now, in one
        # line, instead of starting a server that answers 503 forever. (Registry models are checked
        # when downloaded; a bad new version during a hot swap is refused while the old one serves.)
        preload.wait_verified()
        uvicorn.run(app, **common, **uvicorn_options(settings))
        return
    import tempfile

    from textguard.service import startup_turns

    # Worker processes rebuild the settings from the environment: hand them the resolved values,
    # including one generated audit key, so every worker hashes alike.
    os.environ.update(settings.to_env())
    with tempfile.TemporaryDirectory(prefix="textguard-serve-") as private:
        # The processes take turns through their first load (one lock file for this server).
        os.environ[startup_turns.ENV] = str(Path(private) / "startup.lock")
        config = uvicorn.Config(
            "textguard.service.asgi:app_from_env",
            factory=True,
            workers=settings.workers,
            **common,
            **uvicorn_options(settings, in_process=False),
        )
        _run_processes(config, reuse_port=settings.reuse_port)


def _run_processes(config: Any, *, reuse_port: bool) -> None:
    """uvicorn.run's supervisor of `config.workers` processes, each listening on a socket of its own
    (textguard.service.listeners) unless `reuse_port` is off or the platform cannot spread connections."""
    import logging

    from uvicorn.supervisors import Multiprocess

    from textguard.service.listeners import ReusePortListener, reuse_port_available

    if not (reuse_port and reuse_port_available()):
        sock = config.bind_socket()  # one socket shared by every process
    else:
        try:
            sock = ReusePortListener.for_address(config.host, config.port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on http://%s:%d (Press CTRL+C to quit); each of the %d processes listens on "
            "a socket of its own (SO_REUSEPORT)",
            config.host,
            sock.getsockname()[1],
            config.workers,
        )
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def keys_new(
    tenant: str = typer.Option(..., help="tenant the key belongs to (lowercase letters, digits, . _ -)"),
    scope: list[str] = typer.Option(..., "--scope", help="score, report, review or admin (repeatable)"),
    key_id: str | None = typer.Option(None, "--id", help="public key id [<tenant>-<random>]"),
    rate_limit_per_minute: int | None = typer.Option(
        None, help="this key's own messages/minute [the server's rate_limit_per_minute]"
    ),
    file: Path | None = typer.Option(None, help="key file to append the entry to (created if missing)"),
) -> None:
    import secrets

    from pydantic import ValidationError

    from textguard.service.keys import ApiKeyEntry, KeyFileError, append_key, key_file_entry
    from textguard.service.security import api_key_digest, new_api_key

    key = new_api_key()
    try:
        entry = ApiKeyEntry(
            id=key_id or f"{tenant}-{secrets.token_hex(4)}",
            sha256=api_key_digest(key),
            tenant=tenant,
            scopes=tuple(dict.fromkeys(scope)),  # type: ignore[arg-type]
            rate_limit_per_minute=rate_limit_per_minute,
        )
    except ValidationError as exc:
        errors = exc.errors()
        # A generated id fails only because the tenant does: name the tenant.
        first = next((e for e in errors if key_id is not None or e["loc"][:1] != ("id",)), errors[0])
        field = ".".join(str(part) for part in first["loc"][:1])
        raise ConfigError(f"keys new: {field}: {first['msg']}") from None
    if file is not None:
        try:
            append_key(file, entry)
        except KeyFileError as exc:
            raise ConfigError(str(exc)) from None
        except OSError as exc:
            raise ConfigError(f"cannot write {file}: {exc.strerror}") from None
    typer.echo(f"key     {key}")
    typer.echo(f"id      {entry.id}")
    if file is not None:
        typer.echo(f"added to {file} (the key itself is not stored anywhere: give it to the client now)")
    else:
        typer.echo("entry   (append under `keys:` in the key file)")
        typer.echo(key_file_entry(entry), nl=False)


def api_key() -> None:
    from textguard.service.security import api_key_digest, new_api_key

    key = new_api_key()
    typer.echo(f"key     {key}")
    typer.echo(f"digest  {api_key_digest(key)}")
