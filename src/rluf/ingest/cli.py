"""`rluf ingest SRC... --out DIR`: a thin wrapper over rluf.ingest.ingest."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rluf.config import load_config
from rluf.errors import ConfigError
from rluf.ingest.config import IngestConfig
from rluf.ingest.ingest import expand_sources
from rluf.ingest.ingest import ingest as ingest_fn
from rluf.jsonsafe import printable

console = Console()


def print_counts(report: dict) -> None:
    """The per-table counts (and the files that could not be read) as rich tables."""
    table = Table(title=printable(f"rluf ingest -> {report['out']}"))
    for col in ("table", "read", "accepted", "quarantined", "top reasons"):
        table.add_column(col, justify="left" if col in ("table", "top reasons") else "right")
    for name, t in report["tables"].items():
        reasons = ", ".join(f"{r} {n}" for r, n in list(t["reasons"].items())[:3])
        table.add_row(name, str(t["read"]), str(t["accepted"]), str(t["quarantined"]), reasons)
    console.print(table)
    problems = [f for f in report["files"] if f["problem"]]
    if problems:
        ft = Table(title="files not read (listed in quarantine.jsonl)")
        ft.add_column("file")
        ft.add_column("reason")
        ft.add_column("detail")
        for f in problems:
            ft.add_row(printable(f["path"]), f["problem"], printable(f["detail"]))
        console.print(ft)
    if report["skipped_files"]:
        skipped = report["skipped_files"]
        shown = printable(", ".join(skipped[:5])) + (" ..." if len(skipped) > 5 else "")
        console.print(
            f"skipped {len(skipped)} file(s) in folders: hidden, rluf's own outputs, or an "
            f"extension ingest does not read (listed in ingest.json skipped_files): {shown}",
            highlight=False,
        )
    if report["orphan_messages"]:
        console.print(
            f"{report['orphan_messages']} message(s) have a parent_id that is not an accepted message: kept "
            "as they are; their context starts at them (docs/log-schema.md)",
            highlight=False,
        )
    console.print(
        printable(
            f"{report['records_read']} records in {report['seconds']:.2f}s; details in "
            f"{report['out']}/ingest.json and quarantine.jsonl"
        )
    )


def ingest(
    sources: list[Path] = typer.Argument(
        ..., help="Log files or folders (JSONL, JSON, CSV, Parquet; canonical, Langfuse or OpenAssistant)."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder for messages/reactions/users.parquet, quarantine.jsonl and ingest.json.",
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML with IngestConfig fields (docs/ingest.md)."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Stop at the first bad record instead of quarantining."
    ),
    fmt: str = typer.Option("auto", "--format", help="auto (by extension) | jsonl | json | csv | parquet."),
    table: str = typer.Option(
        "auto",
        "--table",
        help="auto (by field names) | messages | reactions | users | "
        "langfuse-traces | langfuse-scores | oasst.",
    ),
    max_text_bytes: int | None = typer.Option(
        None, help="Quarantine messages longer than this (UTF-8 bytes)."
    ),
    now: str | None = typer.Option(None, help="Reference time (ISO 8601) for the future-timestamp check."),
) -> None:
    """Validate logs and write them in the canonical schema; bad records go to quarantine.jsonl."""
    cfg = load_config(IngestConfig, config, {"max_text_bytes": max_text_bytes})
    when = None
    if now is not None:
        try:
            when = datetime.fromisoformat(now)
        except ValueError:
            raise ConfigError(
                f"--now {now!r} is not an ISO-8601 time, e.g. 2025-01-31T12:00:00+00:00"
            ) from None
    n_files = len(expand_sources(list(sources))[0])
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("reading", total=n_files)

        def on_file(path: Path) -> None:
            progress.update(task, description=f"reading {path.name}")
            progress.advance(task)

        report = ingest_fn(
            list(sources), out, strict=strict, fmt=fmt, now=when, table=table, config=cfg, on_file=on_file
        )
    print_counts(report)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
