"""Resampling to a target positive rate with weights that restore the natural rate.

Train: with P positives and N negatives (natural rate pi = P / (P + N)) and target rate rho, each positive is
copied c times (`upsample_positives`) and negatives are kept with probability
    q_neg = c P (1 - rho) / (rho N)                      so that  c P / (c P + q_neg N) = rho.
Resampling only raises a rare class: if pi >= rho, or with `target_rate: natural`, nothing is resampled and
train keeps its natural rate (positives are never discarded to reach a lower target).
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
from dataclasses import dataclass, field

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


SPLITS = ("train", "validation", "test")


@dataclass
class ResamplePlan:
    """What resampling keeps: a keep probability per (split, label), copies per train positive, and the train
    counts it was planned from (P positives, N negatives before resampling, natural rate P / (P + N))."""

    positives: int
    negatives: int
    target_rate: float | str
    copies: int = 1
    keep: dict[tuple[str, bool], float] = field(default_factory=lambda: {(s, y): 1.0 for s in SPLITS
                                                                          for y in (True, False)})
    note: str | None = None  # why train keeps its natural rate, when it does

    @property
    def natural_rate(self) -> float:
        return self.positives / (self.positives + self.negatives)

    def keeps_all(self, label: bool) -> bool:
        return all(self.keep[(s, label)] >= 1 for s in SPLITS)

    def as_manifest(self) -> dict:
        """`counts.resample.plan` of the manifest: train `pos_keep` / `neg_keep`, `{split}_pos_keep` /
        `{split}_neg_keep` for validation and test, copies, P, N, natural and target rate."""
        out = {"pos_keep": self.keep[("train", True)], "neg_keep": self.keep[("train", False)],
               "copies": self.copies, "natural_rate": self.natural_rate, "target_rate": self.target_rate,
               "positives": self.positives, "negatives": self.negatives}
        for s in SPLITS[1:]:
            out |= {f"{s}_pos_keep": self.keep[(s, True)], f"{s}_neg_keep": self.keep[(s, False)]}
        return out


def plan_train(n_neg: int, n_pos: int, target_rate: float | str, copies: int = 1) -> ResamplePlan:
    """Keep probabilities and copies that bring the train split to `target_rate` (see module docstring);
    validation and test keep every row until `plan_eval` caps them."""
    plan = ResamplePlan(positives=n_pos, negatives=n_neg, target_rate=target_rate)
    natural = plan.natural_rate
    if target_rate == "natural":
        plan.note = "target_rate natural: train keeps its natural rate (no resampling)"
    elif natural >= target_rate:
        plan.note = (f"natural rate {natural:.4f} is already >= target {target_rate:.4f}: train keeps its natural "
                     f"rate (all {n_pos} positives and {n_neg} negatives; resampling never discards positives)")
        log.warning("%s", plan.note)
    else:
        q_neg = copies * n_pos * (1 - target_rate) / (target_rate * n_neg)
        plan.copies, plan.keep[("train", False)] = copies, min(1.0, q_neg)
        if q_neg > 1:
            log.warning(
                "upsample_positives=%d alone pushes the positive rate above target %.3f; keeping all negatives",
                copies, target_rate,
            )
    return plan


def plan_eval(plan: ResamplePlan, by_split: dict[str, tuple[int, int]], max_rows: int | None,
              max_negatives: int | None) -> None:
    """Validation/test keep probabilities per class (`by_split`: split -> (rows, positives)): every positive
    and at most ~`max_negatives` negatives (q_neg = max_negatives / negatives), both classes at max_rows / n
    above `max_rows`."""
    for s in SPLITS[1:]:
        n, p = by_split[s]
        q = 1.0 if not max_rows or n <= max_rows else max_rows / n
        q_neg = q if not max_negatives or n - p <= max_negatives else min(q, max_negatives / (n - p))
        plan.keep[(s, True)], plan.keep[(s, False)] = q, q_neg
