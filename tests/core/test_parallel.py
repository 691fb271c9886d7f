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
