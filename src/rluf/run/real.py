"""`rluf run` on your own deployment (the run config's `source` section), read top to bottom.

    logs (ingest, or export of the `rluf serve` database) -> signals -> curate (the chosen signal)
         -> reward_helpfulness, reward_safety (pairs, or your folders), reward_love -> baselines
         -> sweep (CRRAFT on the logged contexts) -> evaluate (offline) -> plan (the A/B test to run)

There is no ground truth: every figure is measured on held-out logs or pairs. The stages resume as in the
simulated run (rluf.run.stages).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from rluf.config import deep_merge
from rluf.errors import ConfigError, DataError
from rluf.run.config import RunConfig, SourceSection, stage_config
from rluf.utils import read_json, write_json

log = logging.getLogger(__name__)
OBJECTIVES = ("love", "helpfulness", "safety")


def is_database_url(logs: str) -> bool:
    return "://" in logs


def logs_stamp(logs: str) -> dict[str, Any]:
    """What the logs stage's fingerprint holds: the source and its files' sizes and times, so new traffic or a
    new export re-runs the loop."""
    path = Path(logs.split("///", 1)[1]) if logs.startswith("sqlite:///") else Path(logs)
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else []
    )
    return {"logs": logs, "files": [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def read_logs(source: SourceSection, stage_dir: Path) -> dict[str, Any]:
    """The logs as canonical Parquet under `stage_dir/logs`: exported from a gateway database, ingested from
    any format `rluf ingest` reads, or a canonical folder used where it is. Stops on unusable logs, naming the
    ingest report."""
    from rluf.ingest import IngestConfig, ingest

    out = stage_dir / "logs"
    if is_database_url(source.logs):
        from rluf.serve.export_logs import export

        return {"read": "database", "counts": export(source.logs, stage_dir)}  # writes stage_dir/logs/
    path = Path(source.logs)
    if (path / "messages.parquet").is_file():
        return {"read": "canonical folder", "logs": str(path)}
    if not path.exists():
        raise ConfigError(
            f"source.logs: {path} does not exist; give a logs folder, a file `rluf ingest` reads, "
            "or the database URL of `rluf serve`"
        )
    report = ingest([path], out, config=stage_config(IngestConfig, None, source.ingest, "source.ingest"))
    tables = report["tables"]
    if not tables["messages"]["accepted"] or not tables["reactions"]["accepted"]:
        raise DataError(
            f"source.logs: ingest of {path} kept {tables['messages']['accepted']} messages and "
            f"{tables['reactions']['accepted']} reactions; nothing to learn from. See "
            f"{out / 'ingest.json'} and {out / 'quarantine.jsonl'}"
        )
    return {
        "read": "ingest",
        "messages": tables["messages"]["accepted"],
        "reactions": tables["reactions"]["accepted"],
        "orphan_messages": report.get("orphan_messages"),
    }


def logs_dir(source: SourceSection, run_dir: Path) -> Path:
    path = Path(source.logs)
    return (
        path
        if not is_database_url(source.logs) and (path / "messages.parquet").is_file()
        else run_dir / "logs" / "logs"
    )


def rank_signals(logs: Path, stage_dir: Path, outcome_days: float) -> dict[str, Any]:
    """signals.json, and the reaction to learn from: the top-ranked one, or (when the logs are too short to
    observe the outcome, or no reaction is ranked) the most frequent, saying so."""
    from rluf.signals.selection import signals

    counts = reaction_counts(logs)
    if not counts:
        raise DataError(f"{logs / 'reactions.parquet'} holds no reactions: nothing to learn P[Love] from")
    try:
        result = signals(logs, outcome_days=outcome_days, out_dir=stage_dir)
    except DataError as e:  # the table still lists each reaction's availability, unranked
        n = assistant_messages(logs)
        result = {
            "error": str(e),
            "best": None,
            "signals": [
                {
                    "signal": t,
                    "kind": "reaction",
                    "availability": {"rate_per_message": c / n},
                    "note": "not ranked: returning cannot be observed",
                }
                for t, c in sorted(counts.items())
            ],
        }
        write_json(stage_dir / "signals.json", result)
    ranked = [s for s in result["signals"] if s.get("kind") == "reaction" and s.get("rank")]
    if ranked:
        return {
            "pick": ranked[0]["signal"],
            "why": "the signals stage's top-ranked reaction: available and tied "
            "to users coming back (the signal table)",
        }
    top = max(counts, key=counts.get)
    reason = result.get("error") or "no reaction is frequent enough to rank"
    return {
        "pick": top,
        "why": f"the most frequent reaction ({counts[top]} events): the signals stage could "
        f"not rank reactions by users coming back ({reason})",
    }


def reaction_counts(logs: Path) -> dict[str, int]:
    import duckdb

    return dict(
        duckdb.connect()
        .execute(f"SELECT type, count(*) FROM read_parquet('{logs / 'reactions.parquet'}') GROUP BY 1")
        .fetchall()
    )


def assistant_messages(logs: Path) -> int:
    import duckdb

    return (
        duckdb.connect()
        .execute(f"SELECT count(*) FROM read_parquet('{logs / 'messages.parquet'}') WHERE role = 'assistant'")
        .fetchone()[0]
    )


def chosen_signal(source: SourceSection, picked: dict[str, Any]) -> tuple[str, str]:
    """The curation label rule and why it was chosen."""
    if source.signal:
        return source.signal, "set in the run config (`source.signal`)"
    return picked["pick"], picked["why"]


def helpfulness_pairs(source: SourceSection, stage_dir: Path) -> Path | str:
    """`pairs.helpfulness`, or the sibling rankings of an OpenAssistant export given as `logs`."""
    if source.pairs.helpfulness:
        return source.pairs.helpfulness
    from rluf.rewards.oasst_pairs import write_sibling_pairs

    out = stage_dir / "oasst_sibling_pairs.parquet"
    try:
        write_sibling_pairs(source.logs, out)
    except (DataError, OSError, ValueError) as e:
        raise ConfigError(
            f"helpfulness needs `source.pairs.helpfulness` or `source.reward_models.helpfulness`; "
            f"the logs {source.logs} give no OpenAssistant sibling rankings ({e})"
        ) from None
    return out


def reward_config(cfg: RunConfig, name: str, run_dir: Path):
    """reward_<name>: the model's defaults + the run's overrides; `baseline` backbone = the source policy, and
    `reward_helpfulness` (P[Love] only) the run's helpfulness model, as in the simulated run."""
    from rluf.rewards import RewardConfig
    from rluf.run.pipeline import BASELINE_BACKBONE, HELPFULNESS_BACKBONE

    policy = cfg.source.policy
    overrides = deep_merge(
        {"objective": name, "train": {"seed": cfg.seed}, "model": {"tokenizer": policy}},
        getattr(cfg, f"reward_{name}"),
    )
    backbone = overrides["model"].get("backbone")
    if backbone == BASELINE_BACKBONE:
        overrides["model"]["backbone"] = policy
    elif backbone == HELPFULNESS_BACKBONE:
        if name != "love":
            raise ConfigError(
                f"reward_{name}.model.backbone: {HELPFULNESS_BACKBONE!r} is for reward_love only"
            )
        overrides["model"]["backbone"] = str(reward_path(cfg, "helpfulness", run_dir))
    return stage_config(RewardConfig, None, overrides, f"reward_{name}")


