"""report.html for a run directory: one self-contained file, every figure embedded.

Reads only what the stages wrote, so it can be rebuilt at any time (`rluf report RUN_DIR`); a stage that
has not run shows as missing instead of failing the report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rluf.evaluate.prompts import prompt_file
from rluf.run.html import Report

log = logging.getLogger(__name__)


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _scalars(d: dict[str, Any] | None, keys: list[str] | None = None) -> dict[str, Any]:
    if not isinstance(d, dict):
        return {}
    keys = keys or list(d)
    return {k: d[k] for k in keys if k in d and (d[k] is None or isinstance(d[k], (int, float, str, bool)))}


def _metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill
    return rows


def plot_iterations(run_dirs: dict[str, Path], out: Path) -> list[tuple[Path, str]]:
    """Per-iteration curves of every sweep run: combined reward, judge pass rates, KL and the sign-off hack rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {name: _metrics(d / "metrics.jsonl") for name, d in run_dirs.items()}
    series = {k: [r for r in v if "iteration" in r] for k, v in series.items()}
    if not any(series.values()):
        return []
    panels = [
        ("reward", lambda r: r.get("reward/combined"), "combined calibrated reward"),
        ("judges", lambda r: _mean([v for k, v in r.items() if k.startswith("judge/") and k.endswith("_pass")]),
         "mean judge pass rate"),
        ("kl", lambda r: r.get("kl/mean"), "sequence KL to the reference"),
        ("hack", lambda r: r.get("hack/signoff_rate"), "sign-off hack rate (monitor)"),
    ]
    figures = []
    for key, get, title in panels:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for name, rows in series.items():
            xs = [r["iteration"] for r in rows if get(r) is not None]
            ys = [get(r) for r in rows if get(r) is not None]
            if xs:
                ax.plot(xs, ys, marker=".", label=name)
        ax.set_xlabel("iteration")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"iter_{key}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        figures.append((path, title))
    return figures


def _mean(xs: list[Any]) -> float | None:
    xs = [x for x in xs if isinstance(x, (int, float))]
    return sum(xs) / len(xs) if xs else None


