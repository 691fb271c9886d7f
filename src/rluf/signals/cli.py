"""`rluf signals` and `rluf curate`: thin wrappers over rluf.signals.signals / rluf.signals.curate."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rluf.config import load_config, parse_set
from rluf.signals.config import CurateConfig

console = Console()


def _use_full_width() -> None:
    """Tables at their full width when stdout is not a terminal (a file, a pipe, a CI log): rich would cut them
    to 80 columns there ("cont…"). Called per command, since the test runner swaps stdout."""
    global console
    console = Console() if sys.stdout.isatty() else Console(file=sys.stdout, width=100_000)


def _fmt(x, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.3g}%" if pct else f"{x:.3g}"


def _ci(ci) -> str:
    return "-" if ci[0] is None else f"[{ci[0]:.3g}, {ci[1]:.3g}]"


def signals_cmd(
    logs: Path = typer.Argument(..., help="Logs folder (messages/reactions/users.parquet) or a folder with logs/."),
    outcome_days: float = typer.Option(7.0, "--outcome-days", help="Outcome: the user returns within this many days."),
    return_days: float = typer.Option(1.0, "--return-days", help="Window of the derived returned_<N>d signal."),
    min_events: int = typer.Option(30, "--min-events", help="Signals with fewer events are listed but not ranked."),
    filters: bool = typer.Option(True, "--filters/--no-filters",
                                 help="Drop adversarial feedback first (curate's rules)."),
    rate_gap_factor: float = typer.Option(3.0, "--rate-gap-factor", help="Warn when a signal's raw and filtered "
                                          "rates differ by more than this factor."),
    out: Path | None = typer.Option(None, "--out", help="Folder for signals.json (default: print only)."),
    memory_limit: str = typer.Option("1GB", "--memory-limit", help="DuckDB memory limit."),
) -> None:
    """Rank candidate feedback signals by availability and association with users returning."""
    _use_full_width()
    from rluf.signals.selection import signals

    with console.status("assessing signals"):
        res = signals(logs, outcome_days=outcome_days, return_days=return_days, min_events=min_events,
                      filters=filters, rate_gap_factor=rate_gap_factor, out_dir=out, memory_limit=memory_limit)
    table = Table(title=f"Candidate signals vs {res['outcome']} (base rate {_fmt(res['base_return_rate'], True)})")
    for col in ("rank", "signal", "events", "rate/msg", "users", "lift (msg) 95% CI", "corr (msg)",
                "lift (user) 95% CI", "corr (user)", "score"):
        table.add_column(col, justify="left" if col == "signal" else "right")
    for s in res["signals"]:
        a, mm, u = s["availability"], s["message"], s["user"]
        table.add_row(
            str(s.get("rank", "-")), s["signal"], str(a["events"]), _fmt(a["rate_per_message"], True),
            _fmt(a["user_share"], True), f"{_fmt(mm['lift'])} {_ci(mm['lift_ci'])}", _fmt(mm["corr"]),
            f"{_fmt(u['lift'])} {_ci(u['lift_ci'])}", _fmt(u["corr"]),
            _fmt(s["score"]) if s["score"] is not None else s["note"].split(":")[0],
        )
    console.print(table)
    if res["filters_removed"]:
        _print_removed(res)
    for w in res["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"trade-off: {res['tradeoff']}")
    console.print(f"best signal: [bold]{res['best']}[/]")
    if out is not None:
        console.print(f"wrote {out / 'signals.json'}")


def _print_removed(res: dict) -> None:
    """What each filter removed, by reaction type, and each signal's rate before and after the filters."""
    removed = res["filters_removed"]
    types = [s["signal"] for s in res["signals"] if s["kind"] == "reaction"]
    t = Table(title="adversarial filters: reactions each rule removes on its own")
    for col in ("rule", "users", *types):
        t.add_column(col, justify="left" if col == "rule" else "right")
    for rule, rep in removed.items():
        t.add_row(rule, str(rep.get("users", 0)), *[str(rep.get("by_type", {}).get(ty, 0)) for ty in types])
    console.print(t)
    rates = Table(title="rate per assistant message: raw and after the filters")
    for col in ("signal", "raw", "filtered"):
        rates.add_column(col, justify="left" if col == "signal" else "right")
    for s in res["signals"]:
        if s["kind"] == "reaction":
            a = s["availability"]
            rates.add_row(s["signal"], _fmt(a.get("raw_rate_per_message"), True),
                          _fmt(a.get("filtered_rate_per_message"), True))
    console.print(rates)


