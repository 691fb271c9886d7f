"""How many intra-op threads PyTorch should use: the CPUs this process may really run on, minus the ones
other jobs keep busy.

PyTorch's default is one thread per core of the machine. On a shared machine that is wrong twice: a cgroup
quota or an affinity mask may give the process fewer CPUs than the machine has, and when another CPU-bound
job holds a core, the threads of one parallel region wait for the one that is descheduled at every
barrier. Measured on 2 cores beside one competing job: a small GPT-2 forward loop took 3.8x as long as alone
with 2 threads and 1.8x with 1 thread (benchmarks/README.md, `threads.py`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from pathlib import Path

ENV_OVERRIDE = ("RLUF_NUM_THREADS", "OMP_NUM_THREADS")


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup's quota (v2 `cpu.max`, or v1 `cfs_quota_us / cfs_period_us`); None if none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.floor(limit)))
    return max(1, cpus)


def busy_cpus(interval: float = 0.2, stat: Path = Path("/proc/stat")) -> float:
    """How many of this process's CPUs other jobs keep busy right now: the non-idle share of their time over
    `interval` seconds while we sleep. 0.0 where /proc/stat cannot be read."""

    def sample() -> dict[str, tuple[int, int]]:
        out = {}
        for line in stat.read_text().splitlines():
            name, *fields = line.split()
            if re.fullmatch(r"cpu\d+", name):
                ticks = [int(x) for x in fields]
                out[name] = (sum(ticks), ticks[3] + (ticks[4] if len(ticks) > 4 else 0))  # total, idle+iowait
        return out

    try:
        mine = {f"cpu{i}" for i in os.sched_getaffinity(0)} if hasattr(os, "sched_getaffinity") else None
        before = sample()
        time.sleep(interval)
        after = sample()
    except (OSError, ValueError):
        return 0.0
    busy = 0.0
    for name, (total, idle) in after.items():
        if name in before and (mine is None or name in mine):
            d_total, d_idle = total - before[name][0], idle - before[name][1]
            busy += (d_total - d_idle) / d_total if d_total > 0 else 0.0
    return busy


def choose_threads(cpus: int, busy: float) -> int:
    """Threads for `cpus` CPUs of which about `busy` are held by other jobs. A CPU counts as taken once other
    jobs keep it busy more than half the time."""
    return max(1, cpus - math.floor(busy + 0.5))


def configure_threads() -> int:
    """Set torch's intra-op threads from `choose_threads`, unless RLUF_NUM_THREADS or OMP_NUM_THREADS says
    how many. Returns the number set."""
    import torch

    for name in ENV_OVERRIDE:
        if os.environ.get(name, "").strip().isdigit() and int(os.environ[name]) > 0:
            threads = int(os.environ[name])
            break
    else:
        cpus = available_cpus()
        busy = busy_cpus() if cpus > 1 else 0.0  # one CPU leaves nothing to choose: skip the 0.2 s sample
        threads = choose_threads(cpus, busy)
        if threads < cpus:
            logging.getLogger("rluf").info(
                "torch threads: %d of %d CPUs (other jobs keep %.1f busy; RLUF_NUM_THREADS sets it)",
                threads, cpus, busy)
    torch.set_num_threads(threads)
    return threads


def training_is_thread_independent() -> bool:
    """Whether training gives the same bits on any thread count here: torch runs its matrix products in MKL and
    MKL is in its strict reproducible mode (`MKL_CBWR=...,STRICT`, which rluf/__init__.py sets unless the user
    set another value). Elsewhere (another BLAS, or MKL_CBWR without STRICT) a training stage keeps its thread
    count to its end."""
    import torch

    return torch.backends.mkl.is_available() and "STRICT" in os.environ.get("MKL_CBWR", "").upper()
