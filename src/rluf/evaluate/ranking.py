"""Ranking candidate policies with bootstrap confidence intervals over prompts, and correlations.

Every policy answers the same prompts, so prompts are resampled jointly for all policies (a paired
bootstrap): the CI of a difference between two policies is then much narrower than the two marginal CIs,
because prompt difficulty cancels.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def bootstrap_prompt_means(S: np.ndarray, reps: int, seed: int) -> np.ndarray:
    """Policy means over `reps` bootstrap resamples of prompts.

    S: (P, M) per-policy, per-prompt scores. Returns (reps, P).
    """
    rng = np.random.default_rng(seed)
    M = S.shape[1]
    idx = rng.integers(0, M, size=(reps, M))  # (reps, M) prompts drawn with replacement
    return S[:, idx].mean(-1).T  # (P, reps, M) -> (P, reps) -> (reps, P)


def rank_policies(
    S: np.ndarray, names: list[str], *, reps: int = 1000, alpha: float = 0.05, seed: int = 0,
    higher_is_better: bool = True,
) -> list[dict]:
    """Policies ordered by mean score, each with its CI, rank CI and the probability of ranking first.

    S: (P, M) per-policy, per-prompt scores. Rank 1 is the best. Without bootstrap (reps = 0) only the
    means and ranks are given.
    """
    means = S.mean(1)  # (P,)
    sign = 1.0 if higher_is_better else -1.0
    order = np.argsort(-sign * means, kind="stable")
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    boot = bootstrap_prompt_means(S, reps, seed) if reps > 0 else None
    if boot is not None:
        # rank of every policy in every replicate: (reps, P), 1 = best
        ranks = np.argsort(np.argsort(-sign * boot, axis=1, kind="stable"), axis=1) + 1
    out = []
    for r, p in enumerate(order, start=1):
        row = {"policy": names[p], "rank": r, "mean": float(means[p])}
        if boot is not None:
            row["ci"] = np.percentile(boot[:, p], q).tolist()
            row["rank_ci"] = np.percentile(ranks[:, p], q, method="nearest").astype(int).tolist()
            row["p_best"] = float((ranks[:, p] == 1).mean())
        out.append(row)
    return out


def paired_differences(S: np.ndarray, names: list[str], baseline: int, *, reps: int, alpha: float, seed: int) -> dict:
    """Mean score of every policy minus the baseline's, with a paired bootstrap CI over prompts.

    S: (P, M). Returns {name: {"diff", "ci"}} for every policy other than the baseline.
    """
    D = S - S[baseline]  # (P, M) per-prompt differences
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    boot = bootstrap_prompt_means(D, reps, seed) if reps > 0 else None
    out = {}
    for p, name in enumerate(names):
        if p == baseline:
            continue
        row = {"diff": float(D[p].mean())}
        if boot is not None:
            row["ci"] = np.percentile(boot[:, p], q).tolist()
        out[name] = row
    return out


def correlation(x: np.ndarray, y: np.ndarray) -> dict:
    """Pearson and Spearman correlation with p-values; None when either side is constant or n < 3."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"n": len(x), "pearson": None, "pearson_p": None, "spearman": None, "spearman_p": None}
    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    return {"n": len(x), "pearson": float(pr.statistic), "pearson_p": float(pr.pvalue),
            "spearman": float(sr.statistic), "spearman_p": float(sr.pvalue)}
