"""Resampling to a target positive rate with weights that restore the natural rate.

Train: with P positives and N negatives (natural rate pi = P / (P + N)) and target rate rho, each positive is
copied c times (`upsample_positives`) and negatives are kept with probability
    q_neg = c P (1 - rho) / (rho N)                      so that  c P / (c P + q_neg N) = rho.
If pi >= rho, positives are downsampled instead: q_pos = rho N / ((1 - rho) P).
Kept rows get weight w = (rows of that class before) / (rows of that class kept, copies included), so that
    sum_i w_i y_i / sum_i w_i = P / (P + N) = pi           (exactly, whatever the random draws).
The weights are computed by `rluf.signals.curate` after the kept rows are de-duplicated, so the identity holds
for the rows written (P and N are counted before de-duplication, which runs on the kept rows only).
A model trained at rate rho maps back to pi by the prior correction logit(p_pi) = logit(p_rho)
- logit(rho) + logit(pi) (Elkan, 2001; done in the reward-model stage from manifest.json).

Draws are hashes of (seed, message_id), so sampling is deterministic on every Ibis backend. With
`sample.hash: native` (the default, fastest) the hash is the backend's own, which differs between backends, so
the rows drawn differ, equally validly; with `sample.hash: md5` every backend draws the same rows (MD5 is the
same everywhere), at the price of an MD5 per drawn row.
"""

from __future__ import annotations

import logging

import ibis

from rluf.signals.engine import raw_hash

log = logging.getLogger(__name__)

_M = 1_000_000_007


def uniform(key: ibis.StringValue, salt: str) -> ibis.FloatingValue:
    """A deterministic pseudo-uniform draw in [0, 1) per key (the backend's own hash)."""
    h = raw_hash(ibis.literal(salt + ":") + key)
    return (((h % _M) + _M) % _M).cast("float64") / _M


def draw(key: ibis.StringValue, salt: str, how: str = "native") -> ibis.Value:
    """A deterministic draw per key, to compare with `threshold(q, how)`: `draw < threshold` has probability q.

    "native": `uniform` (a float). "md5": the 32 hex digits of MD5(salt:key), a string whose first 12 digits,
    read as a fraction of 16^12, are the uniform; compared as strings (lower-case hex sorts as numbers do), so
    no backend-specific hex-to-integer cast is needed and every backend with MD5 draws the same rows.
    """
    if how == "md5":
        return (ibis.literal(salt + ":") + key).hexdigest("md5")
    return uniform(key, salt)


def threshold(q: float, how: str = "native") -> float | str:
    """The value `draw(..., how)` is compared with for keep probability q in [0, 1]."""
    if how == "md5":
        return format(min(int(q * 16**12), 16**12 - 1), "012x") if q < 1 else "g"  # "g" sorts after all hex
    return q


def plan_train(n_neg: int, n_pos: int, target_rate: float, copies: int = 1) -> dict:
    """Keep probabilities and copies that bring the train split to `target_rate` (see module docstring)."""
    natural = n_pos / (n_pos + n_neg)
    if natural < target_rate:
        q_neg = copies * n_pos * (1 - target_rate) / (target_rate * n_neg)
        plan = {"pos_keep": 1.0, "copies": copies, "neg_keep": min(1.0, q_neg)}
        if q_neg > 1:
            log.warning(
                "upsample_positives=%d alone pushes the positive rate above target %.3f; keeping all negatives",
                copies, target_rate,
            )
    else:
        log.warning("natural rate %.4f is already >= target %.4f: downsampling positives", natural, target_rate)
        plan = {"pos_keep": target_rate * n_neg / ((1 - target_rate) * n_pos), "copies": 1, "neg_keep": 1.0}
    return {**plan, "natural_rate": natural, "target_rate": target_rate, "positives": n_pos, "negatives": n_neg}
