import numpy as np
import pytest
from scipy.special import expit, logit

from rluf.rewards.calibration import apply_calibration, fit_calibration, prior_shift


def test_prior_shift_hand_computed():
    # p = 0.5 at a training rate of 0.5 becomes the natural rate itself: 0.5 * 0.1 / (0.5 * 0.1 + 0.5 * 0.9)
    assert expit(prior_shift(np.array([0.0]), 0.5, 0.1))[0] == pytest.approx(0.1)
    # logit 1 at train rate 0.1 to natural 0.001: 1 - log(1/9) + log(1/999)
    assert prior_shift(np.array([1.0]), 0.1, 0.001)[0] == pytest.approx(1 + np.log(9) - np.log(999))


def test_prior_shift_maps_a_known_resampling_exactly():
    """Resampling negatives by a factor k turns p into p' = p / (p + k(1-p)); the shift undoes it."""
    natural, k = 0.001, 0.01  # keep 1% of the negatives
    p_natural = np.array([0.0005, 0.001, 0.02, 0.3])
    p_train = p_natural / (p_natural + k * (1 - p_natural))
    train_rate = natural / (natural + k * (1 - natural))
    back = expit(prior_shift(logit(p_train), train_rate, natural))
    np.testing.assert_allclose(back, p_natural, rtol=1e-10)


def test_prior_shift_identity_when_rates_match():
    z = np.array([-3.0, 0.5])
    np.testing.assert_allclose(prior_shift(z, 0.2, 0.2), z)


def test_temperature_recovers_known_scale():
    rng = np.random.default_rng(0)
    z_true = rng.normal(-2, 2, 20000)
    y = (rng.random(20000) < expit(z_true)).astype(float)
    params = fit_calibration("temperature", 2 * z_true, y, np.ones_like(y))  # overconfident by 2x
    assert params["temperature"] == pytest.approx(2.0, rel=0.08)


def test_platt_and_isotonic_are_monotone_probabilities():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1, 2000)
    y = (rng.random(2000) < expit(z - 1)).astype(float)
    w = np.ones_like(y)
    for method in ("platt", "isotonic"):
        params = fit_calibration(method, z, y, w)
        grid = np.linspace(-3, 3, 50)
        p = apply_calibration(params, grid)
        assert np.all(np.diff(p) >= -1e-12) and p.min() > 0 and p.max() < 1
    params = fit_calibration("platt", z, y, w)
    assert params["a"] == pytest.approx(1.0, abs=0.2) and params["b"] == pytest.approx(-1.0, abs=0.2)


def test_none_is_plain_sigmoid():
    z = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(apply_calibration(fit_calibration("none", z, [0, 1, 1], [1, 1, 1]), z), expit(z))


def test_refinement_skipped_with_too_few_validation_positives(tmp_path):
    from rluf.rewards import RewardConfig
    from rluf.rewards.data import LoveSplit
    from rluf.rewards.love import calibrate

    y = np.r_[np.ones(3), np.zeros(97)]
    val = LoveSplit([[]] * 100, ["r"] * 100, y, np.ones(100), [str(i) for i in range(100)], tmp_path)
    z = np.linspace(-5, 0, 100)
    out = calibrate(z, val, RewardConfig())  # default: temperature, min_positives 10
    assert out["params"] == {"method": "none", "skipped": "3 validation positives"}
    assert out["validation_after"]["log_loss"] == pytest.approx(out["validation_before"]["log_loss"])
    cfg = RewardConfig.model_validate({"calibration": {"min_positives": 2}})
    assert calibrate(z, val, cfg)["params"]["method"] == "temperature"


def test_centred_isotonic_bends_where_platt_cannot_and_keeps_every_ranking():
    """Scores too steep at the top (the true logit is z/2 above 0, z below): centred isotonic follows the bend,
    Platt's single line cannot; the map is strictly increasing, so the AUROC is the scores' own."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    z = rng.normal(-3, 2, 60000)
    true_p = expit(np.where(z > 0, z / 2, z))
    y = (rng.random(len(z)) < true_p).astype(float)
    w = np.ones_like(z)
    cir, platt = fit_calibration("centred_isotonic", z, y, w), fit_calibration("platt", z, y, w)
    assert cir["method"] == "centred_isotonic" and len(cir["x"]) >= 5
    grid = np.linspace(-12, 8, 400)  # beyond the fitted points too: Platt's slope carries on
    assert np.all(np.diff(apply_calibration(cir, grid)) > 0)
    z_new = rng.normal(-3, 2, 20000)
    p_true = expit(np.where(z_new > 0, z_new / 2, z_new))
    err = {name: np.mean(np.abs(apply_calibration(prm, z_new) - p_true)) for name, prm in
           (("cir", cir), ("platt", platt))}
    assert err["cir"] < 0.7 * err["platt"]  # measured 0.0043 against 0.0079
    y_new = (rng.random(len(z_new)) < p_true).astype(float)
    assert roc_auc_score(y_new, apply_calibration(cir, z_new)) == pytest.approx(roc_auc_score(y_new, z_new), abs=1e-12)


def test_centred_isotonic_one_block_falls_back_to_platt():
    z = np.linspace(-2, 2, 200)
    y = np.r_[np.ones(100), np.zeros(100)]  # decreasing in z: isotonic pools everything into one block
    assert fit_calibration("centred_isotonic", z, y, np.ones(200))["method"] == "platt"
