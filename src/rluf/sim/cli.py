"""`rluf simulate`: thin wrapper over rluf.sim.deployment."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()


def simulate(
    out: Path = typer.Option(..., "--out", help="Run folder to write (logs/, truth/, pairs/, policy/, ...)."),
    config: Path | None = typer.Option(None, "--config", help="World YAML (default: WorldConfig's)."),
    seed: int | None = typer.Option(None, "--seed", help="Override the config's seed."),
    policy: Path | None = typer.Option(
        None, "--policy", help="Deploy this HF policy folder instead of training the baseline."
    ),
    quick: bool = typer.Option(False, "--quick", help="Small world and tiny baseline (under a minute)."),
    overrides: list[str] | None = typer.Option(None, "--set", help="KEY=VALUE, dotted: --set seed=3"),
) -> None:
    """Simulate a chat deployment with known ground truth and write its logs in the canonical schema."""
    from rluf.config import load_config, parse_set
    from rluf.sim import WorldConfig
    from rluf.sim import simulate as run_simulate

    source = config or ("sim_quick.yaml" if quick else None)
    cfg = load_config(WorldConfig, source, {"seed": seed, **parse_set(overrides)})
    with Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int, info: dict) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, info="")
            shown = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
            bar.update(tasks[stage], completed=done, total=total, info=shown)

        summary = run_simulate(cfg, out, policy_path=policy, quick=quick, progress=progress)
    c = summary["counts"]
    ev = summary["policy"]["eval"]
    console.print(
        f"[bold]simulated[/] {c['assistant_messages']:,} assistant messages, {c['conversations']:,} conversations, "
        f"{c['active_users']:,} users -> {out}\n"
        f"natural love rate {summary['natural_love_rate']:.4%} (true {summary['true_love_rate']:.4%}); "
        f"policy parse rate {summary['policy']['pool']['parse_rate']:.1%}; eval: love {ev['love_rate']:.4%}, "
        f"helpfulness {ev['helpfulness']:.3f}, unsafe {ev['safety_violation_rate']:.1%}, "
        f"sign-off {ev['signoff_rate']:.1%}\n"
        f"took {summary['timing']['total_s']:.1f}s; summary in {out / 'simulate.json'}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
