import numpy as np
import pytest

from rluf.rewards.metrics import binary_metrics, expected_calibration_error, pairwise_accuracy


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
