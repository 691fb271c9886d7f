"""Adversarial-feedback filters, each an Ibis expression over the canonical logs. None assumes how many
adversaries there are (docs/signals.md: what each assumes, and where it breaks).

- rate:     users whose count of some reaction type is implausible for the messages they received. Default
            (mixture): per type, the users' counts as a mixture of normal users' beta-binomial, adversaries with a
            rate of their own (>= min_fold x the normal mean) and adversaries of any rate (uniform), fitted by EM
            with the adversarial share free up to 50% (the breakdown point); a user is flagged when the posterior
            of the adversarial components exceeds `posterior`, or by the beta-binomial tail test under the normal
            component alone (Bonferroni over users x types). Or (betabinomial) the tail test under a fit that
            first leaves out a fixed `trim` share (masked when adversaries are more), or (robust_z) the robust
            z-score of the rate (Iglewicz & Hoaglin, 1993).
- burst:    many accounts new to the product (created within `max_account_age_hours`, or first seen in the logs
            `dormant_days` after they begin) reacting within one `window_minutes` window: at least
            `min_accounts`, and a robust z-score over windows above `z_threshold`.
- too_fast: reactions sooner than `min_seconds` after the message they react to (or before it).
- spam:     users who send the same text `min_repeats` times or more, or that many near-duplicates (names and
            case masked) making up at least `min_share` of their messages.
The time-based rules (burst, too_fast) skip reactions whose time is not a click (time_is_click = false).

User-level rules flag accounts (their reactions, and with `drop_flagged_rows` their conversations, go);
`too_fast` removes single reactions. Every rule reports what it removed by reaction type, and a rule (or all
together) that removes nearly all of a type is named in a warning. Flagged-user lists are small and are the
only results fetched to Python.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rluf.signals.config import BurstFilter, FiltersSection, RateFilter
from rluf.signals.contexts import fetch_arrow
from rluf.signals.engine import Logs, materialize, raw_hash, release

log = logging.getLogger(__name__)

MAD_SCALE = 1.4826  # 1 / Phi^-1(0.75): MAD -> standard deviation under normality
MEANAD_SCALE = 1.2533  # sqrt(pi / 2): mean absolute deviation -> standard deviation
MAX_ADVERSARIAL_SHARE = 0.5  # the rate mixture's breakdown point: normal users are the majority of accounts
# Normal users' spread of rates, as the intra-user correlation rho = Var(rate) / (p (1 - p)): at most this
# (a user's rate sd <= half of sqrt(p(1-p))). Without a bound the normal component can take in accounts that
# react to all of their two or three messages (sybils) by turning nearly all-or-nothing.
MAX_NORMAL_RHO = 0.25
MIN_MIXTURE_USERS = 100  # fewer users of a type: the posteriors mean little, only the tail test flags
START_QUANTILES = (0.3, 0.5, 0.75, 0.9, 0.99)  # EM starts: accounts above each rate quantile are adversarial


@dataclass
class FilterResult:
    reactions: ibis.Table  # reactions that survive every filter
    bad_users: list[str]  # union of users flagged by user-level rules
    flagged: dict[str, list[str]] = field(default_factory=dict)  # rule -> users it flagged
    report: dict[str, dict] = field(default_factory=dict)
    bad_table: ibis.Table | None = None  # the flagged users as a backend table (None: no user-level rule ran)
    n_reactions: int = 0  # reactions that survive every filter
    temp_tables: list[ibis.Table] = field(default_factory=list)  # materialised here; free with engine.release


def account_created(logs: Logs) -> ibis.Table:
    """user_id -> account creation time: users.created_at when users.parquet exists (users without one are of
    unknown age and never count as new), else the user's first message."""
    if logs.users is not None:
        u = logs.users
        return u.filter(u.created_at.notnull()).select("user_id", acct_at=u.created_at)
    m = logs.messages
    return m.group_by("user_id").agg(acct_at=m.created_at.min())


def user_type_counts(logs: Logs, per_user: ibis.Table) -> ibis.Table:
    """(user_id, type, c, n, x): each user's reactions of every type (zeros included), the assistant messages they
    received (`per_user`: user_id, n) and the rate x = c / n. A small table: users x reaction types."""
    r = logs.reactions
    grid = per_user.cross_join(r.select("type").distinct())
    c = r.group_by(["user_id", "type"]).agg(c=r.count())
    g = grid.left_join(c, [grid.user_id == c.user_id, grid.type == c.type]).select(
        user_id=grid.user_id, type=grid.type, c=ibis.coalesce(c.c, 0), n=grid.n
    )
    return g.mutate(x=g.c.cast("float64") / g.n)


def rate_flags(logs: Logs, per_user: ibis.Table, cfg: RateFilter) -> ibis.Table:
    """Users with an implausible reaction count or rate of some type (`cfg.method`)."""
    g = user_type_counts(logs, per_user)
    if cfg.method == "robust_z":
        return robust_z_flags(g, cfg.z_threshold, cfg.min_reactions)
    if cfg.method == "mixture":
        return mixture_flags(logs.con, g, cfg.alpha, cfg.posterior, cfg.min_fold)
    return betabinomial_flags(logs.con, g, cfg.alpha, cfg.trim)