def reward_path(cfg: RunConfig, name: str, run_dir: Path) -> Path:
    given = cfg.source.reward_models.get(name)
    return Path(given) if given else run_dir / f"reward_{name}"


def auroc_ci(y: np.ndarray, p: np.ndarray, reps: int = 1000, seed: int = 0) -> dict[str, Any]:
    """AUROC with a percentile bootstrap 95% CI over rows (resamples holding one class are redrawn)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    values = []
    while len(values) < reps:
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            values.append(roc_auc_score(y[i], p[i]))
    return {"auroc": float(roc_auc_score(y, p)), "ci": np.percentile(values, [2.5, 97.5]).tolist()}


def score_baselines(curated: Path, love_dir: Path, out: Path, seed: int) -> dict[str, Any]:
    """P[Love] next to the length, TF-IDF and sentence-embedding baselines, fitted on the training rows and
    scored on the very test rows P[Love] was scored on (reward_love/test_scores.parquet)."""
    import pandas as pd

    from rluf.rewards.baselines import baseline_scores
    from rluf.rewards.data import read_curated

    splits, _ = read_curated(curated)
    train, test = splits["train"], splits["test"]
    love = pd.read_parquet(love_dir / "test_scores.parquet")
    if love["message_id"].tolist() != list(test.message_ids):
        raise DataError(f"{love_dir / 'test_scores.parquet'} does not hold the rows of {test.path} in order")
    y = test.labels.astype(int)
    if len(np.unique(y)) < 2:
        raise DataError(
            f"{test.path}: the test split holds one class only ({int(y.sum())} positives of {len(y)}); "
            "AUROC needs both; curate more logs or a larger split.test_fraction"
        )
    scores = {"P[Love]": love["prob"].to_numpy()}
    scores.update(
        baseline_scores(
            train.contexts,
            train.responses,
            train.labels,
            test.contexts,
            test.responses,
            cache=out / "embeddings.npz",
        )
    )
    pd.DataFrame({"message_id": test.message_ids, "label": y, **scores}).to_parquet(out / "scores.parquet")
    models = {name: auroc_ci(y, s, seed=seed) for name, s in scores.items()}
    best = max((n for n in models if n != "P[Love]"), key=lambda n: models[n]["auroc"])
    beats = models["P[Love]"]["ci"][0] > models[best]["auroc"]
    summary = {
        "n": len(y),
        "positives": int(y.sum()),
        "models": models,
        "best_baseline": best,
        "p_love_beats_best_baseline": beats,
        "verdict": verdict(models, best, beats, int(y.sum())),
    }
    write_json(out / "baselines.json", summary)
    return {"best_baseline": best, "p_love_auroc": models["P[Love]"]["auroc"], "beats": beats}


def verdict(models: dict[str, Any], best: str, beats: bool, positives: int) -> str:
    p, b = models["P[Love]"], models[best]
    said = (
        f"P[Love] scores AUROC {p['auroc']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}] on {positives} held-out "
        f"positives; the best baseline, {best}, {b['auroc']:.3f}."
    )
    if beats:
        return said + " P[Love] beats it (its 95% CI lies above the baseline)."
    return said + (
        " P[Love] does not beat it: on these logs it has learned no more than a simple baseline. "
        "More reactions (longer logs, more users), a bigger backbone (reward_love.model.backbone: minilm "
        "or your policy), or starting from a helpfulness model trained on more pairs could change that."
    )


def optimize_config(cfg: RunConfig, run_dir: Path):
    """Every sweep run's OptimizeConfig: the source policy, the run's reward models, CRRAFT on the curated
    training contexts (written by the sweep stage); the simulator's evaluation is off (offline evaluation
    follows)."""
    from rluf.optimize import OptimizeConfig

    return stage_config(
        OptimizeConfig,
        None,
        deep_merge(
            {
                "seed": cfg.seed,
                "policy": cfg.source.policy,
                "objectives": {k: str(reward_path(cfg, k, run_dir)) for k in OBJECTIVES},
                "prompts": {"source": "file", "path": str(run_dir / "sweep" / "prompts.parquet")},
                "eval": {"enabled": False},
            },
            cfg.optimize,
        ),
        "optimize",
    )


def train_sweep(cfg: RunConfig, opt, out: Path) -> dict[str, Any]:
    """CRRAFT for each weight setting; sweep.json holds each run's last logged iteration (learned rewards,
    judge pass rates, KL, the monitor's hack rate). The truth-based comparison of the simulated sweep has no
    counterpart here: offline evaluation ranks the runs."""
    import pandas as pd

    from rluf.optimize.weight_sweep import _run_one
    from rluf.run.report import _metrics

    train = pd.read_parquet(
        Path(opt.prompts.path).parents[1] / "curate" / "train.parquet", columns=["prompt"]
    )
    # each logged context once (train repeats upsampled positives); the other columns are not prompt metadata
    train.loc[~train["prompt"].map(str).duplicated()].to_parquet(opt.prompts.path, index=False)
    runs = cfg.sweep.all_runs()
    for run in runs.values():
        opt.model_copy(update={"weights": run.weights}).check(list(opt.objectives))
    rows = {}
    for name, run in runs.items():
        summary = _run_one(opt.model_copy(update={"weights": run.weights}), out / name, None, None)
        last = [r for r in _metrics(out / name / "metrics.jsonl") if "iteration" in r][-1:]
        rows[name] = {
            "weights": run.weights,
            "role": run.role,
            "wall_s": summary.get("wall_s"),
            "last_iteration": last[0] if last else {},
        }
    write_json(out / "sweep.json", {"runs": rows, "truth": False})
    return {"runs": len(rows)}


def recommend(ev: dict[str, Any]) -> dict[str, Any]:
    """The candidate with the largest offline P[Love] uplift whose 95% CI is above 0, that keeps the judges'
    pass rate and raises no hacking flag; or none."""
    base = ev.get("baseline")
    love = (ev.get("vs_baseline") or {}).get("love") or {}
    judge = (ev.get("vs_baseline") or {}).get("judge_pass") or {}
    policies = ev.get("policies") or {}
    ok = {
        n: d
        for n, d in love.items()
        if d.get("ci")
        and d["ci"][0] > 0
        and not (policies.get(n) or {}).get("flags")
        and ((judge.get(n) or {}).get("ci") or [0, 0])[1] >= 0
    }
    base_mean = ((policies.get(base) or {}).get("scores") or {}).get("love", {}).get("mean")
    if not ok:
        return {
            "recommended": None,
            "baseline": base,
            "baseline_love": base_mean,
            "why": "no candidate's P[Love] uplift has a 95% CI above 0 with the judges held and no hacking "
            "flag",
        }
    name = max(ok, key=lambda n: ok[n]["diff"])
    return {
        "recommended": name,
        "baseline": base,
        "baseline_love": base_mean,
        "uplift": ok[name]["diff"],
        "uplift_ci": ok[name]["ci"],
        "relative_lift": ok[name]["diff"] / base_mean if base_mean else None,
        "why": "the largest P[Love] uplift with a 95% CI above 0, judges held, no hacking flag",
    }


def traffic(logs: Path) -> dict[str, float]:
    """Assistant responses per user and users per day of the logs."""
    import duckdb

    n, users, days = (
        duckdb.connect()
        .execute(
            "SELECT count(*), count(DISTINCT user_id), "
            "greatest(epoch(max(created_at)) - epoch(min(created_at)), 86400) / 86400 "
            f"FROM read_parquet('{logs / 'messages.parquet'}') WHERE role = 'assistant'"
        )
        .fetchone()
    )
    return {"responses_per_user": n / max(users, 1), "users_per_day": users / days, "users": users}


def write_plan(
    cfg: RunConfig, run_dir: Path, logs: Path, natural_rate: float, ev: dict[str, Any], out: Path
) -> dict[str, Any]:
    """plan.json (`rluf abtest power` at the logs' natural rate for the candidate's expected lift, users and
    days needed) and serve.yaml (baseline and candidate arms, 50/50) that `rluf serve` starts as it is."""
    import yaml

    from rluf.abtest.power import power
    from rluf.config import load_yaml, packaged_config
    from rluf.serve import ServeConfig

    rec = recommend(ev)
    candidate = rec["recommended"] or cfg.sweep.candidate
    lift = max(rec.get("relative_lift") or 0.0, cfg.plan.min_lift)
    t = traffic(logs)
    sizes = power(
        natural_rate,
        lift,
        cfg.plan.alpha,
        cfg.plan.power,
        responses_per_user=max(t["responses_per_user"], 1.0),
    )
    days = 2 * sizes["users_per_arm"] / t["users_per_day"] if t["users_per_day"] else None
    db_url = cfg.source.logs if is_database_url(cfg.source.logs) else f"sqlite:///{out / 'rluf.db'}"
    packaged = load_yaml(packaged_config("serve.yaml"))
    # the packaged local backend's generation settings, for both arms
    local = packaged["backends"]["baseline"]
    serve = deep_merge(
        packaged,
        {
            "database": {"url": db_url},
            "backends": {
                "baseline": {**local, "path": cfg.source.policy},
                "candidate": {**local, "path": str(run_dir / "sweep" / candidate / "policy")},
            },
            "experiment": {
                "name": f"{run_dir.name}-{candidate}",
                "arms": [
                    {"name": "baseline", "backend": "baseline", "share": 0.5},
                    {"name": "candidate", "backend": "candidate", "share": 0.5},
                ],
            },
            "reactions": {"types": reaction_types(logs)},
        },
    )
    serve = deep_merge(serve, cfg.plan.serve)
    stage_config(ServeConfig, None, serve, "plan.serve")  # serve.yaml must start as it is
    (out / "serve.yaml").write_text(yaml.safe_dump(serve, sort_keys=False), encoding="utf-8")
    measured = "smaller" if rec.get("relative_lift") else "not measurable"
    plan = {
        **rec,
        "candidate": candidate,
        "lift_planned": lift,
        "lift_source": "offline P[Love] uplift"
        if lift == rec.get("relative_lift")
        else f"plan.min_lift (the offline uplift is {measured})",
        "natural_rate": natural_rate,
        **t,
        "power": sizes,
        "days_needed": days,
        "serve_yaml": str(out / "serve.yaml"),
        "command": f"rluf serve --config {out / 'serve.yaml'}",
    }
    write_json(out / "plan.json", plan)
    return {
        "candidate": candidate,
        "recommended": rec["recommended"],
        "users_per_arm": sizes["users_per_arm"],
    }


def reaction_types(logs: Path) -> list[str]:
    """The logs' reaction types that the gateway accepts as names; its default types when none does."""
    import re

    simple = sorted(t for t in reaction_counts(logs) if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", t))
    return simple or ["love", "like", "dislike"]


def run_real(cfg: RunConfig, run_dir: Path, stage) -> None:
    """The loop on `cfg.source`; `stage(name, config, inputs, fn)` runs or skips one stage."""
    from rluf.evaluate import EvaluateConfig
    from rluf.evaluate.evaluator import evaluate
    from rluf.rewards.train import train_reward
    from rluf.run.pipeline import _top, curate_config
    from rluf.signals.curate import curate

    src = cfg.source
    logs = logs_dir(src, run_dir)
    # every stage's config is validated before the first stage starts
    rewards = {k: reward_config(cfg, k, run_dir) for k in OBJECTIVES}
    opt = optimize_config(cfg, run_dir)
    ev_cfg = stage_config(
        EvaluateConfig,
        None,
        deep_merge({"prompts": {"path": str(run_dir / "curate")}}, cfg.evaluate),
        "evaluate",
    )
    curate_cfg = curate_config(cfg)
    write_json(run_dir / "run_config.json", cfg.model_dump(mode="json"))

    # 1. The logs: exported from the gateway's database or ingested, then checked.
    stage("logs", [src.logs, src.ingest, logs_stamp(src.logs)], [], lambda d: read_logs(src, d))
    # 2. Signal selection; its top-ranked reaction is the label unless the config names one.
    picked = stage(
        "signals", cfg.signals, ["logs"], lambda d: rank_signals(logs, d, cfg.signals.outcome_days)
    )
    rule, why = chosen_signal(src, picked)
    curate_cfg = curate_cfg.model_copy(update={"signal": curate_cfg.signal.model_copy(update={"rule": rule})})
    # 3. Curation of the chosen signal: contexts, labels, adversarial filters, splits, resampling.
    stage(
        "curate",
        [curate_cfg, why],
        ["logs"],
        lambda d: {**curate(logs, d, curate_cfg), "signal": rule, "signal_why": why},
    )
    # 4. Reward models: helpfulness and safety on your pairs (or your folders, used as they are); P[Love] on
    #    the curated logs; then P[Love] next to simple baselines on the same held-out rows.
    for name in ("helpfulness", "safety"):
        if name not in src.reward_models:
            stage(
                f"reward_{name}",
                [rewards[name], getattr(src.pairs, name)],
                ["logs"],
                lambda d, n=name: train_reward(
                    n, helpfulness_pairs(src, d) if n == "helpfulness" else src.pairs.safety, d, rewards[n]
                ),
            )
    trained = [f"reward_{k}" for k in ("helpfulness", "safety") if k not in src.reward_models]
    from_help = rewards["love"].model.backbone == str(run_dir / "reward_helpfulness")
    stage(
        "reward_love",
        rewards["love"],
        ["curate"] + (["reward_helpfulness"] if from_help else []),
        lambda d: train_reward("love", run_dir / "curate", d, rewards["love"]),
    )
    stage(
        "baselines",
        cfg.seed,
        ["reward_love"],
        lambda d: score_baselines(run_dir / "curate", run_dir / "reward_love", d, cfg.seed),
    )
    # 5. CRRAFT with the Mixture of Judges over the weight sweep, on the logged contexts.
    stage(
        "sweep",
        [opt, cfg.sweep, {k: str(v) for k, v in src.reward_models.items()}],
        ["curate", "reward_love", *trained],
        lambda d: train_sweep(cfg, opt, d),
    )
    # 6. Offline evaluation of the baseline and every sweep policy on later-in-time logged contexts.
    policies = {
        "baseline": src.policy,
        **{n: str(run_dir / "sweep" / n / "policy") for n in cfg.sweep.all_runs()},
    }
    stage(
        "evaluate",
        ev_cfg,
        ["sweep"],
        lambda d: _top(
            evaluate(
                policies,
                d,
                love_model=str(run_dir / "reward_love"),
                config=ev_cfg,
                help_model=str(reward_path(cfg, "helpfulness", run_dir)),
                safety_model=str(reward_path(cfg, "safety", run_dir)),
            )
        ),
    )
    # 7. The A/B plan: sample size at the logs' natural rate, and serve.yaml with both arms.
    stage(
        "plan",
        cfg.plan,
        ["evaluate"],
        lambda d: write_plan(
            cfg, run_dir, logs, natural_rate(run_dir), read_json(run_dir / "evaluate" / "evaluate.json"), d
        ),
    )


def natural_rate(run_dir: Path) -> float:
    from rluf.rewards.data import natural_rate_of, read_curated

    splits, manifest = read_curated(run_dir / "curate")
    return natural_rate_of(splits, manifest)
