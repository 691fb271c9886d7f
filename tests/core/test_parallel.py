"""rluf.parallel.Workers: jobs in spawned processes with a share of the CPUs; errors come back to the caller."""

import os

import pytest
import torch

from rluf.errors import DataError
from rluf.parallel import Workers


def _threads_and_pid(x: int) -> tuple[int, int, int]:
    return x * x, torch.get_num_threads(), os.getpid()


def _fails(path: str) -> None:
    raise DataError(f"{path}: line 3: expected a number")


def test_jobs_run_in_other_processes_with_their_threads():
    before = torch.get_num_threads()
    with Workers(2, threads=1) as pool:
        results = [f.result() for f in [pool.submit(_threads_and_pid, i) for i in range(4)]]
    assert [r[0] for r in results] == [0, 1, 4, 9]  # in submission order
    assert {r[1] for r in results} == {1}
    assert os.getpid() not in {r[2] for r in results}
    assert torch.get_num_threads() == before  # this process's threads are given back


def test_a_jobs_error_reaches_the_caller_with_its_message():
    with pytest.raises(DataError, match="line 3: expected a number"), Workers(1) as pool:
        pool.submit(_fails, "pairs.parquet").result()
    with pytest.raises(ValueError, match="at least one worker"):
        Workers(0)
    with pytest.raises(RuntimeError, match="outside"):
        Workers(1).submit(_fails, "x")


def _sleep(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_the_main_process_takes_its_threads_back_once_the_workers_are_done(monkeypatch):
    import time

    from rluf import parallel

    monkeypatch.setattr(parallel, "available_cpus", lambda: 2)  # two CPUs: one for the worker, one for us
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with Workers(1, threads=1) as pool:
            assert torch.get_num_threads() == 1
            job = pool.submit(_sleep, 1.0)
            parallel.claim_free_cores()
            assert torch.get_num_threads() == 1  # the worker still runs: we keep to our share
            job.result()
            deadline = time.time() + 10  # the pool's bookkeeping runs just after result() returns
            while not pool.idle() and time.time() < deadline:
                time.sleep(0.01)
            parallel.claim_free_cores()
            assert torch.get_num_threads() == 2
        assert parallel._open_pools == []
    finally:
        torch.set_num_threads(before)
