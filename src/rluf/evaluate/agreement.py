"""Offline-online agreement: does P[Love] rank candidate policies the way their users would?

For each candidate policy (e.g. the checkpoints of a sweep), the offline prediction is the mean natural-rate
P[Love] of its responses on the simulated world's fixed evaluation sample; the online truth is the world's
exact population Love rate of the same responses (``World.true_metrics``, from probabilities, not sampled).
RLUF (Han et al., 2025) reports Pearson r = 0.95 between the offline P[Love] score and the online change in
Love rate across 10 model iterations; the target here is Spearman >= 0.95 over >= 6 policies. Correlations
are invariant to subtracting the baseline, so the rates and their changes give the same r.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rluf.errors import DataError
from rluf.evaluate.ranking import correlation
from rluf.utils import read_json, write_json

log = logging.getLogger(__name__)

MIN_POLICIES = 6


def agreement_points(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """(policy, predicted, true) Love rates from an evaluate() summary made with a world and a love model."""
    points = []
    for name, p in evaluation["policies"].items():
        if "love" not in p.get("scores", {}) or "true" not in p:
            raise DataError(
                f"evaluation of policy {name!r} lacks {'the love score' if 'true' in p else 'the ground truth'}; "
                "offline-online agreement needs evaluate() run with a love model and a simulated world"
            )
        points.append({"policy": name, "predicted": p["scores"]["love"]["mean"], "true": p["true"]["love_rate"]})
    return points


def agreement(points: list[dict[str, Any]], baseline: str | None = None, min_policies: int = MIN_POLICIES) -> dict:
    """Pearson and Spearman between predicted and true Love rates, plus changes relative to `baseline`."""
    if len(points) < min_policies:
        raise DataError(
            f"offline-online agreement needs at least {min_policies} policies, got {len(points)} "
            f"({[p['policy'] for p in points]}); add checkpoints or sweep runs"
        )
    pred = np.array([p["predicted"] for p in points])
    true = np.array([p["true"] for p in points])
    base = next((i for i, p in enumerate(points) if p["policy"] == baseline), 0)
    rows = [{**p, "predicted_change": float(pred[i] / pred[base] - 1), "true_change": float(true[i] / true[base] - 1)}
            for i, p in enumerate(points)]
    corr = correlation(pred, true)
    return {"n_policies": len(points), "baseline": points[base]["policy"], "points": rows, **corr,
            "target_spearman": 0.95, "meets_target": bool(corr["spearman"] is not None and corr["spearman"] >= 0.95)}


def plot_agreement(result: dict, path: str | Path) -> Path:
    """Scatter of predicted vs true Love rate with policy names and a least-squares line (PNG, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["points"]
    x = np.array([p["predicted"] for p in pts])
    y = np.array([p["true"] for p in pts])
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    ax.scatter(x, y, color="#c2185b", zorder=3)
    for p in pts:
        ax.annotate(p["policy"], (p["predicted"], p["true"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if np.ptp(x) > 0:
        slope, icpt = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, slope * xs + icpt, color="gray", lw=1, ls="--", zorder=2)
    r, rho = result.get("pearson"), result.get("spearman")
    stats_txt = "n/a" if r is None else f"Pearson r = {r:.3f}, Spearman = {rho:.3f}"
    ax.set_title(f"Offline P[Love] vs true Love rate ({len(pts)} policies)\n{stats_txt}", fontsize=10)
    ax.set_xlabel("predicted Love rate (mean P[Love], natural rate)")
    ax.set_ylabel("true Love rate (simulator)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def offline_online(
    policies: Mapping[str, Any] | None = None,
    out_dir: str | Path = "runs/offline_online",
    love_model: Any = None,
    world: Any = None,
    *,
    evaluation: Mapping[str, Any] | str | Path | None = None,
    config: Any = None,
    min_policies: int = MIN_POLICIES,
) -> dict[str, Any]:
    """Predicted (P[Love]) vs true (simulator) Love rate for >= `min_policies` policies: Pearson, Spearman, plot.

    Either pass `evaluation` (an evaluate() summary or the path of its evaluate.json, made with a world and
    a love model), or `policies`, `love_model` and `world` to run evaluate() first (into out_dir/evaluate).
    Writes offline_online.json and offline_online.png in `out_dir`; returns the JSON's content.
    """
    out_dir = Path(out_dir)
    if evaluation is None:
        if not policies or love_model is None or world is None:
            raise DataError("offline_online needs `evaluation`, or `policies`, `love_model` and `world`")
        from rluf.evaluate.evaluator import evaluate

        evaluation = evaluate(policies, out_dir / "evaluate", love_model=love_model, world=world, config=config)
    elif isinstance(evaluation, str | Path):
        evaluation = read_json(evaluation)
    result = agreement(agreement_points(evaluation), evaluation.get("baseline"), min_policies)
    result["plot"] = str(plot_agreement(result, out_dir / "offline_online.png"))
    write_json(out_dir / "offline_online.json", result)
    log.info("offline-online: Spearman %s, Pearson %s over %d policies", result["spearman"], result["pearson"],
             result["n_policies"])
    return result
