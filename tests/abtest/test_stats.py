import numpy as np
import pytest
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from rluf.abtest.stats import (
    confint_diff,
    confint_ratio,
    delta_compare,
    ratio_of_means,
    sample_size_per_arm,
    two_proportion_ztest,
    user_bootstrap,
    wilson_interval,
)
from rluf.errors import ConfigError

from .conftest import user_counts

CASES = [(13, 10_000, 9, 10_000), (120, 95_000, 101, 100_000), (1, 50, 7, 60), (450, 1000, 300, 900), (0, 300, 4, 250)]


@pytest.mark.parametrize("c1,n1,c2,n2", CASES)
def test_ztest_matches_statsmodels(c1, n1, c2, n2):
    z, p = two_proportion_ztest(c1, n1, c2, n2)
    z_sm, p_sm = proportions_ztest([c1, c2], [n1, n2])
    assert z == pytest.approx(z_sm, abs=1e-9) and p == pytest.approx(p_sm, abs=1e-9)


@pytest.mark.parametrize("c1,n1,c2,n2", CASES)
@pytest.mark.parametrize("method", ["newcomb", "wald"])
def test_diff_ci_matches_statsmodels(c1, n1, c2, n2, method):
    ours = confint_diff(c1, n1, c2, n2, alpha=0.05, method=method)
    ref = confint_proportions_2indep(c1, n1, c2, n2, method=method, compare="diff", alpha=0.05)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("c1,n1,c2,n2", [c for c in CASES if c[0] > 0])
@pytest.mark.parametrize("method", ["log-adjusted", "log"])
def test_ratio_ci_matches_statsmodels(c1, n1, c2, n2, method):
    ours = confint_ratio(c1, n1, c2, n2, alpha=0.1, method=method)
    ref = confint_proportions_2indep(c1, n1, c2, n2, method=method, compare="ratio", alpha=0.1)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-9)


def test_default_methods_are_statsmodels_defaults():
    ref_diff = confint_proportions_2indep(30, 1000, 20, 1000)  # default: newcomb for compare='diff'
    ref_ratio = confint_proportions_2indep(30, 1000, 20, 1000, compare="ratio")  # default: log-adjusted
    np.testing.assert_allclose(confint_diff(30, 1000, 20, 1000), ref_diff, atol=1e-12)
    np.testing.assert_allclose(confint_ratio(30, 1000, 20, 1000), ref_ratio, atol=1e-12)


def test_wilson_matches_statsmodels():
    np.testing.assert_allclose(wilson_interval(7, 90, 0.05), proportion_confint(7, 90, 0.05, "wilson"), atol=1e-12)


def test_unknown_ci_method_is_clear():
    with pytest.raises(ConfigError, match=r"'score'.*choose one of \['newcomb', 'wald'\]"):
        confint_diff(1, 10, 2, 10, method="score")
    with pytest.raises(ConfigError, match=r"ratio CI method 'koopman'"):
        confint_ratio(1, 10, 2, 10, method="koopman")


def test_ratio_of_means_by_hand():
    # r = 3/10; residuals y - r n = [0.4, -0.9, 0.5]; s^2 = 1.22/2 = 0.61; N nbar^2 = 3 (10/3)^2 = 100/3
    s = ratio_of_means(np.array([1, 0, 2]), np.array([2, 3, 5]))
    assert (s.users, s.responses, s.events) == (3, 10, 3)
    assert s.rate == pytest.approx(0.3) and s.var == pytest.approx(0.61 * 3 / 100, rel=1e-12)


def test_delta_compare_by_hand():
    from rluf.abtest.stats import ArmStats

    t = ArmStats(users=3, responses=10, events=3, rate=0.3, var=0.0183)
    c = ArmStats(users=4, responses=20, events=4, rate=0.2, var=0.01)
    d = delta_compare(t, c, alpha=0.05)
    z = 1.959963984540054
    assert d["diff"] == pytest.approx(0.1)
    assert d["diff_ci"][1] - d["diff"] == pytest.approx(z * np.sqrt(0.0283))
    # var(lift) = V_t / r_c^2 + r_t^2 V_c / r_c^4 = 0.0183/0.04 + 0.09*0.01/0.0016 = 0.4575 + 0.5625
    assert d["lift"] == pytest.approx(0.5)
    assert d["lift_se"] == pytest.approx(np.sqrt(1.02))
    assert d["p_value"] == pytest.approx(2 * (1 - 0.5 * (1 + __import__("math").erf(0.1 / np.sqrt(0.0283) / 2**0.5))))


