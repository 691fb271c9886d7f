"""Resampling to a target positive rate with weights that restore the natural rate.

Train: with P positives and N negatives (natural rate pi = P / (P + N)) and target rate rho, each positive is
copied c times (`upsample_positives`) and negatives are kept with probability
    q_neg = c P (1 - rho) / (rho N)                      so that  c P / (c P + q_neg N) = rho.
If pi >= rho, positives are downsampled instead: q_pos = rho N / ((1 - rho) P).
Kept rows get weight w = (rows of that class before) / (rows of that class kept, copies included), so that
    sum_i w_i y_i / sum_i w_i = P / (P + N) = pi           (exactly, whatever the random draws).
A model trained at rate rho maps back to pi by the prior correction logit(p_pi) = logit(p_rho)
- logit(rho) + logit(pi) (Elkan, 2001; done in the reward-model stage from manifest.json).

Draws are hashes of (seed, message_id), so sampling is deterministic and identical on every Ibis backend.
"""

from __future__ import annotations

import logging

import ibis

log = logging.getLogger(__name__)

_M = 1_000_000_007


def uniform(key: ibis.StringValue, salt: str) -> ibis.FloatingValue:
    """A deterministic pseudo-uniform draw in [0, 1) per key."""
    h = (ibis.literal(salt + ":") + key).hash()
    return (((h % _M) + _M) % _M).cast("float64") / _M


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


def resample_train(rows: ibis.Table, plan: dict, seed: int) -> ibis.Table:
    """Apply `plan` to the train rows; add `copy` (0..copies-1). Weights come from `weight_train`."""
    u = uniform(rows.message_id, f"train{seed}")
    kept = rows.filter(ibis.ifelse(rows.label, u < plan["pos_keep"], u < plan["neg_keep"]))
    pos, neg = kept.filter(kept.label), kept.filter(~kept.label)
    out = neg.mutate(copy=ibis.literal(0, "int64"))
    for i in range(plan["copies"]):  # c copies of each kept positive
        out = out.union(pos.mutate(copy=ibis.literal(i, "int64")))
    return out


def weight_train(con, rows: ibis.Table, plan: dict) -> ibis.Table:
    """Attach the exact class weights to resampled train rows (one count query)."""
    r = con.execute(rows.agg(p=rows.label.cast("int64").sum(), n=rows.count()))
    kept_pos = int(r["p"][0] or 0)
    kept_neg = int(r["n"][0]) - kept_pos
    w_pos = plan["positives"] / kept_pos if kept_pos else 0.0
    w_neg = plan["negatives"] / kept_neg if kept_neg else 0.0
    return rows.mutate(weight=ibis.ifelse(rows.label, w_pos, w_neg))


def cap_eval(con, rows: ibis.Table, n: int, max_rows: int | None, seed: int) -> ibis.Table:
    """Validation/test keep the natural rate; above `max_rows` they are uniformly subsampled (weight n / kept)."""
    rows = rows.mutate(copy=ibis.literal(0, "int64"))
    if not max_rows or n <= max_rows:
        return rows.mutate(weight=ibis.literal(1.0))
    rows = rows.filter(uniform(rows.message_id, f"eval{seed}") < max_rows / n)
    kept = int(con.execute(rows.count()))
    return rows.mutate(weight=ibis.literal(n / max(kept, 1)))


def summarize(con, rows: ibis.Table) -> dict:
    """rows, positives, rate and weighted rate of a kept split."""
    r = con.execute(
        rows.agg(
            n=rows.count(),
            p=rows.label.cast("int64").sum(),
            w=rows.weight.sum(),
            wp=(rows.weight * rows.label.cast("float64")).sum(),
        )
    )
    n, p = int(r["n"][0]), int(r["p"][0] or 0)
    w, wp = float(r["w"][0] or 0.0), float(r["wp"][0] or 0.0)
    return {"rows": n, "positives": p, "rate": p / n if n else None, "weighted_rate": wp / w if w else None}
