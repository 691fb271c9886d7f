"""`rluf optimize` and `rluf sweep`: thin wrappers over rluf.optimize.optimize / rluf.optimize.weight_sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rluf.config import load_config, parse_pairs, parse_set
from rluf.errors import ConfigError
from rluf.utils import read_json

# The options both commands take: where the config, the world, the policy and the reward models are.
CONFIG = typer.Option(None, "--config", help="YAML config (default: OptimizeConfig's defaults; "
                      "a packaged name such as optimize_guarded.yaml works too)")
SET = typer.Option(None, "--set", help="KEY=VALUE, dotted: --set crraft.num_candidates=8 (repeatable)")
SIM = typer.Option(None, "--sim", help="`rluf simulate` folder: prompts, world and policy")
POLICY = typer.Option(None, "--policy", help="starting policy folder")
OBJECTIVE = typer.Option(None, "--objective", help="NAME=REWARD_MODEL_DIR (repeatable)")
ITERATIONS = typer.Option(None, "--iterations")
SEED = typer.Option(None, "--seed")
DEVICE = typer.Option(None, "--device")


def build_config(config: Path | None, sim: Path | None, policy: Path | None, objective: list[str] | None,
                 weight: list[str] | None, iterations: int | None, seed: int | None, device: str | None,
                 overrides: list[str] | None = None):
    """The YAML (or the model's defaults) with the command-line options and `--set` overrides, validated."""
    from rluf.optimize.config import OptimizeConfig

    options = {
        "prompts": {"source": "sim", "path": str(sim)} if sim is not None else None,
        "policy": str(policy) if policy is not None else None,
        "objectives": parse_pairs(objective, "--objective") or None,
        "weights": parse_pairs(weight, "--weight", float) or None,
        "crraft.iterations": iterations, "seed": seed, "device": device,
    }
    return load_config(OptimizeConfig, config, {**options, **parse_set(overrides)})


def _is_main() -> bool:
    from rluf.policy import process_state

    return process_state().is_main_process


class _Progress:
    """A rich progress bar over iterations showing the reward, KL and sign-off rate."""

    def __init__(self, total: int, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[info]}"), disable=not _is_main())
        self.task = self.bar.add_task(label, total=total, info="")

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def update(self, r: dict[str, Any]) -> None:
        if "reward/combined" not in r:
            return
        info = (f"R={r['reward/combined']:.3f} kl={r['kl/mean']:.2f} skip={r['select/skipped']:.0%} "
                f"signoff={r['hack/signoff_rate']:.0%} loss={r['loss']:.3f}")
        self.bar.update(self.task, completed=r["iteration"], info=info)

    def relabel(self, label: str) -> None:
        self.bar.update(self.task, description=label, completed=0, info="")


def optimize_cmd(
    config: Path | None = CONFIG,
    out: Path | None = typer.Option(None, "--out", help="run directory to write"),
    resume: Path | None = typer.Option(None, "--resume", help="continue the run in this directory"),
    sim: Path | None = SIM,
    policy: Path | None = POLICY,
    objective: list[str] | None = OBJECTIVE,
    weight: list[str] | None = typer.Option(None, "--weight", help="NAME=W, e.g. --weight love=0.1 (repeatable)"),
    iterations: int | None = ITERATIONS,
    seed: int | None = SEED,
    device: str | None = DEVICE,
    overrides: list[str] | None = SET,
) -> None:
    """CRRAFT with a Mixture of Judges over weighted calibrated objectives; writes policy/ and metrics.jsonl."""
    from rluf.optimize.runner import optimize

    if (out is None) == (resume is None):
        raise ConfigError("give exactly one of --out DIR (a new run) or --resume DIR (continue a run)")
    cfg = build_config(config, sim, policy, objective, weight, iterations, seed, device, overrides)
    total = cfg.crraft.iterations
    if resume is not None and (resume / "config.json").is_file():
        total = read_json(resume / "config.json")["crraft"]["iterations"]
    with _Progress(total, "crraft") as bar:
        summary = optimize(cfg if resume is None or config else None, out or resume, resume=resume is not None,
                           on_iteration=bar.update)
    if not _is_main():  # torchrun / accelerate launch: rank 0 reports
        return
    typer.echo(json.dumps({k: summary[k] for k in ("iterations_done", "finished", "policy", "wall_s")}, indent=2))
    typer.echo(f"wrote {out or resume} (metrics.jsonl, summary.json{', policy/' if summary['finished'] else ''})")


def sweep_cmd(
    out: Path = typer.Option(..., "--out", help="sweep directory: one run folder per setting + sweep.json"),
    config: Path | None = CONFIG,
    sim: Path | None = SIM,
    policy: Path | None = POLICY,
    objective: list[str] | None = OBJECTIVE,
    iterations: int | None = ITERATIONS,
    seed: int | None = SEED,
    device: str | None = DEVICE,
    overrides: list[str] | None = SET,
    parallel_runs: int = typer.Option(1, "--parallel-runs", min=1, help="settings trained at once, each in "
                                      "its own process with a share of the CPUs (docs/crraft.md: which to pick)"),
) -> None:
    """The paper's sweep: love 0.0 / 0.1 / 0.3 (helpfulness 0.7, safety 0.3) and love-only, in one table."""
    from rluf.optimize.weight_sweep import sweep

    cfg = build_config(config, sim, policy, objective, None, iterations, seed, device, overrides)
    with _Progress(cfg.crraft.iterations, "sweep") as bar:
        report = sweep(cfg, out, on_event=lambda name, state: bar.relabel(f"{name}: {state}"),
                       on_iteration=bar.update, parallel_runs=parallel_runs)
    if not _is_main():
        return
    print_table(report)
    typer.echo(f"wrote {out / 'sweep.json'}")


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="RLUF weight sweep (true metrics on the simulator's evaluation sample)")
    for col in ("run", "love rate", "lift [95% CI]", "helpfulness", "safety viol.", "sign-off", "KL", "flags"):
        t.add_column(col)
    b = report["baseline"]
    t.add_row("baseline", f"{b['love_rate']:.4f}", "", f"{b['helpfulness']:.3f}", f"{b['safety_violation_rate']:.3f}",
              f"{b['signoff_rate']:.1%}", "0", "")
    for name, r in report["runs"].items():
        lo, hi = r["love_lift_ci"]
        t.add_row(name, f"{r['love_rate']:.4f}", f"{r['love_lift']:+.0%} [{lo:+.0%}, {hi:+.0%}]",
                  f"{r['helpfulness']:.3f}", f"{r['safety_violation_rate']:.3f}", f"{r['signoff_rate']:.1%}",
                  f"{r['kl']:.1f}", "; ".join(r["flags"])[:60])
    Console().print(t)
    Console().print(f"claims: {json.dumps(report['claims'])}")


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize_cmd)
    app.command("sweep")(sweep_cmd)
