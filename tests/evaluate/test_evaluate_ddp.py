"""`rluf evaluate` under torchrun: 2 processes split the prompts and the scoring, and give the evaluation of 1."""

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
from rluf.rewards.scorer import Scorer
out, rewards = sys.argv[4], Path(sys.argv[5])
generate, score = Policy.generate, Scorer.score
def log(suffix, line):
    with open(out + suffix, "a") as f:
        f.write(f"{os.environ.get('RANK', 0)} {line}\\n")
def counted(self, contexts, *args, **kw):  # how many contexts each process generates for
    log(".calls", len(contexts))
    return generate(self, contexts, *args, **kw)
def scored(self, contexts, responses, *args, **kw):  # how many responses each process scores, per reward model
    log(".scored", f"{self.objective} {len(responses)}")
    return score(self, contexts, responses, *args, **kw)
Policy.generate, Scorer.score = counted, scored
cfg = EvaluateConfig(bootstrap_reps=200, device="cpu")
cfg.generation.max_new_tokens = 12
cfg.generation.samples_per_prompt = 2
for obj in ("love", "helpfulness", "safety"):
    setattr(cfg.models, obj, rewards / obj)
evaluate({"base": sys.argv[1], "cand": sys.argv[2]}, out, prompts=sys.argv[3], config=cfg)
"""
SCORES = ["love", "helpfulness", "safety"]


def _run(processes: int, args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    script = Path(args[3]).with_suffix(".py")
    script.write_text(WORKER)
    res = subprocess.run([sys.executable, *launcher, str(script), *args], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


def _lines(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines())


@pytest.mark.slow
def test_two_processes_evaluate_as_one(tmp_path, tiny_policies, tiny_reward_dirs):
    prompts = tmp_path / "prompts.parquet"
    pd.DataFrame(PROMPTS[:5]).to_parquet(prompts)  # 5 prompts: shares of 3 and 2
    base = [str(tiny_policies["base"]), str(tiny_policies["cand"]), str(prompts)]
    rewards = str(tiny_reward_dirs["love"].parent)
    _run(1, [*base, str(tmp_path / "one"), rewards])
    _run(2, [*base, str(tmp_path / "two"), rewards])
    one, two = (pd.read_parquet(tmp_path / d / "responses.parquet") for d in ("one", "two"))
    assert len(one) == 2 * 5 * 2 and one["response"].str.len().sum() > 0
    # the reward models' batches are padded differently on 2 processes: float32 rounding, far below 1e-6
    for col in SCORES:
        assert one[col].std() > 0, col
        assert (two[col] - one[col]).abs().max() <= 1e-6, col
    pd.testing.assert_frame_equal(one.drop(columns=SCORES), two.drop(columns=SCORES))
    calls = _lines(tmp_path / "two.calls")
    assert calls == ["0 3", "0 3", "1 2", "1 2"]  # per policy: 3 prompts on rank 0, 2 on rank 1
    assert _lines(tmp_path / "one.calls") == ["0 5", "0 5"]
    # each of the 20 responses scored once per reward model: rows 0-9 on rank 0, 10-19 on rank 1
    assert _lines(tmp_path / "two.scored") == sorted(f"{r} {o} 10" for r in (0, 1) for o in SCORES)
    assert _lines(tmp_path / "one.scored") == sorted(f"0 {o} 20" for o in SCORES)
    a, b = (json.loads((tmp_path / d / "evaluate.json").read_text()) for d in ("one", "two"))
    assert a["policies"].keys() == b["policies"].keys()
    assert [r["policy"] for r in a["ranking"]] == [r["policy"] for r in b["ranking"]]
    for x, y in zip(a["ranking"], b["ranking"], strict=True):
        assert y["mean"] == pytest.approx(x["mean"], abs=1e-6) and y["p_best"] == x["p_best"]
