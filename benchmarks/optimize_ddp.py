"""Stage 3 benchmark: data-parallel CRRAFT with 1 and 2 processes (torchrun, gloo on CPU), same config.

Runs `rluf optimize` once per process count on a `rluf simulate` folder and its three reward models, each
process with one thread, and reports the wall time per iteration, the true Love lift of the final policy
(the simulator's evaluation at iteration 0 and at the end), and whether the runs selected the same answers
(`select/choice` of every iteration equal to the 1-process run's). On a machine with as many cores as
processes a second process brings no speed-up; the figure to read is the overhead per iteration.

  python benchmarks/optimize_ddp.py --sim SIM --love DIR --helpfulness DIR --safety DIR [--processes 1,2]
Prints the table; with --write, writes benchmarks/results/optimize_ddp.json (or --out PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rluf.utils import write_json

RESULTS = Path(__file__).parent / "results" / "optimize_ddp.json"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim", required=True, help="`rluf simulate --out` folder")
    for name in ("love", "helpfulness", "safety"):
        p.add_argument(f"--{name}", required=True, help=f"`rluf train-reward {name}` folder")
    p.add_argument("--processes", default="1,2", help="comma list of process counts")
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--batch-prompts", type=int, default=16)
    p.add_argument("--eval-prompts", type=int, default=200, help="evaluation prompts for the true Love lift")
    p.add_argument("--work", default="benchmarks/work/optimize_ddp", help="scratch folder for the runs")
    p.add_argument("--out", default=None, help="write the results JSON here")
    p.add_argument("--write", action="store_true", help=f"write the results to {RESULTS}")
    return p.parse_args()


def run(processes: int, a: argparse.Namespace) -> dict:
    out = Path(a.work) / f"p{processes}"
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] \
        if processes > 1 else []
    cmd = [sys.executable, *launcher, "-m", "rluf", "optimize", "--sim", a.sim, "--out", str(out),
           "--iterations", str(a.iterations), "--device", "cpu",
           "--objective", f"love={a.love}", "--objective", f"helpfulness={a.helpfulness}",
           "--objective", f"safety={a.safety}",
           "--set", f"crraft.batch_prompts={a.batch_prompts}", "--set", f"eval.n_prompts={a.eval_prompts}",
           "--set", "eval.every=0", "--set", "checkpoint_every=0"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{processes} processes failed:\n{res.stderr[-3000:]}")
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "time/iter_s" in r]
    base, last = records[0], records[-1]
    return {"processes": processes, "wall_s": round(wall, 1),
            "iteration_s": round(sum(r["time/iter_s"] for r in steps) / len(steps), 3),
            "love_rate_start": base["true/love_rate"], "love_rate_end": last["true/love_rate"],
            "love_lift": last["true/love_rate"] / base["true/love_rate"] - 1,
            "reward_combined_last": last["reward/combined"],
            "choices": [r["select/choice"] for r in steps]}


def main() -> None:
    a = _args()
    rows = [run(int(n), a) for n in a.processes.split(",")]
    first = rows[0]
    for r in rows:
        r["same_selections"] = r["choices"] == first["choices"]
        r["overhead_s_per_iteration"] = round(r["iteration_s"] - first["iteration_s"], 3)
        r["overhead_pct"] = round(100 * (r["iteration_s"] / first["iteration_s"] - 1), 1)
    print("| processes | s / iteration | overhead | wall s | true Love lift | same selections |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['iteration_s']:.2f} | {r['overhead_s_per_iteration']:+.2f} s "
              f"({r['overhead_pct']:+.0f}%) | {r['wall_s']:.0f} | {r['love_lift']:+.1%} | {r['same_selections']} |")
    result = {"config": {k: v for k, v in vars(a).items() if k not in ("write", "out")},
              "load_note": "measured on a 2-core machine shared with other jobs (under load)",
              "runs": [{k: v for k, v in r.items() if k != "choices"} for r in rows]}
    path = Path(a.out) if a.out else RESULTS if a.write else None
    if path:
        write_json(path, result)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