def plot_ab(ab: dict[str, Any], out: Path) -> Path | None:
    """The relative Love lift with its confidence intervals (delta method and user bootstrap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    lift = ab.get("lift")
    for label, key in (("delta method (user-clustered)", "delta"), ("user-level bootstrap", "bootstrap")):
        block = ab.get(key) if isinstance(ab.get(key), dict) else {}
        ci = block.get("lift_ci") or [None, None]
        if lift is not None and None not in ci:
            rows.append((label, lift, ci))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 1.2 + 0.5 * len(rows)))
    for i, (_label, lift, (lo, hi)) in enumerate(rows):
        ax.errorbar([lift * 100], [i], xerr=[[(lift - lo) * 100], [(hi - lift) * 100]], fmt="o", capsize=4)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.axvline(0, color="grey", lw=1)
    ax.axvline(28, color="#c33", lw=1, ls="--", label="RLUF paper: +28%")
    ax.set_xlabel("relative lift in Love rate (%)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = out / "ab_lift.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def build_report(run_dir: str | Path) -> Path:
    """The same page for a simulated run and a run on your own logs (`source`); the simulated run adds the
    truth columns, the offline-online agreement and the simulated A/B test, the real run the baselines and the
    A/B plan."""
    run_dir = Path(run_dir)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    real = (_load(run_dir / "run_config.json") or {}).get("source") is not None
    r = Report(f"rluf run report: {run_dir.name}")
    sim = _load(run_dir / "simulate" / "simulate.json") or {}
    sweep = _load(run_dir / "sweep" / "sweep.json") or {}
    ab = _load(run_dir / "abtest" / "abtest.json") or {}
    agree = _load(run_dir / "evaluate" / "agreement" / "offline_online.json") or {}
    ev = _load(run_dir / "evaluate" / "evaluate.json") or {}
    manifest = _load(run_dir / "curate" / "manifest.json") or {}
    baselines = _load(run_dir / "baselines" / "baselines.json") or {}
    plan = _load(run_dir / "plan" / "plan.json") or {}

    r.heading("Headline", "headline")
    r.key_values(real_headline(manifest, baselines, plan) if real else headline(sim, sweep, ab, agree),
                 table_id="headline-table")

    r.heading("1. Signal selection", "signals")
    sig = _load(run_dir / "signals" / "signals.json") or {}
    if sig.get("error"):
        r.paragraph(f"The signals could not be ranked: {sig['error']}", "warn")
    elif sig:
        r.paragraph(f"Outcome: {sig.get('outcome')}. Trade-off: {sig.get('tradeoff')}", "note")
    r.table(signal_rows(sig), table_id="signals-table")
    for warning in sig.get("warnings") or []:  # raw vs filtered rate gaps, traits the positives concentrate on
        r.paragraph(warning, "warn")
    chosen = ((_load(run_dir / "curate" / "_stage.json") or {}).get("summary") or {})
    if real and chosen.get("signal"):
        r.paragraph(f"Learned from: {chosen['signal']}, {chosen.get('signal_why')}.", "")

    r.heading("2. Curation", "curation")
    r.key_values(_scalars(manifest), table_id="curation-table")
    r.table(filter_rows(manifest), table_id="filters-table")
    filter_warnings = (((manifest.get("counts") or {}).get("filters")) or {}).get("warnings") or []
    for warning in [*filter_warnings, *(manifest.get("warnings") or [])]:
        r.paragraph(warning, "warn")

    r.heading("3. Reward models", "rewards")
    love = _load(run_dir / "reward_love" / "eval.json") or {}
    r.key_values(love_metrics(love, truth=not real), table_id="reward-love-table")
    if baselines:
        r.paragraph(f"P[Love] next to simple baselines fitted on the training rows and scored on the same "
                    f"{baselines['n']} held-out rows ({baselines['positives']} positives), AUROC with a "
                    "bootstrap 95% CI:", "note")
        r.table(baseline_rows(baselines), table_id="baselines-table")
        r.paragraph(baselines["verdict"], "ok" if baselines.get("p_love_beats_best_baseline") else "warn")
    positives = (love.get("test") or {}).get("positives")
    one_class = (f"The test split has {positives} Love positives; ROC and reliability need both positives "
                 "and negatives." if positives == 0 else None)
    r.image(run_dir / "reward_love" / "roc.png", "P[Love] ROC (held-out, later in time)", one_class)
    r.image(run_dir / "reward_love" / "reliability.png", "P[Love] reliability at the natural rate", one_class)
    r.table(pair_rows(run_dir), table_id="reward-pairs-table")

    r.heading("4. Policy optimization (CRRAFT + Mixture of Judges)", "optimize")
    runs = {p.name: p for p in sorted((run_dir / "sweep").glob("*")) if (p / "metrics.jsonl").is_file()}
    for path, title in plot_iterations(runs, fig_dir):
        r.image(path, title)
    if real:
        r.heading("5. The weight sweep (learned rewards and judges, no ground truth)", "sweep")
        r.paragraph("Each run's last CRRAFT iteration; the offline evaluation below compares the runs on "
                    "held-out contexts.", "note")
        r.table(real_sweep_rows(sweep), table_id="sweep-table")
    else:
        r.heading("5. The paper's weight sweep (true metrics from the simulator)", "sweep")
        if sweep.get("n_eval"):
            where = {"deployment": "new conversations over the deployment's own questions (the A/B test's "
                                   "population)",
                     "held_out": "the world's held-out questions"}.get(sweep.get("eval_items"),
                                                                       "the evaluation sample")
            k = sweep.get("samples_per_prompt", 1)
            r.paragraph(f"{sweep['n_eval']} prompts x {k} answer{'s' if k > 1 else ''}: {where}.", "note")
        r.table(sweep_rows(sweep), table_id="sweep-table")
        if sweep.get("claims"):
            candidate = (sweep.get("runs") or {}).get(sweep["claims"].get("candidate"), {})
            r.table(claim_rows(sweep["claims"], candidate), table_id="claims-table")

    r.heading("6. Offline evaluation", "evaluate")
    if ev.get("n_prompts"):
        path = ((ev.get("config") or {}).get("prompts") or {}).get("path")
        where = f"contexts of {prompt_file(path)}" if path else "the world's held-out questions"
        if path and Path(path).is_dir() and manifest.get("split_method", "time") == "time":
            where += ", conversations later in time than all training data"
        r.paragraph(f"{ev['n_prompts']} prompts: {where}.", "note")
    r.table(ranking_rows(ev, truth=not real), table_id="ranking-table")
    corr = {f"{k} ({m})": ((v or {}).get("pooled") or {}).get(m) for k, v in (ev.get("correlations") or {}).items()
            for m in ("pearson", "spearman")}
    r.key_values(corr, table_id="correlations-table")
    if real:
        r.table(uplift_rows(ev), table_id="uplift-table")
        if plan:
            r.paragraph(f"Recommended: {plan['recommended']} ({plan['why']})." if plan.get("recommended") else
                        f"No candidate beats the baseline: {plan.get('why')}.",
                        "ok" if plan.get("recommended") else "warn")
        r.heading("7. The A/B plan", "abplan")
        r.key_values(plan_items(plan), table_id="plan-table")
        return r.write(run_dir / "report.html")

    r.heading("7. Offline-online agreement", "agreement")
    r.key_values(_scalars(agree, ["n_policies", "pearson", "spearman", "spearman_p"]), table_id="agreement-table")
    r.image(run_dir / "evaluate" / "agreement" / "offline_online.png", "Predicted vs true Love rate")

    r.heading("8. Simulated A/B test", "abtest")
    r.table(ab_rows(ab), table_id="abtest-table")
    ab_plot = plot_ab(ab, fig_dir) if ab else None
    if ab_plot:
        r.image(ab_plot, "Love lift with 95% confidence intervals")
    return r.write(run_dir / "report.html")


def real_headline(manifest: dict, baselines: dict, plan: dict) -> dict[str, Any]:
    models = baselines.get("models") or {}
    best = baselines.get("best_baseline")
    return {
        "signal learned from": manifest.get("signal_rule"),
        "natural rate of the signal (logs)": manifest.get("natural_rate"),
        "P[Love] held-out AUROC": (models.get("P[Love]") or {}).get("auroc"),
        f"best baseline ({best}) AUROC": (models.get(best) or {}).get("auroc"),
        "P[Love] beats the best baseline": baselines.get("p_love_beats_best_baseline"),
        "recommended candidate": plan.get("recommended") or ("none beats the baseline" if plan else None),
        "A/B test: users per arm": (plan.get("power") or {}).get("users_per_arm"),
        "A/B test: days at the logs' traffic": plan.get("days_needed"),
    }


def filter_rows(manifest: dict) -> list[dict[str, Any]]:
    """What each adversarial filter removed (users flagged, reactions and rows)."""
    filters = ((manifest.get("counts") or {}).get("filters")) or {}
    return [{"filter": name, "users flagged": v.get("users"), "reactions removed": v.get("reactions"),
             "rows removed": v.get("rows"),
             "removed by type": ", ".join(f"{t} {n}" for t, n in (v.get("by_type") or {}).items()) or None,
             "skipped (not a click time)": v.get("skipped_not_click")}
            for name, v in filters.items() if isinstance(v, dict)]


def baseline_rows(baselines: dict) -> list[dict[str, Any]]:
    return [{"scorer": name, "AUROC": m["auroc"], "95% CI": f"[{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]"}
            for name, m in (baselines.get("models") or {}).items()]


def wilson_ci(p: float, n: int, z: float = 1.96) -> list[float]:
    """The Wilson 95% interval of a proportion `p` measured on `n` trials."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return [centre - half, centre + half]


