"""Simple baselines for P[Love], fitted and scored on the same rows as the model.

A reward model trained on a few hundred real reactions can learn little more than what a bag of words or the
answer's length already tells; these three say how much that is:
  length     a logistic regression on log(1 + response characters) (its sign learned from the training rows);
  tfidf      TF-IDF (1-2 grams) + logistic regression on the last user message and the answer;
  embedding  a logistic regression on frozen all-MiniLM-L6-v2 sentence embeddings (mean pooling) of the two.
Each regression's C is chosen by AUROC over 3 inner folds of the training rows (grouped when groups are given).

    scores = baseline_scores(train_contexts, train_responses, train_labels, test_contexts, test_responses,
                             train_groups=conversation_ids, cache=Path("embeddings.npz"))
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from rluf.errors import DataError
from rluf.rewards.data import Chat

C_GRID = (0.01, 0.1, 1.0, 10.0)
BASELINES = ("length", "tfidf", "embedding")


def last_user(context: Chat) -> str:
    """The last user message of a context ('' if there is none)."""
    return next((m["content"] for m in reversed(context) if m["role"] == "user"), "")


def sentence_embeddings(texts: list[str], cache: Path | None = None, batch_size: int = 32) -> np.ndarray:
    """Frozen all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised), shape (N, 384); with `cache`
    (an .npz file), texts already embedded there are not embedded again."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from rluf.rewards.backbone import minilm_path

    keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
    store = dict(np.load(cache)) if cache is not None and Path(cache).is_file() else {}
    todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in store}.items())
    if todo:
        path = minilm_path()
        tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
        for lo in range(0, len(todo), batch_size):
            part = todo[lo:lo + batch_size]
            enc = tok([t for _, t in part], padding=True, truncation=True, max_length=256, return_tensors="pt")
            with torch.no_grad():
                h = model(**enc).last_hidden_state  # (B, T, 384)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            v = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1).numpy()
            store.update({k: v[i] for i, (k, _) in enumerate(part)})
        if cache is not None:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **store)
    return np.stack([store[k] for k in keys]) if keys else np.zeros((0, 384))


def fit_lr(x_train, y_train: np.ndarray, x_test, groups: np.ndarray | None = None, vectorizer=None) -> np.ndarray:
    """Logistic regression probabilities on `x_test`, C chosen by inner 3-fold AUROC on the training rows (folds
    grouped by `groups` when given); a `vectorizer` (e.g. TF-IDF) is refitted on each inner training part."""
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    def fit_predict(xa, ya, xb, C):
        if vectorizer is not None:
            vec = clone(vectorizer)
            xa, xb = vec.fit_transform(xa), vec.transform(xb)
        return LogisticRegression(C=C, max_iter=3000).fit(xa, ya).predict_proba(xb)[:, 1]

    def pick(x, i):
        return [x[j] for j in i] if isinstance(x, list) else x[i]

    cv = GroupKFold(n_splits=3) if groups is not None else StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    inner = list(cv.split(y_train, y_train, groups))
    score = {C: np.mean([roc_auc_score(y_train[b], fit_predict(pick(x_train, a), y_train[a], pick(x_train, b), C))
                         for a, b in inner]) for C in C_GRID}
    return fit_predict(x_train, y_train, x_test, max(score, key=score.get))


def baseline_scores(train_contexts: list[Chat], train_responses: list[str], train_labels, test_contexts: list[Chat],
                    test_responses: list[str], *, train_groups=None, cache: Path | None = None
                    ) -> dict[str, np.ndarray]:
    """Each baseline's scores (probabilities) on the test rows, fitted on the training rows.

    `train_groups` (e.g. conversation ids) keeps a group on one side of the inner folds that choose C;
    `cache` is an .npz file for the sentence embeddings."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    y = np.asarray(train_labels).astype(int)
    if len(np.unique(y)) < 2:
        raise DataError(f"baselines need both labels among the training rows, got only {np.unique(y).tolist()}")
    groups = None if train_groups is None else np.asarray(train_groups)
    n = len(train_responses)
    contexts, responses = [*train_contexts, *test_contexts], [*train_responses, *test_responses]
    log_len = np.log1p(np.array([len(r) for r in responses], float))[:, None]
    qa = [last_user(c) + " ||| " + r for c, r in zip(contexts, responses, strict=True)]
    e = sentence_embeddings([last_user(c) for c in contexts] + responses, cache)
    emb = np.hstack([e[:len(responses)], e[len(responses):]])
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    return {"length": fit_lr(log_len[:n], y, log_len[n:], groups),
            "tfidf": fit_lr(qa[:n], y, qa[n:], groups, tfidf),
            "embedding": fit_lr(emb[:n], y, emb[n:], groups)}
