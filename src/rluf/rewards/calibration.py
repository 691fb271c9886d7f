"""Mapping P[Love] from the training rate back to the natural rate, and optional refinement.

The prior correction is Bayes' rule under a change of class prior with the class-conditional
distributions unchanged (Elkan 2001, "The Foundations of Cost-Sensitive Learning", Thm. 2; Saerens,
Latinne & Decaestecker 2002, Eq. 2.4). In logit form:

    z_natural = z - log(pi_train / (1 - pi_train)) + log(pi_natural / (1 - pi_natural))

A constant shift, so it changes no ranking (AUROC is untouched) and cancels in CGPO's calibrated reward
sigmoid(r(x, y) - r(x, y_base)). Refinement (temperature, Platt or isotonic) is then fitted on the
validation split with the sampling weights, i.e. at the natural rate.
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
    raise ValueError(f"unknown calibration method {method!r} in rluf_reward.json")
