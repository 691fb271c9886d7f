"""Statistics for A/B tests on a rate: plain two-proportion tests, user-clustered delta method, user bootstrap.

The metric is a ratio of sums per arm, ``r = sum_i y_i / sum_i n_i`` over users i, where ``n_i`` is the
number of responses user i saw and ``y_i`` how many of them carry the signal (a Love reaction). Responses
of one user are not independent (some users love a lot, most never), so the plain two-proportion test,
which treats every response as its own trial, is too confident; the delta method on user totals and the
user-level bootstrap are not.

References
----------
Deng, Knoblich, Lu (2018), "Applying the Delta Method in Metric Analytics", KDD: the variance of a ratio
of means (their Sec. 2.2) and of a relative change (their Sec. 3.3).
Newcombe (1998), "Interval estimation for the difference between independent proportions", method 10.
The plain functions mirror ``statsmodels.stats.proportion.proportions_ztest`` (pooled variance) and
``confint_proportions_2indep`` (methods newcomb / wald for a difference, log / log-adjusted for a ratio).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from rluf.errors import ConfigError

DIFF_METHODS = ("newcomb", "wald")
RATIO_METHODS = ("log-adjusted", "log")


def _z(alpha: float) -> float:
    """Two-sided critical value z_{1 - alpha/2}."""
    return float(stats.norm.isf(alpha / 2))


def _p_two_sided(z: float) -> float:
    return float(2 * stats.norm.sf(abs(z)))


# -- plain tests: every response an independent Bernoulli trial ---------------------------------------
def two_proportion_ztest(count1: int, nobs1: int, count2: int, nobs2: int) -> tuple[float, float]:
    """z-test of p1 = p2 with the pooled variance; returns (z, two-sided p-value).

    z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2)),  p = (c1 + c2) / (n1 + n2).
    Equals ``proportions_ztest([c1, c2], [n1, n2])`` of statsmodels.
    """
    p1, p2 = count1 / nobs1, count2 / nobs2
    pooled = (count1 + count2) / (nobs1 + nobs2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / nobs1 + 1 / nobs2))
    if se == 0:
        return float("nan"), float("nan")
    z = (p1 - p2) / se
    return float(z), _p_two_sided(z)


def wilson_interval(count: int, nobs: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for one proportion (statsmodels ``proportion_confint(method='wilson')``)."""
    z = _z(alpha)
    q = count / nobs
    denom = 1 + z**2 / nobs
    center = (q + z**2 / (2 * nobs)) / denom
    half = z * np.sqrt(q * (1 - q) / nobs + z**2 / (4 * nobs**2)) / denom
    return float(center - half), float(center + half)


def confint_diff(
    count1: int, nobs1: int, count2: int, nobs2: int, alpha: float = 0.05, method: str = "newcomb"
) -> tuple[float, float]:
    """CI for p1 - p2. 'newcomb': hybrid Wilson score (Newcombe 1998, method 10); 'wald': normal approx."""
    p1, p2 = count1 / nobs1, count2 / nobs2
    if method == "newcomb":
        lo1, hi1 = wilson_interval(count1, nobs1, alpha)
        lo2, hi2 = wilson_interval(count2, nobs2, alpha)
        d_low = np.sqrt((p1 - lo1) ** 2 + (hi2 - p2) ** 2)
        d_upp = np.sqrt((p2 - lo2) ** 2 + (hi1 - p1) ** 2)
        return float(p1 - p2 - d_low), float(p1 - p2 + d_upp)
    if method == "wald":
        half = _z(alpha) * np.sqrt(p1 * (1 - p1) / nobs1 + p2 * (1 - p2) / nobs2)
        return float(p1 - p2 - half), float(p1 - p2 + half)
    raise ConfigError(f"difference CI method {method!r} is not supported; choose one of {list(DIFF_METHODS)}")


def confint_ratio(
    count1: int, nobs1: int, count2: int, nobs2: int, alpha: float = 0.05, method: str = "log-adjusted"
) -> tuple[float, float]:
    """CI for p1 / p2 on the log scale (Katz). 'log-adjusted' adds 0.5 to every count and size first.

    var(log ratio) = 1/c1 - 1/n1 + 1/c2 - 1/n2.
    """
    if method not in RATIO_METHODS:
        raise ConfigError(f"ratio CI method {method!r} is not supported; choose one of {list(RATIO_METHODS)}")
    add = 0.5 if method == "log-adjusted" else 0.0
    c1, n1, c2, n2 = count1 + add, nobs1 + add, count2 + add, nobs2 + add
    if c1 == 0 or c2 == 0:
        return float("nan"), float("nan")
    log_ratio = np.log((c1 / n1) / (c2 / n2))
    half = _z(alpha) * np.sqrt(1 / c1 - 1 / n1 + 1 / c2 - 1 / n2)
    return float(np.exp(log_ratio - half)), float(np.exp(log_ratio + half))


# -- user-clustered: the delta method on per-user totals ------------------------------------------------
@dataclass
class ArmStats:
    """A rate r = sum(y) / sum(n) over users, with its delta-method variance clustered by user."""

    users: int
    responses: int
    events: int
    rate: float
    var: float  # var(r), Deng et al. 2018 Sec. 2.2

    def as_dict(self) -> dict:
        return {**asdict(self), "se": float(np.sqrt(self.var))}


