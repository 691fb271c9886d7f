"""Adversarial-feedback filters, each an Ibis expression over the canonical logs.

- rate:     users whose reaction rate of some type is implausibly high: robust (modified) z-score
            z = (x - median) / (1.4826 * MAD) over users (Iglewicz & Hoaglin, 1993); when MAD = 0 (rare
            types: most users never react) the mean absolute deviation is used, z = (x - median) / (1.2533 * MeanAD).
- burst:    many accounts younger than `max_account_age_hours` reacting within one `window_minutes` window:
            at least `min_accounts`, and a robust z-score over windows above `z_threshold`.
- too_fast: reactions sooner than `min_seconds` after the message they react to (or before it).
- spam:     users who send the same text `min_repeats` times or more.

User-level rules flag accounts (their reactions, and with `drop_flagged_rows` their conversations, go);
`too_fast` removes single reactions. Flagged-user lists are small and are the only results fetched to Python.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import ibis
import numpy as np
import pyarrow as pa

from rluf.signals.config import FiltersSection
from rluf.signals.contexts import fetch_arrow
from rluf.signals.engine import Logs, materialize, raw_hash

log = logging.getLogger(__name__)

MAD_SCALE = 1.4826  # 1 / Phi^-1(0.75): MAD -> standard deviation under normality
MEANAD_SCALE = 1.2533  # sqrt(pi / 2): mean absolute deviation -> standard deviation


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


def rate_flags(logs: Logs, per_user: ibis.Table, z_threshold: float, min_reactions: int) -> ibis.Table:
    """Users with robust z-score of their per-type reaction rate above `z_threshold`.

    `per_user` is (user_id, n): the assistant messages each user received (a small, per-user table).
    """
    r = logs.reactions
    grid = per_user.cross_join(r.select("type").distinct())  # (users x types): zeros count in the median
    c = r.group_by(["user_id", "type"]).agg(c=r.count())
    g = grid.left_join(c, [grid.user_id == c.user_id, grid.type == c.type]).select(
        user_id=grid.user_id, type=grid.type, c=ibis.coalesce(c.c, 0), n=grid.n
    )
    g = g.mutate(x=g.c.cast("float64") / g.n)  # reactions of this type per message received
    med = g.group_by("type").agg(med=g.x.median())
    g = g.join(med, "type").mutate(ad=lambda t: (t.x - t.med).abs())
    spread = g.group_by("type").agg(mad=g.ad.median(), meanad=g.ad.mean())
    g = g.join(spread, "type")
    scale = ibis.cases((g.mad > 0, MAD_SCALE * g.mad), else_=MEANAD_SCALE * g.meanad)
    g = g.mutate(z=(g.x - g.med) / scale)
    return g.filter((g.z > z_threshold) & (g.c >= min_reactions)).select("user_id").distinct()


def burst_flags(
    logs: Logs, max_age_hours: float, window_minutes: float, min_accounts: int, z_threshold: float
) -> ibis.Table:
    """New accounts reacting in a window where unusually many new accounts react.

    A window is a burst when n (distinct new accounts reacting in it) >= `min_accounts` and its robust z-score
    over all windows with any reaction (n = 0 included) exceeds `z_threshold`, so the rule scales with traffic.
    """
    r = logs.reactions
    acct = account_created(logs)
    rr = r.join(acct, "user_id")
    max_age = ibis.interval(microseconds=round(max_age_hours * 3600e6))
    rr = rr.filter(rr.created_at <= rr.acct_at + max_age).mutate(
        bucket=(rr.created_at.epoch_seconds() / (window_minutes * 60)).floor()
    )
    new_n = rr.group_by("bucket").agg(n=rr.user_id.nunique())
    every = r.select(bucket=(r.created_at.epoch_seconds() / (window_minutes * 60)).floor()).distinct()
    win = every.left_join(new_n, "bucket").select(every.bucket, n=ibis.coalesce(new_n.n, 0))  # 0: no new account
    med = win.n.median().as_scalar()
    mad = (win.n - med).abs().median().as_scalar()
    scale = ibis.greatest(MAD_SCALE * mad, 1.0)  # MAD is 0 when most windows hold one new account
    bursts = win.filter((win.n >= min_accounts) & ((win.n - med) / scale > z_threshold))
    return rr.join(bursts, "bucket").select("user_id").distinct()


def spam_flags(logs: Logs, min_repeats: int) -> ibis.Table:
    """Users who sent one user-message text at least `min_repeats` times.

    On DuckDB (in-process): one scan of the user messages delivers a 64-bit key per message, hash(user_id) xor
    hash(text), and one numpy sort counts the keys; only if some key reaches `min_repeats` does a second scan,
    restricted to the messages with such a key, count (user_id, hash(text)) exactly. Elsewhere (Spark, warehouses:
    the keys should not travel to the driver) the bucketed two-pass count in the engine (`_spam_flags_bucketed`).
    Both give the users of the exact (user_id, hash(text)) count; the numpy key count only decides which
    messages the exact count looks at (a 64-bit key shared by two pairs can only add messages to it).
    """
    if logs.con.name != "duckdb":
        return _spam_flags_bucketed(logs, min_repeats)
    u = logs.messages.filter(lambda t: t.role == "user")
    keys = fetch_arrow(logs.con, u.select(k=raw_hash(u.user_id) ^ raw_hash(u.text))).column("k")
    k = np.sort(keys.to_numpy())  # a copy: the fetched keys are read-only
    del keys
    if len(k) == 0:
        return _no_users()
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    runs = np.diff(np.r_[starts, len(k)])
    hot = k[starts[runs >= min_repeats]]
    del k, starts, runs
    if len(hot) == 0:
        return _no_users()
    hot_t = ibis.memtable(pa.table({"hot_k": pa.array(hot, pa.uint64())}))
    m = u.mutate(k=raw_hash(u.user_id) ^ raw_hash(u.text))
    m = m.semi_join(hot_t, m.k == hot_t.hot_k)
    rep = m.group_by(["user_id", raw_hash(m.text).name("h")]).agg(n=m.count())
    return rep.filter(rep.n >= min_repeats).select("user_id").distinct()


def _no_users() -> ibis.Table:
    return ibis.memtable({"user_id": []}, schema={"user_id": "string"})


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


def too_fast(reactions: ibis.Table, min_seconds: float) -> ibis.Table:
    """`reactions` (with `msg_at`) + a `fast` flag: sooner than `min_seconds` after their message (or before it)."""
    # a timestamp plus a fixed interval, not a difference of timestamps: DuckDB computes date_diff on
    # timestamps with time zone through the ICU calendar, ~10x slower
    soon = reactions.created_at < reactions.msg_at + ibis.interval(microseconds=round(min_seconds * 1e6))
    return reactions.mutate(fast=ibis.coalesce(soon, False))


def apply_filters(logs: Logs, assistant: ibis.Table, cfg: FiltersSection, *, per_user: ibis.Table | None = None,
                  reactions: ibis.Table | None = None) -> FilterResult:
    """Run the enabled filters; return surviving reactions, flagged users and a per-rule report.

    `per_user` (user_id, n: assistant messages received) is computed from `assistant` when not given;
    `reactions` (the reactions with `msg_at`, from `reactions_with_message`) likewise. Flagged users stay a
    backend table (materialised once, all rules together); their ids are fetched for the report, which is one
    more query over small per-user tables. The surviving reactions keep the columns of `reactions`.
    """
    con = logs.con
    n_u = per_user if per_user is not None else assistant.group_by("user_id").agg(n=assistant.count())
    parts: dict[str, ibis.Table] = {}
    if cfg.rate.enabled:
        parts["rate"] = rate_flags(logs, n_u, cfg.rate.z_threshold, cfg.rate.min_reactions)
    if cfg.burst.enabled:
        b = cfg.burst
        parts["burst"] = burst_flags(logs, b.max_account_age_hours, b.window_minutes, b.min_accounts, b.z_threshold)
    if cfg.spam.enabled:
        parts["spam"] = spam_flags(logs, cfg.spam.min_repeats)
    flagged: dict[str, list[str]] = {rule: [] for rule in parts}
    report: dict[str, dict] = {}
    bad_t = None
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
    stats = con.to_pyarrow(r.agg(fast=r.fast.cast("int64").sum(), kept=kept.count().as_scalar())).to_pylist()[0]
    if cfg.too_fast.enabled:
        report["too_fast"] = {"users": 0, "reactions": int(stats["fast"] or 0), "rows": 0}
    log.info("filters flagged %d users: %s", len(bad), {k: len(v) for k, v in flagged.items()})
    return FilterResult(reactions=kept, bad_users=bad, flagged=flagged, report=report, bad_table=bad_t,
                        n_reactions=int(stats["kept"] or 0), temp_tables=temp)


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
