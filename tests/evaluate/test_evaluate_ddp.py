"""`rluf evaluate` under torchrun: 2 processes split the prompts and give the evaluation of 1 process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import PROMPTS

WORKER = """
import os, sys
from pathlib import Path
from rluf.evaluate import EvaluateConfig, evaluate
from rluf.policy import Policy
generate = Policy.generate
def counted(self, contexts, *args, **kw):  # how many contexts each process generates for
    with open(Path(sys.argv[4] + ".calls"), "a") as f:
        f.write(f"{os.environ.get('RANK', 0)} {len(contexts)}\\n")
    return generate(self, contexts, *args, **kw)
Policy.generate = counted
cfg = EvaluateConfig(bootstrap_reps=200, device="cpu")
cfg.generation.max_new_tokens = 12
cfg.generation.samples_per_prompt = 2
evaluate({"base": sys.argv[1], "cand": sys.argv[2]}, sys.argv[4], prompts=sys.argv[3], config=cfg)
"""


def _run(processes: int, args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    script = Path(args[-1]).with_suffix(".py")
    script.write_text(WORKER)
    res = subprocess.run([sys.executable, *launcher, str(script), *args], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_evaluate_as_one(tmp_path, tiny_policies):
    prompts = tmp_path / "prompts.parquet"
    pd.DataFrame(PROMPTS[:5]).to_parquet(prompts)  # 5 prompts: shares of 3 and 2
    base = [str(tiny_policies["base"]), str(tiny_policies["cand"]), str(prompts)]
    _run(1, [*base, str(tmp_path / "one")])
    _run(2, [*base, str(tmp_path / "two")])
    one, two = (pd.read_parquet(tmp_path / d / "responses.parquet") for d in ("one", "two"))
    assert len(one) == 2 * 5 * 2 and one["response"].str.len().sum() > 0
    pd.testing.assert_frame_equal(one, two, check_exact=False, rtol=1e-6)
    calls = sorted((tmp_path / "two.calls").read_text().split("\n")[:-1])
    assert calls == ["0 3", "0 3", "1 2", "1 2"]  # per policy: 3 prompts on rank 0, 2 on rank 1
    assert (tmp_path / "one.calls").read_text().split("\n")[:-1] == ["0 5", "0 5"]
    a, b = (json.loads((tmp_path / d / "evaluate.json").read_text()) for d in ("one", "two"))
    assert a["ranking"] == b["ranking"] and a["policies"].keys() == b["policies"].keys()
