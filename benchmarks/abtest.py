"""Benchmark of stage 5 (`rluf abtest`): are the CIs honest, is the sample size right, how fast is analyze?

1. Coverage: seeded synthetic experiments with heavy-tailed users (per-user Love propensity ~ Gamma, many
   responses per user). Share of 95% CIs covering the true lift for the user-clustered delta method, the
   user bootstrap and the plain per-response interval; false-positive rate in A/A experiments.
2. Power: at the paper's numbers (0.1% base rate, +28%), the computed responses per arm, and the
   empirical power of the plain z-test at that size over seeded experiments.
3. Speed: `rluf.abtest.analyze` (DuckDB aggregation + 2000 bootstrap replicates) on canonical logs with
   1M assistant messages.

Run: .venv/bin/python benchmarks/abtest.py [--quick]. With --write, writes benchmarks/results/abtest.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rluf.abtest import AnalyzeConfig, analyze, power
from rluf.abtest.stats import (
    confint_ratio,
    delta_compare,
    ratio_of_means,
    two_proportion_ztest,
    user_bootstrap,
)
from rluf.schema import MESSAGES, REACTIONS
from rluf.utils import peak_rss_mb, write_json

RESULTS = Path(__file__).parent / "results" / "abtest.json"


def users(rng, n_users: int, rate: float, mean_responses: float = 15.0, shape: float = 0.3):
    n = 1 + rng.poisson(mean_responses - 1, n_users)
    p = np.clip(rate * rng.gamma(shape, 1 / shape, n_users), 0, 1)
    return rng.binomial(n, p), n


def coverage(reps: int, boot_every: int, n_users: int, rate: float, lift: float, seed: int = 0) -> dict:
    """Share of 95% CIs covering `lift` (and, for lift = 0, the false-positive rate of each test)."""
    rng = np.random.default_rng(seed)
    hit = {"delta": 0, "plain": 0, "bootstrap": 0}
    reject = {"delta": 0, "plain": 0}
    n_boot = 0
    for i in range(reps):
        y_c, n_c = users(rng, n_users, rate)
        y_t, n_t = users(rng, n_users, rate * (1 + lift))
        d = delta_compare(ratio_of_means(y_t, n_t), ratio_of_means(y_c, n_c))
        hit["delta"] += d["lift_ci"][0] <= lift <= d["lift_ci"][1]
        lo, hi = confint_ratio(y_t.sum(), n_t.sum(), y_c.sum(), n_c.sum())
        hit["plain"] += lo - 1 <= lift <= hi - 1
        reject["delta"] += d["p_value"] < 0.05
        reject["plain"] += two_proportion_ztest(y_t.sum(), n_t.sum(), y_c.sum(), n_c.sum())[1] < 0.05
        if i % boot_every == 0:
            b = user_bootstrap(y_t, n_t, y_c, n_c, reps=1000, seed=i)
            hit["bootstrap"] += b["lift_ci"][0] <= lift <= b["lift_ci"][1]
            n_boot += 1
    out = {f"coverage_{k}": v / (n_boot if k == "bootstrap" else reps) for k, v in hit.items()}
    out.update({f"reject_rate_{k}": v / reps for k, v in reject.items()}, experiments=reps,
               bootstrap_experiments=n_boot, users_per_arm=n_users, base_rate=rate, lift=lift)
    return out


def empirical_power(reps: int, base_rate: float, lift: float, seed: int = 1) -> dict:
    n = power(base_rate, lift)["responses_per_arm"]
    rng = np.random.default_rng(seed)
    c = rng.binomial(n, base_rate, reps)
    t = rng.binomial(n, base_rate * (1 + lift), reps)
    p = np.array([two_proportion_ztest(int(a), n, int(b), n)[1] for a, b in zip(t, c, strict=True)])
    return {"responses_per_arm": n, "empirical_power": float((p < 0.05).mean()), "experiments": reps}


def write_big_logs(out: Path, n_users: int, per_user: int, seed: int = 0) -> int:
    """Canonical logs with n_users * per_user assistant messages (one-turn conversations), two arms."""
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    user = np.repeat(np.arange(n_users), per_user)
    arm = np.where(user % 2 == 0, "A", "B")
    prop = 0.001 * rng.gamma(0.5, 2.0, n_users)[user] * np.where(arm == "B", 1.28, 1.0)
    loved = np.flatnonzero(rng.random(n) < prop)
    ids = pa.array(np.char.add("m", np.arange(n).astype(str)))
    uid = pa.array(np.char.add("u", user.astype(str)))
    ts = pa.array(np.full(n, 1_750_000_000_000_000, dtype="int64")).cast(pa.timestamp("us", tz="UTC"))
    msgs = pa.table({"conversation_id": ids, "message_id": ids, "parent_id": pa.nulls(n, pa.string()),
                     "turn_index": pa.array(np.ones(n, dtype=np.int32)), "role": pa.array(np.full(n, "assistant")),
                     "text": pa.array(np.full(n, "hi")), "created_at": ts, "user_id": uid, "model_id": pa.array(arm)},
                    schema=MESSAGES)
    reacts = pa.table({"message_id": ids.take(pa.array(loved)), "type": pa.array(np.full(len(loved), "love")),
                       "user_id": uid.take(pa.array(loved)), "created_at": ts.take(pa.array(loved)),
                       "time_is_click": pa.nulls(len(loved), pa.bool_())}, schema=REACTIONS)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(msgs, out / "messages.parquet")
    pq.write_table(reacts, out / "reactions.parquet")
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer experiments and a 100k-message log")
    ap.add_argument("--write", action="store_true", help=f"write the results to {RESULTS}")
    args = ap.parse_args()
    res: dict = {"quick": args.quick, "note": "measured on 2 CPU cores shared with other jobs (under load)"}

    t0 = time.perf_counter()
    res["coverage"] = coverage(200 if args.quick else 1000, 10, 1500, 0.01, 0.28)
    res["aa"] = coverage(200 if args.quick else 1000, 10 ** 9, 1500, 0.01, 0.0, seed=7)
    res["coverage_s"] = time.perf_counter() - t0
    res["power"] = empirical_power(500 if args.quick else 2000, 0.001, 0.28)

    with tempfile.TemporaryDirectory() as tmp:
        n = write_big_logs(Path(tmp), 20_000 if args.quick else 50_000, 5 if args.quick else 20)
        t1 = time.perf_counter()
        a = analyze(tmp, "A", "B", config=AnalyzeConfig(bootstrap_reps=2000))
        dt = time.perf_counter() - t1
    res["analyze"] = {"assistant_messages": n, "users": a["control"]["users"] + a["treatment"]["users"],
                      "seconds": dt, "messages_per_s": n / dt, "lift": a["lift"],
                      "lift_ci_delta": a["delta"]["lift_ci"],
                      "lift_ci_bootstrap": a["bootstrap"]["lift_ci"], "design_effect": a["design_effect"]}
    res["peak_rss_mb"] = peak_rss_mb()
    c, aa, p, an = res["coverage"], res["aa"], res["power"], res["analyze"]
    print(f"95% CI coverage of the true lift (+28%, {c['experiments']} experiments, heavy-tailed users): "
          f"delta {c['coverage_delta']:.3f}, bootstrap {c['coverage_bootstrap']:.3f} "
          f"({c['bootstrap_experiments']} exps), plain per-response {c['coverage_plain']:.3f}")
    print(f"A/A false-positive rate at alpha 0.05: delta {aa['reject_rate_delta']:.3f}, "
          f"plain {aa['reject_rate_plain']:.3f}")
    print(f"power: {p['responses_per_arm']:,} responses per arm -> empirical power {p['empirical_power']:.3f} "
          f"({p['experiments']} experiments)")
    print(f"analyze: {an['assistant_messages']:,} messages, {an['users']:,} users in {an['seconds']:.2f}s "
          f"({an['messages_per_s']:,.0f} msg/s, incl. 2000 bootstrap reps); peak RSS {res['peak_rss_mb']:.0f} MB")
    if args.write:
        write_json(RESULTS, res)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
