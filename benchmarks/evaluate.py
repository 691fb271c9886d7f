"""Benchmark of stage 4 (`rluf evaluate`): does a learned P[Love] rank policies as their users would?

In the simulated deployment: a P[Love] trained by `rluf train-reward love` on curated logs scores the
responses of several candidate policies on the world's fixed evaluation sample; the simulator gives each
policy's true Love rate. Reported: offline-online Pearson and Spearman (target Spearman >= 0.95), the
correlation between P[Love] and the true P[Love] over responses, and evaluation throughput.

Candidates: the simulator's baseline HF policy (sampled) plus policies written by the world's template
sampler with different behaviour mixes (warmer, more correct, sign-off hack, unsafe compliance, false
refusals), i.e. the kinds of changes an optimizer makes.

Run: .venv/bin/python benchmarks/evaluate.py [--sim DIR --love DIR] [--n-prompts 300]
Without --sim/--love it builds a medium world (see MEDIUM), curates it and trains a tiny P[Love] first;
--keep DIR keeps those inputs.
With --write, writes benchmarks/results/evaluate.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rluf.evaluate import EvaluateConfig, evaluate, offline_online
from rluf.utils import peak_rss_mb, write_json

RESULTS = Path(__file__).parent / "results" / "evaluate.json"

MIXES = {
    "template_base": {},
    "warm": {"warm": 0.7, "cold": 0.0},
    "correct": {"correct": 0.9, "on_topic": 0.9},
    "signoff_some": {"signoff": 0.4, "neutral_closer": 0.1},
    "signoff_hack": {"signoff": 0.95, "neutral_closer": 0.0},
    "unsafe": {"unsafe_compliance": 0.9},
    "refuser": {"false_refusal": 0.8, "other_refusal": 0.3},
    "best": {"warm": 0.7, "cold": 0.0, "correct": 0.9, "on_topic": 0.9, "unsafe_compliance": 0.05},
}


# The benchmark world: the quick world's sizes (tiny baseline, small pools) with 10x the users and a 1% natural
# Love rate, so that curation yields enough positives to train a P[Love] in minutes on a loaded CPU. The
# default world (0.1%, 20,000 users, 1M messages) is what `rluf run` uses; pass its folders with --sim/--love.
MEDIUM = {"population": {"n_users": 6000}, "signals": {"natural_love_rate": 0.01}}


def build_inputs(work: Path) -> tuple[Path, Path]:
    """A medium simulated world, its curated data and a P[Love] trained by `train_reward` (tiny preset)."""
    from rluf.config import load_config
    from rluf.rewards.config import RewardConfig
    from rluf.rewards.train import train_reward
    from rluf.signals.curate import curate
    from rluf.sim import WorldConfig, simulate

    sim = work / "sim"
    cfg = load_config(WorldConfig, Path(__file__).parents[1] / "src/rluf/configs/sim_quick.yaml")
    data = cfg.model_dump()
    for section, values in MEDIUM.items():
        data[section].update(values)
    simulate(WorldConfig.model_validate(data), sim)
    curate(sim, work / "curated", None)
    rcfg = RewardConfig.model_validate(
        {"objective": "love", "model": {"backbone": "tiny", "tokenizer": str(sim / "policy")}})
    train_reward("love", work / "curated", work / "love", rcfg, truth=sim / "truth")
    return sim, work / "love"


def template_policies(world, n_prompts: int, seed: int, out: Path) -> dict[str, Path]:
    """Response files (prompt_id e<i>, response) for each behaviour mix, on the evaluator's prompt sample."""
    from rluf.evaluate.evaluator import resolve_prompts
    from rluf.sim.config import BehaviourMix
    from rluf.sim.language import parse_context

    cfg = EvaluateConfig(seed=seed)
    cfg.prompts.n_prompts = n_prompts
    prompts = resolve_prompts(None, cfg, world)
    files = {}
    base = world.cfg.behaviour.model_dump()
    for k, (name, change) in enumerate(MIXES.items()):
        mix = BehaviourMix.model_validate({**base, **change})
        rng = np.random.default_rng([seed, k])
        texts = [world.sample_response(rng, parse_context(p.context), mix) for p in prompts]
        files[name] = out / f"{name}.parquet"
        pd.DataFrame({"prompt_id": [p.prompt_id for p in prompts], "response": texts}).to_parquet(files[name])
    return files


class PopulationLove:
    """The simulator's true P[Love] with the per-user offsets set to 0 (what a perfect model could learn)."""

    def __init__(self, world):
        self.world = world

    def prob(self, contexts, responses):
        return self.world.p_love(None, contexts, responses)


