"""`rluf abtest analyze | power | simulate`: thin wrappers over rluf.abtest's functions of the same name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
abtest_app = typer.Typer(help="Stage 5: analyse A/B experiments, size them, and run them in the simulator.",
                         no_args_is_help=True)


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:+.{digits}f}%"


def _ci(ci: list | None) -> str:
    if not ci or ci[0] is None:
        return "n/a"
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def print_result(res: dict[str, Any]) -> None:
    """Arms, lift and CIs of an analysis as rich tables (used by analyze and simulate)."""
    sig = res["signal"]
    arms = Table(title=f"'{sig}' rate per arm")
    for col in ("arm", "users", "responses", sig, "rate", "se (user-clustered)"):
        arms.add_column(col, justify="right" if col != "arm" else "left")
    for role, arm in (("control", res["control_arm"]), ("treatment", res["treatment_arm"])):
        s = res[role]
        arms.add_row(f"{arm} ({role})", str(s["users"]), str(s["responses"]), str(s["events"]),
                     f"{s['rate']:.5f}", f"{s['se']:.5f}")
    console.print(arms)
    level = f"{100 * (1 - res['alpha']):.0f}%"
    lift = Table(title=f"relative lift of treatment over control ({level} CIs)")
    for col in ("method", "lift", "CI", "p-value"):
        lift.add_column(col)
    d = res["delta"]
    lift.add_row("delta method, clustered by user", _pct(d["lift"]), _ci(d["lift_ci"]), f"{d['p_value']:.3g}")
    if "bootstrap" in res:
        b = res["bootstrap"]
        lift.add_row(f"user bootstrap ({b['reps']} reps)", _pct(d["lift"]), _ci(b["lift_ci"]), f"{b['p_value']:.3g}")
    p = res["plain"]
    lift.add_row("plain per-response (ignores users)", _pct(d["lift"]), _ci(p["lift_ci_log_adjusted"]),
                 f"{p['p_value']:.3g}")
    console.print(lift)
    for w in res.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}")
    if "filters" in res:
        f, u = res["filters"], res["filters"]["unfiltered"]
        console.print(f"adversarial filters left out {f['excluded_accounts']} accounts and {f['excluded_events']} of "
                      f"{f['signal_events']} '{sig}' events; without them the lift is {_pct(u['lift'])} "
                      f"{_ci(u['lift_ci'])}")
        for w in f["warnings"]:
            console.print(f"[yellow]warning:[/] {w}")
    if res.get("design_effect") is not None:
        console.print(f"design effect (clustered / per-response variance): {res['design_effect']:.2f}")
    if "segments" in res:
        seg = Table(title=f"per {res['segment_by']}")
        for col in ("segment", "responses C/T", "rate C", "rate T", "lift", "CI (delta)", "p-value"):
            seg.add_column(col)
        for v, s in res["segments"].items():
            if "skipped" in s:
                seg.add_row(str(v), "", "", "", "", s["skipped"], "")
                continue
            seg.add_row(str(v), f"{s['control']['responses']}/{s['treatment']['responses']}",
                        f"{s['control']['rate']:.5f}", f"{s['treatment']['rate']:.5f}", _pct(s["lift"]),
                        _ci(s["delta"]["lift_ci"]), f"{s['delta']['p_value']:.3g}")
        console.print(seg)


def analyze(
    logs: Path = typer.Argument(
        ..., help="Folder with messages.parquet and reactions.parquet (or a run dir with logs/)."),
    control: str = typer.Option(..., "--control", help="model_id of the control arm."),
    treatment: str = typer.Option(..., "--treatment", help="model_id of the treatment arm."),
    signal: str = typer.Option(None, "--signal", help="Reaction type to count (default: love, or the config's)."),
    segment: str = typer.Option(None, "--segment", help="Column to break results down by (messages or side table)."),
    segment_table: Path = typer.Option(None, "--segment-table", help="Parquet with the segment column and a join key."),
    config: Path = typer.Option(None, "--config", help="YAML with analyze options (see configs/abtest.yaml)."),
    bootstrap_reps: int = typer.Option(None, "--bootstrap-reps", help="User-bootstrap replicates (0 = none)."),
    alpha: float = typer.Option(None, "--alpha", help="Significance level (CIs at 1 - alpha)."),
    exclude_users: Path = typer.Option(None, "--exclude-users", help="File with a user_id column of accounts to "
                                       "leave out (e.g. flagged adversarial accounts)."),
    filters: bool = typer.Option(None, "--filters/--no-filters", help="Apply curate's adversarial filters first "
                                 "(default: on, or the config's); the lift without them is shown too."),
    out: Path = typer.Option(None, "--out", help="Write the full result as JSON here."),
) -> None:
    """Rate of a signal per arm, relative lift with user-clustered CIs, p-value, per-segment breakdown."""
    from rluf.abtest.analyze import AnalyzeConfig
    from rluf.abtest.analyze import analyze as run
    from rluf.config import load_config

    cfg = load_config(AnalyzeConfig, config, {"signal": signal, "bootstrap_reps": bootstrap_reps, "alpha": alpha,
                                              "filters": filters})
    with console.status("aggregating per user and bootstrapping..."):
        res = run(logs, control, treatment, segment_by=segment, segment_table=segment_table,
                  exclude_users=exclude_users, config=cfg, out=out)
    print_result(res)
    if out:
        console.print(f"wrote {out}")


def power(
    base_rate: float = typer.Option(..., "--base-rate", help="Control rate of the signal, e.g. 0.001."),
    lift: float = typer.Option(..., "--lift", help="Relative lift to detect, e.g. 0.28 for +28%."),
    alpha: float = typer.Option(0.05, "--alpha", help="Two-sided significance level."),
    power_: float = typer.Option(0.8, "--power", help="Probability of detecting the lift."),
    design_effect: float = typer.Option(1.0, "--design-effect", help="Clustered/plain variance (from analyze)."),
    responses_per_user: float = typer.Option(None, "--responses-per-user", help="To convert to users per arm."),
) -> None:
    """Sample size per arm for a two-sided two-proportion test."""
    from rluf.abtest.power import power as run

    res = run(base_rate, lift, alpha, power_, design_effect=design_effect, responses_per_user=responses_per_user)
    console.print(
        f"base rate {res['base_rate']:.4g} -> {res['treatment_rate']:.4g} ({_pct(lift)}), alpha {alpha}, "
        f"power {power_}"
    )
    console.print(f"responses per arm: [bold]{res['responses_per_arm']:,}[/]")
    if design_effect != 1.0:
        console.print(f"with design effect {design_effect}: {res['responses_per_arm_clustered']:,} per arm")
    if res["users_per_arm"] is not None:
        console.print(f"users per arm at {responses_per_user} responses each: {res['users_per_arm']:,}")


def simulate(
    control: Path = typer.Option(..., "--control", help="HF folder of the control policy."),
    treatment: Path = typer.Option(..., "--treatment", help="HF folder of the treatment policy."),
    out: Path = typer.Option(..., "--out", help="Output folder (logs/, truth/, abtest.json)."),
    config: Path = typer.Option(None, "--config", help="Simulator YAML (see configs/sim*.yaml)."),
    seed: int = typer.Option(None, "--seed", help="Seed of the simulated deployment."),
    quick: bool = typer.Option(False, "--quick", help="The simulator's small quick world."),
    signal: str = typer.Option("love", "--signal", help="Reaction type to analyse."),
    segment: str = typer.Option("family", "--segment", help="Segment column ('' for none)."),
    exclude: str = typer.Option("filters", "--exclude", help="Accounts left out: 'filters' (curation's "
                                "adversarial filters), 'truth' (the simulator's list) or 'none'."),
    bootstrap_reps: int = typer.Option(2000, "--bootstrap-reps", help="User-bootstrap replicates (0 = none)."),
    control_pool: Path = typer.Option(None, "--control-pool", help="A `rluf simulate` folder of the same world "
                                      "that deployed the control policy: reuse its pooled answers (no generation)."),
) -> None:
    """Deploy two policies to the simulated users (split by a stable hash), log, and analyse."""
    from rluf.abtest.analyze import AnalyzeConfig
    from rluf.abtest.simulated import simulate as run

    with console.status("simulating the A/B test...") as status:
        res = run(control, treatment, out, config=config, seed=seed, quick=quick, signal=signal,
                  segment_by=segment or None, exclude=exclude,
                  analyze_config=AnalyzeConfig(signal=signal, bootstrap_reps=bootstrap_reps), control_pool=control_pool,
                  progress=lambda stage, done, total, info: status.update(f"{stage} {done}/{total}..."))
    console.print(f"excluded {res['excluded']['users']} accounts ({res['excluded']['how']})")
    print_result(res)
    truth = res["true"]
    console.print(
        f"simulator's true Love rate (normal users): control {truth['control_rate']:.5f}, treatment "
        f"{truth['treatment_rate']:.5f}, true lift {_pct(truth['lift'])}; helpfulness "
        f"{truth['helpfulness_delta']:+.3f}, safety violations {truth['safety_violation_delta']:+.2%}, "
        f"sign-offs {truth['signoff_delta']:+.2%}",
        highlight=False,
    )
    console.print(f"wrote {Path(out) / 'abtest.json'}")


def register(app: typer.Typer) -> None:
    abtest_app.command("analyze")(analyze)
    abtest_app.command("power")(power)
    abtest_app.command("simulate")(simulate)
    app.add_typer(abtest_app, name="abtest")
