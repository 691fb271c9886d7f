import json
import shutil

import numpy as np
import pytest

from rluf.errors import ModelFolderError
from rluf.models import build_causal_lm, train_tokenizer
from rluf.rewards import Scorer
from rluf.rewards.data import read_curated


def test_batched_equals_one_by_one(love_run):
    scorer = Scorer.from_pretrained(love_run["model"], device="cpu")
    splits, _ = read_curated(love_run["data"])
    ctx, rsp = splits["test"].contexts[:12], splits["test"].responses[:12]
    ctx[3] = ctx[3] + [{"role": "assistant", "content": "a much longer earlier turn " * 5},
                       {"role": "user", "content": "and?"}]  # lengths differ -> padding inside batches
    batched = scorer.score(ctx, rsp, batch_size=5)
    single = np.array([scorer.score([c], [r])[0] for c, r in zip(ctx, rsp, strict=True)])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    assert batched.shape == (12,) and batched.std() > 0


def test_score_is_deterministic_and_progress_callback(love_run):
    scorer = Scorer.from_pretrained(love_run["model"], device="cpu")
    seen = []
    ctx = [[{"role": "user", "content": "hi"}]] * 5
    a = scorer.score(ctx, ["Happy to help, friend! hi"] * 5, batch_size=2, progress=seen.append)
    assert seen == [2, 2, 1]
    np.testing.assert_allclose(a, a[0], rtol=1e-5)


def test_folder_without_metadata(tmp_path, love_run):
    folder = tmp_path / "m"
    shutil.copytree(love_run["model"], folder)
    (folder / "rluf_reward.json").unlink()
    with pytest.raises(ModelFolderError, match="has no rluf_reward.json: it is not an rluf reward model"):
        Scorer.from_pretrained(folder)
    with pytest.raises(ModelFolderError, match="does not exist"):
        Scorer.from_pretrained(tmp_path / "missing")


def test_folder_with_wrong_head(tmp_path, love_run):
    tok = train_tokenizer(["some text for a tokenizer"] * 10, vocab_size=300)
    lm = tmp_path / "lm"
    build_causal_lm(tok, "tiny").save_pretrained(lm)
    tok.save_pretrained(lm)
    shutil.copy(love_run["model"] / "rluf_reward.json", lm)
    with pytest.raises(ModelFolderError, match="no sequence-classification head"):
        Scorer.from_pretrained(lm)
    two = tmp_path / "two"
    shutil.copytree(love_run["model"], two)
    cfg = json.loads((two / "config.json").read_text())
    cfg["id2label"] = {"0": "a", "1": "b"}
    cfg["label2id"] = {"a": 0, "b": 1}
    (two / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFolderError, match="num_labels = 2, a reward model needs exactly 1"):
        Scorer.from_pretrained(two)


def test_no_remote_code_and_safetensors_only(love_run, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    calls = []
    original = AutoModelForSequenceClassification.from_pretrained.__func__

    def spy(cls, *args, **kw):
        calls.append(kw)
        return original(cls, *args, **kw)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", classmethod(spy))
    Scorer.from_pretrained(love_run["model"], device="cpu")
    assert calls and all(kw.get("trust_remote_code") is False and kw.get("use_safetensors") for kw in calls)


def test_prob_needs_a_love_model(bt_run):
    scorer = Scorer.from_pretrained(bt_run["model"], device="cpu")
    with pytest.raises(ModelFolderError, match="prob\\(\\) needs a BCE \\(love\\) reward model"):
        scorer.prob([[{"role": "user", "content": "hi"}]], ["yo"])