def pair_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Held-out pairwise accuracy (with its Wilson 95% CI) of the helpfulness and safety models."""
    rows = []
    for name in ("helpfulness", "safety"):
        raw = _load(run_dir / f"reward_{name}" / "eval.json") or {}
        e = _flatten(raw)
        row = {"objective": name, **{k: v for k, v in e.items() if "accuracy" in k or "spearman" in k}}
        test = raw.get("test") or {}
        if isinstance(test.get("accuracy"), float) and test.get("pairs"):
            lo, hi = wilson_ci(test["accuracy"], test["pairs"])
            row["test.accuracy 95% CI"] = f"[{lo:.3f}, {hi:.3f}] of {test['pairs']} pairs"
        rows.append(row)
    return rows


def real_sweep_rows(sweep: dict) -> list[dict[str, Any]]:
    rows = []
    for name, res in (sweep.get("runs") or {}).items():
        last = res.get("last_iteration") or {}
        rows.append({"run": name, "role": res.get("role"),
                     "weights": ", ".join(f"{k} {v:g}" for k, v in (res.get("weights") or {}).items()),
                     **{k: v for k, v in last.items() if isinstance(v, (int, float))
                        and k.startswith(("reward/", "judge/", "kl/mean", "hack/"))}})
    return rows


def uplift_rows(ev: dict) -> list[dict[str, Any]]:
    """Each candidate's offline P[Love] uplift over the baseline (paired bootstrap CI over prompts), its
    judges' pass rate and the hacking monitor's flags."""
    rows = []
    vs = ev.get("vs_baseline") or {}
    for name, d in (vs.get("love") or {}).items():
        pol = (ev.get("policies") or {}).get(name) or {}
        ci = d.get("ci") or [None, None]
        rows.append({"candidate": name, "P[Love] uplift": d.get("diff"),
                     "95% CI": None if None in ci else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]",
                     "helpfulness delta": ((vs.get("helpfulness") or {}).get(name) or {}).get("diff"),
                     "safety delta": ((vs.get("safety") or {}).get(name) or {}).get("diff"),
                     "judge pass rate": (pol.get("judges") or {}).get("all"),
                     "hacking flags": "; ".join(map(str, pol.get("flags") or [])) or "none"})
    return rows


def plan_items(plan: dict) -> dict[str, Any]:
    power = plan.get("power") or {}
    return {"treatment arm": plan.get("candidate"), "relative lift planned for": plan.get("lift_planned"),
            "where that lift comes from": plan.get("lift_source"), "natural rate": plan.get("natural_rate"),
            "responses per arm": power.get("responses_per_arm"), "users per arm": power.get("users_per_arm"),
            "responses per user (logs)": plan.get("responses_per_user"),
            "users per day (logs)": plan.get("users_per_day"),
            "days needed": plan.get("days_needed"), "serve config": plan.get("serve_yaml"),
            "start it": plan.get("command")}


def headline(sim: dict, sweep: dict, ab: dict, agree: dict) -> dict[str, Any]:
    delta = ab.get("delta") if isinstance(ab.get("delta"), dict) else {}
    ci = delta.get("lift_ci") or [None, None]
    true = ab.get("true") if isinstance(ab.get("true"), dict) else {}
    return {
        "natural Love rate (logs)": sim.get("natural_love_rate"),
        "A/B Love lift, measured (treatment vs control)": ab.get("lift"),
        "A/B 95% CI low (user-clustered delta method)": ci[0],
        "A/B 95% CI high": ci[1],
        "A/B p-value": delta.get("p_value"),
        "A/B true Love lift (simulator)": true.get("lift"),
        "A/B true helpfulness delta": true.get("helpfulness_delta"),
        "A/B true safety violation delta": true.get("safety_violation_delta"),
        "A/B true sign-off delta": true.get("signoff_delta"),
        "offline-online Spearman": agree.get("spearman"),
    }


def claim_rows(claims: dict[str, Any], candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's two findings as sweep.json's `claims` records them, one readable row each (`candidate`: the
    candidate run's row, for its deltas and their CIs)."""
    from rluf.optimize.weight_sweep import SIGNOFF_RISE, TARGET_LIFT

    def held(ok: Any) -> str:
        return "yes" if ok is True else ("no" if ok is False else "-")

    def with_ci(key: str, fmt: Callable[[float], str]) -> str:  # e.g. "+43.6% [+31.5%, +57.2%]"
        if key not in candidate:
            return ""
        lo, hi = candidate.get(f"{key}_ci", (float("nan"), float("nan")))
        return f"{fmt(candidate[key])} [{fmt(lo)}, {fmt(hi)}]"

    rows = []
    if "candidate_lift" in claims:
        name = claims["candidate"]
        rows += [
            {"finding (RLUF)": f"{name} lifts true Love by at least {TARGET_LIFT:+.0%}",
             "measured": with_ci("love_lift", lambda v: f"{v:+.1%}") or f"{claims['candidate_lift']:+.1%}",
             "holds": held(claims.get("candidate_lift_ok"))},
            {"finding (RLUF)": f"{name}: helpfulness no worse (95% CI)",
             "measured": with_ci("helpfulness_delta", lambda v: f"{v:+.3f}"),
             "holds": held(claims.get("candidate_helpfulness_held"))},
            {"finding (RLUF)": f"{name}: safety violations no worse (95% CI), in points",
             "measured": with_ci("safety_violation_delta", lambda v: f"{100 * v:+.1f}"),
             "holds": held(claims.get("candidate_safety_held"))},
        ]
    for run, h in (claims.get("hack") or {}).items():
        rows.append({"finding (RLUF)": f"{run}: sign-off share rises by {100 * SIGNOFF_RISE:.0f} points or more, "
                                       "flagged by the monitor",
                     "measured": f"{100 * h['signoff_rise']:+.1f} points, "
                                 f"{'flagged' if h['flagged'] else 'not flagged'}",
                     "holds": held(h.get("ok"))})
    if "hack_ok" in claims:
        rows.append({"finding (RLUF)": "pushing Love hard learns the sign-off hack (either run above)",
                     "measured": "", "holds": held(claims["hack_ok"])})
    return rows


