"""Independent jobs in worker processes, each with its share of the CPUs.

A small model's operations are too small to split well across threads: on 2 cores, one process with two
threads keeps the second core mostly idle (training a 1M-parameter reward model ran at 98% of one core),
while two processes with one thread each do close to twice the work. `rluf run` runs stages that do not
depend on each other side by side, and `rluf sweep --parallel-runs` trains weight settings side by side.

    with Workers(2) as pool:
        future = pool.submit(train_reward, "safety", pairs, out, cfg)   # a picklable, top-level function
        ...                                                            # meanwhile, work in this process
        report = future.result()

Workers are spawned (a fresh interpreter, never a fork of a process holding torch threads); a job's
exception is raised again by `result()`. Each worker runs `cpus // workers` torch threads (at least one);
while a pool is open this process runs the threads the workers leave, and takes its own back when the workers
have finished every job and the process calls `claim_free_cores()` (between training steps, generation and
scoring batches): a stage that outlasts the ones beside it does not finish on half the machine. Switching
threads mid-training leaves the weights as they would be on a fixed count: MKL runs in its strict
reproducible mode (rluf/__init__.py), so every training op gives the same bits on 1 and 2 threads.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor

from rluf.threads import available_cpus

log = logging.getLogger(__name__)
_open_pools: list[Workers] = []


def claim_free_cores() -> None:
    """In this (the main) process, between units of work: once an open pool's workers have finished all their
    jobs, run the threads this process had before the pool again. torch's thread count applies to the thread
    that sets it, so this cannot be done from the pool's callback thread."""
    if not _open_pools:
        return
    import torch

    for pool in _open_pools:
        if pool.idle() and torch.get_num_threads() < pool.main_threads:
            log.info("the workers beside this stage are done: it runs on %d threads again", pool.main_threads)
            torch.set_num_threads(pool.main_threads)


def _init_worker(threads: int, log_level: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


class Workers:
    """A spawned process pool of `n` workers that splits this machine's CPUs between them and this process."""

    def __init__(self, n: int, threads: int | None = None):
        if n < 1:
            raise ValueError(f"Workers: n = {n}; give at least one worker")
        import torch

        self.n = n
        self.threads = threads or max(1, available_cpus() // n)
        self.main_threads = torch.get_num_threads()
        self._pool: ProcessPoolExecutor | None = None
        self._pending, self._lock = 0, threading.Lock()

    def idle(self) -> bool:
        """No job submitted to this pool is queued or running."""
        return self._pending == 0

    def __enter__(self) -> Workers:
        import torch

        self._pool = ProcessPoolExecutor(self.n, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker,
                                         initargs=(self.threads, logging.getLogger().getEffectiveLevel()))
        # this process works beside the workers (or waits for them): the CPUs they leave, at least one
        torch.set_num_threads(max(1, min(self.main_threads, available_cpus() - self.threads)))
        _open_pools.append(self)
        return self

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if self._pool is None:
            raise RuntimeError("Workers.submit outside `with Workers(n) as pool:`")
        with self._lock:
            self._pending += 1
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(self._job_done)
        return future

    def _job_done(self, future: Future) -> None:
        with self._lock:
            self._pending -= 1

    def __exit__(self, *exc) -> None:
        import torch

        assert self._pool is not None
        # on an error here, do not wait for queued jobs: cancel them, let running ones finish
        self._pool.shutdown(wait=True, cancel_futures=exc[0] is not None)
        self._pool = None
        _open_pools.remove(self)
        torch.set_num_threads(self.main_threads)
