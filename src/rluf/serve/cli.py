"""`rluf serve` and `rluf export`: thin wrappers over rluf.serve.serve and rluf.serve.export_logs."""

from __future__ import annotations

from pathlib import Path

import typer


def serve_cmd(
    config: Path = typer.Option(None, "--config", "-c", help="serve.yaml (see docs/serve.md); defaults if omitted."),
    host: str = typer.Option(None, help="Override server.host."),
    port: int = typer.Option(None, help="Override server.port."),
    db: str = typer.Option(None, "--db", help="Override database.url (SQLAlchemy URL or a SQLite file path)."),
    policy: Path = typer.Option(None, help="Override the path of every local backend (a HF model folder)."),
) -> None:
    """Run the OpenAI-compatible A/B gateway with the chat page at /, logging every turn to the database."""
    from rluf.config import load_config
    from rluf.serve import ServeConfig, serve

    cfg = load_config(ServeConfig, config)
    if host is not None:
        cfg.server.host = host
    if port is not None:
        cfg.server.port = port
    if db is not None:
        cfg.database.url = db
    if policy is not None:
        for backend in cfg.backends.values():
            if backend.kind == "local":
                backend.path = str(policy)
    serve(cfg)


def export_cmd(
    db_url: str = typer.Argument(..., help="The gateway's database.url (or a SQLite file path)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: logs/*.parquet, assignments.parquet."),
) -> None:
    """Export the gateway database to canonical Parquet logs that `rluf ingest` and later stages read."""
    from rluf.serve import export

    counts = export(db_url, out)
    print(f"exported to {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("export")(export_cmd)
