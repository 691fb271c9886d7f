"""Benchmark `rluf simulate` (pooled responses) and `rluf ingest` on its logs.

    .venv/bin/python benchmarks/simulate.py            # default world, >= 1M assistant messages
    .venv/bin/python benchmarks/simulate.py --quick    # the quick world (seconds)

Prints the figures and, with --write, writes benchmarks/results/simulate.json with simulate_msgs_per_s
(assistant messages per second of pooling + deployment + writing), ingest_rows_per_s, baseline_build_s,
peak_rss_mb.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from rluf.sim import WorldConfig, quick_config, simulate
from rluf.utils import peak_rss_mb, write_json

RESULTS = Path(__file__).parent / "results" / "simulate.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="the quick world's tiny baseline and small prompt pool (the deployment still has --users users)",
    )
    ap.add_argument(
        "--users",
        type=int,
        default=30_000,
        help="users of the deployed world (default world: 20,000; 30,000 gives > 1M assistant messages)",
    )
    ap.add_argument("--out", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    ap.add_argument("--write", action="store_true", help=f"write the results to {RESULTS}")
    ap.add_argument("--baseline-world", type=Path, default=None,
                    help="reuse a finished `rluf simulate` folder of the same world (e.g. a `rluf run`'s simulate/): "
                         "its policy and its recorded baseline build time instead of building them again")
    args = ap.parse_args()
    cfg = quick_config(WorldConfig()) if args.quick else WorldConfig()
    load_at_start = os.getloadavg()[0]
    work = args.out or Path(tempfile.mkdtemp(prefix="rluf-bench-sim-"))
    # 1. the baseline: build time of the default world's baseline (tokenizer + model + SFT + save)
    t0, c0 = time.perf_counter(), time.process_time()
    if args.baseline_world:
        base = json.loads((args.baseline_world / "simulate.json").read_text())
        baseline_dir, baseline_cpu_s = args.baseline_world, None
    else:
        base = simulate(cfg, work / "baseline_world")
        baseline_dir, baseline_cpu_s = work / "baseline_world", time.process_time() - c0  # incl. its pool and eval
    baseline_build_s = base["timing"]["baseline_build_s"]
    # 2. a bigger deployment of that baseline: pooling + deployment + writing, per assistant message
    big = cfg.model_copy(update={"population": cfg.population.model_copy(update={"n_users": args.users})})
    t1, c1 = time.perf_counter(), time.process_time()
    run = simulate(big, work / "deploy", policy_path=baseline_dir / "policy")
    sim_s, sim_cpu_s = time.perf_counter() - t1, time.process_time() - c1
    n_msgs = run["counts"]["assistant_messages"]
    timing = run["timing"]
    # 3. ingest the simulated logs
    ingest_rows_per_s = None
    if importlib.util.find_spec("rluf.ingest") is not None:
        from rluf.ingest import ingest

        t2, c2 = time.perf_counter(), time.process_time()
        rep = ingest([work / "deploy" / "logs"], work / "ingested")
        ingest_s, ingest_cpu_s = time.perf_counter() - t2, time.process_time() - c2
        rows = sum(t["read"] for t in rep["tables"].values())
        quarantined = sum(t["quarantined"] for t in rep["tables"].values())
        ingest_rows_per_s = rows / ingest_s
    else:
        rows = quarantined = ingest_s = ingest_cpu_s = None
    result = dict(
        simulate_msgs_per_s=n_msgs / (timing["pool_s"] + timing["deploy_s"]),
        simulate_end_to_end_msgs_per_s=n_msgs / sim_s,
        deploy_only_msgs_per_s=timing["deploy_msgs_per_s"],
        assistant_messages=n_msgs,
        users=run["counts"]["users"],
        pool_s=timing["pool_s"],
        deploy_s=timing["deploy_s"],
        simulate_total_s=sim_s,
        ingest_rows_per_s=ingest_rows_per_s,
        ingest_rows=rows,
        ingest_quarantined=quarantined,
        ingest_s=ingest_s,
        ingest_cpu_s=ingest_cpu_s,
        simulate_cpu_s=sim_cpu_s,
        baseline_build_s=baseline_build_s,
        baseline_world_cpu_s=baseline_cpu_s,
        baseline_world=str(baseline_dir),
        baseline_parse_rate=base["policy"]["pool"]["parse_rate"],
        baseline_eval=base["policy"]["eval"],
        natural_love_rate=run["natural_love_rate"],
        peak_rss_mb=peak_rss_mb(),
        quick=args.quick,
        total_s=time.perf_counter() - t0,
        machine=dict(
            cpus=os.cpu_count(),
            platform=platform.platform(),
            python=platform.python_version(),
            load_avg_1m_at_start=load_at_start,
            load_avg_1m_at_end=os.getloadavg()[0],
        ),
    )
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        write_json(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