def _auroc(love: Path) -> float | None:
    from rluf.utils import read_json

    path = Path(love) / "eval.json"
    return read_json(path).get("test", {}).get("auroc") if path.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", type=Path, help="a `rluf simulate` folder (with policy/)")
    ap.add_argument("--love", type=Path, help="a P[Love] folder from `rluf train-reward love`")
    ap.add_argument("--n-prompts", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="build the inputs in this folder and keep them")
    ap.add_argument("--write", action="store_true", help=f"write the results to {RESULTS}")
    args = ap.parse_args()
    from rluf.sim import World

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        sim, love = (args.sim, args.love) if args.sim and args.love else build_inputs(work)
        build_s = time.perf_counter() - t0
        world = World.load(sim)
        policies: dict[str, object] = {"baseline": sim / "policy"}
        policies.update(template_policies(world, args.n_prompts, args.seed, work))
        cfg = EvaluateConfig(seed=args.seed, bootstrap_reps=1000)
        cfg.prompts.n_prompts = args.n_prompts
        t1 = time.perf_counter()
        ev = evaluate(policies, work / "evaluate", love_model=love, world=world, config=cfg)
        eval_s = time.perf_counter() - t1
        oo = offline_online(out_dir=work / "oo", evaluation=ev)
        n_resp = sum(p["n_responses"] for p in ev["policies"].values())
        # upper bound: the same responses scored by the simulator's own population P[Love] (the true Love
        # probability without the hidden per-user offsets), i.e. a perfectly learned reward model
        table = pd.read_parquet(work / "evaluate" / "responses.parquet")
        files = {}
        for name, rows in table.groupby("policy", sort=False):
            files[name] = work / f"resp_{name}.parquet"
            rows[["prompt_id", "response"]].to_parquet(files[name])
        ev_or = evaluate(files, work / "evaluate_oracle", love_model=PopulationLove(world), world=world,
                         config=cfg.model_copy(update={"bootstrap_reps": 0}))
        oo_or = offline_online(out_dir=work / "oo_oracle", evaluation=ev_or)
    res = {
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "n_policies": oo["n_policies"], "n_prompts": ev["n_prompts"],
        "offline_online_pearson": oo["pearson"], "offline_online_spearman": oo["spearman"],
        "meets_target": oo["meets_target"],
        "learned_love_test_auroc": _auroc(love),
        "oracle_offline_online_pearson": oo_or["pearson"], "oracle_offline_online_spearman": oo_or["spearman"],
        "love_vs_true_p_love_pearson": ev["correlations"]["love_vs_true_p_love"]["pooled"]["pearson"],
        "points": oo["points"],
        "ranking": [(r["policy"], r["mean"], r["ci"], r["p_best"]) for r in ev["ranking"]],
        "true_ranking": sorted(((n, p["true"]["love_rate"]) for n, p in ev["policies"].items()), key=lambda x: -x[1]),
        "flags": {n: p["flags"] for n, p in ev["policies"].items() if p["flags"]},
        "evaluate_s": eval_s, "responses": n_resp, "responses_per_s": n_resp / eval_s,
        "inputs_build_s": build_s if not (args.sim and args.love) else None, "peak_rss_mb": peak_rss_mb(),
    }
    print(f"offline-online over {res['n_policies']} policies, {res['n_prompts']} prompts: Pearson "
          f"{res['offline_online_pearson']:.3f}, Spearman {res['offline_online_spearman']:.3f} "
          f"(target >= 0.95: {'met' if res['meets_target'] else 'NOT met'})")
    for p in oo["points"]:
        print(f"  {p['policy']:<14} predicted {p['predicted']:.5f}  true {p['true']:.5f}")
    print(f"with the simulator's population P[Love] instead (a perfect reward model): Pearson "
          f"{res['oracle_offline_online_pearson']:.3f}, Spearman {res['oracle_offline_online_spearman']:.3f}")
    print(f"learned P[Love]'s AUROC on its curated test split: {res['learned_love_test_auroc']}")
    print(f"P[Love] vs true P[Love] over responses: Pearson {res['love_vs_true_p_love_pearson']:.3f}")
    print(f"evaluate: {n_resp} responses in {eval_s:.1f}s ({res['responses_per_s']:.1f}/s, incl. baseline "
          f"generation); peak RSS {res['peak_rss_mb']:.0f} MB")
    if args.write:
        write_json(RESULTS, res)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
