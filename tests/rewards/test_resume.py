"""`rluf train-reward --resume`: a run killed mid-training continues from its last Trainer checkpoint and
ends with the uninterrupted run's model (and so its evaluation)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rluf.config import packaged_config

from .conftest import make_curated

# Runs `rluf train-reward` in this process, SIGKILL-ing itself (no cleanup, as `kill -9`) at training step N.
KILL_AT_STEP = """
import os, sys
from rluf.rewards.hf_trainer import LoveTrainer
step = LoveTrainer.training_step
def training_step(self, *args, **kw):
    if self.state.global_step == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), 9)
    return step(self, *args, **kw)
LoveTrainer.training_step = training_step
from rluf.cli import app
app(sys.argv[1:])
"""


def _train(data: Path, out: Path, cfg: Path, *extra: str, kill_at: int | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    args = ["train-reward", "love", "--data", str(data), "--out", str(out), "--config", str(cfg), *extra]
    if kill_at is not None:
        env["KILL_AT_STEP"] = str(kill_at)
        return subprocess.run([sys.executable, "-c", KILL_AT_STEP, *args], capture_output=True, text=True,
                              env=env, timeout=600)
    return subprocess.run([sys.executable, "-m", "rluf", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.mark.slow
def test_train_reward_resumes_after_kill(tmp_path):
    data, _ = make_curated(tmp_path / "c", sizes=(160, 40, 40))
    spec = yaml.safe_load(packaged_config("reward_love.yaml").read_text())
    spec["model"].update(backbone="tiny", vocab_size=400, max_length=64)
    # 160 rows / 16 = 10 steps an epoch, 20 in all; checkpoints at 4, 8, 12, 16 (the last two kept)
    spec["train"].update(epochs=2, learning_rate=3e-3, batch_size=16, device="cpu", checkpoint_steps=4)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(spec))

    full = _train(data, tmp_path / "full", cfg)
    assert full.returncode == 0, full.stderr[-3000:]
    assert not (tmp_path / "full" / "trainer").exists()  # checkpoints removed once the folder is complete

    killed = _train(data, tmp_path / "m", cfg, kill_at=14)
    assert killed.returncode == -9
    assert not (tmp_path / "m" / "eval.json").exists()
    assert sorted(p.name for p in (tmp_path / "m" / "trainer").glob("checkpoint-*")) == ["checkpoint-12",
                                                                                          "checkpoint-8"]
    resumed = _train(data, tmp_path / "m", cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = (json.loads((tmp_path / d / "eval.json").read_text()) for d in ("full", "m"))
    assert b["train"]["steps"] == a["train"]["steps"] == 20
    for key in ("auroc", "auprc", "log_loss", "brier", "ece"):
        assert b["test"][key] == pytest.approx(a["test"][key], rel=1e-5, abs=1e-6), key


def test_resume_without_a_checkpoint_names_the_folder(tmp_path):
    from rluf.errors import ConfigError
    from rluf.rewards.common import last_checkpoint

    with pytest.raises(ConfigError, match=r"no Trainer checkpoint in .*m/trainer"):
        last_checkpoint(tmp_path / "m")
