import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from rluf.cli import app
from rluf.config import load_config, packaged_config
from rluf.errors import ConfigError
from rluf.rewards.config import RewardConfig

from .conftest import make_curated

runner = CliRunner()
CONFIGS = sorted(packaged_config(f"reward_{o}.yaml") for o in ("love", "helpfulness", "safety"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    cfg = load_config(RewardConfig, path)
    assert cfg.objective == path.stem.removeprefix("reward_")
    assert yaml.safe_load(path.read_text()).keys() == RewardConfig.model_fields.keys()  # YAML mirrors the model


def _tiny_yaml(tmp_path) -> Path:
    data = yaml.safe_load(packaged_config("reward_love.yaml").read_text())
    data["model"].update(backbone="tiny", vocab_size=400, max_length=64)
    data["train"].update(epochs=2, learning_rate=3e-3, batch_size=16, device="cpu")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_train_reward_and_score_commands(tmp_path):
    data, _ = make_curated(tmp_path / "c", sizes=(120, 40, 40))
    res = runner.invoke(app, ["train-reward", "love", "--data", str(data), "--out", str(tmp_path / "m"),
                              "--config", str(_tiny_yaml(tmp_path)), "--calibration", "isotonic", "--seed", "1"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.rindex("{\n"): res.output.rindex("}") + 1])
    assert 0 <= summary["auroc"] <= 1 and "ece_relative" in summary
    meta = json.loads((tmp_path / "m" / "rluf_reward.json").read_text())
    assert meta["calibration"]["params"]["method"] == "isotonic" and meta["config"]["train"]["seed"] == 1

    res = runner.invoke(app, ["score", str(tmp_path / "m"), str(data / "test.parquet"), "--out",
                              str(tmp_path / "scores.parquet"), "--batch-size", "8"])
    assert res.exit_code == 0, res.output
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert len(scores) == 40 and {"score", "prob", "message_id"} <= set(scores.columns)
    assert scores["prob"].between(0, 1).all()


def test_bad_config_key_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    res = runner.invoke(app, ["train-reward", "love", "--data", str(tmp_path), "--out", str(tmp_path / "m"),
                              "--config", str(bad)])
    assert isinstance(res.exception, ConfigError)
    assert "unknown key 'train.epoch'" in str(res.exception)


def test_bad_backbone_names_the_choices(tmp_path):
    data, _ = make_curated(tmp_path / "c", sizes=(20, 10, 10))
    res = runner.invoke(app, ["train-reward", "love", "--data", str(data), "--out", str(tmp_path / "m"),
                              "--model", str(tmp_path / "nowhere")])
    assert isinstance(res.exception, ConfigError)
    assert "is neither a preset (tiny, small, base), 'minilm', nor a Hugging Face model folder" in str(res.exception)


def test_score_command_on_pairs(tmp_path, bt_run):
    res = runner.invoke(app, ["score", str(bt_run["model"]), str(bt_run["pairs"]),
                              "--out", str(tmp_path / "s.parquet")])
    assert res.exit_code == 0, res.output
    s = pd.read_parquet(tmp_path / "s.parquet")
    assert {"chosen_score", "rejected_score"} <= set(s.columns) and "prob" not in s.columns
    assert (s["chosen_score"] > s["rejected_score"]).mean() > 0.8


def test_score_command_rejects_a_table_without_responses(tmp_path, bt_run):
    pd.DataFrame({"prompt": [[{"role": "user", "content": "hi"}]]}).to_parquet(tmp_path / "x.parquet")
    res = runner.invoke(app, ["score", str(bt_run["model"]), str(tmp_path / "x.parquet"), "--out", str(tmp_path / "o")])
    assert "needs a response column: 'completion' (messages), 'response' (text)" in str(res.exception)


@pytest.mark.slow
def test_train_reward_under_torchrun_ddp(tmp_path):
    """Two DDP processes on CPU (gloo): each trains on half the batches, rank 0 alone evaluates and writes."""
    import subprocess
    import sys

    data, _ = make_curated(tmp_path / "c", sizes=(160, 40, 40))
    out = tmp_path / "m"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29517", "-m", "rluf", "train-reward", "love", "--data", str(data),
                          "--out", str(out), "--config", str(_tiny_yaml(tmp_path))],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count(f"wrote {out}") == 1  # one report, from rank 0
    report = json.loads((out / "eval.json").read_text())
    # 160 rows, batches of 16, 2 epochs: 20 steps alone, 10 per process under DDP
    assert report["train"]["steps"] == 10
    assert 0 <= report["test"]["auroc"] <= 1
    from rluf.rewards.scorer import Scorer

    assert Scorer.from_pretrained(out, device="cpu").objective == "love"
