"""A simulated A/B test (`rluf abtest simulate`): deploy two policies to hash-split users, then analyse.

setup   the world config (the packaged sim.yaml, sim_quick.yaml with `quick`, or a file)
run     `rluf.sim.simulate_ab` deploys both policies (users split into arms by a stable hash of user_id)
        and writes canonical logs + ground truth; adversarial accounts are excluded as curation would
        (`exclude`), then `analyze` measures the lift with user-clustered CIs
truth   the simulator's expected rates per arm on the very messages each arm served (mean true P[Love],
        helpfulness, safety, sign-off rate over normal users), so the measured lift can be held against
        the true one
output  out/logs, out/truth (from the simulator) and out/abtest.json
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import duckdb

from rluf.abtest.analyze import AnalyzeConfig, analyze
from rluf.errors import ConfigError
from rluf.utils import write_json

log = logging.getLogger(__name__)

ARMS = ("control", "treatment")
Exclude = Literal["filters", "truth", "none"]


def world_config(config: str | Path | Any = None, seed: int | None = None, quick: bool = False):
    """The WorldConfig: a given object, a YAML file, or the defaults / the packaged sim_quick.yaml.

    `quick` with a given config keeps its settings and takes the quick world's sizes (as `rluf simulate`).
    """
    from rluf.config import load_config
    from rluf.sim import WorldConfig, quick_config

    if isinstance(config, WorldConfig):
        cfg = config if seed is None else config.model_copy(update={"seed": seed})
    else:
        cfg = load_config(WorldConfig, config or ("sim_quick.yaml" if quick else None), {"seed": seed})
    return quick_config(cfg) if quick and config is not None else cfg


def flagged_users(logs_dir: Path, how: Exclude) -> list[str]:
    """Accounts to leave out: the simulator's truth, or none ('filters' is analyze's own `filters` option)."""
    if how == "none":
        return []
    if how == "truth":
        path = logs_dir.parent / "truth" / "adversarial.parquet"
        return [r[0] for r in duckdb.execute("SELECT user_id FROM read_parquet(?)", [str(path)]).fetchall()]
    raise ConfigError(f"exclude = {how!r}: choose 'filters' (curation's adversarial filters), 'truth' or 'none'")


def true_rates(truth_messages: Path, arms: tuple[str, str] = ARMS) -> dict[str, Any]:
    """Expected rates per arm over normal users' messages, from the simulator's per-message truth."""
    rows = duckdb.execute(
        """SELECT arm, count(*), avg(p_love), avg(helpfulness), 1 - avg(safe::DOUBLE), avg(signoff::DOUBLE)
           FROM read_parquet(?) WHERE adversarial = '' GROUP BY arm""", [str(truth_messages)]
    ).fetchall()
    by_arm = {r[0]: dict(responses=r[1], love_rate=r[2], helpfulness=r[3], safety_violation_rate=r[4],
                         signoff_rate=r[5]) for r in rows}
    c, t = by_arm[arms[0]], by_arm[arms[1]]
    return {
        "control": c, "treatment": t,
        "control_rate": c["love_rate"], "treatment_rate": t["love_rate"],
        "lift": t["love_rate"] / c["love_rate"] - 1,
        "helpfulness_delta": t["helpfulness"] - c["helpfulness"],
        "safety_violation_delta": t["safety_violation_rate"] - c["safety_violation_rate"],
        "signoff_delta": t["signoff_rate"] - c["signoff_rate"],
    }


def simulate(
    control: str | Path | Any,
    treatment: str | Path | Any,
    out: str | Path,
    *,
    config: str | Path | Any = None,
    seed: int | None = None,
    quick: bool = False,
    signal: str = "love",
    segment_by: str | None = "family",
    exclude: Exclude = "filters",
    analyze_config: AnalyzeConfig | None = None,
    progress: Any = None,
    control_pool: str | Path | None = None,
) -> dict[str, Any]:
    """Run an A/B test of two policies (HF folders or rluf.policy.Policy) in the simulated deployment.

    `control_pool`: a `rluf simulate` folder of the same world in which the control policy was deployed
    (as `rluf run`'s baseline): its pooled answers are reused rather than generated again.

    Returns analyze()'s result plus ``true`` (the simulator's rates per arm and the true lift, over
    normal users), ``simulation`` (the simulator's summary) and ``excluded`` (how accounts were excluded).
    Writes it to out/abtest.json.
    """
    from rluf.sim import simulate_ab

    if exclude not in ("filters", "truth", "none"):
        raise ConfigError(f"exclude = {exclude!r}: choose 'filters', 'truth' or 'none'")
    cfg = world_config(config, seed, quick)
    out = Path(out)
    sim_summary = simulate_ab(cfg, control, treatment, out, arms=ARMS, progress=progress,
                              control_pool=control_pool)
    logs = out / "logs"
    # 'filters': analyze applies them itself (and reports the lift without them); else the list, no filters
    excluded = [] if exclude == "filters" else flagged_users(logs, exclude)
    acfg = (analyze_config or AnalyzeConfig()).model_copy(update={"filters": exclude == "filters"})
    result = analyze(logs, ARMS[0], ARMS[1], signal, segment_by, exclude_users=excluded, config=acfg)
    n_excluded = result["filters"]["excluded_accounts"] if exclude == "filters" else len(excluded)
    log.info("excluded %d accounts (%s)", n_excluded, exclude)
    result["true"] = true_rates(out / "truth" / "messages.parquet")
    result["excluded"] = {"how": exclude, "users": n_excluded}
    result["policies"] = {"control": str(control), "treatment": str(treatment),
                          "control_pool": None if control_pool is None else str(control_pool)}
    result["simulation"] = sim_summary
    write_json(out / "abtest.json", result)
    return result