def robust_z_flags(g: ibis.Table, z_threshold: float, min_reactions: int) -> ibis.Table:
    """Users whose robust z-score of some per-type rate exceeds `z_threshold`, with >= `min_reactions` of it."""
    med = g.group_by("type").agg(med=g.x.median())
    g = g.join(med, "type").mutate(ad=lambda t: (t.x - t.med).abs())
    spread = g.group_by("type").agg(mad=g.ad.median(), meanad=g.ad.mean())
    g = g.join(spread, "type")
    scale = ibis.cases((g.mad > 0, MAD_SCALE * g.mad), else_=MEANAD_SCALE * g.meanad)
    g = g.mutate(z=(g.x - g.med) / scale)
    return g.filter((g.z > z_threshold) & (g.c >= min_reactions)).select("user_id").distinct()


def betabinomial_flags(con, g: ibis.Table, alpha: float, trim: float, max_rounds: int = 5) -> ibis.Table:
    """Users whose count c of some type has P[C >= c] < alpha / (users x types) under C ~ BetaBinomial(n, a, b).

    (a, b) per type come from the users' moments; the first fit leaves out rates above each type's (1 - trim)
    quantile, each later fit the users flagged so far; flags accumulate until a round adds none. The trimmed
    first fit is narrower than the normal users' true spread, so a few very keen normal users can be flagged
    beyond `alpha` (tests/signals/test_filters.py: 2 of 3,000). Only per-type sums, the distinct message
    counts n and the flagged users travel to Python; the thresholds c*(n) go back as a small table. Each
    distinct n costs a pmf of n + 1 terms, so logs with very long-lived users pay for their longest history.
    """
    g = materialize(con, g, "rate_grid")
    tests = int(con.to_pyarrow(g.count()).as_py())
    m = alpha / max(1, tests)
    ns = np.sort(con.to_pyarrow(g.select("n").distinct()).column("n").to_numpy())
    q = g.group_by("type").agg(q=g.x.quantile(1 - trim))
    fit_on = g.join(q, "type").filter(lambda t: t.x <= t.q).select(*g.columns)
    flagged: set[str] = set()
    for _ in range(max_rounds):
        sums = con.to_pyarrow(fit_on.group_by("type").agg(
            c=fit_on.c.sum(), n=fit_on.n.sum(), users=fit_on.count(), c2n=(fit_on.c * fit_on.c / fit_on.n).sum()))
        if sums.num_rows == 0:
            break
        thr = ibis.memtable(pa.concat_tables([betabinomial_thresholds(t, ns, m) for t in sums.to_pylist()]))
        new = g.join(thr, ["type", "n"]).filter(lambda t: t.c >= t.cstar).select("user_id").distinct()
        users = set(con.to_pyarrow(new).column("user_id").to_pylist())
        if users <= flagged:
            break
        # Flags accumulate: a refit without the users flagged so far is still widened by the adversaries no
        # test can see (two loves in four messages), and would let the obvious ones go again (masking).
        flagged |= users
        fit_on = g.anti_join(_users(flagged), "user_id")
    release(con, g)
    log.info("rate filter (beta-binomial, alpha %.3g over %d tests): %d users", alpha, tests, len(flagged))
    return _users(flagged)


def betabinomial_thresholds(s: dict, ns: np.ndarray, m: float) -> pa.Table:
    """(type, n, cstar): the smallest count with P[C >= cstar] < m under the beta-binomial fitted by moments to
    the per-type sums `s` (c, n, users, c2n = sum c^2/n). Rows with no such count <= n are left out."""
    p, rho = moments_fit(float(s["c"] or 0), float(s["n"] or 0), float(s["users"] or 0), float(s["c2n"] or 0))
    log.debug("rate filter null for %s: p %.3g, rho %.3g", s["type"], p, rho)
    return tail_thresholds(s["type"], p, rho, ns, m)


def moments_fit(total_c: float, total_n: float, users: float, c2n: float) -> tuple[float, float]:
    """(p, rho) of a beta-binomial by moments from sums over users (possibly weighted): C = sum c_i,
    N = sum n_i, U = sum of weights, c2n = sum c_i^2 / n_i."""
    p = min(max(total_c, 0.5) / max(total_n, 1.0), 0.999)  # at least half a reaction: never p = 0
    # Var(c_i / n_i) = p(1-p) [1/n_i + rho (1 - 1/n_i)]: weighted by n_i, sum n_i (x_i - p)^2 / N
    # = p(1-p) [U/N + rho (1 - U/N)], and sum n_i (x_i - p)^2 = sum c_i^2/n_i - p C.
    s2 = (c2n - p * total_c) / max(total_n, 1.0)
    share = users / max(total_n, 1.0)
    rho = (s2 / (p * (1 - p)) - share) / (1 - share) if share < 1 else 0.0
    return p, min(max(rho, 1e-9), 0.99)  # intra-user correlation: 0 is binomial, 1 all-or-nothing


