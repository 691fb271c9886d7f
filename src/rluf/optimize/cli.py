"""`rluf optimize` and `rluf sweep`: thin wrappers over rluf.optimize.optimize / rluf.optimize.weight_sweep."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import typer

from rluf.errors import ConfigError
from rluf.utils import read_json


def shipped_config() -> Path:
    """The packaged default YAML (src/rluf/configs/optimize.yaml)."""
    return Path(str(resources.files("rluf") / "configs" / "optimize.yaml"))


def _pairs(values: list[str] | None, option: str, cast=str) -> dict[str, Any]:
    out = {}
    for v in values or []:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} {v!r}: expected NAME=VALUE, e.g. {option} love=runs/x/rewards/love")
        try:
            out[key] = cast(val)
        except ValueError:
            raise ConfigError(f"{option} {v!r}: {val!r} is not a number") from None
    return out


def build_config(config: Path | None, sim: Path | None, policy: Path | None, objective: list[str] | None,
                 weight: list[str] | None, iterations: int | None, seed: int | None, device: str | None):
    """The YAML (or the shipped default) with the command-line overrides applied, validated."""
    from rluf.config import load_yaml, validate_config
    from rluf.optimize.config import OptimizeConfig

    path = config or shipped_config()
    data = load_yaml(path)
    if sim is not None:
        data.setdefault("prompts", {}).update(source="sim", path=str(sim))
    if policy is not None:
        data["policy"] = str(policy)
    if objective:
        data["objectives"] = {**data.get("objectives", {}), **_pairs(objective, "--objective")}
    if weight:
        data["weights"] = {**data.get("weights", {}), **_pairs(weight, "--weight", float)}
    if iterations is not None:
        data.setdefault("crraft", {})["iterations"] = iterations
    for key, value in (("seed", seed), ("device", device)):
        if value is not None:
            data[key] = value
    return validate_config(OptimizeConfig, data, source=str(path))


class _Progress:
    """A rich progress bar over iterations showing the reward, KL and sign-off rate."""

    def __init__(self, total: int, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
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
    config: Path | None = typer.Option(None, "--config", help="YAML config (default: the shipped optimize.yaml)"),
    out: Path | None = typer.Option(None, "--out", help="run directory to write"),
    resume: Path | None = typer.Option(None, "--resume", help="continue the run in this directory"),
    sim: Path | None = typer.Option(None, "--sim", help="`rluf simulate` folder: prompts, world and policy"),
    policy: Path | None = typer.Option(None, "--policy", help="starting policy folder"),
    objective: list[str] | None = typer.Option(None, "--objective", help="NAME=REWARD_MODEL_DIR (repeatable)"),
    weight: list[str] | None = typer.Option(None, "--weight", help="NAME=W, e.g. --weight love=0.1 (repeatable)"),
    iterations: int | None = typer.Option(None, "--iterations"),
    seed: int | None = typer.Option(None, "--seed"),
    device: str | None = typer.Option(None, "--device"),
) -> None:
    """CRRAFT with a Mixture of Judges over weighted calibrated objectives; writes policy/ and metrics.jsonl."""
    from rluf.optimize.runner import optimize

    if (out is None) == (resume is None):
        raise ConfigError("give exactly one of --out DIR (a new run) or --resume DIR (continue a run)")
    cfg = build_config(config, sim, policy, objective, weight, iterations, seed, device)
    total = cfg.crraft.iterations
    if resume is not None and (resume / "config.json").is_file():
        total = read_json(resume / "config.json")["crraft"]["iterations"]
    with _Progress(total, "crraft") as bar:
        summary = optimize(cfg if resume is None or config else None, out or resume, resume=resume is not None,
                           on_iteration=bar.update)
    typer.echo(json.dumps({k: summary[k] for k in ("iterations_done", "finished", "policy", "wall_s")}, indent=2))
    typer.echo(f"wrote {out or resume} (metrics.jsonl, summary.json{', policy/' if summary['finished'] else ''})")


def sweep_cmd(
    out: Path = typer.Option(..., "--out", help="sweep directory: one run folder per setting + sweep.json"),
    config: Path | None = typer.Option(None, "--config", help="YAML config (default: the shipped optimize.yaml)"),
    sim: Path | None = typer.Option(None, "--sim", help="`rluf simulate` folder"),
    policy: Path | None = typer.Option(None, "--policy", help="starting policy folder"),
    objective: list[str] | None = typer.Option(None, "--objective", help="NAME=REWARD_MODEL_DIR (repeatable)"),
    iterations: int | None = typer.Option(None, "--iterations"),
    seed: int | None = typer.Option(None, "--seed"),
    device: str | None = typer.Option(None, "--device"),
) -> None:
    """The paper's sweep: love 0.0 / 0.1 / 0.3 (helpfulness 0.7, safety 0.3) and love-only, in one table."""
    from rluf.optimize.weight_sweep import sweep

    cfg = build_config(config, sim, policy, objective, None, iterations, seed, device)
    with _Progress(cfg.crraft.iterations, "sweep") as bar:
        report = sweep(cfg, out, on_event=lambda name, state: bar.relabel(f"{name}: {state}"),
                       on_iteration=bar.update)
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
