"""Threads on a shared machine: how much slower does a PyTorch workload run beside one CPU-bound job, with
torch's default thread count and with the count `rluf.threads` chooses?

    python benchmarks/threads.py [--steps 200] [--write]
    python benchmarks/threads.py --loop [--write]      # the whole loop: `rluf run --quick`

The workload is a small GPT-2 (4 layers, width 256) forward pass over a batch of 8 x 32 tokens, `--steps`
times, in a fresh process for each setting; with --loop, `rluf run --quick` in a fresh run folder. The
competing job is a busy loop in another process. With --write, writes benchmarks/results/threads.json
(--loop keeps the other keys).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKLOAD = """
import sys, time, torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging
logging.set_verbosity_error()
if sys.argv[2] == "rluf":
    from rluf.threads import configure_threads
    configure_threads()
torch.manual_seed(0)
m = GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=2000, bos_token_id=0,
                               eos_token_id=0)).eval()
x = torch.randint(0, 2000, (8, 32))
t = time.perf_counter()
with torch.inference_mode():
    for _ in range(int(sys.argv[1])):
        m(x)
print(torch.get_num_threads(), time.perf_counter() - t)
"""


def run(steps: int, threads: str) -> tuple[int, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RLUF_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT / "src")
    out = subprocess.run([sys.executable, "-c", WORKLOAD, str(steps), threads], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1])


def busy_job() -> subprocess.Popen:
    job = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(1.0)  # let the busy loop show in /proc/stat before rluf looks
    return job


def quick_loop(work: Path) -> dict:
    """Seconds of `rluf run --quick`, alone and beside one busy loop, each in a fresh run folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RLUF_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT / "src")
    out = {}
    for competing in (False, True):
        run_dir = work / ("competing" if competing else "alone")
        shutil.rmtree(run_dir, ignore_errors=True)
        job = busy_job() if competing else None
        try:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "rluf", "run", "--quick", "--out", str(run_dir)], env=env,
                           check=True, capture_output=True)
            out["competing_s" if competing else "alone_s"] = round(time.perf_counter() - t, 1)
        finally:
            if job:
                job.kill()
        print(f"rluf run --quick {'beside one competing job' if competing else 'alone'}: "
              f"{out['competing_s' if competing else 'alone_s']} s", flush=True)
    out["slowdown"] = round(out["competing_s"] / out["alone_s"], 2)
    print(f"the quick loop: {out['slowdown']}x slower beside one competing job")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--loop", action="store_true", help="measure `rluf run --quick` instead of the forward loop")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "threads")
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/threads.json")
    a = ap.parse_args()
    path = ROOT / "benchmarks" / "results" / "threads.json"
    if a.loop:
        kept = json.loads(path.read_text()) if path.is_file() else {}
        results = {**kept, "loop_quick": {"load_avg_at_start": os.getloadavg(), **quick_loop(a.work)}}
        if a.write:
            path.write_text(json.dumps(results, indent=2) + "\n")
            print(f"wrote {path}")
        return

    results = {"steps": a.steps, "load_avg_at_start": os.getloadavg(), "cpus": os.cpu_count()}
    for competing in (False, True):
        job = busy_job() if competing else None
        try:
            for choice in ("torch_default", "rluf"):
                threads, seconds = run(a.steps, choice)
                key = f"{choice}_{'competing' if competing else 'alone'}"
                results[key] = {"threads": threads, "seconds": round(seconds, 2)}
                print(f"{key:28s} threads {threads}  {seconds:6.2f} s")
        finally:
            if job:
                job.kill()
    for choice in ("torch_default", "rluf"):
        alone = results["torch_default_alone"]["seconds"]  # the same baseline for both: the best case alone
        results[f"{choice}_slowdown"] = round(results[f"{choice}_competing"]["seconds"] / alone, 2)
        print(f"{choice}: {results[f'{choice}_slowdown']}x slower beside one competing job")
    if a.write:
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
