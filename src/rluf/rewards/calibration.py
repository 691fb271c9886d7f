"""Mapping P[Love] from the training rate back to the natural rate, and optional refinement.

The prior correction is Bayes' rule under a change of class prior with the class-conditional
distributions unchanged (Elkan 2001, "The Foundations of Cost-Sensitive Learning", Thm. 2; Saerens,
Latinne & Decaestecker 2002, Eq. 2.4). In logit form:

    z_natural = z - log(pi_train / (1 - pi_train)) + log(pi_natural / (1 - pi_natural))

A constant shift, so it changes no ranking (AUROC is untouched) and cancels in CGPO's calibrated reward
sigmoid(r(x, y) - r(x, y_base)). Refinement (temperature, Platt, isotonic or centred isotonic) is then fitted
on the validation split with the sampling weights, i.e. at the natural rate.

Centred isotonic regression (Oron & Flournoy 2017) bends where a map linear in the logit cannot (P[Love]'s
top scores over-predict) without isotonic's flat steps, which tie scores and cost AUROC: isotonic regression on
equal-mass bins of z (so one lone positive at the top cannot make a block of 1.0), each block of equal fitted
value replaced by one point at its weighted mean z, straight lines in the logit between the points and
Platt's slope beyond the ends. Strictly increasing, so no ranking changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit


def prior_shift(z: np.ndarray, loss_rate: float, natural_rate: float) -> np.ndarray:
    """Bayes prior shift of logits from `loss_rate` to `natural_rate` (see the module docstring)."""
    return np.asarray(z, dtype=np.float64) - logit(loss_rate) + logit(natural_rate)


def _weighted_nll(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.sum(w * (y * np.log(p) + (1 - y) * np.log(1 - p))) / np.sum(w))


def fit_calibration(method: str, z: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, Any]:
    """Fit a map from prior-corrected logits z to probabilities; returns JSON-able parameters."""
    z, y, w = (np.asarray(a, dtype=np.float64) for a in (z, y, w))
    if method == "none" or len(np.unique(y)) < 2:
        return {"method": "none"}
    if method == "temperature":
        # 1-D search over log T keeps T > 0 (Guo et al. 2017, "On Calibration of Modern Neural Networks").
        res = minimize_scalar(lambda s: _weighted_nll(expit(z / np.exp(s)), y, w), bounds=(-4, 4), method="bounded")
        return {"method": "temperature", "temperature": float(np.exp(res.x))}
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6).fit(z[:, None], y, sample_weight=w)
        return {"method": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-6, y_max=1 - 1e-6).fit(z, y, sample_weight=w)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    if method == "centred_isotonic":
        return _fit_centred_isotonic(z, y, w)
    raise ValueError(f"unknown calibration method {method!r}")


def apply_calibration(params: dict[str, Any], z: np.ndarray) -> np.ndarray:
    """Probabilities at the natural rate from prior-corrected logits z and fitted `params`."""
    z = np.asarray(z, dtype=np.float64)
    method = params.get("method", "none")
    if method == "none":
        return expit(z)
    if method == "temperature":
        return expit(z / params["temperature"])
    if method == "platt":
        return expit(params["a"] * z + params["b"])
    if method == "isotonic":
        return np.interp(z, params["x"], params["y"])
    if method == "centred_isotonic":
        x, lz, slope = np.asarray(params["x"]), np.asarray(params["logit"]), params["slope"]
        inside = np.interp(z, x, lz)
        return expit(np.where(z < x[0], lz[0] + slope * (z - x[0]), np.where(z > x[-1], lz[-1] + slope * (z - x[-1]),
                                                                                  inside)))
    raise ValueError(f"unknown calibration method {method!r} in rluf_reward.json")


def _fit_centred_isotonic(z: np.ndarray, y: np.ndarray, w: np.ndarray, max_bins: int = 100) -> dict[str, Any]:
    """Centred isotonic regression on equal-mass bins (see the module docstring); Platt where it has one block."""
    from sklearn.isotonic import IsotonicRegression

    from rluf.rewards.metrics import equal_mass_bins

    platt = fit_calibration("platt", z, y, w)
    order = np.argsort(z, kind="stable")
    z, y, w = z[order], y[order], w[order]
    n_bins = int(min(max_bins, max(2, len(z) // 50)))
    bins = equal_mass_bins(w, n_bins)
    mass = np.bincount(bins, w, n_bins)
    keep = mass > 0
    z_bin = (np.bincount(bins, w * z, n_bins) / np.where(keep, mass, 1))[keep]
    y_bin = (np.bincount(bins, w * y, n_bins) / np.where(keep, mass, 1))[keep]
    fitted = IsotonicRegression().fit(z_bin, y_bin, sample_weight=mass[keep]).predict(z_bin)
    floor = np.sum(w * y) / np.sum(w) / 20  # a block without positives: 1/20 of the rate, not logit(0)
    fitted = np.clip(fitted, floor, 1 - 1e-6)
    # each block of equal fitted value (pooled values computed in different orders may differ in the last bits)
    starts = np.r_[0, np.flatnonzero(~np.isclose(fitted[1:], fitted[:-1], rtol=1e-9, atol=0)) + 1]
    x = np.add.reduceat(mass[keep] * z_bin, starts) / np.add.reduceat(mass[keep], starts)
    if len(x) < 2:
        return platt
    return {"method": "centred_isotonic", "x": x.tolist(), "logit": logit(fitted[starts]).tolist(),
            "slope": max(platt["a"], 0.0)}  # never decreasing beyond the ends, whatever Platt's line did
