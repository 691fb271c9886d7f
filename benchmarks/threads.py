"""Threads on a shared machine: how much slower does a PyTorch workload run beside one CPU-bound job, with
torch's default thread count and with the count `rluf.threads` chooses?

    python benchmarks/threads.py [--steps 200] [--write]

The workload is a small GPT-2 (4 layers, width 256) forward pass over a batch of 8 x 32 tokens, `--steps`
times, in a fresh process for each setting. The competing job is a busy loop in another process. With
--write, writes benchmarks/results/threads.json.
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/threads.json")
    a = ap.parse_args()

    results = {"steps": a.steps, "load_avg_at_start": os.getloadavg(), "cpus": os.cpu_count()}
    for competing in (False, True):
        job = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competing else None
        try:
            if job:
                time.sleep(1.0)  # let the busy loop show in /proc/stat before rluf looks
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
        path = ROOT / "benchmarks" / "results" / "threads.json"
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
