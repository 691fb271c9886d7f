"""Benchmark of the whole loop: wall time, seconds per stage and peak memory of `rluf run` (default and
--quick), and the headline results of the default run, for one seed or several. With --write, writes
benchmarks/results/loop.json.

    python benchmarks/loop.py                          # both runs, fresh run directories under benchmarks/work/loop
    python benchmarks/loop.py --only quick
    python benchmarks/loop.py --only default --seeds 0,1,2 --write     # the shipped config over three seeds
    python benchmarks/loop.py --only default --seeds 0,1 --as fast --set ...   # another config, kept apart

The default run's keys (`run_s`, `stage_s`, the headline figures) are those of the first seed; `seeds` holds
every seed's, and `range` each figure's minimum and maximum over them. `--as NAME` stores a run of another
config under NAME (and `NAME_run_s`, its slowest seed) without touching the shipped config's keys.
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


def stage_seconds(run_dir: Path) -> dict[str, float]:
    """Seconds per stage, as the run recorded them (a stage beside another overlaps it in wall time)."""
    run = json.loads((run_dir / "run.json").read_text())
    return {k: v["wall_s"] for k, v in run.items() if isinstance(v, dict) and "wall_s" in v}


def timed_run(args: list[str], run_dir: Path, reuse: bool = False) -> tuple[float, float | None, float | None]:
    """(seconds, peak RSS MB, CPU seconds) of `rluf run ARGS --out RUN_DIR` in a fresh directory. The CPU
    seconds are user + system time of the run and every worker process it spawned: on a machine with C cores
    a run cannot take less than cpu_s / C seconds. With `reuse`, a finished run already there is not run
    again: its figures are the ones this function recorded for it (loop_timing.json), or else the seconds
    `rluf run` recorded (run.json's wall_s)."""
    done, timing = run_dir / "run.json", run_dir / "loop_timing.json"
    if reuse and timing.is_file() and done.is_file():
        return tuple(json.loads(timing.read_text()))
    recorded = json.loads(done.read_text()).get("wall_s") if reuse and done.is_file() else None
    if recorded is not None:
        return recorded, None, None
    if run_dir.exists():
        shutil.rmtree(run_dir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "rluf", "run", *args, "--out", str(run_dir)], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    measured = (time.time() - t0, after.ru_maxrss / 1024, cpu_s)
    timing.write_text(json.dumps(measured) + "\n")  # what --reuse reports for this folder later
    return measured


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
        "love_only_signoff": ((sweep.get("runs") or {}).get("love_only") or {}).get("signoff_rate"),
        "love_only_flagged": ((sweep.get("claims") or {}).get("hack") or {}).get("love_only", {}).get("flagged"),
        "expected_auroc": ((load("reward_love/eval.json").get("expected") or {}).get("model") or {}).get("auroc"),
    }


def cpu_model() -> str:
    """The CPU's name and model number (/proc/cpuinfo): hosts sold under one name differ in speed by 1.2-1.6x."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    except OSError:
        return "unknown"
    info = {k.strip(): v.strip() for k, v in info.items()}
    return f"{info.get('model name', 'unknown')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"


FIGURES = ("ab_love_lift", "ab_true_love_lift", "offline_online_spearman", "love_only_signoff", "expected_auroc")


def default_runs(seeds: list[int], extra: list[str], work: Path, reuse: bool = False) -> dict:
    """The default run for every seed: run_s, stage_s, peak memory and the headline figures."""
    per_seed = {}
    for seed in seeds:
        run_dir = work / f"default_seed{seed}"
        run_s, peak, cpu_s = timed_run(["--seed", str(seed), *extra], run_dir, reuse)
        per_seed[str(seed)] = {"run_s": run_s, "peak_rss_mb": peak, "cpu_s": cpu_s, "stage_s": stage_seconds(run_dir),
                               "cpu": cpu_model(), **headline(run_dir)}
        per_seed[str(seed)]["sweep_love_0.1_lift"] = per_seed[str(seed)]["sweep_love_0.1"].get("love_lift")
        print(json.dumps({seed: {k: per_seed[str(seed)][k] for k in ("run_s", "stage_s", *FIGURES)}}, default=str),
              flush=True)
    figures = ("run_s", "sweep_love_0.1_lift", *FIGURES)
    ranges = {k: [min(v[k] for v in per_seed.values()), max(v[k] for v in per_seed.values())] for k in figures
              if all(isinstance(v.get(k), (int, float)) for v in per_seed.values())}
    return {"seeds": per_seed, "range": ranges}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=["default", "quick"], default=None)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "loop")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds of the default run")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE into the run config (rluf run --set)")
    ap.add_argument("--reuse", action="store_true", help="keep finished run folders under --work (their own "
                    "recorded wall time) instead of running them again")
    ap.add_argument("--as", dest="label", default=None, help="store the default runs under this key")
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/loop.json")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    extra = [arg for kv in a.set for arg in ("--set", kv)]
    results = HERE / "results" / "loop.json"
    out: dict = json.loads(results.read_text()) if results.is_file() else {}  # --only keeps the other run's keys
    load_at_start = os.getloadavg()
    if a.only in (None, "quick"):
        out["quick_s"], out["quick_peak_rss_mb"], out["quick_cpu_s"] = timed_run(["--quick"], a.work / "quick")
        out["quick"] = headline(a.work / "quick")
    if a.only in (None, "default"):
        runs = default_runs(seeds, extra, a.work, a.reuse)
        if a.label:
            out[a.label] = {"set": a.set, **runs}
            out[f"{a.label}_run_s"] = max(v["run_s"] for v in runs["seeds"].values())
        else:
            first = runs["seeds"][str(seeds[0])]
            out.update({k: v for k, v in first.items() if k != "sweep_love_0.1_lift"})
            out.update(runs)
    out[f"machine_{a.only or 'both'}"] = {"cpus": os.cpu_count(), "cpu": cpu_model(),
                                          "load_avg_at_start": load_at_start, "load_avg_at_end": os.getloadavg()}
    print(json.dumps(out, indent=2, default=str))
    if a.write:
        results.parent.mkdir(exist_ok=True)
        results.write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
