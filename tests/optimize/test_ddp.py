"""Data-parallel CRRAFT: 2 processes (torchrun, gloo on CPU) give the run of 1 process.

The processes split each batch of prompts, so the only differences allowed are floating-point ones: the
gradient is summed over the processes by one all-reduce instead of being accumulated micro-batch by
micro-batch in one process, and the tiny model's forward passes see other batch shapes (padding).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rluf.optimize.prompts import batch_indices

WORKER = Path(__file__).with_name("ddp_worker.py")
ITERATIONS, BATCH, POOL = 3, 5, 8  # 5 of the 8 pool prompts on 2 processes: shares of 3 and 2


def _launch(processes: int, out: Path, policy_dir, prompt_file, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone",
                                          "--nproc_per_node", str(processes)]
    args = [str(policy_dir), str(prompt_file), str(out), str(ITERATIONS), str(BATCH), *extra]
    return subprocess.run([sys.executable, *launcher, str(WORKER), *args], capture_output=True, text=True,
                          env=env, timeout=600)


def _records(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(ln).items() if not k.startswith("time/")}
            for ln in (out / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(a: Path, b: Path) -> None:
    ra, rb = _records(a), _records(b)
    assert [r["iteration"] for r in ra] == [r["iteration"] for r in rb] == list(range(ITERATIONS + 1))
    for x, y in zip(ra, rb, strict=True):
        assert x.keys() == y.keys()
        assert x.get("select/choice") == y.get("select/choice")  # the same response for every prompt
        for k, v in x.items():
            if isinstance(v, float):  # float32 model outputs: equal to 1e-6, relative for the loss (~27)
                assert y[k] == pytest.approx(v, rel=1e-6, abs=1e-6, nan_ok=True), k
            else:
                assert y[k] == v, k
    wa, wb = load_file(a / "policy" / "model.safetensors"), load_file(b / "policy" / "model.safetensors")
    # AdamW moves each weight by about lr = 1e-2 a step; float32 rounding of the gradient sum (relative 1e-7)
    # changes m/sqrt(v) by a like relative amount, so 3 steps differ by far less than 1e-5.
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def one_process_run(tiny_policy_dir, prompt_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "one"
    res = _launch(1, out, tiny_policy_dir, prompt_file)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_processes_select_and_train_as_one(one_process_run, tiny_policy_dir, prompt_file, tmp_path):
    one, two = one_process_run, tmp_path / "two"
    res = _launch(2, two, tiny_policy_dir, prompt_file)
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_same_run(one, two)
    assert any(c >= 0 for r in _records(one)[1:] for c in r["select/choice"])  # candidates were chosen
    # every prompt of every batch was generated for exactly once, split 3 + 2
    shards = [json.loads(ln) for ln in (two / "shards.jsonl").read_text().splitlines()]
    assert len(shards) == 2 * ITERATIONS
    for t in range(ITERATIONS):
        ours = shards[2 * t : 2 * t + 2]
        assert sorted(len(s["ids"]) for s in ours) == [2, 3]
        got = sorted(i for s in ours for i in s["ids"])
        assert got == sorted(batch_indices(POOL, BATCH, 0, t).tolist())
    # only rank 0 wrote: one line per iteration, one summary
    assert len((two / "metrics.jsonl").read_text().splitlines()) == ITERATIONS + 1
    assert json.loads((two / "summary.json").read_text())["finished"]
    assert np.isfinite(_records(two)[-1]["loss"])


@pytest.mark.slow
def test_resume_after_kill_9_of_one_rank(one_process_run, tiny_policy_dir, prompt_file, tmp_path):
    """Rank 1 is SIGKILLed after iteration 2 (its checkpoint may or may not be written); torchrun stops rank 0;
    `--resume` on 2 processes continues from the last checkpoint and ends as the uninterrupted run."""
    run = tmp_path / "killed"
    res = _launch(2, run, tiny_policy_dir, prompt_file, "--die-after-iteration", "2")
    assert res.returncode != 0
    assert not (run / "policy").exists()
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["iteration"] in (1, 2)
    res = _launch(2, run, tiny_policy_dir, prompt_file, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_same_run(one_process_run, run)
