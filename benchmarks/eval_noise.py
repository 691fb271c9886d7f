"""How much does one sweep evaluation move with the sampling seed and the answer length?

    python benchmarks/eval_noise.py [--run benchmarks/work/loop/default] [--seeds 13 14] [--tokens 40 64]

Re-evaluates the baseline and sweep policies of a finished `rluf run` directory with the simulator's true
metrics (`PolicyEvaluation`: one sampled answer per prompt, as the sweep's own evaluation does) for every
(sampling seed, max_new_tokens) pair, and prints each policy's true Love lift over the baseline. With
--write, writes benchmarks/results/eval_noise.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=HERE / "work" / "loop" / "default")
    ap.add_argument("--policies", nargs="+", default=["love_0.1", "love_0.3"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[13, 14])
    ap.add_argument("--tokens", nargs="+", type=int, default=[40, 64])
    ap.add_argument("--n-prompts", type=int, default=500)
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/eval_noise.json")
    a = ap.parse_args()

    from rluf.policy import Policy, Sampling
    from rluf.sim import World
    from rluf.sim.evaluation import PolicyEvaluation

    world = World.load(a.run / "simulate")
    paths = {"baseline": a.run / "simulate" / "policy", **{p: a.run / "sweep" / p / "policy" for p in a.policies}}
    policies = {name: Policy.from_pretrained(path, device="cpu") for name, path in paths.items()}
    rows, t0 = [], time.time()
    for tokens in a.tokens:
        for seed in a.seeds:
            ev = PolicyEvaluation(world, a.n_prompts, Sampling(tokens, 1.0, 1.0, 0), seed=seed)
            m = {name: ev.metrics(p) for name, p in policies.items()}
            base = m["baseline"]["love_rate"]
            for name in a.policies:
                rows.append({"policy": name, "seed": seed, "max_new_tokens": tokens,
                             "love_lift": m[name]["love_rate"] / base - 1, "parsed_rate": m[name]["parsed_rate"],
                             "baseline_love_rate": base})
                print(f"{name:10s} seed {seed:3d} tokens {tokens:3d}: true Love lift {rows[-1]['love_lift']:+.1%}")
    out = {"run": str(a.run), "n_prompts": a.n_prompts, "rows": rows, "wall_s": round(time.time() - t0, 1),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()}}
    print(json.dumps(out, indent=2))
    if a.write:
        path = HERE / "results" / "eval_noise.json"
        path.write_text(json.dumps(out, indent=2))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
