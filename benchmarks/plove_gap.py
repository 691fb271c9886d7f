"""Where P[Love] loses to the Bayes-optimal: on a finished `rluf run` folder (simulated), what the trained model
weighs against what the simulator's true Love logit weighs, and what its hidden states could give.

    python benchmarks/plove_gap.py --run runs/default [--write]

Reads the run's curated splits, its P[Love] test scores (reward_love/test_scores.parquet: the test rows with
their true p_love and weights) and the simulator's world, then prints:
  1. slopes: the true logit and P[Love]'s score regressed on the answer's features (right answer, warm,
     sign-off, refusal) within each user segment: does the model weigh a sign-off differently for the users
     who love them and the experts who do not?
  2. the expected AUROC (against the true p_love) of a logistic regression on the simulator's own features,
     fitted to the run's training labels: the answer's features alone, and with segment interactions. This is
     what the same Love labels allow with the right features;
  3. linear readouts from P[Love]'s and the helpfulness model's last hidden state (half the test rows to fit,
     half to score): how well each feature can be read (AUROC), and a logistic regression of Love on the
     hidden state itself, fitted to the training labels;
  4. the regression of 2 again with features replaced by what the helpfulness model (the backbone P[Love]
     starts from, never trained on these rows) lets a linear probe read of them, one feature at a time and
     all at once: which feature, read as the backbone reads it, costs the AUROC;
  5. length: Pearson r of each probability with the answer's length and its slope on length over the truth's
     (`length_slope_ratio`), for the truth, P[Love], and the regressions of 2 fitted at the natural rate (the
     curation weights, so their probabilities are calibrated): the r a calibrated model that weighs length
     exactly as the labels do shows when it knows less than the truth.
With --write, writes benchmarks/results/plove_gap.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ["good", "bad", "warm", "cold", "signoff", "refusal", "unsafe", "ok", "words"]
SHOWN = ["good", "warm", "signoff", "refusal"]


def true_features(world, df: pd.DataFrame) -> pd.DataFrame:
    """The simulator's Love features of each (context, answer) row, and the user's segment (docs/simulator.md)."""
    from rluf.sim.world import parse_context, parse_response

    rows = []
    for prompt, completion in zip(df.prompt, df.completion, strict=True):
        p, r = parse_context([dict(m) for m in prompt]), parse_response(completion[0]["content"])
        good, bad = world._body_flags(p, r)
        rows.append(dict(segment=p.segment, good=float(good), bad=float(bad and not good), warm=float(r.warm),
                         cold=float(r.cold), signoff=float(r.signoff), refusal=float(r.refusal),
                         unsafe=float(r.compliance), ok=float(r.ok), words=max(0, r.n_words - 20)))
    return pd.DataFrame(rows)


def last_hidden(folder: Path, frames: list[pd.DataFrame]) -> list[np.ndarray]:
    """The reward model's last hidden state at each row's last token, as its head reads it (the rows encoded as
    the model's own rluf_reward.json says), for each frame; standardised with each frame's own mean and spread."""
    import torch

    from rluf.rewards.scorer import Scorer, pad_right

    scorer = Scorer.from_pretrained(folder, device="cpu", precision="fp32")  # its encoder reads as training did
    model, tok, encoder = scorer.model, scorer.tokenizer, scorer.encoder
    result = []
    for df in frames:
        ids = encoder.encode_many([[dict(m) for m in p] for p in df.prompt], [c[0]["content"] for c in df.completion])
        out = []
        with torch.inference_mode():
            for i in range(0, len(ids), 256):
                x, mask = pad_right(ids[i:i + 256], tok.pad_token_id)
                h = model.model(input_ids=x, attention_mask=mask).last_hidden_state  # (B, T, d)
                out.append(h[torch.arange(len(x)), mask.sum(1) - 1].numpy())
        H = np.concatenate(out)
        result.append((H - H.mean(0)) / (H.std(0) + 1e-6))
    return result


def segment_slopes(F: pd.DataFrame, target: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for seg, g in F.groupby("segment"):
        A = np.c_[g[SHOWN].to_numpy(float), np.ones(len(g))]
        coef, *_ = np.linalg.lstsq(A, target[g.index.to_numpy()], rcond=None)
        out[seg] = {f: round(float(c), 2) for f, c in zip(SHOWN, coef[:-1], strict=True)}
    return out


def with_segments(F: pd.DataFrame, segments: list[str]) -> np.ndarray:
    X = F[FEATURES].to_numpy(float)
    onehot = np.stack([(F.segment == s).to_numpy(float) for s in segments], 1)
    return np.c_[X, (X[:, :, None] * onehot[:, None, :]).reshape(len(X), -1), onehot]


def read_by_backbone(H_train: np.ndarray, H_test: np.ndarray, F_train, F_test, y, w, expected_auroc) -> dict:
    """The answer-features regression (same labels, same weights) with a feature replaced by its readout from
    the helpfulness model's hidden states `H_*`: a probe fitted to the training rows' true flags, applied to
    both splits. That model never saw these rows, so the probe is not fitted to memorised states. With no
    feature replaced it is `true_features_lr.answer_features`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    read = {}
    for f in FEATURES[:-1]:  # the word count is not a flag
        if F_train[f].nunique() == 2:
            probe = LogisticRegression(C=0.1, max_iter=3000).fit(H_train, F_train[f])
            read[f] = (probe.decision_function(H_train), probe.decision_function(H_test))

    def fit(replaced: list[str]) -> float:
        X_train, X_test = F_train[FEATURES].copy(), F_test[FEATURES].copy()
        for f in replaced:
            X_train[f], X_test[f] = read[f]
        lr = LogisticRegression(C=1.0, max_iter=3000).fit(X_train, y, sample_weight=w)
        return expected_auroc(lr.decision_function(X_test))

    return {"readout_auroc": {f: round(float(roc_auc_score(F_test[f], r[1])), 3) for f, r in read.items()},
            "one_read": {f: fit([f]) for f in read},
            "right_and_wrong_read": fit(["good", "bad"]),
            "all_but_right_and_wrong_read": fit([f for f in read if f not in ("good", "bad")]),
            "all_read": fit(list(read))}


def length_figures(F_train, F_test, segments, y, natural_w, scores: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Length r and slope ratio (see the module docstring, 5) of the truth, P[Love] and the feature regressions
    fitted with the natural-rate weights."""
    from sklearn.linear_model import LogisticRegression

    from rluf.rewards.metrics import expected_metrics, length_slope_ratio, pearson

    t, w, length = scores.true_p_love.to_numpy(), scores.weight.to_numpy(), scores.response_chars.to_numpy()
    probs = {"truth": t, "p_love": scores.prob.to_numpy()}
    for name, X_train, X_test in [("answer_features", F_train[FEATURES], F_test[FEATURES]),
                                  ("with_segment_interactions", with_segments(F_train, segments),
                                   with_segments(F_test, segments))]:
        lr = LogisticRegression(C=1.0, max_iter=5000).fit(X_train, y, sample_weight=natural_w / natural_w.mean())
        probs[name] = lr.predict_proba(X_test)[:, 1]
    out = {}
    for name, p in probs.items():
        e = expected_metrics(t, p, w)
        out[name] = {"auroc": round(e["auroc"], 4), "ece_relative": round(e["ece_relative"], 3),
                     "length_r": round(pearson(p, length), 3),
                     "length_slope_ratio": round(length_slope_ratio(p, t, length, w), 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a finished simulated `rluf run` folder")
    ap.add_argument("--write", action="store_true", help="write benchmarks/results/plove_gap.json")
    args = ap.parse_args()
    from scipy.special import logit
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from rluf.rewards.hf_trainer import class_normalised_weights
    from rluf.rewards.metrics import expected_metrics
    from rluf.sim.world import World
    from rluf.threads import available_cpus
    from rluf.utils import read_json

    t0 = time.time()
    run = args.run
    world = World.load(run / "simulate")
    scores = pd.read_parquet(run / "reward_love" / "test_scores.parquet")
    test = pd.read_parquet(run / "curate" / "test.parquet").set_index("message_id").loc[scores.message_id]
    test = test.reset_index()
    train = pd.read_parquet(run / "curate" / "train.parquet")
    F_test, F_train = true_features(world, test), true_features(world, train)
    y = train.label.to_numpy().astype(int)
    w = class_normalised_weights(y, train.weight.to_numpy())  # the loss weights P[Love] trained with

    def expected_auroc(s: np.ndarray) -> float:
        return round(expected_metrics(scores.true_p_love, s, scores.weight)["auroc"], 4)

    res: dict = {"run": str(run), "test_rows": len(test), "train_rows": len(train),
                 "train_positives": int(y.sum()), "p_love_auroc": expected_auroc(scores.score.to_numpy())}
    res["slopes"] = {"truth": segment_slopes(F_test, logit(scores.true_p_love.to_numpy())),
                     "p_love": segment_slopes(F_test, scores.score.to_numpy())}
    segments = sorted(F_train.segment.unique())
    lr = LogisticRegression(C=1.0, max_iter=3000)
    res["true_features_lr"] = {
        "right_answer_only": expected_auroc(lr.fit(F_train[["good"]], y, sample_weight=w)
                                            .decision_function(F_test[["good"]])),
        "answer_features": expected_auroc(lr.fit(F_train[FEATURES], y, sample_weight=w)
                                          .decision_function(F_test[FEATURES])),
        "with_segment_interactions": expected_auroc(lr.fit(with_segments(F_train, segments), y, sample_weight=w)
                                                    .decision_function(with_segments(F_test, segments))),
        "bayes": round(read_json(run / "reward_love" / "eval.json")["expected"]["bayes"]["auroc"], 4),
    }
    res["length"] = length_figures(F_train, F_test, segments, y, train.weight.to_numpy(), scores)
    res["hidden_state"] = {}
    half = len(test) // 2
    hidden = {}
    for name in ("reward_love", "reward_helpfulness"):
        H_test, H_train = hidden[name] = last_hidden(run / name, [test, train])
        readout = {}
        for f in SHOWN:  # fit on the first half of the test rows, score the second
            probe = LogisticRegression(C=0.1, max_iter=3000).fit(H_test[:half], F_test[f][:half])
            readout[f] = round(float(roc_auc_score(F_test[f][half:], probe.decision_function(H_test[half:]))), 3)
        love = LogisticRegression(C=0.003, max_iter=3000).fit(H_train, y, sample_weight=w)
        res["hidden_state"][name] = {"feature_readout_auroc": readout,
                                     "love_probe_auroc": expected_auroc(love.decision_function(H_test))}
    H_test, H_train = hidden["reward_helpfulness"]
    res["read_by_backbone"] = read_by_backbone(H_train, H_test, F_train, F_test, y, w, expected_auroc)
    res["seconds"] = round(time.time() - t0, 1)
    res["machine"] = {"cpus": available_cpus(), "python": platform.python_version()}
    print(json.dumps(res, indent=1))
    if args.write:
        from rluf.utils import write_json

        write_json(ROOT / "benchmarks" / "results" / "plove_gap.json", res)


if __name__ == "__main__":
    main()
