"""Stage 3 benchmark: CRRAFT against what a user would try instead, at equal CPU time, on the simulator.

From the same baseline policy of a `rluf simulate` folder:
  kto        TRL's KTOTrainer directly on the curated logs (prompt, completion, label)
  grpo       TRL's GRPOTrainer with the three reward models as reward functions, weights 0.7 / 0.3 / 0.1
  best_of_4  best-of-4 at inference only (judges + the same weighted calibrated reward, no training)
  crraft     rluf optimize with the shipped config (96 iterations over 1,024 prompts; --iterations, --max-prompts)
  oracle     best-of-4 with the simulator's true P[Love] among safe answers (the ceiling)
Training methods get the wall time CRRAFT took (a callback stops TRL's trainers at the budget). Every
policy answers the same fixed evaluation sample (--eval-items: new conversations over the deployment's own
questions, or the world's held-out ones) with the same sampling seed; metrics are true.

  python benchmarks/optimize.py --sim SIM --love DIR --helpfulness DIR --safety DIR --curated DIR
Prints the table; with --write, writes benchmarks/results/optimize.json (or --out PATH). Missing inputs:
see --help.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from rluf.config import load_config
from rluf.judges.base import make_items
from rluf.judges.config import build_judges
from rluf.optimize import OptimizeConfig, calibrated_reward, combined_reward, optimize
from rluf.optimize.objectives import load_objectives
from rluf.optimize.simbridge import load_world
from rluf.optimize.weight_sweep import compare
from rluf.policy import Policy
from rluf.sim.evaluation import PolicyEvaluation
from rluf.utils import write_json

log = logging.getLogger("bench.optimize")
RESULTS = Path(__file__).parent / "results" / "optimize.json"
WEIGHTS = {"helpfulness": 0.7, "safety": 0.3, "love": 0.1}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim", required=True, help="`rluf simulate --out` folder (world.json, policy/)")
    for name in WEIGHTS:
        p.add_argument(f"--{name}", required=True, help=f"`rluf train-reward {name}` folder")
    p.add_argument("--curated", help="`rluf curate` folder with train.parquet (for KTO; skipped without it)")
    p.add_argument("--work", default="benchmarks/work/optimize", help="scratch folder for the runs")
    p.add_argument("--n-eval", type=int, default=1000, help="evaluation prompts")
    p.add_argument("--eval-items", default="deployment", choices=["held_out", "deployment"],
                   help="the world's held-out questions, or new conversations over the deployment's own")
    p.add_argument("--iterations", type=int, default=None, help="CRRAFT iterations (default: optimize.yaml's)")
    p.add_argument("--max-prompts", type=int, default=None, help="CRRAFT's prompt pool (default: optimize.yaml's)")
    p.add_argument("--skip", default="", help="comma list of methods to skip (kto,grpo)")
    p.add_argument("--out", default=None, help="write the results JSON here")
    p.add_argument("--write", action="store_true", help=f"write the results to {RESULTS}")
    return p.parse_args()


class TimeBudget:
    """A transformers TrainerCallback that stops training once `budget_s` of wall time has passed."""

    def __new__(cls, budget_s: float):
        from transformers import TrainerCallback

        class _Budget(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                self.t0 = time.time()

            def on_step_end(self, args, state, control, **kw):
                if time.time() - self.t0 > budget_s:
                    control.should_training_stop = True

        return _Budget()


def _trl_common(out: Path) -> dict:
    return dict(output_dir=str(out), report_to="none", save_strategy="no", logging_steps=5, use_cpu=True,
                bf16=False, max_steps=10_000, seed=0, disable_tqdm=True)


def run_grpo(start: Path, prompts: list[dict], objectives: dict, budget_s: float, out: Path) -> Policy:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    pol = Policy.from_pretrained(start, device="cpu")

    def reward_fn(name):
        def fn(prompts, completions, **kw):
            texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
            ctx = [p if isinstance(p, list) else [{"role": "user", "content": p}] for p in prompts]
            return [float(x) for x in objectives[name].score(ctx, texts)]
        fn.__name__ = f"reward_{name}"
        return fn

    ds = Dataset.from_list([{"prompt": p["prompt"]} for p in prompts])
    args = GRPOConfig(**_trl_common(out), num_generations=4, per_device_train_batch_size=16,
                      max_completion_length=40, learning_rate=2e-5, beta=0.04, temperature=1.0,
                      reward_weights=[WEIGHTS[k] for k in WEIGHTS])
    trainer = GRPOTrainer(model=pol.model, reward_funcs=[reward_fn(k) for k in WEIGHTS], args=args,
                          train_dataset=ds, processing_class=pol.tokenizer, callbacks=[TimeBudget(budget_s)])
    trainer.train()
    return Policy(trainer.model, pol.tokenizer, device="cpu")


def run_kto(start: Path, curated: Path, budget_s: float, out: Path) -> Policy:
    import pandas as pd
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    pol = Policy.from_pretrained(start, device="cpu")
    df = pd.read_parquet(curated / "train.parquet")[["prompt", "completion", "label"]]
    rows = [{"prompt": list(r.prompt), "completion": list(r.completion), "label": bool(r.label)}
            for r in df.itertuples()]
    pos = sum(r["label"] for r in rows)
    # TRL's guidance: desirable_weight * n_pos ~ undesirable_weight * n_neg (within 1 : 1.33)
    args = KTOConfig(**_trl_common(out), per_device_train_batch_size=16, learning_rate=5e-5, beta=0.1,
                     max_length=256, desirable_weight=max(1.0, (len(rows) - pos) / max(pos, 1)))
    trainer = KTOTrainer(model=pol.model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=pol.tokenizer, callbacks=[TimeBudget(budget_s)])
    trainer.train()
    return Policy(trainer.model, pol.tokenizer, device="cpu")


def best_of_k(start: Policy, ev: PolicyEvaluation, objectives, judges,
              k: int = 4) -> tuple[dict, dict, float]:
    """Best-of-k at inference (reward models + judges) and the oracle (true P[Love] among safe answers)."""
    t0 = time.time()
    gens = start.generate(ev.contexts, n=k, sampling=ev.sampling, generator_seed=ev.seed)  # (N, k)
    B = len(gens)
    flat_ctx = [c for c in ev.contexts for _ in range(k)]
    flat = [r for g in gens for r in g]
    R_k = {}
    for name in WEIGHTS:
        raw = np.asarray(objectives[name].score(flat_ctx, flat)).reshape(B, k)  # (N*k,) -> (N, k)
        R_k[name] = calibrated_reward(raw, raw[:, 0])  # sample 0 plays y_base
    R = combined_reward(R_k, WEIGHTS)
    metas = [{"reference": it.get("reference"), "must_refuse": it.get("must_refuse")} for it in ev.items]
    passed = judges.judge(make_items(flat_ctx, flat, [m for m in metas for _ in range(k)])).passed.reshape(B, k)
    pick = np.where(passed.any(1), np.where(passed, R, -np.inf).argmax(1), 0)
    wall = time.time() - t0
    w = ev.world
    p_love = w.p_love([u for u in ev.users for _ in range(k)], flat_ctx, flat).reshape(B, k)
    safe = w.safe(flat_ctx, flat).reshape(B, k)
    oracle = np.where(safe.any(1), np.where(safe, p_love, -np.inf).argmax(1), 0)
    return _fixed(ev, [gens[i][pick[i]] for i in range(B)]), _fixed(ev, [gens[i][oracle[i]] for i in range(B)]), wall


def _fixed(ev: PolicyEvaluation, rsp: list[str]) -> dict:
    """PolicyEvaluation.per_prompt's truth for given answers (KL not measured: 0)."""
    from rluf.hacking import hack_metrics

    w = ev.world
    return {"responses": rsp, "p_love": w.p_love(ev.users, ev.contexts, rsp),
            "helpfulness": w.helpfulness(ev.contexts, rsp), "unsafe": (~w.safe(ev.contexts, rsp)).astype(float),
            "signoff": w.signoff_hack(rsp).astype(float), "refusal": w.is_refusal(rsp).astype(float),
            "kl": np.zeros(len(rsp)), "monitor": hack_metrics(rsp)}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    a = _args()
    torch.set_num_threads(2)
    work, skip = Path(a.work), set(filter(None, a.skip.split(",")))
    cfg = load_config(OptimizeConfig)
    cfg = cfg.model_copy(update={"objectives": {"love": a.love, "helpfulness": a.helpfulness, "safety": a.safety},
                                 "weights": dict(WEIGHTS), "prompts": cfg.prompts.model_copy(update={"path": a.sim}),
                                 "eval": cfg.eval.model_copy(update={"enabled": False})})
    cfg.crraft.iterations = a.iterations = a.iterations or cfg.crraft.iterations
    cfg.prompts.max_prompts = a.max_prompts = a.max_prompts or cfg.prompts.max_prompts
    world = load_world(a.sim)
    objectives = load_objectives(cfg.objectives, "cpu")
    judges = build_judges(cfg.judges, objectives)
    ev = PolicyEvaluation(world, a.n_eval, cfg.crraft.sampling.to_sampling(), seed=13, items=a.eval_items)
    start_dir = Path(a.sim) / "policy"
    start = Policy.from_pretrained(start_dir, device="cpu")
    base = ev.per_prompt(start, start)
    rows: dict[str, dict] = {}

    t0 = time.time()
    summary = optimize(cfg, work / "crraft", objectives=objectives)
    crraft_wall = time.time() - t0
    trained = Policy.from_pretrained(summary["policy"], device="cpu")
    rows["crraft"] = {**compare(ev.per_prompt(trained, start), base),
                      "wall_s": crraft_wall}
    log.info("crraft: %.0fs, lift %+.1f%%", crraft_wall, 100 * rows["crraft"]["love_lift"])

    bo4, oracle, bo4_wall = best_of_k(start, ev, objectives, judges)
    rows["best_of_4"] = {**compare(bo4, base), "wall_s": bo4_wall,
                         "note": "inference only: wall_s is eval-set inference"}
    rows["oracle"] = {**compare(oracle, base), "wall_s": 0.0}
    if "grpo" not in skip:
        t0 = time.time()
        grpo = run_grpo(start_dir, world.prompts(cfg.prompts.max_prompts, seed=0), objectives, crraft_wall,
                        work / "grpo")
        rows["grpo"] = {**compare(ev.per_prompt(grpo, start), base), "wall_s": time.time() - t0}
    if "kto" not in skip and a.curated:
        t0 = time.time()
        kto = run_kto(start_dir, Path(a.curated), crraft_wall, work / "kto")
        rows["kto"] = {**compare(ev.per_prompt(kto, start), base), "wall_s": time.time() - t0}
    report(rows, base, a)


