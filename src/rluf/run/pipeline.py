"""`rluf run`: the whole loop in one run directory, read top to bottom.

    baseline -> simulate -> signals -> curate -> reward_helpfulness, reward_safety, reward_love
             -> sweep (CRRAFT) -> evaluate (offline, offline-online agreement) -> abtest (simulated) -> report.html

Every stage writes into `<run>/<stage>/` and is skipped when it already finished with the same config
fingerprint (rluf.run.stages), so a killed run resumes at the stage in flight. With `workers` >= 2 (the
default on a machine with two CPUs or more and no GPU), stages that do not depend on each other run side by
side in worker processes (rluf.parallel): the deployment, signals, curation and the safety model beside the
helpfulness model; the A/B test beside the offline evaluation; and the sweep's runs `workers` at a time.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rluf.config import deep_merge
from rluf.errors import ConfigError
from rluf.run.config import RunConfig, stage_config
from rluf.run.stages import MARKER, run_stage, start_stage
from rluf.utils import read_json, write_json

log = logging.getLogger(__name__)
Event = Callable[[str, str], None]
# `reward_*: {model: {backbone: baseline}}` in a run config: initialise the reward model from the simulated
# deployment's baseline policy (<run>/baseline), which the run trains first.
BASELINE_BACKBONE = "baseline"
# `reward_love: {model: {backbone: reward_helpfulness}}`: start P[Love] from the run's helpfulness reward model
# (<run>/reward_helpfulness), which the run trains first; its ranking of answers carries over (docs/run.md).
HELPFULNESS_BACKBONE = "reward_helpfulness"


def resolve_stage_configs(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Validate every stage's config (packaged YAML + the run's overrides + the chaining paths) up front."""
    from rluf.evaluate import EvaluateConfig
    from rluf.optimize import OptimizeConfig
    from rluf.sim import WorldConfig

    sim_dir = run_dir / "simulate"
    world = stage_config(WorldConfig, "sim_quick.yaml" if cfg.quick else None,
                         {"seed": cfg.seed, **cfg.simulate}, "simulate")
    rewards = {name: reward_config(cfg, name, run_dir) for name in ("love", "helpfulness", "safety")}
    optimize = stage_config(OptimizeConfig, None, deep_merge({
        "seed": cfg.seed,
        "policy": str(sim_dir / "policy"),
        "objectives": {k: str(run_dir / f"reward_{k}") for k in ("love", "helpfulness", "safety")},
        "prompts": {"source": "sim", "path": str(sim_dir)},
    }, cfg.optimize), "optimize")
    return dict(
        world=world,
        curate=curate_config(cfg),
        rewards=rewards,
        optimize=optimize,
        # offline evaluation on the curated test split: conversations later in time than all training data
        evaluate=stage_config(EvaluateConfig, None, deep_merge(
            {"prompts": {"path": str(run_dir / "curate")}}, cfg.evaluate), "evaluate"),
        abtest_world=stage_config(WorldConfig, None, deep_merge(
            world.model_dump(), {"traffic_seed": cfg.seed + 1000, **cfg.abtest}), "abtest"),
    )


def curate_config(cfg: RunConfig):
    """The run's CurateConfig: curate.yaml + the run's overrides, seeded by the run."""
    from rluf.signals.config import CurateConfig

    return stage_config(CurateConfig, None, deep_merge({"sample": {"seed": cfg.seed}}, cfg.curate), "curate")


def reward_config(cfg: RunConfig, name: str, run_dir: Path):
    """The run's RewardConfig for `name`: reward_<name>.yaml + the run's overrides, with the tokenizer (and a
    `baseline` backbone) taken from the simulated deployment's policy folder, and a `reward_helpfulness`
    backbone (P[Love] only) from the run's helpfulness reward model."""
    from rluf.rewards import RewardConfig

    policy = str(run_dir / "baseline")
    overrides = deep_merge({"objective": name, "train": {"seed": cfg.seed}, "model": {"tokenizer": policy}},
                           getattr(cfg, f"reward_{name}"))
    backbone = overrides["model"].get("backbone")
    if backbone == BASELINE_BACKBONE:  # start from the simulator's baseline LM
        overrides["model"]["backbone"] = policy
    elif backbone == HELPFULNESS_BACKBONE:
        if name != "love":
            raise ConfigError(f"reward_{name}.model.backbone: {HELPFULNESS_BACKBONE!r} is for reward_love only "
                              "(the run trains the helpfulness model first)")
        overrides["model"]["backbone"] = str(run_dir / "reward_helpfulness")
    return stage_config(RewardConfig, None, overrides, f"reward_{name}")