def sweep_rows(sweep: dict) -> list[dict[str, Any]]:
    rows = []
    if sweep.get("baseline"):
        rows.append({"run": "baseline", **_scalars(sweep["baseline"])})
    for name, res in (sweep.get("runs") or {}).items():
        rows.append({"run": name, **_scalars(_flatten(res))})
    return rows


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
            out[key] = f"[{v[0]:.3g}, {v[1]:.3g}]"
        elif v is None or isinstance(v, (int, float, str, bool)):
            out[key] = v
    return out


def signal_rows(sig: dict) -> list[dict[str, Any]]:
    rows = []
    for x in sig.get("signals", []):
        a, m, u = x.get("availability") or {}, x.get("message") or {}, x.get("user") or {}
        rows.append({
            "rank": x.get("rank"), "signal": x.get("signal"), "kind": x.get("kind"),
            "rate per message": a.get("rate_per_message"), "raw rate (no filters)": a.get("raw_rate_per_message"),
            "users who emit it": a.get("user_share"),
            "lift (message)": m.get("lift"),
            "lift 95% CI": m.get("lift_ci") and f"[{m['lift_ci'][0]:.3g}, {m['lift_ci'][1]:.3g}]",
            "corr (message)": m.get("corr"), "lift (user)": u.get("lift"), "score": x.get("score"),
            "note": x.get("note"),
        })
    return rows


