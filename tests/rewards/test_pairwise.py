import json

import numpy as np
import pytest

from rluf.errors import DataError
from rluf.rewards import Scorer, train_reward
from rluf.rewards.data import read_pairs

from .conftest import HH_DIR, tiny_config


def test_bradley_terry_ranks_chosen_above_rejected(bt_run):
    rep = bt_run["report"]
    assert rep["train"]["last_loss"] < rep["train"]["first_loss"]
    assert rep["test_pairs"] == 24 and rep["train_pairs"] == 216  # 10% of prompts held out
    assert rep["test"]["accuracy"] > 0.8  # chance is 0.5
    assert rep["test"]["spearman_true"] > 0.5  # the true scores rank chosen above rejected too
    meta = json.loads((bt_run["model"] / "rluf_reward.json").read_text())
    assert meta["objective"] == "helpfulness" and "natural_rate" not in meta


def test_saved_bt_model_scores_like_the_report(bt_run):
    scorer = Scorer.from_pretrained(bt_run["model"], device="cpu")
    pairs = read_pairs(bt_run["pairs"])
    r_c = scorer.score(pairs.contexts, pairs.chosen)
    r_r = scorer.score(pairs.contexts, pairs.rejected)
    assert np.mean(r_c > r_r) > 0.8


def test_trains_on_hh_rlhf(tmp_path):
    rep = train_reward("safety", HH_DIR / "harmless-base-test-head60.jsonl.gz", tmp_path / "m",
                       tiny_config("safety", epochs=1, batch_size=8).model_copy(
                           update={"model": tiny_config().model.model_copy(update={"max_length": 128})}))
    assert rep["test_pairs"] >= 5 and 0.0 <= rep["test"]["accuracy"] <= 1.0
    assert np.isfinite(rep["train"]["mean_loss"])
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_love_objective_needs_train_love(tmp_path, bt_run):
    from rluf.rewards import train_pairwise

    with pytest.raises(DataError, match="train_pairwise got objective = 'love'"):
        train_pairwise(bt_run["pairs"], tmp_path / "m", tiny_config("love"))