def ratio_of_means(y: np.ndarray, n: np.ndarray) -> ArmStats:
    """Rate and delta-method variance of the ratio of means ybar / nbar over N users.

    var(r) ~= var_s(y_i - r n_i) / (N nbar^2)   (Deng et al. 2018, Sec. 2.2; sample variance, ddof=1),
    which expands to (s_y^2 / nbar^2 - 2 ybar s_yn / nbar^3 + ybar^2 s_n^2 / nbar^4) / N.
    y, n: shape (N,) per-user event and response counts.
    """
    y, n = np.asarray(y, dtype=float), np.asarray(n, dtype=float)
    users = len(n)
    rate = y.sum() / n.sum()
    var = float(np.var(y - rate * n, ddof=1) / (users * n.mean() ** 2)) if users > 1 else float("nan")
    return ArmStats(users=users, responses=int(n.sum()), events=int(y.sum()), rate=float(rate), var=var)


def delta_compare(treatment: ArmStats, control: ArmStats, alpha: float = 0.05) -> dict:
    """Difference and relative lift of treatment over control, with delta-method CIs and a z-test.

    diff = r_t - r_c,            var = V_t + V_c
    lift = r_t / r_c - 1,        var = V_t / r_c^2 + r_t^2 V_c / r_c^4   (Deng et al. 2018, Sec. 3.3)
    The arms are independent (disjoint users), so there is no covariance term between them.
    """
    z = _z(alpha)
    diff = treatment.rate - control.rate
    se_diff = float(np.sqrt(treatment.var + control.var))
    z_stat = diff / se_diff if se_diff > 0 else float("nan")
    out = {
        "diff": diff,
        "diff_ci": [diff - z * se_diff, diff + z * se_diff],
        "z": z_stat,
        "p_value": _p_two_sided(z_stat) if se_diff > 0 else float("nan"),
        "lift": None,
        "lift_ci": [None, None],
    }
    if control.rate > 0:
        r_t, r_c = treatment.rate, control.rate
        lift = r_t / r_c - 1
        out["lift"] = lift
        if treatment.events > 0:  # with no events an arm's variance estimate is 0: no interval
            se_lift = float(np.sqrt(treatment.var / r_c**2 + r_t**2 * control.var / r_c**4))
            out.update(lift_ci=[lift - z * se_lift, lift + z * se_lift], lift_se=se_lift)
    return out


MIN_EVENTS = 10


def small_sample_warnings(treatment: ArmStats, control: ArmStats, names: tuple[str, str]) -> list[str]:
    """Sentences for arms whose event counts are too small for normal-approximation intervals."""
    out = []
    for s, name in zip((treatment, control), names, strict=True):
        if s.events < MIN_EVENTS:
            out.append(f"arm {name!r} has only {s.events} event(s) (< {MIN_EVENTS}): the normal-approximation "
                       "intervals are unreliable; collect more data (see `rluf abtest power`)")
    return out


# -- user-clustered: the user-level bootstrap -----------------------------------------------------------
def _resampled_rates(y: np.ndarray, n: np.ndarray, reps: int, rng: np.random.Generator, chunk: int) -> np.ndarray:
    """Rates of `reps` bootstrap samples of users drawn with replacement. Returns shape (reps,)."""
    users = len(n)
    out = np.empty(reps)
    for start in range(0, reps, chunk):
        b = min(chunk, reps - start)
        idx = rng.integers(0, users, size=(b, users))  # (b, N) users drawn with replacement
        out[start : start + b] = y[idx].sum(1) / np.maximum(n[idx].sum(1), 1)  # (b,)
    return out


def user_bootstrap(
    y_t: np.ndarray, n_t: np.ndarray, y_c: np.ndarray, n_c: np.ndarray, *, reps: int = 2000,
    alpha: float = 0.05, seed: int = 0, chunk: int = 128,
) -> dict:
    """Percentile bootstrap CIs of diff and relative lift, resampling users within each arm.

    Users (the clusters) are drawn with replacement within each arm independently; a user's responses
    stay together, which is what makes the interval honest when a few users react a lot.
    """
    rng = np.random.default_rng(seed)
    y_t, n_t, y_c, n_c = (np.asarray(a, dtype=float) for a in (y_t, n_t, y_c, n_c))
    r_t = _resampled_rates(y_t, n_t, reps, rng, chunk)
    r_c = _resampled_rates(y_c, n_c, reps, rng, chunk)
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    diff = r_t - r_c
    out = {"reps": reps, "diff_ci": np.percentile(diff, q).tolist(), "diff_se": float(diff.std(ddof=1))}
    ok = r_c > 0
    if ok.mean() >= 1 - alpha / 2:  # lift defined in enough replicates for the percentile interval
        lift = r_t[ok] / r_c[ok] - 1
        out.update(lift_ci=np.percentile(lift, q).tolist(), lift_se=float(lift.std(ddof=1)))
    else:
        out.update(lift_ci=[None, None], lift_se=None)
    # achieved significance level of H0: diff = 0 (two-sided, percentile method)
    out["p_value"] = float(min(1.0, 2 * min((diff <= 0).mean(), (diff >= 0).mean())))
    return out


# -- sample size ------------------------------------------------------------------------------------------
def sample_size_per_arm(base_rate: float, lift: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Responses per arm for a two-sided two-proportion z-test to detect p2 = p1 (1 + lift).

    n = (z_{1-alpha/2} sqrt(2 pbar qbar) + z_{power} sqrt(p1 q1 + p2 q2))^2 / (p2 - p1)^2,
    pbar = (p1 + p2) / 2: the textbook normal-approximation formula (Fleiss, Levin, Paik, "Statistical
    Methods for Rates and Proportions", 3rd ed.) without continuity correction. Rounded up.
    """
    p1 = base_rate
    p2 = base_rate * (1 + lift)
    pbar = (p1 + p2) / 2
    z_a, z_b = _z(alpha), float(stats.norm.ppf(power))
    num = (z_a * np.sqrt(2 * pbar * (1 - pbar)) + z_b * np.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2
    return int(np.ceil(num / (p2 - p1) ** 2))
