"""Benchmark of the whole loop: wall time and peak memory of `rluf run` (default and --quick), and the
headline results of the default run. With --write, writes benchmarks/results/loop.json.

    python benchmarks/loop.py                # both runs, fresh run directories under benchmarks/work/loop
    python benchmarks/loop.py --only quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed_run(args: list[str], run_dir: Path) -> tuple[float, float]:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "rluf", "run", *args, "--out", str(run_dir)], check=True)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return time.time() - t0, peak_mb


def headline(run_dir: Path) -> dict:
    def load(p):
        p = run_dir / p
        return json.loads(p.read_text()) if p.is_file() else {}

    ab, agree = load("abtest/abtest.json"), load("evaluate/agreement/offline_online.json")
    true = ab.get("true") or {}
    ci = (ab.get("delta") or {}).get("lift_ci") or [None, None]
    sweep = load("sweep/sweep.json")
    cand = ((sweep.get("runs") or {}).get((sweep.get("claims") or {}).get("candidate", "love_0.1")) or {})
    return {
        "ab_love_lift": ab.get("lift"), "ab_ci_low": ci[0], "ab_ci_high": ci[1],
        "ab_true_love_lift": true.get("lift"),
        "helpfulness_delta": true.get("helpfulness_delta"),
        "safety_violation_delta": true.get("safety_violation_delta"),
        "hack_rate": (true.get("treatment") or {}).get("signoff_rate"),
        "sweep_love_0.1": cand,
        "offline_online_spearman": agree.get("spearman"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=["default", "quick"], default=None)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "loop")
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/loop.json")
    a = ap.parse_args()
    results = HERE / "results" / "loop.json"
    out: dict = json.loads(results.read_text()) if results.is_file() else {}  # --only keeps the other run's keys
    load_at_start = os.getloadavg()
    if a.only in (None, "quick"):
        out["quick_s"], out["quick_peak_rss_mb"] = timed_run(["--quick"], a.work / "quick")
        out["quick"] = headline(a.work / "quick")
    if a.only in (None, "default"):
        out["run_s"], out["peak_rss_mb"] = timed_run([], a.work / "default")
        out.update(headline(a.work / "default"))
    out[f"machine_{a.only or 'both'}"] = {"cpus": os.cpu_count(), "load_avg_at_start": load_at_start,
                                          "load_avg_at_end": os.getloadavg()}
    print(json.dumps(out, indent=2, default=str))
    if a.write:
        results.parent.mkdir(exist_ok=True)
        results.write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
