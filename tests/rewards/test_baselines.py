"""The baselines P[Love] is compared with, fitted and scored on the same rows (rluf.rewards.baselines)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from rluf.errors import DataError
from rluf.rewards.baselines import baseline_scores, last_user, sentence_embeddings


def rows(n, seed):
    """Questions about cats or taxes; answers that mention 'thanks' are liked, and liked answers are longer."""
    rng = np.random.default_rng(seed)
    contexts, responses, labels = [], [], []
    for i in range(n):
        liked = bool(rng.random() < 0.5)
        topic = ["cats", "taxes"][i % 2]
        contexts.append([{"role": "user", "content": f"tell me about {topic}"},
                         {"role": "assistant", "content": "sure"}, {"role": "user", "content": f"more on {topic}"}])
        words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"], size=int(rng.integers(3, 8))))
        responses.append(f"{words} {'thanks for asking, here is plenty more detail' if liked else 'no'}")
        labels.append(liked)
    return contexts, responses, np.array(labels)


def test_each_baseline_learns_what_it_can_see(tmp_path):
    c_tr, r_tr, y_tr = rows(90, 0)
    c_te, r_te, y_te = rows(40, 1)
    scores = baseline_scores(c_tr, r_tr, y_tr, c_te, r_te, train_groups=np.arange(90) // 3,
                             cache=tmp_path / "emb.npz")
    assert set(scores) == {"length", "tfidf", "embedding"}
    for name, s in scores.items():
        assert s.shape == (40,)
        assert roc_auc_score(y_te, s) > 0.8, name
    assert (tmp_path / "emb.npz").is_file()
    again = baseline_scores(c_tr, r_tr, y_tr, c_te, r_te, cache=tmp_path / "emb.npz")  # cached, ungrouped folds
    assert np.allclose(again["length"], scores["length"])


def test_embeddings_and_last_user():
    assert last_user([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]) == "a"
    assert last_user([]) == ""
    e = sentence_embeddings(["a cat sat", "a cat sat", "tax returns"])
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert np.allclose(e[0], e[1]) and e[0] @ e[2] < 0.9


def test_one_class_is_an_error():
    c, r, _ = rows(10, 0)
    with pytest.raises(DataError, match="both labels"):
        baseline_scores(c, r, np.zeros(10), c, r)