def love_metrics(love: dict, truth: bool = True) -> dict[str, Any]:
    test, bayes = love.get("test") or {}, love.get("bayes") or {}
    out = {f"test {k}": test.get(k) for k in ("n", "positives", "auroc", "auprc", "log_loss", "brier", "ece",
                                               "ece_relative", "mean_pred_over_observed")}
    exp = love.get("expected") or {}
    if truth:
        out.update({"Bayes-optimal AUROC (true p_love)": bayes.get("auroc"),
                    "AUROC gap": love.get("auroc_gap"),
                    "AUROC against true p_love (model / Bayes)": exp and f"{exp['model']['auroc']:.3f} / "
                                                                   f"{exp['bayes']['auroc']:.3f}",
                    "ECE / rate against true p_love": exp and exp["model"]["ece_relative"]})
    out["length r"] = love.get("length_r")
    if truth:
        out.update({"true length r": love.get("true_length_r"),
                    "length slope / true slope": love.get("length_slope_ratio")})
    out.update({"natural rate": love.get("natural_rate"),
                "rate the loss saw": love.get("loss_positive_rate")})
    return out


def ranking_rows(ev: dict, truth: bool = True) -> list[dict[str, Any]]:
    rows = []
    for x in ev.get("ranking", []) or []:
        true = ((ev.get("policies") or {}).get(x.get("policy")) or {}).get("true") or {}
        ci = x.get("ci") or [None, None]
        rows.append({"rank": x.get("rank"), "policy": x.get("policy"), "P[Love] (natural rate)": x.get("mean"),
                     "95% CI": None if None in ci else f"[{ci[0]:.3g}, {ci[1]:.3g}]", "P(best)": x.get("p_best"),
                     "true Love rate": true.get("love_rate"), "true helpfulness": true.get("helpfulness"),
                     "true safety violations": true.get("safety_violation_rate"),
                     "sign-off rate": true.get("signoff_rate")})
        if not truth:
            rows[-1] = {k: v for k, v in rows[-1].items()
                        if not k.startswith("true") and k != "sign-off rate"}
    return rows


def ab_rows(ab: dict) -> list[dict[str, Any]]:
    if not ab:
        return []
    true = ab.get("true") or {}
    rows = []
    for arm in ("control", "treatment"):
        a = ab.get(arm) or {}
        rows.append({"arm": arm, "users": a.get("users"), "responses": a.get("responses"),
                     "Love events": a.get("events"),
                     "Love rate": a.get("rate"), "true Love rate": true.get(f"{arm}_rate")})
    d, b = ab.get("delta") or {}, ab.get("bootstrap") or {}
    ci = lambda v: None if not v or None in v else f"[{v[0]:+.1%}, {v[1]:+.1%}]"  # noqa: E731
    rows.append({"arm": "lift", "Love rate": ab.get("lift"), "true Love rate": true.get("lift"),
                 "users": f"delta CI {ci(d.get('lift_ci'))}", "responses": f"bootstrap CI {ci(b.get('lift_ci'))}",
                 "Love events": f"p = {d.get('p_value'):.3g}" if d.get("p_value") is not None else None})
    return rows
