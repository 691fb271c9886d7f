"""Evaluation figures for reward models: weighted binary metrics, ECE, pairwise accuracy, plots.

All binary metrics take the curation sampling weights, so a resampled split is scored as if it were at
the natural rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr


def equal_mass_bins(w: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index (0 .. n_bins - 1) of each row of rows already sorted by score, each bin holding about 1/n_bins of
    the weight w: its weighted quantile position, cut into n_bins."""
    return np.minimum((np.cumsum(w) / np.sum(w) * n_bins - 1e-9).astype(int), n_bins - 1)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None, n_bins: int = 15) -> float:
    """ECE = sum_b (W_b / W) * |mean_w(p in b) - mean_w(y in b)| over equal-mass bins of p.

    Equal-mass (quantile) bins, because at a 0.1% base rate almost every prediction falls in the first of
    equal-width bins and the figure would only compare the overall means (Naeini et al. 2015, "ECE").
    """
    y, p = np.asarray(y, float), np.asarray(p, float)
    w = np.ones_like(p) if w is None else np.asarray(w, float)
    order = np.argsort(p, kind="stable")
    y, p, w = y[order], p[order], w[order]
    bins = equal_mass_bins(w, n_bins)
    ece = 0.0
    for b in np.unique(bins):
        m = bins == b
        wb = w[m].sum()
        ece += wb * abs(np.sum(w[m] * p[m]) / wb - np.sum(w[m] * y[m]) / wb)
    return float(ece / np.sum(w))


def binary_metrics(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None, n_bins: int = 15) -> dict[str, float]:
    """AUROC, AUPRC, log-loss, Brier, ECE and the ratio of mean prediction to observed rate (weighted)."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y, p = np.asarray(y, float), np.asarray(p, float)
    w = np.ones_like(p) if w is None else np.asarray(w, float)
    observed = float(np.sum(w * y) / np.sum(w))
    mean_pred = float(np.sum(w * p) / np.sum(w))
    two_classes = len(np.unique(y)) == 2
    pc = np.clip(p, 1e-12, 1 - 1e-12)
    ece = expected_calibration_error(y, p, w, n_bins)
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "observed_rate": observed,
        "mean_pred": mean_pred,
        "mean_pred_over_observed": mean_pred / observed if observed > 0 else float("nan"),
        "auroc": float(roc_auc_score(y, p, sample_weight=w)) if two_classes else float("nan"),
        "auprc": float(average_precision_score(y, p, sample_weight=w)) if two_classes else float("nan"),
        "log_loss": float(log_loss(y, pc, sample_weight=w, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p, sample_weight=w)),
        "ece": ece,
        "ece_relative": ece / observed if observed > 0 else float("nan"),
    }


def expected_metrics(true_p: np.ndarray, p: np.ndarray, w: np.ndarray | None = None,
                     n_bins: int = 15) -> dict[str, float]:
    """AUROC and ECE against the true probabilities instead of the sampled labels (simulated data only).

    Each row counts as a positive with weight w * true_p and as a negative with weight w * (1 - true_p): the
    expectation of the labelled figures over the label draws, without their noise. At a 0.1% rate a test split
    holds ~150 positives, so the labelled AUROC moves by +-0.03 and the ECE mostly measures label noise (the
    true probabilities themselves score ECE 0.2-0.3 of the rate); these move only with the rows.
    """
    t, p = np.asarray(true_p, float), np.asarray(p, float)
    w = np.ones_like(p) if w is None else np.asarray(w, float)
    from sklearn.metrics import roc_auc_score

    expected_rate = float(np.sum(w * t) / np.sum(w))
    ece = expected_calibration_error(t, p, w, n_bins)
    return {
        "expected_rate": expected_rate,
        "mean_pred_over_expected": float(np.sum(w * p) / np.sum(w)) / expected_rate,
        "auroc": float(roc_auc_score(np.r_[np.ones_like(p), np.zeros_like(p)], np.r_[p, p],
                                     sample_weight=np.r_[w * t, w * (1 - t)])),
        "ece": ece,
        "ece_relative": ece / expected_rate,
    }


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(pearsonr(a, b).statistic)


def length_slope_ratio(p: np.ndarray, true_p: np.ndarray, length: np.ndarray, w: np.ndarray | None = None) -> float:
    """Cov_w(p, length) / Cov_w(true_p, length): how much the model's probability rises with length, relative
    to how much the true probability does (the ratio of their least-squares slopes on length).

    1 for p = E[true_p | what the model reads] (length being part of it); above 1, the model rewards length
    beyond the truth. Pearson r cannot tell this apart: a calibrated model that knows less has a smaller
    spread than the truth, so its r with length is larger for the same covariance (r_model = r_true x
    sd(true_p) / sd(p) when the slopes agree).
    """
    c = np.cov(np.vstack([p, true_p, length]).astype(float), aweights=w)  # the normalisation cancels
    return float("nan") if c[1, 2] == 0 else float(c[0, 2] / c[1, 2])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def pairwise_accuracy(r_chosen: np.ndarray, r_rejected: np.ndarray) -> float:
    """Share of pairs with r(chosen) > r(rejected); ties count one half."""
    d = np.asarray(r_chosen, float) - np.asarray(r_rejected, float)
    return float(np.mean((d > 0) + 0.5 * (d == 0)))


def plot_roc(y: np.ndarray, scores: dict[str, np.ndarray], w: np.ndarray | None, path: Path) -> None:
    """ROC curves of one or more scorers on the same rows (e.g. the model and the true p_love)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s, sample_weight=w)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test split)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(y: np.ndarray, probs: dict[str, np.ndarray], w: np.ndarray | None, path: Path,
                     n_bins: int = 15) -> None:
    """Reliability diagram on equal-mass bins, log-log axes (probabilities at the natural rate are tiny)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = np.ones(len(y)) if w is None else np.asarray(w, float)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    lo = 1.0
    for name, p in probs.items():
        order = np.argsort(p, kind="stable")
        chunks = np.array_split(order, n_bins)
        mp = [np.average(p[c], weights=w[c]) for c in chunks if len(c)]
        ob = [np.average(y[c], weights=w[c]) for c in chunks if len(c)]
        ax.plot(mp, ob, "o-", ms=3, label=name)
        lo = min(lo, max(min(mp), 1e-6))
    ax.plot([lo, 1], [lo, 1], "k:", lw=0.8)
    ax.set(xscale="log", yscale="symlog", xlabel="mean predicted P[Love]", ylabel="observed Love rate",
           title="reliability at the natural rate")
    ax.set_yscale("symlog", linthresh=lo)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