def curate_cmd(
    logs: Path = typer.Argument(..., help="Logs folder (messages/reactions/users.parquet) or a folder with logs/."),
    out: Path = typer.Option(..., "--out", help="Output folder for train/validation/test.parquet and manifest.json."),
    signal: str | None = typer.Option(None, "--signal",
                                      help="Reaction type or rule, e.g. 'love or like and not dislike'."),
    config: Path | None = typer.Option(None, "--config", help="YAML config (see src/rluf/configs/curate.yaml)."),
    truth: Path | None = typer.Option(None, "--truth", help="Simulator truth/ folder: report filter precision/recall."),
    context_turns: int | None = typer.Option(None, "--context-turns", help="Context length in messages "
                                             "(context.context_turns)."),
    target_rate: str | None = typer.Option(None, "--target-rate",
                                           help="Train positive rate, or 'natural' (sample.target_rate)."),
    pii: bool | None = typer.Option(None, "--pii/--no-pii", help="Scrub emails, phones and card numbers."),
    memory_limit: str | None = typer.Option(None, "--memory-limit", help="DuckDB memory limit (engine.memory_limit)."),
    overrides: list[str] | None = typer.Option(None, "--set", help="KEY=VALUE, dotted: --set sample.seed=1"),
) -> None:
    """Build the P[Love] training set: label, filter, de-duplicate, split by time, resample, write Parquet."""
    _use_full_width()
    from rluf.signals.curate import STEPS, curate

    rate = target_rate if target_rate in (None, "natural") else _rate(target_rate)
    cfg = load_config(CurateConfig, config, {
        "signal.rule": signal, "context.context_turns": context_turns, "sample.target_rate": rate,
        "pii.enabled": pii, "engine.memory_limit": memory_limit, **parse_set(overrides)})
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("curate", total=len(STEPS) + 2)

        def on_step(name: str) -> None:
            bar.update(task, description=f"curate: {name}", advance=1)

        manifest = curate(logs, out, cfg, truth_dir=truth, on_step=on_step)
        bar.update(task, completed=len(STEPS) + 2)
    _print_manifest(manifest, out)


def _rate(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"--target-rate {text!r}: give a rate in (0, 1) or 'natural'") from None


def _print_manifest(m: dict, out: Path) -> None:
    c = m["counts"]
    target = m["target_rate"] if m["target_rate"] == "natural" else _fmt(m["target_rate"], True)
    console.print(f"signal {m['signal_rule']!r}: natural rate {_fmt(m['natural_rate'], True)} -> train rate "
                  f"{_fmt(m['train_rate'], True)} (target {target}; weighted "
                  f"{_fmt(m['train_weighted_rate'], True)})")
    t = Table(title="filters (each rule alone)")
    for col in ("rule", "users", "reactions removed", "rows removed"):
        t.add_column(col)
    for rule in ("rate", "burst", "too_fast", "spam"):
        if rule in c["filters"]:
            f = c["filters"][rule]
            t.add_row(rule, str(f["users"]), str(f["reactions"]), str(f["rows"]))
    console.print(t)
    for w in c["filters"].get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"rows: input {c['input']['rows']} -> filtered {c['filters']['rows_out']} -> kept by resampling "
                  f"{c['dedup']['rows_in']} -> de-duplicated {c['dedup']['rows_out']}")
    for s, o in c["output"].items():
        console.print(f"  {s}: {o['rows']} rows, {o['positives']} positives")
    for w in m.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}")
    if "filters_vs_truth" in m:
        a = m["filters_vs_truth"]["all"]
        console.print(f"filters vs truth: precision {_fmt(a['precision'])}, recall {_fmt(a['recall'])}")
    if m.get("pii"):
        console.print(f"PII scrubbed: {m['pii']}")
    console.print(f"wrote {out}/{{train,validation,test}}.parquet and manifest.json")


def register(app: typer.Typer) -> None:
    app.command("signals")(signals_cmd)
    app.command("curate")(curate_cmd)
