"""The rate filter's beta-binomial test, on hand-made per-user counts; the spam filter's key count."""

import ibis
import numpy as np
import pyarrow as pa
from scipy.stats import betabinom, binom

from rluf.signals.engine import connect
from rluf.signals.filters import (
    betabinom_logpmf,
    betabinomial_flags,
    betabinomial_thresholds,
    repeated_keys,
    robust_z_flags,
)


def population(seed=0, normal=3000, spammers=30):
    """(user_id, type, c, n, x) for keen and reserved normal users and short-lived spammers.

    Normal users: like rates spread widely (logit sd 1.2 around 7%), Love at about 0.1%. Spammers: 6 messages
    each, 3 loves and 3 likes: too few reactions for a z-score floor of 5, implausible counts all the same.
    """
    rng = np.random.default_rng(seed)
    n = rng.integers(5, 60, normal)
    p_like = 1 / (1 + np.exp(-(np.log(0.07 / 0.93) + rng.normal(0, 1.2, normal))))
    like = rng.binomial(n, p_like)
    love = rng.binomial(n, 0.001 * np.exp(rng.normal(0, 0.3, normal)))
    users = [f"u{i}" for i in range(normal)] + [f"spam{i}" for i in range(spammers)]
    n = np.r_[n, np.full(spammers, 6)]
    like, love = np.r_[like, np.full(spammers, 3)], np.r_[love, np.full(spammers, 3)]
    rows = {"user_id": users * 2, "type": ["like"] * len(users) + ["love"] * len(users),
            "c": np.r_[like, love], "n": np.r_[n, n]}
    rows["x"] = rows["c"] / rows["n"]
    return ibis.memtable(pa.table(rows)), {u for u in users if u.startswith("spam")}


def flagged(con, expr):
    return set(con.to_pyarrow(expr).column("user_id").to_pylist())


def test_betabinomial_flags_small_count_spammers_and_no_keen_user():
    con = connect()
    g, spammers = population()
    bb = flagged(con, betabinomial_flags(con, g, alpha=0.01, trim=0.05))
    assert spammers <= bb
    # The trimmed first fit is narrower than the real spread: the two normal users flagged are extreme (28 likes
    # in 34 messages; 2 loves in 44 at a 0.1% rate), still far fewer than the z-score's false flags below.
    assert bb - spammers == {"u2330", "u2847"}
    # the robust z-score cannot see the spammers (3 reactions < min_reactions) and flags keen likers instead
    z = flagged(con, robust_z_flags(g, z_threshold=3.5, min_reactions=5))
    assert not (z & spammers) and len(z) > 10 * len(bb - spammers)


def test_untrimmed_first_fit_is_masked_by_the_spammers():
    """Fitted with the spammers in it, the Love null is wide enough to hide some of them."""
    con = connect()
    g, spammers = population(spammers=120)
    trimmed = flagged(con, betabinomial_flags(con, g, alpha=0.01, trim=0.05))
    untrimmed = flagged(con, betabinomial_flags(con, g, alpha=0.01, trim=0.0))
    assert spammers <= trimmed
    assert len(untrimmed & spammers) < len(spammers)


def test_thresholds_match_the_binomial_tail_when_users_do_not_differ():
    p, users, total_n, m = 0.002, 1000, 40_000, 1e-8
    total_c = p * total_n
    # sum c^2/n chosen so that the between-user variance is binomial noise alone (rho = 0)
    sums = {"type": "love", "c": total_c, "n": total_n, "users": users, "c2n": p * total_c + p * (1 - p) * users}
    ns = np.array([1, 3, 10, 40, 200, 1000])
    got = betabinomial_thresholds(sums, ns, m).to_pydict()
    expected = {}
    for n in ns:
        below = [c for c in range(1, n + 1) if binom.sf(c - 1, n, p) < m]  # P[C >= c] < m
        if below:
            expected[int(n)] = below[0]
    assert dict(zip(got["n"], got["cstar"], strict=True)) == expected
    assert 1 not in expected and expected[1000] > 5  # one message can never be implausible at m = 1e-8


def test_betabinom_logpmf_equals_scipy_stats():
    for n, a, b in [(1, 0.5, 2.0), (40, 0.01, 9.99), (1000, 2e-3, 5.0), (7, 3.0, 3.0)]:
        k = np.arange(n + 1)
        np.testing.assert_allclose(betabinom_logpmf(k, n, a, b), betabinom.logpmf(k, n, a, b), rtol=1e-9, atol=1e-9)


def test_repeated_keys_finds_exactly_the_keys_counted_min_repeats_times():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**64, 200_000, dtype=np.uint64)
    planted = keys[:5]
    reps = np.concatenate([np.repeat(planted[:3], 9), np.repeat(planted[3:], 8)])  # 10 and 9 copies in all
    keys = rng.permutation(np.concatenate([keys, reps]))
    values, counts = np.unique(keys, return_counts=True)
    for m in (2, 9, 10, 11):
        np.testing.assert_array_equal(repeated_keys(keys, m), values[counts >= m])
    assert list(repeated_keys(keys, 10)) == sorted(planted[:3])
    assert len(repeated_keys(keys[:0], 10)) == 0
    # keys that all share their top bits (one bucket) are still counted exactly
    crowd = np.uint64(2**63) + np.repeat(np.arange(50, dtype=np.uint64), np.arange(1, 51))
    np.testing.assert_array_equal(repeated_keys(crowd, 40), np.uint64(2**63) + np.arange(39, 50, dtype=np.uint64))
