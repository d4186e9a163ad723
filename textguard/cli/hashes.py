"""CLI commands: `textguard hashes import|add|list|remove` manage the known-content hash lists."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from textguard.errors import DataError

if TYPE_CHECKING:
    from textguard.known_content import Change, HashList

DEFAULT_STORE = Path("hash_lists")

hashes_app = typer.Typer(
    name="hashes",
    help="Manage hash lists of known TVEC text (hash-only: the text itself is never stored or shared).",
    no_args_is_help=True,
)

StoreOption = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="TEXTGUARD_HASH_LISTS",
        help="Hash list directory (one <list>.json per list; env TEXTGUARD_HASH_LISTS).",
    ),
]
ListOption = Annotated[
    str, typer.Option("--list", "-l", help="List id, e.g. gifct-text (a-z, 0-9, - and _).")
]


class ListFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


@hashes_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="Exchange CSV file (hash_type,hash_value[,label,...]).")],
    list_id: ListOption,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Import a hash-only CSV exchange file into a list (all rows or none; duplicates skipped).

    Columns: hash_type, hash_value (required); label, list_id, source, added_at, note. A malformed
    file is refused with the line and field at fault. See docs/known-content.md.

    \b
    Example:
      textguard hashes import partner_hashes.csv --list partner-x --store hash_lists
    """
    from textguard.known_content import HashListStore

    change = HashListStore(store).import_file(list_id, file)
    _report(change, store)


@hashes_app.command("add")
def add_command(
    list_id: ListOption,
    text: Annotated[str | None, typer.Option("--text", "-t", help="The text to list (hashed here).")] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the text from standard input.")] = False,
    label: Annotated[
        str | None, typer.Option("--label", help="What it is, e.g. extremist_glorification.")
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Where it was found or who reported it.")
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", help="A note for moderators (never the content).")
    ] = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Hash a known text and add its fingerprints to a list; the text itself is not stored.

    The text is normalised and canonicalised like every message, then listed as an exact SHA-256
    and, when it is at least 50 characters long after canonicalisation, a MinHash that also
    matches lightly edited copies.

    \b
    Example:
      textguard hashes add --list local-slogans --text "..." --label extremist_glorification
      textguard hashes add --list manifestos --stdin --source "incident 2026-114" < passage.txt
    """
    from textguard.known_content import HashListStore
    from textguard.known_content.fingerprint import FUZZY, MIN_FUZZY_CHARS

    if (text is None) == (not stdin):
        raise DataError("give the text with --text or --stdin (one of them)")
    content = sys.stdin.read() if stdin else str(text)
    change = HashListStore(store).add_text(list_id, content, label=label, source=source, note=note)
    _report(change, store)
    for entry in change.added_entries:
        typer.echo(f"  {entry.hash_id}")
    if change.added and not any(entry.hash_type == FUZZY for entry in change.added_entries):
        typer.echo(
            f"  (exact hash only: shorter than {MIN_FUZZY_CHARS} characters after canonicalisation, "
            "so edited copies will not match)"
        )


@hashes_app.command("list")
def list_command(
    list_id: Annotated[
        str | None, typer.Option("--list", "-l", help="Show this list's hashes (default: a summary of all).")
    ] = None,
    output_format: Annotated[
        ListFormat,
        typer.Option("--format", "-f", help="table, json, or csv (the exchange format: share a list)."),
    ] = ListFormat.TABLE,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Show the hash lists, or one list's hashes; `--format csv` exports the exchange format.

    \b
    Example:
      textguard hashes list
      textguard hashes list --list partner-x --format json
      textguard hashes list --list local-slogans --format csv > local-slogans.csv
    """
    from textguard.known_content import HashListStore, KnownContentIndex, write_exchange_csv

    hash_store = HashListStore(store)
    lists = [hash_store.get(list_id)] if list_id else hash_store.lists()
    if output_format is ListFormat.CSV:
        write_exchange_csv(((item.list_id, entry) for item in lists for entry in item.entries), sys.stdout)
        return
    version = KnownContentIndex(hash_store.lists()).version
    if output_format is ListFormat.JSON:
        documents = [item.to_json() for item in lists]
        for item, document in zip(lists, documents, strict=True):
            document["entries"] = [
                {"hash_id": entry.hash_id, **entry.to_json()} for entry in item.entries
            ]  # the id `remove --hash` takes
        payload = {"store": str(store), "index_version": version, "lists": documents}
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    _print_tables(lists, show_entries=list_id is not None, store=store, version=version)


@hashes_app.command("remove")
def remove_command(
    list_id: ListOption,
    hashes: Annotated[
        list[str] | None,
        typer.Option("--hash", help="Hash id or value to remove (repeatable; default: every hash)."),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Remove hashes from a list (every given one must be there), or empty the list.

    An emptied list stays, with its version bumped, so a version never names two contents.

    \b
    Example:
      textguard hashes remove --list partner-x --hash sha256:3f1c2a9b8e7d6c5b
      textguard hashes remove --list partner-x
    """
    from textguard.known_content import HashListStore

    change = HashListStore(store).remove(list_id, hashes or None)
    _report(change, store)


def _report(change: Change, store: Path) -> None:
    parts = [f"{change.added} added"] if change.added or not change.removed else []
    if change.removed:
        parts.append(f"{change.removed} removed")
    if change.duplicates:
        parts.append(f"{change.duplicates} already listed")
    typer.echo(f"list {change.list_id} in {store}: {', '.join(parts)}; version {change.version}")


def _print_tables(lists: list[HashList], *, show_entries: bool, store: Path, version: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = Table(title=f"hash lists in {store} (index version {version})", title_justify="left")
    for column in ("list", "version", "sha256", "minhash", "updated"):
        summary.add_column(column, justify="left" if column in ("list", "updated") else "right")
    for item in lists:
        exact = sum(entry.hash_type == "sha256" for entry in item.entries)
        fuzzy = len(item.entries) - exact
        summary.add_row(item.list_id, str(item.version), str(exact), str(fuzzy), item.updated_at)
    console.print(summary)
    if not lists:
        console.print("no lists yet: textguard hashes add|import --list ID ...")
    if show_entries:
        for item in lists:
            entries = Table(title=f"{item.list_id} v{item.version}", title_justify="left")
            entries.add_column("hash id", no_wrap=True)  # whole: it is what `remove --hash` takes
            entries.add_column("label")
            entries.add_column("source")
            entries.add_column("added", no_wrap=True)
            entries.add_column("note")
            for entry in item.entries:
                cells = (entry.label, entry.source, entry.added_at, entry.note)
                entries.add_row(entry.hash_id, *(cell or "" for cell in cells))
            console.print(entries)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.add_typer(hashes_app, name="hashes")