def run(cfg: RunConfig, run_dir: str | Path, on_event: Event | None = None) -> dict[str, Any]:
    """Run (or resume) the loop in `run_dir`, simulated or on `cfg.source` (rluf.run.real); returns the
    summaries of every stage and writes report.html."""
    from rluf.run.real import run_real
    from rluf.run.report import build_report

    t0 = time.time()
    run_dir = Path(run_dir).resolve()  # stage fingerprints hold paths: the same run however it is spelled
    run_dir.mkdir(parents=True, exist_ok=True)
    fps: dict[str, str] = {}
    S: dict[str, Any] = {}

    def stage(name, config, inputs, fn):
        S[name] = run_stage(run_dir, name, _dump(config), inputs, fn, fps, on_event)
        return S[name]

    def beside(pool, name, config, inputs, fn) -> Callable[[], dict[str, Any]]:
        """Start a stage in a worker process of `pool` (None: run it now); returns a wait() for its summary."""
        wait = start_stage(pool, run_dir, name, _dump(config), inputs, fn, fps, on_event)

        def done() -> dict[str, Any]:
            S[name] = wait()
            return S[name]

        return done

    if cfg.source is not None:
        run_real(cfg, run_dir, stage)
    else:
        run_simulated(cfg, run_dir, stage, beside)
    S["report"] = str(build_report(run_dir))
    S["wall_s"] = round(time.time() - t0, 1)  # this invocation's (a resumed run: the resumed part)
    write_json(run_dir / "run.json", S)
    return S


