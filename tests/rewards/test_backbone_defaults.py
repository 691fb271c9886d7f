"""Each backbone brings its own learning rate unless the config sets one (issue 20, section 0)."""

import pytest

from rluf.config import validate_config
from rluf.rewards.backbone import PRESET_LEARNING_RATE, PRETRAINED_LEARNING_RATE, default_learning_rate
from rluf.rewards.cli import resolve_config
from rluf.rewards.config import RewardConfig


@pytest.mark.parametrize("backbone, rate", [("tiny", 1e-3), ("small", 1e-3), ("minilm", 5e-5),
                                            ("runs/x/rewards/helpfulness", 5e-5)])
def test_backbone_learning_rates(backbone, rate):
    assert default_learning_rate(backbone) == rate
    assert validate_config(RewardConfig, {"model": {"backbone": backbone}}).train.learning_rate == rate


def test_shipped_yaml_takes_the_backbones_rate_and_an_explicit_one_wins():
    for objective in ("love", "helpfulness", "safety"):
        assert resolve_config(objective, None, {"model": {"backbone": "minilm"}}).train.learning_rate == \
            PRETRAINED_LEARNING_RATE
        assert resolve_config(objective, None, {}).train.learning_rate == PRESET_LEARNING_RATE
        cfg = resolve_config(objective, None, {"model": {"backbone": "minilm"}, "train": {"learning_rate": 2e-4}})
        assert cfg.train.learning_rate == 2e-4
    assert RewardConfig().train.learning_rate == PRESET_LEARNING_RATE


def test_learning_rate_flag(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import rluf.rewards.train
    from rluf.cli import app

    seen = {}

    def fake_train(objective, data, out, cfg, **kw):
        seen["cfg"] = cfg
        raise SystemExit(0)

    monkeypatch.setattr(rluf.rewards.train, "train_reward", fake_train)
    args = ["train-reward", "love", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--model", "minilm"]
    CliRunner().invoke(app, [*args, "--learning-rate", "2e-5"])
    assert seen["cfg"].train.learning_rate == 2e-5
    CliRunner().invoke(app, args)
    assert seen["cfg"].train.learning_rate == PRETRAINED_LEARNING_RATE
