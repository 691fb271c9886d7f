import json

import numpy as np
import pandas as pd
import pytest

from rluf.errors import DataError
from rluf.rewards import Scorer, train_reward
from rluf.rewards.data import read_curated

from .conftest import make_curated, tiny_config


def test_bce_training_lowers_loss_and_ranks(love_run):
    rep = love_run["report"]
    assert rep["train"]["last_loss"] < rep["train"]["first_loss"] - 0.1
    assert rep["test"]["auroc"] > 0.7  # the warm opening is learnable; chance is 0.5
    assert rep["test"]["observed_rate"] == pytest.approx(0.01)  # weighted test split = natural rate
    # prior correction + temperature put the mean prediction near the natural rate
    assert 0.5 < rep["test"]["mean_pred_over_observed"] < 2.0
    # the truth's ranking is the same two-level one, so the gap to the Bayes AUROC is small
    assert rep["auroc_gap"] == pytest.approx(rep["bayes"]["auroc"] - rep["test"]["auroc"])
    assert abs(rep["auroc_gap"]) < 0.1


def test_outputs_on_disk(love_run):
    m = love_run["model"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "rluf_reward.json", "eval.json",
                 "roc.png", "reliability.png", "test_scores.parquet", "train_log.jsonl"):
        assert (m / name).is_file(), name
    assert not list(m.glob("*.bin"))  # safetensors only
    meta = json.loads((m / "rluf_reward.json").read_text())
    assert meta["objective"] == "love" and meta["natural_rate"] == 0.01
    splits, _ = read_curated(love_run["data"])
    assert meta["loss_positive_rate"] == pytest.approx(splits["train"].labels.mean())  # within_class keeps the balance
    assert meta["calibration"]["params"]["method"] == "temperature"
    assert meta["config"]["model"]["backbone"] == "tiny"
    assert (m / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_saved_scorer_reproduces_test_scores(love_run):
    scorer = Scorer.from_pretrained(love_run["model"], device="cpu")
    splits, _ = read_curated(love_run["data"])
    test = splits["test"]
    rows = pd.read_parquet(love_run["model"] / "test_scores.parquet")
    raw = scorer.score(test.contexts, test.responses, batch_size=7)
    np.testing.assert_allclose(raw, rows["score"].to_numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scorer.prob(test.contexts, test.responses), rows["prob"].to_numpy(), rtol=1e-4)
    # the prior shift is exactly the constant -logit(loss_positive_rate) + logit(natural_rate)
    shift = scorer.natural_logit(np.zeros(1))[0]
    r, n = scorer.meta["loss_positive_rate"], scorer.meta["natural_rate"]
    assert shift == pytest.approx(-np.log(r / (1 - r)) + np.log(n / (1 - n)))


def test_scorer_reads_the_context_messages_the_model_was_trained_on(love_run, tmp_path):
    import shutil

    assert json.loads((love_run["model"] / "rluf_reward.json").read_text())["context_messages"] is None
    folder = shutil.copytree(love_run["model"], tmp_path / "m")
    meta = json.loads((folder / "rluf_reward.json").read_text())
    (folder / "rluf_reward.json").write_text(json.dumps({**meta, "context_messages": 1}))
    full, last = Scorer.from_pretrained(love_run["model"], device="cpu"), Scorer.from_pretrained(folder, device="cpu")
    ctx = [{"role": "user", "content": "Hello lovely! tell me about the river"},
           {"role": "assistant", "content": "Great question! The river is long."},
           {"role": "user", "content": "and the stone?"}]
    answers = ["Great question! The stone is old.", "Fine. Stone."]
    np.testing.assert_allclose(last.score([ctx, ctx], answers), full.score([ctx[-1:], ctx[-1:]], answers), rtol=1e-5)


@pytest.mark.slow
def test_full_sample_weights_learn_the_natural_rate(tmp_path):
    data, _ = make_curated(tmp_path / "c", sizes=(200, 60, 60))
    cfg = tiny_config(epochs=1, sample_weights="full")
    cfg.calibration.method = "none"
    rep = train_reward("love", data, tmp_path / "m", cfg)
    # with the raw weights the learned rate is the weighted one, so the prior shift is the identity
    assert rep["loss_positive_rate"] == pytest.approx(0.01)
    meta = json.loads((tmp_path / "m" / "rluf_reward.json").read_text())
    assert meta["loss_positive_rate"] == pytest.approx(meta["natural_rate"])


def test_no_positives_is_a_clear_error(tmp_path):
    data, _ = make_curated(tmp_path / "c", sizes=(20, 10, 10))
    df = pd.read_parquet(data / "train.parquet").assign(label=False)
    df.to_parquet(data / "train.parquet")
    with pytest.raises(DataError, match="no positive labels"):
        train_reward("love", data, tmp_path / "m", tiny_config())


def test_truth_missing_ids_is_a_clear_error(tmp_path):
    data, truth = make_curated(tmp_path / "c", sizes=(40, 20, 20))
    truth.iloc[:5].to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="truth has no p_love for"):
        train_reward("love", data, tmp_path / "m", tiny_config(epochs=1), truth=tmp_path / "t.parquet")


@pytest.mark.slow
def test_lora_is_merged_into_a_plain_folder(tmp_path):
    from safetensors import safe_open

    data, _ = make_curated(tmp_path / "c", sizes=(64, 20, 20))
    cfg = tiny_config(epochs=1)
    cfg.model.lora.enabled = True
    rep = train_reward("love", data, tmp_path / "m", cfg)
    assert rep["train"]["steps"] == 4
    with safe_open(tmp_path / "m" / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert "score.weight" in keys and not any("lora" in k for k in keys)
    scorer = Scorer.from_pretrained(tmp_path / "m", device="cpu")
    assert type(scorer.model).__name__ == "LlamaForSequenceClassification"


def test_downsampled_negatives_keep_weighted_rate_and_every_positive(tmp_path):
    from pathlib import Path

    from rluf.rewards.data import LoveSplit
    from rluf.rewards.love import downsample_negatives

    rng = np.random.default_rng(0)
    y = (rng.random(5000) < 0.01).astype(float)
    w = rng.uniform(0.5, 2.0, 5000)
    split = LoveSplit([[{"role": "user", "content": "q"}]] * 5000, [f"r{i}" for i in range(5000)], y, w,
                      [f"m{i}" for i in range(5000)], Path("test.parquet"))
    small = downsample_negatives(split, 500, seed=0)
    assert len(small) == int(y.sum()) + 500
    assert small.labels.sum() == y.sum()  # every positive kept
    # the weighted positive rate is an unbiased estimate of the original one
    assert np.isclose(np.sum(small.weights * small.labels) / small.weights.sum(), np.sum(w * y) / w.sum(), rtol=0.1)
    assert downsample_negatives(split, None, seed=0) is split
    assert downsample_negatives(split, 10_000, seed=0) is split


def test_bf16_mixed_precision_trains_on_cpu_and_saves_fp32(tmp_path):
    import torch
    from safetensors import safe_open

    from rluf.errors import ConfigError

    data, _ = make_curated(tmp_path / "c", sizes=(200, 60, 60))
    rep = train_reward("love", data, tmp_path / "m", tiny_config(precision="bf16"))
    assert rep["train"]["last_loss"] < rep["train"]["first_loss"] - 0.1
    assert rep["test"]["auroc"] > 0.7  # the warm opening is learned under bf16 autocast too
    with safe_open(tmp_path / "m" / "model.safetensors", "pt") as f:
        assert f.get_tensor("score.weight").dtype == torch.float32
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        train_reward("love", data, tmp_path / "m16", tiny_config(precision="fp16"))