def side_by_side(cfg: RunConfig):
    """A one-worker pool for a stage that runs beside the main process (each with half the CPUs), or None
    (`workers: 1`, or a GPU to share)."""
    from contextlib import nullcontext

    from rluf.parallel import Workers
    from rluf.threads import available_cpus

    if cfg.resolved_workers() < 2:
        return nullcontext(None)
    return Workers(1, threads=max(1, available_cpus() // 2))


def run_simulated(cfg: RunConfig, run_dir: Path, stage, beside) -> None:
    """The loop on the simulated deployment; `stage(name, config, inputs, fn)` runs or skips one stage;
    `beside(pool, ...)` starts one in a worker process and returns a wait() for it."""
    from rluf.abtest.simulated import simulate as abtest_simulate
    from rluf.evaluate.agreement import offline_online
    from rluf.evaluate.evaluator import evaluate
    from rluf.optimize.weight_sweep import sweep
    from rluf.rewards.train import train_reward
    from rluf.sim.world import World

    sc = resolve_stage_configs(cfg, run_dir)
    write_json(run_dir / "run_config.json", cfg.model_dump(mode="json"))
    base, sim = run_dir / "baseline", run_dir / "simulate"
    logs, truth = sim / "logs", sim / "truth"

    # 1. The baseline policy (the simulator's trained LM) and the expert pairs: what the helpfulness and safety
    #    models start from, so they need not wait for the deployment.
    stage("baseline", sc["world"], [], partial(baseline_stage, sc["world"]))
    # 2-4. The helpfulness model trains here (the longest step, and P[Love] starts from it); beside it, in a
    #      worker, one after another: the simulated deployment of the baseline (logs, ground truth), signal
    #      selection (which reaction is available and tied to users coming back), curation (contexts, labels,
    #      adversarial filters, time splits, resampling to 10% Love) and the safety model. Helpfulness and
    #      safety are Bradley-Terry on the expert pairs.
    with side_by_side(cfg) as pool:
        waits = [
            beside(pool, "simulate", sc["world"], ["baseline"], partial(deploy_stage, sc["world"], base)),
            beside(pool, "signals", cfg.signals, ["simulate"], partial(signals_stage, logs, cfg.signals.outcome_days)),
            beside(pool, "curate", sc["curate"], ["simulate"], partial(curate_stage, logs, sc["curate"], truth)),
            beside(pool, "reward_safety", sc["rewards"]["safety"], ["baseline"], partial(
                train_reward, "safety", base / "pairs" / "safety.parquet", config=sc["rewards"]["safety"])),
        ]
        stage("reward_helpfulness", sc["rewards"]["helpfulness"], ["baseline"], lambda d: train_reward(
            "helpfulness", base / "pairs" / "helpfulness.parquet", d, sc["rewards"]["helpfulness"]))
        for wait in waits:
            wait()
    # 4. P[Love] (BCE) on the curated data, started from the helpfulness model when the config says so (then
    #    it depends on it).
    love_from_help = sc["rewards"]["love"].model.backbone == str(run_dir / "reward_helpfulness")
    stage("reward_love", sc["rewards"]["love"], ["curate"] + (["reward_helpfulness"] if love_from_help else []),
          lambda d: train_reward("love", run_dir / "curate", d, sc["rewards"]["love"], truth=truth))
    # 5. CRRAFT with the Mixture of Judges, over the paper's weight sweep.
    stage("sweep", [sc["optimize"], cfg.sweep], ["simulate", "reward_love", "reward_helpfulness", "reward_safety"],
          lambda d: sweep(sc["optimize"], d, runs=cfg.sweep.all_runs(), parallel_runs=cfg.resolved_workers()))
    policies = candidate_policies(run_dir)
    rewards = {k: run_dir / f"reward_{k}" for k in ("love", "helpfulness", "safety")}
    treatment = run_dir / "sweep" / cfg.sweep.candidate / "policy"
    with side_by_side(cfg) as pool:
        # 7. The simulated A/B test (beside step 6): baseline (control) against the promoted sweep run
        #    (treatment). The control arm reuses the baseline's pooled answers from step 1 (same content, new
        #    users): no generation.
        abtest = beside(pool, "abtest", [sc["abtest_world"], cfg.sweep.candidate, "control_pool"], ["sweep"],
                        partial(abtest_simulate, sim / "policy", treatment, config=sc["abtest_world"],
                                control_pool=sim))
        # 6. Offline evaluation of every candidate, and offline-online agreement in the simulator. Once the A/B
        #    test is done, its worker samples some of the candidates' answers.
        stage("evaluate", sc["evaluate"], ["curate", "sweep"], lambda d: _evaluate(
            evaluate, offline_online, policies, d, rewards, World.load(sim), sc["evaluate"], pool))
        abtest()


def baseline_stage(world_cfg, out_dir: Path) -> dict[str, Any]:
    """The simulated world's baseline policy, saved in `out_dir`, and its expert pairs (`out_dir/pairs`)."""
    from rluf.sim.baseline import train_baseline
    from rluf.sim.deployment import write_expert_pairs
    from rluf.sim.world import World

    world = World(world_cfg)
    train_baseline(world, out_dir)
    write_expert_pairs(world, out_dir / "pairs")
    return read_json(out_dir / "rluf_baseline.json")


def deploy_stage(world_cfg, baseline: Path, out_dir: Path) -> dict[str, Any]:
    """The simulated deployment of the baseline policy: a complete `rluf simulate` folder (the baseline stage's
    policy and expert pairs copied in)."""
    from rluf.sim.deployment import simulate

    shutil.copytree(baseline, out_dir / "policy", ignore=shutil.ignore_patterns("pairs", MARKER))
    shutil.copytree(baseline / "pairs", out_dir / "pairs")
    return simulate(world_cfg, out_dir, policy_path=out_dir / "policy", name="baseline", pairs=False)


def signals_stage(logs: Path, outcome_days: float, out_dir: Path) -> dict[str, Any]:
    from rluf.signals.selection import signals

    return _top(signals(logs, outcome_days=outcome_days, out_dir=out_dir))


def curate_stage(logs: Path, config, truth: Path, out_dir: Path) -> dict[str, Any]:
    from rluf.signals.curate import curate

    return curate(logs, out_dir, config, truth_dir=truth)


def candidate_policies(run_dir: Path) -> dict[str, Path]:
    """The baseline, every sweep run's final policy, and its intermediate policies (`RUN@ITERATION`, saved
    with `optimize.save_policy_every`): the checkpoints of a sweep are the candidates RLUF's offline
    evaluator ranked."""
    out = {"baseline": run_dir / "simulate" / "policy"}
    sweep_dir = run_dir / "sweep"
    if sweep_dir.is_dir():
        for d in sorted(p for p in sweep_dir.iterdir() if (p / "policy" / "config.json").is_file()):
            for snap in sorted((d / "policies").glob("iter-*[0-9]")):
                if (snap / "config.json").is_file():
                    out[f"{d.name}@{int(snap.name.removeprefix('iter-'))}"] = snap
            out[d.name] = d / "policy"
    return out


def _evaluate(evaluate, offline_online, policies, d: Path, rewards, world, config, pool=None) -> dict[str, Any]:
    ev = evaluate({k: str(v) for k, v in policies.items()}, d, love_model=str(rewards["love"]),
                  help_model=str(rewards["helpfulness"]), safety_model=str(rewards["safety"]), world=world,
                  config=config, pool=pool)
    agree = offline_online(evaluation=d / "evaluate.json", out_dir=d / "agreement", world=world)
    return {"evaluate": _top(ev), "agreement": _top(agree)}


def _top(summary: Any) -> dict[str, Any]:
    """The scalar part of a summary (what the stage marker keeps)."""
    if not isinstance(summary, dict):
        return {}
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) or v is None}


def _dump(config: Any) -> Any:
    if hasattr(config, "model_dump"):
        return config.model_dump(mode="json")
    if isinstance(config, list):
        return [_dump(c) for c in config]
    return config