def report(rows: dict, base: dict, a) -> None:
    from rluf.optimize.weight_sweep import _means

    oracle_lift = rows["oracle"]["love_lift"]
    methods = {}
    for name, r in rows.items():
        if name == "oracle":
            continue
        methods[name] = {
            "love_lift": r["love_lift"], "love_lift_ci": r["love_lift_ci"],
            "helpfulness_delta": r["helpfulness_delta"], "helpfulness_delta_ci": r["helpfulness_delta_ci"],
            "safety_violation_delta": r["safety_violation_delta"],
            "safety_violation_delta_ci": r["safety_violation_delta_ci"],
            "hack_rate": r["signoff_rate"], "kl": r["kl"], "wall_s": round(r["wall_s"], 1),
            "share_of_oracle": r["love_lift"] / oracle_lift if oracle_lift > 0 else None, "flags": r["flags"],
        }
    out = {"oracle_love_lift": oracle_lift, "baseline": _means(base), "methods": methods,
           "n_eval": a.n_eval, "eval_items": a.eval_items, "iterations": a.iterations,
           "max_prompts": a.max_prompts,
           "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()}}
    results_path = a.out or (RESULTS if a.write else None)
    if results_path:
        Path(results_path).parent.mkdir(parents=True, exist_ok=True)
        write_json(results_path, out)
    print(f"{'method':10s} {'love lift':>10s} {'help Δ':>8s} {'unsafe Δ':>9s} {'hack':>6s} {'of oracle':>9s} "
          f"{'wall s':>7s}")
    for name, m in methods.items():
        share = f"{m['share_of_oracle']:.0%}" if m["share_of_oracle"] is not None else "-"
        print(f"{name:10s} {m['love_lift']:>+10.1%} {m['helpfulness_delta']:>+8.3f} "
              f"{m['safety_violation_delta']:>+9.3f} "
              f"{m['hack_rate']:>6.1%} {share:>9s} {m['wall_s']:>7.0f}")
    print(f"oracle love lift (best-of-4 on true P[Love], safe only): {oracle_lift:+.1%}")
    print(json.dumps({"baseline": out["baseline"]}, default=str)[:400])
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
