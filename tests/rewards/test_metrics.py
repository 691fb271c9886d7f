import numpy as np
import pytest

from rluf.rewards.metrics import (
    binary_metrics,
    expected_calibration_error,
    expected_metrics,
    length_slope_ratio,
    pairwise_accuracy,
    pearson,
)


def test_ece_hand_computed_two_bins():
    # sorted p: [0.1, 0.2 | 0.6, 0.8]; bin 1 mean p 0.15 vs y 0.5; bin 2 mean p 0.7 vs y 0.5
    y = np.array([1, 0, 1, 0], float)
    p = np.array([0.1, 0.2, 0.6, 0.8])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.2)


def test_ece_weighted_equals_duplicated_rows():
    y = np.array([0, 1, 0, 1], float)
    p = np.array([0.1, 0.3, 0.5, 0.7])
    w = np.array([3, 1, 1, 1], float)
    yd, pd_ = np.r_[0, 0, y], np.r_[0.1, 0.1, p]
    assert expected_calibration_error(y, p, w, n_bins=2) == pytest.approx(
        expected_calibration_error(yd, pd_, n_bins=2))  # bin edges fall between rows


def test_binary_metrics_hand_computed():
    y = np.array([0, 0, 1, 1], float)
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = binary_metrics(y, p, n_bins=2)
    assert m["auroc"] == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ordered
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m["observed_rate"] == 0.5 and m["mean_pred"] == pytest.approx(0.4125)
    assert m["mean_pred_over_observed"] == pytest.approx(0.825)
    assert m["ece_relative"] == pytest.approx(m["ece"] / 0.5)


def test_weights_make_the_natural_rate():
    y = np.array([1, 0], float)
    m = binary_metrics(y, np.array([0.01, 0.01]), np.array([1.0, 99.0]))
    assert m["observed_rate"] == pytest.approx(0.01)
    assert m["mean_pred_over_observed"] == pytest.approx(1.0)


def test_pairwise_accuracy_counts_ties_half():
    assert pairwise_accuracy([1, 2, 3, 0], [0, 2, 4, -1]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)


def test_expected_metrics_hand_computed():
    # two rows: true p 0.2 and 0.6; the model ranks them correctly. Positive mass 0.2 and 0.6, negative mass
    # 0.8 and 0.4: ordered pairs 0.6 * 0.8, tied pairs (same row) 0.2 * 0.8 + 0.6 * 0.4 count half
    t, p = np.array([0.2, 0.6]), np.array([0.1, 0.9])
    m = expected_metrics(t, p, n_bins=2)
    assert m["auroc"] == pytest.approx((0.6 * 0.8 + 0.5 * (0.2 * 0.8 + 0.6 * 0.4)) / (0.8 * 1.2))
    assert m["expected_rate"] == pytest.approx(0.4) and m["mean_pred_over_expected"] == pytest.approx(1.25)
    assert m["ece"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.3) and m["ece_relative"] == pytest.approx(0.2 / 0.4)


def test_expected_auroc_is_the_mean_over_label_draws():
    """Against soft labels the AUROC is what labelled AUROCs average to (the numerator and denominator are
    expectations, so the ratio matches closely when there are many rows)."""
    rng = np.random.default_rng(0)
    t = rng.beta(0.5, 5, 400)
    score = np.clip(t + rng.normal(0, 0.1, 400), 0, 1)  # a probability: binary_metrics also scores Brier
    w = rng.uniform(0.5, 2, 400)
    draws = [binary_metrics(rng.random(400) < t, score, w)["auroc"] for _ in range(400)]
    assert expected_metrics(t, score, w)["auroc"] == pytest.approx(np.mean(draws), abs=0.003)
    assert np.std(draws) > 0.01  # what the soft labels take away


def test_length_slope_ratio_is_one_for_the_conditional_mean_whose_r_is_larger():
    # truth: p depends on length and on a hidden feature; the model knows length only: p_hat = E[p | length]
    length = np.repeat(np.arange(10, 60), 400).astype(float)
    hidden = np.tile([0.0, 1.0], 10_000)  # half of each length has it
    true_p = 0.001 + 0.00002 * length + 0.004 * hidden
    p_hat = 0.001 + 0.00002 * length + 0.004 * 0.5
    assert length_slope_ratio(p_hat, true_p, length) == pytest.approx(1.0)
    assert pearson(p_hat, length) > pearson(true_p, length) + 0.5  # r alone would call it length-biased
    assert length_slope_ratio(p_hat + 0.00002 * length, true_p, length) == pytest.approx(2.0)


def test_length_slope_ratio_weighted_equals_duplicated_rows():
    p, t, n = np.array([0.1, 0.3, 0.2, 0.6]), np.array([0.2, 0.1, 0.4, 0.5]), np.array([5.0, 9.0, 12.0, 20.0])
    w = np.array([2, 1, 1, 1], float)
    dup = np.r_[0, np.arange(4)]
    assert length_slope_ratio(p, t, n, w) == pytest.approx(length_slope_ratio(p[dup], t[dup], n[dup]))
