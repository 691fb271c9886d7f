import numpy as np
import pytest

from rluf.evaluate.ranking import bootstrap_prompt_means, correlation, paired_differences, rank_policies


def test_bootstrap_means_shape_and_identity():
    S = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    boot = bootstrap_prompt_means(S, reps=50, seed=0)
    assert boot.shape == (50, 2)
    assert np.all(boot[:, 1] == 0.0) and np.all((boot[:, 0] >= 1.0) & (boot[:, 0] <= 3.0))


def test_rank_policies_by_hand():
    # policy b beats a on every prompt, c is worst everywhere: ranks are certain in every replicate
    S = np.array([[0.2, 0.4, 0.3, 0.5], [0.3, 0.5, 0.4, 0.6], [0.0, 0.1, 0.0, 0.1]])
    out = rank_policies(S, ["a", "b", "c"], reps=300, seed=1)
    assert [r["policy"] for r in out] == ["b", "a", "c"]
    assert out[0]["mean"] == pytest.approx(0.45) and out[1]["mean"] == pytest.approx(0.35)
    assert out[0]["p_best"] == 1.0 and out[1]["p_best"] == 0.0
    assert out[1]["rank_ci"] == [2, 2]
    lo, hi = out[0]["ci"]
    assert 0.3 <= lo <= 0.45 <= hi <= 0.6


def test_rank_lower_is_better_and_no_bootstrap():
    S = np.array([[1.0, 1.0], [2.0, 2.0]])
    out = rank_policies(S, ["a", "b"], reps=0, higher_is_better=False)
    assert [r["policy"] for r in out] == ["a", "b"] and "ci" not in out[0]


def test_paired_differences_cancel_prompt_difficulty():
    # b = a + 0.01 on every prompt while prompts vary widely: the paired CI is exactly [0.01, 0.01]
    a = np.array([0.1, 0.9, 0.5, 0.3, 0.7])
    out = paired_differences(np.stack([a, a + 0.01]), ["a", "b"], 0, reps=200, alpha=0.05, seed=0)
    assert list(out) == ["b"]
    assert out["b"]["diff"] == pytest.approx(0.01)
    np.testing.assert_allclose(out["b"]["ci"], [0.01, 0.01], atol=1e-12)


def test_correlation_by_hand_and_degenerate():
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 5.0, 4.0])
    c = correlation(x, y)
    # Pearson: cov = 2.5/3... computed from centred vectors x-2.5 = [-1.5,-.5,.5,1.5], y-3.75 = [-1.75,.25,1.25,.25]
    num = (-1.5 * -1.75) + (-0.5 * 0.25) + (0.5 * 1.25) + (1.5 * 0.25)
    den = np.sqrt((1.5**2 * 2 + 0.5**2 * 2) * (1.75**2 + 0.25**2 * 2 + 1.25**2))
    assert c["pearson"] == pytest.approx(num / den) and c["n"] == 4
    # Spearman: ranks y = [1, 2.5, 4, 2.5]
    assert c["spearman"] == pytest.approx(np.corrcoef([1, 2, 3, 4], [1, 2.5, 4, 2.5])[0, 1])
    assert correlation(x, np.ones(4))["pearson"] is None