def test_one_response_per_user_reduces_to_wald():
    # with n_i = 1 the clustered variance is the Bernoulli variance times N/(N-1) (sample variance, ddof=1)
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.1).astype(float)
    s = ratio_of_means(y, np.ones(500))
    assert s.var == pytest.approx(s.rate * (1 - s.rate) / 500 * 500 / 499, rel=1e-12)


def test_delta_and_bootstrap_agree_and_cover():
    rng = np.random.default_rng(7)
    y_c, n_c = user_counts(rng, 3000, 0.02)
    y_t, n_t = user_counts(rng, 3000, 0.02 * 1.3)
    d = delta_compare(ratio_of_means(y_t, n_t), ratio_of_means(y_c, n_c))
    b = user_bootstrap(y_t, n_t, y_c, n_c, reps=1000, seed=0)
    assert b["lift_se"] == pytest.approx(d["lift_se"], rel=0.15)
    assert b["diff_ci"][0] == pytest.approx(d["diff_ci"][0], abs=0.25 * (d["diff_ci"][1] - d["diff_ci"][0]))
    assert d["lift_ci"][0] < 0.3 < d["lift_ci"][1]


def test_clustered_ci_covers_true_lift_in_seeded_simulation():
    # 200 seeded experiments with heavy-tailed users: the clustered 95% CI should cover the true lift about
    # 95% of the time; the per-response (plain) interval, which ignores users, covers far less often.
    rng = np.random.default_rng(2026)
    true_lift, cover, cover_plain = 0.3, 0, 0
    for _ in range(200):
        y_c, n_c = user_counts(rng, 600, 0.03, mean_responses=15, shape=0.3)
        y_t, n_t = user_counts(rng, 600, 0.03 * (1 + true_lift), mean_responses=15, shape=0.3)
        d = delta_compare(ratio_of_means(y_t, n_t), ratio_of_means(y_c, n_c))
        cover += d["lift_ci"][0] <= true_lift <= d["lift_ci"][1]
        lo, hi = confint_ratio(y_t.sum(), n_t.sum(), y_c.sum(), n_c.sum())
        cover_plain += lo - 1 <= true_lift <= hi - 1
    assert 0.90 <= cover / 200 <= 0.99
    assert cover_plain / 200 < cover / 200 - 0.1


def test_sample_size_by_hand():
    # p1 = 0.001, p2 = 0.00128, pbar = 0.00114; (1.95996 sqrt(2 pbar qbar) + 0.84162 sqrt(p1q1 + p2q2))^2 / 0.00028^2
    p1, p2, pbar = 0.001, 0.00128, 0.00114
    za, zb = 1.959963984540054, 0.8416212335729143
    n = (za * np.sqrt(2 * pbar * (1 - pbar)) + zb * np.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / 0.00028**2
    assert n == pytest.approx(227996.84, abs=0.01)
    assert sample_size_per_arm(0.001, 0.28) == 227997
    assert sample_size_per_arm(0.001, 0.28, power=0.9) > 227997


def test_no_lift_interval_when_treatment_has_no_events():
    from rluf.abtest.stats import ArmStats, small_sample_warnings

    t = ArmStats(users=50, responses=400, events=0, rate=0.0, var=0.0)
    c = ArmStats(users=50, responses=400, events=6, rate=0.015, var=4e-5)
    d = delta_compare(t, c)
    assert d["lift"] == pytest.approx(-1.0) and d["lift_ci"] == [None, None]
    assert d["p_value"] == pytest.approx(2 * (1 - 0.5 * (1 + __import__("math").erf(0.015 / np.sqrt(4e-5) / 2**0.5))))
    w = small_sample_warnings(t, c, ("B", "A"))
    assert len(w) == 2 and "arm 'B' has only 0 event(s) (< 10)" in w[0]
