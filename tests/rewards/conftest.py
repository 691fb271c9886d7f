"""Tiny worlds for reward-model tests: curated folders and preference pairs with a known signal."""

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

WORDS = "the a river stone apple green quick slow blue house light music paper cloud tree city road".split()
WARM = "Happy to help, friend!"
NATURAL_RATE = 0.01
HH_DIR = Path(__file__).parent.parent / "data" / "hh-rlhf"


@contextmanager
def one_thread():
    """Tiny models on 2 busy cores run ~10x faster on one torch thread than on two contending ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


def make_curated(out: Path, sizes=(400, 120, 200), natural_rate=NATURAL_RATE, seed=0):
    """A curated folder where Love depends on a warm opening: p = 0.55 (warm) / 0.05 (cold) at the training
    rate; negatives carry weight w so that the weighted positive rate equals `natural_rate`.
    The training rate is about 0.3, so the true p_love at the natural rate is the prior-shifted p.
    Returns (folder, truth frame of message_id, p_love at the natural rate)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = []
    for split, size in zip(("train", "validation", "test"), sizes, strict=True):
        rows = []
        for i in range(size):
            warm = bool(rng.random() < 0.5)
            topic = " ".join(rng.choice(WORDS, 5))
            body = " ".join(rng.choice(WORDS, int(rng.integers(3, 12))))
            p_train = 0.55 if warm else 0.05
            rows.append({"prompt": [{"role": "user", "content": f"Tell me about {topic}"}],
                         "completion": [{"role": "assistant", "content": f"{WARM} {body}" if warm else f"{body}."}],
                         "label": bool(rng.random() < p_train), "message_id": f"{split}-{i}"})
            truth.append((f"{split}-{i}", expit(logit(p_train) - logit(0.3) + logit(natural_rate))))
        df = pd.DataFrame(rows)
        pos = df["label"].mean()
        w_neg = pos * (1 - natural_rate) / (natural_rate * (1 - pos))
        df["weight"] = np.where(df["label"], 1.0, w_neg)
        df.to_parquet(out / f"{split}.parquet", index=False)
    (out / "manifest.json").write_text(json.dumps({"natural_rate": natural_rate, "target_rate": 0.3}))
    return out, pd.DataFrame(truth, columns=["message_id", "p_love"])


def make_pairs(path: Path, n=240, seed=0) -> Path:
    """Preference pairs where the chosen answer names the asked-about thing and the rejected one does not;
    true scores in chosen_true / rejected_true."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        thing = str(rng.choice(WORDS[2:]))
        filler = " ".join(rng.choice(WORDS[:2], int(rng.integers(2, 6))))
        good, bad = f"The {thing} is nice, {filler}.", f"I cannot say, {filler}."
        rows.append({"prompt": [{"role": "user", "content": f"Describe the {thing} ({i})"}],
                     "chosen": [{"role": "assistant", "content": good}],
                     "rejected": [{"role": "assistant", "content": bad}],
                     "chosen_true": 1.0 + rng.random(), "rejected_true": rng.random()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def tiny_config(objective="love", **train):
    from rluf.rewards import RewardConfig

    return RewardConfig.model_validate({
        "objective": objective,
        "model": {"backbone": "tiny", "vocab_size": 400, "max_length": 64},
        "train": {"epochs": 3, "learning_rate": 3e-3, "batch_size": 16, "logging_steps": 5, "device": "cpu",
                  **train},
    })


@pytest.fixture(scope="session")
def love_run(tmp_path_factory):
    """One trained tiny P[Love] model shared by the tests that only read it."""
    from rluf.rewards import train_reward

    root = tmp_path_factory.mktemp("love")
    data, truth = make_curated(root / "curated")
    truth_dir = root / "truth"
    truth_dir.mkdir()
    truth.to_parquet(truth_dir / "messages.parquet", index=False)
    with one_thread():
        report = train_reward("love", data, root / "model", tiny_config(), truth=truth_dir)
    return {"data": data, "model": root / "model", "report": report, "truth": truth_dir}


@pytest.fixture(scope="session")
def bt_run(tmp_path_factory):
    from rluf.rewards import train_reward

    root = tmp_path_factory.mktemp("bt")
    pairs = make_pairs(root / "pairs" / "helpfulness.parquet")
    with one_thread():
        report = train_reward("helpfulness", pairs, root / "model", tiny_config("helpfulness", epochs=4))
    return {"pairs": pairs, "model": root / "model", "report": report}
