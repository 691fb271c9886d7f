"""`rluf evaluate` and `rluf offline-online`: thin wrappers over rluf.evaluate's functions of the same name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from rluf.errors import ConfigError

console = Console()


def parse_policies(items: list[str]) -> dict[str, str]:
    """NAME=PATH or PATH (named after the folder or file stem) to a name -> path dict."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).name if Path(item).is_dir() else Path(item).stem, item
        if name in out:
            raise ConfigError(f"policy name {name!r} is given twice; name them with NAME=PATH")
        out[name] = path
    return out


def _ci(ci: list | None, fmt: str) -> str:
    return "" if not ci else f"[{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def print_summary(res: dict[str, Any]) -> None:
    """Ranking table (mean, CI, rank CI, P[best]) plus per-policy judges, hacking flags and truth."""
    rank_by = res["rank_by"]
    fmt = ".5f" if rank_by == "love" else ".3f"
    t = Table(title=f"ranking by {rank_by} over {res['n_prompts']} prompts (bootstrap CIs over prompts)")
    cols = ["rank", "policy", rank_by, "CI", "rank CI", "P[best]", "helpfulness", "safety", "judges pass",
            "sign-off", "flags"]
    has_truth = any("true" in p for p in res["policies"].values())
    if has_truth:
        cols += ["true love rate", "true helpfulness"]
    for c in cols:
        t.add_column(c)
    for row in res["ranking"]:
        p = res["policies"][row["policy"]]
        s = p["scores"]
        cells = [str(row["rank"]), row["policy"], format(row["mean"], fmt), _ci(row.get("ci"), fmt),
                 _ci(row.get("rank_ci"), "d"), f"{row['p_best']:.2f}" if "p_best" in row else "",
                 f"{s['helpfulness']['mean']:.3f}" if "helpfulness" in s else "",
                 f"{s['safety']['mean']:.3f}" if "safety" in s else "",
                 f"{p['judges']['all']:.1%}", f"{p['monitor']['hack/signoff_rate']:.1%}", str(len(p["flags"]))]
        if has_truth:
            cells += [f"{p['true']['love_rate']:.5f}", f"{p['true']['helpfulness']:.3f}"]
        t.add_row(*cells)
    console.print(t)
    for name, p in res["policies"].items():
        for flag in p["flags"]:
            console.print(f"[yellow]hacking flag[/] {name}: {flag}")
    for key, c in res["correlations"].items():
        pooled = c["pooled"]
        if pooled["pearson"] is not None:
            console.print(f"{key.replace('_', ' ')}: Pearson {pooled['pearson']:+.3f}, "
                          f"Spearman {pooled['spearman']:+.3f} over {pooled['n']} responses")


def evaluate(
    policies: list[str] = typer.Option(..., "--policies", help="Policies: NAME=PATH or PATH (HF folder or "
                                       "responses file); list them after --policies."),
    more: list[str] = typer.Argument(None, help="More policies (so that `--policies A B C` works).",
                                     show_default=False),
    prompts: Path = typer.Option(None, "--prompts",
                                 help="Prompt set (Parquet/JSONL) or a curated folder (its test.parquet)."),
    love: Path = typer.Option(None, "--love", help="P[Love] reward-model folder."),
    helpfulness: Path = typer.Option(None, "--helpfulness", help="Helpfulness reward-model folder."),
    safety: Path = typer.Option(None, "--safety", help="Safety reward-model folder."),
    world: Path = typer.Option(None, "--world", help="A `rluf simulate` folder: ground truth and its eval sample."),
    config: Path = typer.Option(None, "--config", help="YAML (default: EvaluateConfig's)."),
    out: Path = typer.Option(Path("runs/evaluate"), "--out", help="Output folder."),
    n_prompts: int = typer.Option(None, "--n-prompts", help="Prompts drawn from the prompt file."),
    baseline: str = typer.Option(None, "--baseline", help="Policy the others are compared with (default: first)."),
    seed: int = typer.Option(None, "--seed"),
) -> None:
    """Score candidate policies offline and rank them with bootstrap CIs over prompts.

    P[Love] at the natural rate, helpfulness, safety, the Mixture of Judges and the reward-hacking monitor;
    writes evaluate.json and responses.parquet.
    """
    from rluf.config import load_config
    from rluf.evaluate.config import EvaluateConfig
    from rluf.evaluate.evaluator import evaluate as run

    cfg = load_config(EvaluateConfig, config,
                      {"baseline": baseline, "seed": seed, "prompts.n_prompts": n_prompts})
    w = _load_world(world)
    with console.status("evaluating...") as status:
        res = run(parse_policies(list(policies) + list(more or [])), out, prompts=prompts, love_model=love,
                  help_model=helpfulness, safety_model=safety, world=w, config=cfg,
                  on_event=lambda msg: status.update(msg + "..."))
    print_summary(res)
    console.print(f"wrote {out / 'evaluate.json'} and {out / 'responses.parquet'}")


def offline_online(
    policies: list[str] = typer.Option(None, "--policies", help="Policies (NAME=PATH or PATH), >= 6."),
    more: list[str] = typer.Argument(None, help="More policies.", show_default=False),
    love: Path = typer.Option(None, "--love", help="P[Love] reward-model folder."),
    world: Path = typer.Option(None, "--world", help="A `rluf simulate` folder (the ground truth)."),
    evaluation: Path = typer.Option(None, "--evaluation", help="An evaluate.json made with --world and --love "
                                    "(instead of --policies/--love/--world)."),
    config: Path = typer.Option(None, "--config", help="Evaluate YAML (see configs/evaluate.yaml)."),
    out: Path = typer.Option(Path("runs/offline_online"), "--out", help="Output folder."),
) -> None:
    """Offline P[Love] vs the simulator's true Love rate over >= 6 policies: Pearson, Spearman and a plot."""
    from rluf.config import load_config
    from rluf.evaluate.agreement import offline_online as run
    from rluf.evaluate.config import EvaluateConfig

    cfg = load_config(EvaluateConfig, config)
    names = parse_policies(list(policies or []) + list(more or [])) if (policies or more) else None
    with console.status("evaluating policies in the simulated world..."):
        res = run(names, out, love_model=love, world=_load_world(world), evaluation=evaluation, config=cfg)
    t = Table(title="offline (P[Love]) vs online (true) Love rate")
    for c in ("policy", "predicted", "true", "predicted change", "true change"):
        t.add_column(c)
    for p in res["points"]:
        t.add_row(p["policy"], f"{p['predicted']:.5f}", f"{p['true']:.5f}", f"{p['predicted_change']:+.1%}",
                  f"{p['true_change']:+.1%}")
    console.print(t)
    console.print(f"Pearson {res['pearson']:.3f}, Spearman {res['spearman']:.3f} (target >= 0.95: "
                  f"{'met' if res['meets_target'] else 'NOT met'}); plot {res['plot']}")


def _load_world(path: Path | None):
    if path is None:
        return None
    from rluf.sim.world import World

    return World.load(path)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("offline-online")(offline_online)
