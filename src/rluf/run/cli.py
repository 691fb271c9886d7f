"""`rluf run` (the whole loop) and `rluf report` (rebuild report.html of a run directory)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

console = Console()


def run(
    config: Path | None = typer.Argument(None, help="Run YAML (default: the packaged configs/run.yaml)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default runs/default or runs/quick)."),
    quick: bool = typer.Option(False, "--quick", help="Small world and short training: a few minutes."),
    seed: int | None = typer.Option(None, "--seed", help="Override the config's seed."),
    overrides: list[str] | None = typer.Option(None, "--set", help="KEY=VALUE, dotted, into the run config: "
                                               "--set optimize.crraft.iterations=24"),
    logs: str | None = typer.Option(None, "--logs", help="Your logs (source.logs): a canonical folder, a "
                                    "file `rluf ingest` reads, or the database URL of `rluf serve`."),
    policy: str | None = typer.Option(None, "--policy", help="Your deployed policy (source.policy): a local "
                                      "Hugging Face causal LM folder with a chat template."),
    pairs_helpfulness: str | None = typer.Option(
        None, "--pairs-helpfulness",
        help="Helpfulness preference pairs (TRL or HH-RLHF); default: an OpenAssistant export's rankings."),
    pairs_safety: str | None = typer.Option(None, "--pairs-safety",
                                            help="Safety preference pairs (TRL or HH-RLHF)."),
    signal: str | None = typer.Option(None, "--signal", help="The label rule (source.signal); default: the "
                                      "signals stage's pick."),
) -> None:
    """Run the whole loop: on the simulated deployment, or on your own logs, policy and pairs (`source`);
    resumes a partly finished run directory."""
    from rluf.run.config import load_run_config
    from rluf.run.pipeline import run as run_loop

    source = {"logs": logs, "policy": policy, "pairs.helpfulness": pairs_helpfulness,
              "pairs.safety": pairs_safety, "signal": signal}
    cfg = load_run_config(config, quick=quick, seed=seed, overrides=overrides, source=source)
    out = out or Path("runs") / ("real" if cfg.source else "quick" if cfg.quick else "default")
    t0 = time.time()

    def on_event(stage: str, status: str) -> None:
        colour = {"skipped": "dim", "running": "cyan"}.get(status, "green")
        console.print(f"[{colour}]{time.time() - t0:7.0f}s  {stage:<20} {status}[/]")

    summary = run_loop(cfg, out, on_event=on_event)
    console.print(f"[bold]done in {time.time() - t0:.0f}s[/]; report: {summary['report']}")


def report(run_dir: Path = typer.Argument(..., help="A run directory written by `rluf run`.")) -> None:
    """Rebuild report.html from what the stages of a run directory wrote."""
    from rluf.errors import ConfigError
    from rluf.run.report import build_report

    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist")
    console.print(f"report: {build_report(run_dir)}")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("report")(report)