def tail_thresholds(rtype: str, p: float, rho: float, ns: np.ndarray, m: float) -> pa.Table:
    """(type, n, cstar): the smallest count with P[C >= cstar] < m under BetaBinomial(n, p, rho), per n."""
    a, b = p * (1 / rho - 1), (1 - p) * (1 / rho - 1)
    # tails summed from the top of each pmf: scipy's betabinom.sf (1 - cdf) loses the 1e-8 tails when a + b is large
    rows = []
    for n in ns:
        tail = np.cumsum(np.exp(betabinom_logpmf(np.arange(n, -1, -1), n, a, b)))[::-1]  # tail[c] = P[C >= c]
        below = np.flatnonzero(tail < m)
        if len(below):
            rows.append((int(n), int(below[0])))
    n_col, c_col = zip(*rows, strict=True) if rows else ((), ())
    return pa.table({"type": pa.array([rtype] * len(rows), pa.string()),
                     "n": pa.array(n_col, pa.int64()), "cstar": pa.array(c_col, pa.int64())})


@dataclass
class RateMixture:
    """Reaction counts of one type as a three-component mixture: normal users C ~ BetaBinomial(n, p, rho);
    adversaries who react at a rate of their own, C ~ BetaBinomial(n, p_adv, rho_adv) with p_adv >= min_fold
    * p, a share `share`; and adversaries whose rate could be anything, C ~ BetaBinomial(n, 1, 1) (uniform on
    0..n: a sybil that loves both of its two answers), a share `share_uniform`."""

    p: float
    rho: float
    p_adv: float
    rho_adv: float
    share: float
    share_uniform: float
    iterations: int = 0

    def log_likelihoods(self, c: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """log P[c | n] under the normal, the adversarial and the uniform component."""
        return (_bb_logpmf(c, n, self.p, self.rho), _bb_logpmf(c, n, self.p_adv, self.rho_adv),
                -np.log(n + 1))

    def _weighted(self, c: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ln, la, lu = self.log_likelihoods(c, n)
        return (math.log1p(-self.share - self.share_uniform) + ln, _log(self.share) + la,
                _log(self.share_uniform) + lu)

    def posterior(self, c: np.ndarray, n: np.ndarray) -> np.ndarray:
        """P[adversarial (either kind) | c of n] for each account."""
        wn, wa, wu = self._weighted(np.asarray(c, np.float64), np.asarray(n, np.float64))
        return np.exp(np.logaddexp(wa, wu) - np.logaddexp(wn, np.logaddexp(wa, wu)))

    @property
    def adversarial_share(self) -> float:
        return self.share + self.share_uniform


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -np.inf


def _bb_logpmf(c: np.ndarray, n: np.ndarray, p: float, rho: float) -> np.ndarray:
    return betabinom_logpmf(c, n, p * (1 / rho - 1), (1 - p) * (1 / rho - 1))


def _weighted_moments(c: np.ndarray, n: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    return moments_fit(float(w @ c), float(w @ n), float(w.sum()), float(w @ (c * c / n)))


def fit_rate_mixture(c: np.ndarray, n: np.ndarray, users: np.ndarray | None = None, *, min_fold: float = 10.0,
                     max_iter: int = 300, tol: float = 1e-8) -> RateMixture:
    """The components of `RateMixture` for the counts `c` of `n` messages (`users` accounts per (c, n) cell;
    1 each by default), fitted by EM with weighted moments in the M step.

    No assumption on how many accounts are adversarial below MAX_ADVERSARIAL_SHARE (the breakdown point:
    normal users must be the majority): both adversarial shares are fitted. What tells the components apart:
    adversaries with a rate of their own react at least `min_fold` times as often as the normal users' mean,
    and normal users' rates spread at most MAX_NORMAL_RHO. EM starts from three splits (accounts above the
    50th, 90th and 99th weighted percentile of the rate are adversarial) and keeps the most likely fit.
    """
    c, n = np.asarray(c, np.float64), np.asarray(n, np.float64)
    w = np.ones(len(c)) if users is None else np.asarray(users, np.float64)
    keep = n > 0
    c, n, w = c[keep], n[keep], w[keep]
    x = c / n
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    best, best_ll = None, -np.inf
    for q in START_QUANTILES:
        cut = x[order][min(np.searchsorted(cum, q), len(x) - 1)]
        top = x > cut  # ties stay normal: with a rare type most rates are 0
        mix, ll = _em(c, n, w, top, min_fold, max_iter, tol)
        if ll > best_ll:
            best, best_ll = mix, ll
    return best


def _em(c: np.ndarray, n: np.ndarray, w: np.ndarray, top: np.ndarray, min_fold: float, max_iter: int,
        tol: float) -> tuple[RateMixture, float]:
    """EM from the split `top` (the accounts first taken as adversarial); returns the fit and its log-likelihood."""
    p, rho = _weighted_moments(c, n, w * ~top)
    p_adv = max(_weighted_moments(c, n, w * top)[0] if top.any() else 0.0, min_fold * p)
    share = float(np.clip((w * top).sum() / w.sum(), 1e-3, MAX_ADVERSARIAL_SHARE)) / 2
    mix = RateMixture(p, min(rho, MAX_NORMAL_RHO), min(p_adv, 0.999), 0.1, share, share)
    prev = ll = -np.inf
    for it in range(1, max_iter + 1):
        wn, wa, wu = mix._weighted(c, n)
        lmix = np.logaddexp(wn, np.logaddexp(wa, wu))
        ll = float(w @ lmix)
        ra, ru = np.exp(wa - lmix), np.exp(wu - lmix)  # posteriors of the adversarial components
        total = float(w.sum())
        share, share_u = float((w * ra).sum() / total), float((w * ru).sum() / total)
        if share + share_u > MAX_ADVERSARIAL_SHARE:
            scale = MAX_ADVERSARIAL_SHARE / (share + share_u)
            share, share_u = share * scale, share_u * scale
        p, rho = _weighted_moments(c, n, w * (1 - ra - ru))
        p_adv, rho_adv = _weighted_moments(c, n, w * ra) if (w * ra).sum() > 1e-9 else (mix.p_adv, mix.rho_adv)
        mix = RateMixture(p, min(rho, MAX_NORMAL_RHO), min(max(p_adv, min_fold * p), 0.999), rho_adv,
                          share, share_u, it)
        if abs(ll - prev) < tol * max(1.0, abs(ll)):
            break
        prev = ll
    return mix, ll


def _cstar(rtype: str, mix: RateMixture, ns: np.ndarray, level: float, n: np.ndarray) -> np.ndarray:
    """Per entry of `n`: the smallest count whose tail under the normal component is below `level` (inf: none)."""
    thr = tail_thresholds(rtype, mix.p, mix.rho, ns, level).to_pydict()
    cstar = dict(zip(thr["n"], thr["cstar"], strict=True))
    return np.array([cstar.get(int(x), np.inf) for x in n], np.float64)


def mixture_flags(con, g: ibis.Table, alpha: float, posterior: float, min_fold: float) -> ibis.Table:
    """Users flagged by the rate mixture (`fit_rate_mixture`) on some type: P[adversarial | c, n] >
    `posterior` with c above the normal mean (types with at least MIN_MIXTURE_USERS users), or
    P[C >= c] < alpha / (users x types) under the normal component.

    Only the distinct (type, n, c) cells with their user counts travel to Python (the fit needs nothing else);
    the flagged cells go back as a small table.
    """
    g = materialize(con, g, "rate_grid")
    tests = int(con.to_pyarrow(g.count()).as_py())
    m = alpha / max(1, tests)
    pos = g.filter(g.n > 0)
    cells = con.to_pyarrow(pos.group_by(["type", "n", "c"]).agg(users=pos.count()))
    bad_cells = []
    for rtype in sorted(set(cells["type"].to_pylist())):
        t = cells.filter(pc.equal(cells["type"], rtype))
        c, n, w = (t[k].to_numpy().astype(np.float64) for k in ("c", "n", "users"))
        mix = fit_rate_mixture(c, n, w, min_fold=min_fold)
        ns = np.unique(n.astype(np.int64))
        flag = c >= _cstar(rtype, mix, ns, m, n)
        if w.sum() >= MIN_MIXTURE_USERS:
            flag |= (mix.posterior(c, n) > posterior) & (c > n * mix.p)
        if flag.any():
            bad_cells.append(pa.table({"type": pa.array([rtype] * int(flag.sum()), pa.string()),
                                       "n": pa.array(n[flag].astype(np.int64)),
                                       "c": pa.array(c[flag].astype(np.int64))}))
        log.info("rate mixture for %s: normal p %.3g rho %.3g; adversarial p %.3g share %.3g, uniform share %.3g "
                 "(%d EM steps); %d users flagged", rtype, mix.p, mix.rho, mix.p_adv, mix.share, mix.share_uniform,
                 mix.iterations, int(w[flag].sum()))
    if not bad_cells:
        release(con, g)
        return _no_users()
    bad = ibis.memtable(pa.concat_tables(bad_cells))
    flagged = con.to_pyarrow(g.join(bad, ["type", "n", "c"]).select("user_id").distinct())
    release(con, g)
    users = set(flagged.column("user_id").to_pylist())
    log.info("rate filter (mixture, posterior > %.2g): %d users", posterior, len(users))
    return _users(users)


def betabinom_logpmf(k: np.ndarray, n: int, a: float, b: float) -> np.ndarray:
    """log P[C = k] for C ~ BetaBinomial(n, a, b): log C(n, k) + log B(k + a, n - k + b) - log B(a, b).

    From scipy.special, not scipy.stats.betabinom (same values): importing scipy.stats costs ~0.4 s, a tenth
    of a 10M-event `curate`."""
    from scipy.special import betaln, gammaln

    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + betaln(k + a, n - k + b) - betaln(a, b)


def burst_flags(logs: Logs, cfg: BurstFilter) -> ibis.Table:
    """Accounts new to the product reacting in a window where unusually many new accounts react.

    An account is new for `max_account_age_hours` after it was created (users.created_at) or, if it first
    appears in the logs at least `dormant_days` after they begin, after that first message: accounts bought
    or woken up for an attack are new to the logs whatever their creation date. Without users.parquet only the
    second applies. A window is a burst when n (distinct new accounts reacting in it) >= `min_accounts` and
    its robust z-score over all windows with any reaction (n = 0 included) exceeds `z_threshold`, so the rule
    scales with traffic. Reactions without a real click time (`click_timed`) are left out.
    """
    r = logs.reactions
    r = r.filter(click_timed(r))
    m = logs.messages
    first = m.group_by("user_id").agg(first_at=m.created_at.min())
    start = m.created_at.min().as_scalar()
    dormant = ibis.interval(microseconds=round(cfg.dormant_days * 86400e6))
    if logs.users is not None:
        u = logs.users
        acct = first.left_join(u, first.user_id == u.user_id).select(
            first.user_id, created=u.created_at, first_at=first.first_at)
        new_at = ibis.cases((acct.first_at >= start + dormant,
                             ibis.greatest(acct.first_at, ibis.coalesce(acct.created, acct.first_at))),
                            else_=acct.created)
        acct = acct.select("user_id", acct_at=new_at)
    else:
        acct = first.filter(first.first_at >= start + dormant).select("user_id", acct_at=first.first_at)
    acct = acct.filter(acct.acct_at.notnull())
    window = cfg.window_minutes * 60
    rr = r.join(acct, "user_id")
    max_age = ibis.interval(microseconds=round(cfg.max_account_age_hours * 3600e6))
    rr = rr.filter(rr.created_at <= rr.acct_at + max_age).mutate(
        bucket=(rr.created_at.epoch_seconds() / window).floor()
    )
    new_n = rr.group_by("bucket").agg(n=rr.user_id.nunique())
    every = r.select(bucket=(r.created_at.epoch_seconds() / window).floor()).distinct()
    win = every.left_join(new_n, "bucket").select(every.bucket, n=ibis.coalesce(new_n.n, 0))  # 0: no new account
    med = win.n.median().as_scalar()
    mad = (win.n - med).abs().median().as_scalar()
    scale = ibis.greatest(MAD_SCALE * mad, 1.0)  # MAD is 0 when most windows hold one new account
    bursts = win.filter((win.n >= cfg.min_accounts) & ((win.n - med) / scale > cfg.z_threshold))
    return rr.join(bursts, "bucket").select("user_id").distinct()


def spam_flags(logs: Logs, min_repeats: int) -> ibis.Table:
    """Users who sent one user-message text at least `min_repeats` times.

    On DuckDB (in-process): one scan of the user messages delivers a 64-bit key per message, hash(user_id) xor
    hash(text), and numpy counts the keys (`repeated_keys`); only if some key reaches `min_repeats` does a second scan,
    restricted to the messages with such a key, count (user_id, hash(text)) exactly. Elsewhere (Spark, warehouses:
    the keys should not travel to the driver) the bucketed two-pass count in the engine (`_spam_flags_bucketed`).
    Both give the users of the exact (user_id, hash(text)) count; the numpy key count only decides which
    messages the exact count looks at (a 64-bit key shared by two pairs can only add messages to it).
    """
    if logs.con.name != "duckdb":
        return _spam_flags_bucketed(logs, min_repeats)
    u = logs.messages.filter(lambda t: t.role == "user")
    keys = fetch_arrow(logs.con, u.select(k=raw_hash(u.user_id) ^ raw_hash(u.text))).column("k")
    hot = repeated_keys(keys.to_numpy(), min_repeats)
    del keys
    if len(hot) == 0:
        return _no_users()
    hot_t = ibis.memtable(pa.table({"hot_k": pa.array(hot, pa.uint64())}))
    m = u.mutate(k=raw_hash(u.user_id) ^ raw_hash(u.text))
    m = m.semi_join(hot_t, m.k == hot_t.hot_k)
    rep = m.group_by(["user_id", raw_hash(m.text).name("h")]).agg(n=m.count())
    return rep.filter(rep.n >= min_repeats).select("user_id").distinct()


def text_template(text: ibis.StringValue) -> ibis.StringValue:
    """The text with what a template varies masked: capitalised words (names) -> N, case folded, punctuation
    and spacing collapsed. "Hi, I am Bob: 5 stars!" and "hi i am Alice 5 stars" agree. Digits are kept: texts
    that differ in a number ("explain topic 12", "explain topic 31") are different questions."""
    t = text.re_replace(r"\b[A-Z][a-z]+\b", "N").lower()
    return t.re_replace(r"[^a-z0-9]+", " ").strip()


def template_spam_flags(logs: Logs, min_repeats: int, min_share: float) -> ibis.Table:
    """Users who sent at least `min_repeats` near-duplicate messages (`text_template`) making up at least
    `min_share` of their messages: templates with a changing name. The share keeps heavy normal users, whose
    questions share a few forms ("what is the capital of N"), out: a template bot mostly repeats itself.
    Only users with `min_repeats` messages or more are looked at."""
    u = logs.messages.filter(lambda t: t.role == "user")
    per_user = u.group_by("user_id").agg(total=u.count())
    busy = per_user.filter(per_user.total >= min_repeats)
    m = u.semi_join(busy, "user_id")
    rep = m.group_by(["user_id", raw_hash(text_template(m.text)).name("h")]).agg(k=m.count())
    rep = rep.filter(rep.k >= min_repeats).join(busy, "user_id")
    return rep.filter(rep.k >= min_share * rep.total).select("user_id").distinct()


def repeated_keys(keys: np.ndarray, min_repeats: int) -> np.ndarray:
    """The distinct uint64 `keys` that occur at least `min_repeats` times, sorted.

    Copies of a key share a bucket of its top bits, so one linear count over ~n buckets (np.bincount) leaves only
    the keys of buckets holding `min_repeats` or more to sort: a few when keys rarely repeat, instead of all n
    (about 4x faster at 4.7M keys)."""
    keys = keys.astype(np.uint64, copy=False)
    n = len(keys)
    bits = min(32, max(10, math.ceil(math.log2(max(n, 2)))))  # ~n buckets: mean load 0.5-1
    bucket = (keys >> np.uint64(64 - bits)).astype(np.intp)
    crowded = np.bincount(bucket, minlength=1 << bits) >= min_repeats
    k = np.sort(keys[crowded[bucket]])
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])  # empty k: one run of length 0, never reported
    runs = np.diff(np.r_[starts, len(k)])
    return k[starts[runs >= min_repeats]]


def _users(ids) -> ibis.Table:
    """A one-column (user_id) table of `ids`, sorted."""
    return ibis.memtable(pa.table({"user_id": pa.array(sorted(ids), pa.string())}))


def _no_users() -> ibis.Table:
    return _users([])


def _spam_flags_bucketed(logs: Logs, min_repeats: int) -> ibis.Table:
    """`spam_flags` in the engine, for backends whose results should stay there.

    Two passes keep memory small: counting every (user, text) pair needs a hash table as large as the number
    of distinct user messages (~50-100 bytes each in DuckDB: ~450 MB at 10M events), so the pairs are first
    counted into B buckets of hash(user) xor hash(text), B ~ n_messages / min_repeats (with about half the
    messages from users, ~min_repeats / 2 per bucket: ~3% of the buckets reach min_repeats by chance), and only
    the messages in buckets that do are counted exactly.
    """
    n = max(int(logs.n_messages or 0), 1)
    buckets = 1 << max(10, math.ceil(math.log2(max(n / max(min_repeats, 1), 1))))

    def bucket(t: ibis.Table) -> ibis.IntegerValue:
        key = raw_hash(t.user_id) ^ raw_hash(t.text)
        return ((key % buckets) + buckets) % buckets

    # two independent scans (no shared subexpression, so the engine does not materialise the messages)
    u = logs.messages.filter(lambda t: t.role == "user")
    full = u.group_by(b=bucket(u)).agg(n=u.count())
    full = full.filter(full.n >= min_repeats).select("b")
    m = logs.messages
    m = m.filter((m.role == "user") & bucket(m).isin(full.b))
    rep = m.group_by(["user_id", raw_hash(m.text).name("h")]).agg(n=m.count())
    return rep.filter(rep.n >= min_repeats).select("user_id").distinct()


def reactions_with_message(logs: Logs, columns: tuple[str, ...] = ()) -> ibis.Table:
    """The reactions with `msg_at`, the time of the message they react to (null if it is not logged), and
    the message's `columns` (one join of the small reactions table against the messages)."""
    r = logs.reactions
    m = logs.messages.select(msg_id="message_id", msg_at="created_at", **{f"msg_{c}": c for c in columns})
    j = r.left_join(m, r.message_id == m.msg_id)
    return j.select(*[j[c] for c in r.columns], *[j[c] for c in m.columns if c != "msg_id"])


def click_timed(r: ibis.Table) -> ibis.BooleanValue:
    """True where a reaction's `created_at` is a real click time: `time_is_click` true or null, or the column
    absent (logs written before it existed). False marks times stamped from the message (OpenAssistant)."""
    if "time_is_click" not in r.columns:
        return ibis.literal(True)
    return ibis.coalesce(r.time_is_click, True)


def too_fast(reactions: ibis.Table, min_seconds: float) -> ibis.Table:
    """`reactions` (with `msg_at`) + a `fast` flag: sooner than `min_seconds` after their message (or before it).
    Reactions without a real click time (`click_timed`) are never fast: their time says nothing."""
    # a timestamp plus a fixed interval, not a difference of timestamps: DuckDB computes date_diff on
    # timestamps with time zone through the ICU calendar, ~10x slower
    soon = reactions.created_at < reactions.msg_at + ibis.interval(microseconds=round(min_seconds * 1e6))
    return reactions.mutate(fast=ibis.coalesce(soon, False) & click_timed(reactions))


TIME_RULES = ("burst", "too_fast")  # the rules that read reaction times


def apply_filters(logs: Logs, assistant: ibis.Table, cfg: FiltersSection, *, per_user: ibis.Table | None = None,
                  reactions: ibis.Table | None = None) -> FilterResult:
    """Run the enabled filters; return surviving reactions, flagged users and a per-rule report.

    `per_user` (user_id, n: assistant messages received) is computed from `assistant` when not given;
    `reactions` (the reactions with `msg_at`, from `reactions_with_message`) likewise. Flagged users stay a
    backend table (materialised once, all rules together); their ids are fetched for the report, which is one
    more query over small per-user tables. The surviving reactions keep the columns of `reactions`.

    The report holds, per rule, the users it flagged and the reactions (`reactions`, and `by_type`) and rows
    it removes on its own; the time-based rules also `skipped_not_click`, the reactions they could not judge
    (time_is_click = false). `warnings` lists every rule, and the filters together, that removed at least
    `cfg.warn_removed_share` of some reaction type's events: a signal must never vanish in silence.
    """
    con = logs.con
    n_u = per_user if per_user is not None else assistant.group_by("user_id").agg(n=assistant.count())
    parts: dict[str, ibis.Table] = {}
    if cfg.rate.enabled:
        parts["rate"] = rate_flags(logs, n_u, cfg.rate)
    if cfg.burst.enabled:
        parts["burst"] = burst_flags(logs, cfg.burst)
    if cfg.spam.enabled:
        parts["spam"] = spam_flags(logs, cfg.spam.min_repeats)
        if cfg.spam.near_duplicates:
            near = template_spam_flags(logs, cfg.spam.min_repeats, cfg.spam.min_share)
            parts["spam"] = parts["spam"].union(near, distinct=True)
    flagged: dict[str, list[str]] = {rule: [] for rule in parts}
    report: dict = {}
    bad_t = None
    flags = None
    temp: list[ibis.Table] = []
    if parts:
        tagged = [t.select("user_id", rule=ibis.literal(rule)) for rule, t in parts.items()]
        union = tagged[0]
        for t in tagged[1:]:
            union = union.union(t)
        flags = materialize(con, union, "flagged")  # (user_id, rule): a few rows
        pairs = con.to_pyarrow(flags)
        for u, rule in zip(pairs["user_id"].to_pylist(), pairs["rule"].to_pylist(), strict=True):
            flagged[rule].append(u)
        flagged = {rule: sorted(set(users)) for rule, users in flagged.items()}
        report = _user_rule_counts(logs, flags, n_u, flagged, cfg.drop_flagged_rows)
        bad_t = flags.select("user_id").distinct()
        temp.append(flags)
    bad = sorted(set().union(*flagged.values())) if flagged else []

    r = reactions if reactions is not None else reactions_with_message(logs)
    r = too_fast(r, cfg.too_fast.min_seconds) if cfg.too_fast.enabled else r.mutate(fast=False)
    kept = r.filter(~r.fast)
    if bad_t is not None:
        kept = kept.anti_join(bad_t, "user_id")
    kept = kept.select(*[c for c in r.columns if c != "fast"])
    if reactions is None:  # the canonical reaction columns only, as the callers without `reactions` expect
        kept = kept.select(*logs.reactions.columns)
    aggs = {"total": r.count(), "fast": r.fast.cast("int64").sum()}
    if "time_is_click" in r.columns:  # null counts as a click
        aggs["not_click"] = (~ibis.coalesce(r.time_is_click, True)).cast("int64").sum()
    by_type = con.to_pyarrow(r.group_by("type").agg(**aggs))
    kept_by_type = con.to_pyarrow(kept.group_by("type").agg(kept=kept.count()))
    totals = dict(zip(by_type["type"].to_pylist(), by_type["total"].to_pylist(), strict=True))
    left = dict(zip(kept_by_type["type"].to_pylist(), kept_by_type["kept"].to_pylist(), strict=True))
    not_click = int(sum(x or 0 for x in by_type["not_click"].to_pylist())) if "not_click" in aggs else 0
    if cfg.too_fast.enabled:
        fast = {t: int(f or 0) for t, f in zip(by_type["type"].to_pylist(), by_type["fast"].to_pylist(), strict=True)}
        report["too_fast"] = {"users": 0, "reactions": sum(fast.values()), "rows": 0,
                              "by_type": {t: f for t, f in fast.items() if f}}
    if flags is not None:
        _add_rule_types(logs, flags, report)
    for rule in TIME_RULES:
        if rule in report:
            report[rule]["skipped_not_click"] = not_click
    if not_click and any(rule in report for rule in TIME_RULES):
        log.warning("%s skip %d reactions whose time is not a click time (time_is_click = false): their times "
                    "say nothing about how fast or how together anyone reacted",
                    " and ".join(r for r in TIME_RULES if r in report), not_click)
    report["warnings"] = removal_warnings(report, totals, left, cfg.warn_removed_share)
    for w in report["warnings"]:
        log.warning(w)
    n_kept = int(sum(left.values()))
    log.info("filters flagged %d users: %s", len(bad), {k: len(v) for k, v in flagged.items()})
    return FilterResult(reactions=kept, bad_users=bad, flagged=flagged, report=report, bad_table=bad_t,
                        n_reactions=n_kept, temp_tables=temp)


def _add_rule_types(logs: Logs, flags: ibis.Table, report: dict) -> None:
    """report[rule]["by_type"]: the reactions of each type of the users each user-level rule flagged."""
    r = logs.reactions
    per = r.group_by(ru="user_id", rtype="type").agg(k=r.count())
    j = flags.join(per, flags.user_id == per.ru)
    t = logs.con.to_pyarrow(j.group_by(["rule", "rtype"]).agg(k=j.k.sum()))
    for rep in report.values():
        rep.setdefault("by_type", {})
    for rule, rtype, k in zip(t["rule"].to_pylist(), t["rtype"].to_pylist(), t["k"].to_pylist(), strict=True):
        report[rule]["by_type"][rtype] = int(k or 0)


def removal_warnings(report: dict, totals: dict[str, int], left: dict[str, int], share: float) -> list[str]:
    """One sentence per (rule, type) whose removed events reach `share` of the type, and per type that the
    filters together removed to that share (naming the rules that removed most)."""
    out = []
    for rtype, total in sorted(totals.items()):
        if not total:
            continue
        removed_by = {rule: rep.get("by_type", {}).get(rtype, 0) for rule, rep in report.items()
                      if isinstance(rep, dict)}
        for rule, k in sorted(removed_by.items()):
            if k >= share * total:
                out.append(f"filter {rule!r} removed {k:,} of the {total:,} {rtype!r} reactions ({k / total:.0%}): "
                           f"check that it fits these logs (turn it off with filters.{rule}.enabled: false)")
        gone = total - int(left.get(rtype, 0))
        if gone >= share * total and not any(k >= share * total for k in removed_by.values()):
            top = ", ".join(f"{rule} {k:,}" for rule, k in sorted(removed_by.items(), key=lambda x: -x[1]) if k)
            out.append(f"the filters together removed {gone:,} of the {total:,} {rtype!r} reactions "
                       f"({gone / total:.0%}; {top}): heavy adversaries, or filters that do not fit these logs")
    return out


def _user_rule_counts(logs: Logs, flags: ibis.Table, per_user: ibis.Table, flagged: dict[str, list[str]],
                      drop_rows: bool) -> dict[str, dict]:
    """Users, reactions and rows each user-level rule removes on its own (one query over per-user tables)."""
    out = {rule: {"users": len(users), "reactions": 0, "rows": 0} for rule, users in flagged.items()}
    if not any(flagged.values()):
        return out
    r = logs.reactions
    rx_u = r.group_by(ru="user_id").agg(nr=r.count())
    n_u = per_user.select(nu="user_id", n="n")
    j = flags.left_join(rx_u, flags.user_id == rx_u.ru).left_join(n_u, flags.user_id == n_u.nu)
    t = logs.con.to_pyarrow(j.group_by("rule").agg(reactions=ibis.coalesce(j.nr, 0).sum(),
                                                   rows=ibis.coalesce(j.n, 0).sum()))
    for rule, nr, nrows in zip(t["rule"].to_pylist(), t["reactions"].to_pylist(), t["rows"].to_pylist(), strict=True):
        out[rule]["reactions"] = int(nr or 0)
        out[rule]["rows"] = int(nrows or 0) if drop_rows else 0
    return out


def truth_scores(flagged: dict[str, list[str]], bad: list[str], truth: dict[str, str]) -> dict:
    """Precision and recall of each rule (and their union) against the simulator's adversarial accounts.

    `truth` maps adversarial user_id -> kind. Recall is also given per kind for the union.
    """
    adv = set(truth)
    out = {}
    for rule, users in {**flagged, "all": bad}.items():
        s = set(users)
        tp = len(s & adv)
        out[rule] = {
            "flagged": len(s),
            "true_positives": tp,
            "precision": tp / len(s) if s else None,
            "recall": tp / len(adv) if adv else None,
        }
    kinds = sorted(set(truth.values()))
    out["all"]["recall_by_kind"] = {
        k: (len({u for u, kk in truth.items() if kk == k} & set(bad)) / max(1, sum(v == k for v in truth.values())))
        for k in kinds
    }
    return out
