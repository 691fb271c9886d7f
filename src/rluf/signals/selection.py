"""`rluf signals`: availability of each candidate feedback signal and its association with a long-term outcome.

Candidates: every reaction type in the logs, plus derived signals
  continued      the user wrote another message in the conversation after this assistant message
  regenerate     another assistant answer to the same parent message followed this one (when parent_id is
                 logged and `regenerate` is not already a reaction type)
  returned_<N>d  the user started another conversation within N days (circular: it is built from the same
                 return events as the outcome, so it is reported but never ranked)
Adversarial filters (those of `rluf curate`, default settings) run first unless `filters=False`.
Outcome: the user starts another conversation within `outcome_days` (default 7) of the message. Messages
within `outcome_days` of the end of the logs cannot show the outcome and are left out of the association.

Message level (n messages, signal S, outcome Y; a = #(S, Y), n1 = #S, c = #(not S, Y), n0 = n - n1):
  lift = P(Y | S) / P(Y | not S) = (a / n1) / (c / n0), 95% CI exp(log lift +- 1.96 se) with the Katz
  se = sqrt(1/a - 1/n1 + 1/c - 1/n0); phi correlation with a Fisher-z CI (tanh(atanh r +- 1.96 / sqrt(n - 3))).
  Messages of one user are not independent, so message-level CIs are optimistic; the user-level ones are not.
User level (one point per user): lift = mean return rate of users who ever emitted S / of users who never
  did, CI by the delta method on log means; Pearson r of the user's signal rate and return rate, Fisher-z CI.

Trade-off (the ranking): score = |log| of the conservative message-level lift, i.e. log(lift_lo) for a
signal that raises returning, log(1 / lift_hi) for one that lowers it, 0 when the CI includes 1. A frequent
signal earns a narrow CI, a rare one must be strongly related to beat it: available *and* related, as in RLUF.
Signals with fewer than `min_events` events are listed as too rare.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import ibis
import numpy as np

from rluf.errors import ConfigError, DataError
from rluf.signals.config import FiltersSection
from rluf.signals.engine import Logs, open_logs, raw_hash, reaction_type_counts
from rluf.signals.filters import FilterResult, apply_filters
from rluf.utils import write_json

log = logging.getLogger(__name__)
Z95 = 1.959963984540054


def lift_ci(a: int, n1: int, c: int, n0: int) -> tuple[float, float, float]:
    """Risk ratio (a/n1) / (c/n0) and its Katz 95% CI. NaN where undefined (a or c is 0)."""
    if min(a, c, n1, n0) <= 0:
        return (math.nan, math.nan, math.nan)
    rr = (a / n1) / (c / n0)
    se = math.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n0)
    return rr, rr * math.exp(-Z95 * se), rr * math.exp(Z95 * se)


def corr_ci(r: float, n: int) -> tuple[float, float]:
    """Fisher-z 95% CI of a correlation r from n points."""
    if n <= 3 or not math.isfinite(r) or abs(r) >= 1:
        return (math.nan, math.nan)
    z, se = math.atanh(r), 1 / math.sqrt(n - 3)
    return math.tanh(z - Z95 * se), math.tanh(z + Z95 * se)


def phi(n: int, n1: int, ny: int, a: int) -> float:
    """Phi (Pearson) correlation of two binary variables from the counts n, #S, #Y, #(S and Y)."""
    den = n1 * (n - n1) * ny * (n - ny)
    return (n * a - n1 * ny) / math.sqrt(den) if den > 0 else math.nan


def user_lift_ci(y_ever: np.ndarray, y_never: np.ndarray) -> tuple[float, float, float]:
    """Ratio of mean return rates of users who ever / never emitted the signal; delta-method 95% CI."""
    if len(y_ever) < 2 or len(y_never) < 2 or y_ever.mean() <= 0 or y_never.mean() <= 0:
        return (math.nan, math.nan, math.nan)
    m1, m0 = y_ever.mean(), y_never.mean()
    se = math.sqrt(y_ever.var(ddof=1) / (len(y_ever) * m1**2) + y_never.var(ddof=1) / (len(y_never) * m0**2))
    rr = m1 / m0
    return rr, rr * math.exp(-Z95 * se), rr * math.exp(Z95 * se)


def tradeoff_score(lift: float, lo: float, hi: float) -> float:
    """|log| of the CI bound of the lift nearest to 1; 0 if the CI includes 1 or is undefined."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return 0.0
    if lo > 1:
        return math.log(lo)
    if hi < 1:
        return -math.log(hi)
    return 0.0


def message_table(
    logs: Logs, outcome_days: float, return_days: float, filters: FiltersSection | None = None
) -> tuple[ibis.Table, list[dict], FilterResult | None]:
    """One row per assistant message: user, day, observable flag, outcome y and one boolean per candidate;
    the candidates; and the filters' result (None without `filters`).

    With `filters`, curate's adversarial filters run first: flagged users' messages and removed reactions
    do not count (spam accounts would otherwise lend their own return pattern to the signals they spam).
    """
    m, r = logs.messages, logs.reactions
    types = list(reaction_type_counts(logs))
    bad = fr = None
    if filters is not None:
        fr = apply_filters(logs, m.filter(m.role == "assistant"), filters)
        r, bad = fr.reactions, fr.bad_table
    conv = m.group_by("conversation_id").agg(user=m.user_id.min(), start=m.created_at.min().epoch_seconds(),
                                              last_user_turn=m.turn_index.max(where=m.role == "user"))
    w = ibis.window(group_by="user", order_by=["start", "conversation_id"])
    conv = conv.mutate(next_start=conv.start.lead().over(w))
    a = m.filter(m.role == "assistant")
    if bad is not None:
        a = a.anti_join(bad, "user_id").select(*a.columns)
    t_end = float(logs.con.execute(m.created_at.epoch_seconds().max()))  # last logged time (epoch s)
    flags = r.group_by("message_id").agg(**{f"s{i}": (r.type == t).any() for i, t in enumerate(types)})
    j = a.join(conv, "conversation_id").left_join(flags, "message_id")
    t = j.created_at.epoch_seconds()
    gap = j.next_start - t  # seconds from this message to the user's next conversation (null: none)

    def returned(days: float):
        return ibis.coalesce(gap <= days * 86400, False)

    cols: dict[str, Any] = {f"s{i}": ibis.coalesce(j[f"s{i}"], False) for i in range(len(types))}
    cands = [{"signal": ty, "kind": "reaction", "col": f"s{i}"} for i, ty in enumerate(types)]
    cols["d_cont"] = ibis.coalesce(j.last_user_turn > j.turn_index, False)
    cands.append({"signal": "continued", "kind": "derived", "col": "d_cont"})
    has_parent = int(logs.con.execute(m.parent_id.notnull().sum()) or 0) > 0
    if "regenerate" not in types and has_parent:
        sib = a.group_by("parent_id").agg(n_sib=a.count(), last_at=a.created_at.max())
        j = j.left_join(sib, j.parent_id == sib.parent_id)
        cols["d_regen"] = ibis.coalesce((j.n_sib > 1) & (j.created_at < j.last_at), False)
        cands.append({"signal": "regenerate", "kind": "derived", "col": "d_regen"})
    rname = f"returned_{return_days:g}d"
    cols["d_ret"] = returned(return_days)
    cands.append({"signal": rname, "kind": "derived", "col": "d_ret", "circular": True})
    table = j.select(
        user_id=j.user_id, day=j.created_at.date(), obs=(t + outcome_days * 86400) <= t_end,
        y=returned(outcome_days), **cols,
    )
    return table, cands, fr


def _sum(b) -> Any:
    return b.cast("int64").sum()


def _aggregate(con, table: ibis.Table, cands: list[dict]) -> dict[str, Any]:
    """Counts for every candidate in one pass over the message table."""
    obs, y = table.obs, table.y
    aggs: dict[str, Any] = {
        "n_all": table.count(), "n_users": table.user_id.nunique(), "n_days": table.day.nunique(),
        "n": _sum(obs), "ny": _sum(obs & y),
    }
    for c in cands:
        s = table[c["col"]]
        aggs[f"{c['col']}_events"] = _sum(s)
        aggs[f"{c['col']}_users"] = table.user_id.nunique(where=s)
        aggs[f"{c['col']}_n1"] = _sum(obs & s)
        aggs[f"{c['col']}_a"] = _sum(obs & s & y)
    row = con.execute(table.agg(**aggs))
    return {k: int(row[k][0] or 0) for k in row.columns}


def _per_user(con, table: ibis.Table, cands: list[dict]) -> dict[str, np.ndarray]:
    """Per-user return rate and per-candidate signal rates over observable messages (one row per user)."""
    t = table.filter(table.obs)
    aggs = {"y": t.y.cast("float64").mean()}
    aggs.update({c["col"]: t[c["col"]].cast("float64").mean() for c in cands})
    df = con.to_pyarrow(t.group_by("user_id").agg(**aggs))
    return {k: df[k].to_numpy() for k in df.column_names if k != "user_id"}


def _per_day(con, table: ibis.Table, cands: list[dict]) -> dict[str, np.ndarray]:
    aggs = {"n": table.count()}
    aggs.update({c["col"]: _sum(table[c["col"]]) for c in cands})
    df = con.to_pyarrow(table.group_by("day").agg(**aggs))
    return {k: df[k].to_numpy() for k in df.column_names if k != "day"}


def _f(x: float) -> float | None:
    return round(float(x), 6) if x is not None and math.isfinite(x) else None


def _candidate_report(c: dict, agg: dict, users: dict, days: dict, min_events: int) -> dict:
    col = c["col"]
    n, ny, n1, a = agg["n"], agg["ny"], agg[f"{col}_n1"], agg[f"{col}_a"]
    lift, lo, hi = lift_ci(a, n1, ny - a, n - n1)
    r_msg = phi(n, n1, ny, a)
    x, yu = users[col], users["y"]
    r_user = float(np.corrcoef(x, yu)[0, 1]) if len(x) > 2 and x.std() > 0 and yu.std() > 0 else math.nan
    ulift, ulo, uhi = user_lift_ci(yu[x > 0], yu[x == 0])
    daily = days[col] / np.maximum(days["n"], 1)
    events = agg[f"{col}_events"]
    score = tradeoff_score(lift, lo, hi)
    note = ""
    if c.get("circular"):
        note, score = "circular: built from the same return events as the outcome; not ranked", None
    elif events < min_events:
        note, score = f"too rare: {events} events < min_events={min_events}; not ranked", None
    return {
        "signal": c["signal"], "kind": c["kind"],
        "availability": {
            "events": events, "rate_per_message": _f(events / max(agg["n_all"], 1)),
            "user_share": _f(agg[f"{col}_users"] / max(agg["n_users"], 1)),
            "per_day": _f(events / max(agg["n_days"], 1)),
            "daily_rate_min": _f(daily.min()) if len(daily) else None,
            "daily_rate_max": _f(daily.max()) if len(daily) else None,
        },
        "message": {
            "n": n, "n_signal": n1, "p_return_signal": _f(a / n1) if n1 else None,
            "p_return_no_signal": _f((ny - a) / (n - n1)) if n > n1 else None,
            "lift": _f(lift), "lift_ci": [_f(lo), _f(hi)],
            "corr": _f(r_msg), "corr_ci": [_f(v) for v in corr_ci(r_msg, n)],
        },
        "user": {
            "n": int(len(x)), "lift": _f(ulift), "lift_ci": [_f(ulo), _f(uhi)],
            "corr": _f(r_user), "corr_ci": [_f(v) for v in corr_ci(r_user, len(x))],
        },
        "direction": None if not math.isfinite(lift) else ("raises return" if lift > 1 else "lowers return"),
        "score": _f(score) if score is not None else None,
        "note": note,
    }


def signals(
    logs_dir: str | Path | Logs,
    *,
    outcome_days: float = 7.0,
    return_days: float = 1.0,
    min_events: int = 30,
    filters: bool = True,
    rate_gap_factor: float = 3.0,
    out_dir: str | Path | None = None,
    memory_limit: str = "1GB",
    con: Any = None,
) -> dict:
    """Rank the candidate signals of `logs_dir` (see the module docstring); write signals.json into `out_dir`.

    `logs_dir` is a folder of canonical Parquet logs or logs already in a backend (`engine.logs_from_tables`)."""
    if outcome_days <= 0 or return_days <= 0:
        raise ConfigError(f"outcome_days ({outcome_days}) and return_days ({return_days}) must be > 0 days")
    if rate_gap_factor <= 1:
        raise ConfigError(f"rate_gap_factor ({rate_gap_factor}) must be > 1: the largest ratio of the raw to the "
                          "filtered rate of a signal (either way) that passes without a warning")
    logs = open_logs(logs_dir, con, memory_limit=memory_limit)
    con = logs.con
    if not reaction_type_counts(logs):
        raise DataError(f"{logs.where('reactions')} holds no reactions: no reaction signal to assess")
    table, cands, fr = message_table(logs, outcome_days, return_days, FiltersSection() if filters else None)
    agg = _aggregate(con, table, cands)
    if agg["n"] == 0:
        raise DataError(
            f"no assistant message in {logs.where('messages')} is more than "
            f"outcome_days={outcome_days:g} days before the "
            "end of the logs, so the outcome (returning) cannot be observed; use longer logs or a smaller "
            "--outcome-days"
        )
    users, days = _per_user(con, table, cands), _per_day(con, table, cands)
    rows = [_candidate_report(c, agg, users, days, min_events) for c in cands]
    ranked = sorted((r for r in rows if r["score"] is not None), key=lambda r: -r["score"])
    unranked = [r for r in rows if r["score"] is None]
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
    warnings: list[str] = []
    filter_report = None
    if fr is not None:
        filter_report = {k: v for k, v in fr.report.items() if k != "warnings"}
        warnings += fr.report.get("warnings", [])
        raw = raw_rates(logs)
        for r in rows:
            if r["kind"] == "reaction":
                gap = rate_gap(raw.get(r["signal"]), r["availability"]["rate_per_message"], rate_gap_factor)
                r["availability"].update(gap.pop("rates"))
                if gap["warning"]:
                    warnings.append(f"{r['signal']!r}: {gap['warning']}")
    traits = {}
    for r in rows:
        if r["kind"] == "reaction" and r["availability"]["events"] >= min_events:
            traits[r["signal"]] = trait_concentration(logs, fr.reactions if fr is not None else logs.reactions,
                                                      r["signal"], bad=fr.bad_table if fr is not None else None)
            r["trait_concentration"] = traits[r["signal"]]
            warnings += [f"{r['signal']!r} positives concentrate on {t['trait']!r}: {t['share_positive']:.0%} of "
                         f"them against {t['share_all']:.1%} of all answers (content-targeted adversaries, or a "
                         "trait users love: check before training on it)" for t in traits[r["signal"]]]
    for w in warnings:
        log.warning(w)
    result = {
        "outcome": f"user starts another conversation within {outcome_days:g} days",
        "outcome_days": outcome_days,
        "return_days": return_days,
        "filters": "curate's default adversarial filters applied" if filters else "none",
        "tradeoff": "score = |log| of the message-level lift's 95% CI bound nearest 1 (0 if the CI includes 1): "
                    "a signal must be both available (narrow CI) and related to returning (large lift)",
        "assistant_messages": agg["n_all"], "observable_messages": agg["n"], "users": agg["n_users"],
        "days": agg["n_days"], "base_return_rate": _f(agg["ny"] / agg["n"]),
        "best": ranked[0]["signal"] if ranked else None,
        "signals": ranked + unranked,
        "filters_removed": filter_report, "rate_gap_factor": rate_gap_factor, "warnings": warnings,
        "input": {k: v for k, v in logs.source().items() if k != "files"},
    }
    if out_dir is not None:
        write_json(Path(out_dir) / "signals.json", result)
    return result


def raw_rates(logs: Logs) -> dict[str, float]:
    """Each reaction type's share of assistant messages with it, before any filter."""
    m, r = logs.messages, logs.reactions
    n = int(logs.con.to_pyarrow(m.filter(m.role == "assistant").count()).as_py())
    t = logs.con.to_pyarrow(r.group_by("type").agg(k=r.message_id.nunique()))
    return {ty: k / max(n, 1) for ty, k in zip(t["type"].to_pylist(), t["k"].to_pylist(), strict=True)}


def rate_gap(raw: float | None, filtered: float | None, factor: float) -> dict:
    """The raw and the filtered rate of a signal and a warning when they differ by more than `factor` either
    way: the signature of heavy adversaries (raw >> filtered) or of filters that do not fit the logs."""
    out = {"rates": {"raw_rate_per_message": _f(raw) if raw is not None else None,
                     "filtered_rate_per_message": filtered}, "warning": None}
    if not raw or not filtered:
        if raw and not filtered:
            out["warning"] = f"the filters removed every event (raw rate {raw:.3%})"
        return out
    ratio = raw / filtered
    if ratio > factor or ratio < 1 / factor:
        out["warning"] = (f"raw rate {raw:.3%} against {filtered:.3%} after the adversarial filters ({ratio:.1f}x, "
                          f"more than rate_gap_factor {factor:g}): heavy adversaries, or filters that do not fit "
                          "these logs")
    return out


TRAIT_NGRAM = 3  # words per candidate trait
TRAIT_SAMPLE = 20_000  # assistant messages drawn as the policy's baseline


def trait_concentration(logs: Logs, reactions: ibis.Table, signal: str, *, bad: ibis.Table | None = None,
                        min_lift: float = 3.0, min_share: float = 0.2, min_positives: int = 20,
                        max_p: float = 1e-6, seed: int = 0) -> list[dict]:
    """Word 3-grams that the answers with `signal` (among `reactions`, e.g. those that survive the filters)
    contain far more often than the answers the policy gives: share among positives >= `min_share`, at least
    `min_lift` times the share among up to TRAIT_SAMPLE assistant messages, and a binomial tail below `max_p`.
    Content-targeted adversaries (who love only sign-offs, or only unsafe compliance) leave this mark; so
    does a trait normal users really love. Returns [{trait, share_positive, share_all, lift, p_value}] by lift.
    """
    from scipy.stats import binom

    con = logs.con
    m = logs.messages
    a = m.filter(m.role == "assistant")
    if bad is not None:
        a = a.anti_join(bad, "user_id").select(*a.columns)
    pos_ids = reactions.filter(reactions.type == signal).select("message_id").distinct()
    pos = con.to_pyarrow(a.semi_join(pos_ids, "message_id").select("text"))["text"].to_pylist()
    if len(pos) < min_positives:
        return []
    n_all = int(con.to_pyarrow(a.count()).as_py())
    keep = min(1.0, TRAIT_SAMPLE / max(n_all, 1))
    sample = a.filter(((raw_hash(a.message_id) ^ seed) % 1_000_003).abs() < keep * 1_000_003)
    base = con.to_pyarrow(sample.select("text"))["text"].to_pylist()
    if not base:
        return []
    in_pos, in_base = _ngram_counts(pos), _ngram_counts(base)
    out = []
    for gram, k in in_pos.items():
        share_pos = k / len(pos)
        share_all = (in_base.get(gram, 0) + 1) / (len(base) + 2)  # smoothed: a trait the sample never shows
        if share_pos < min_share or share_pos < min_lift * share_all:
            continue
        p = float(binom.sf(k - 1, len(pos), share_all))
        if p < max_p:
            out.append({"trait": gram, "share_positive": _f(share_pos), "share_all": _f(share_all),
                        "lift": _f(share_pos / share_all), "p_value": p})
    out.sort(key=lambda t: -t["lift"])
    return _distinct_traits(out)


def _ngram_counts(texts: list[str]) -> dict[str, int]:
    """In how many `texts` each word TRAIT_NGRAM-gram occurs (lower case, words only)."""
    counts: dict[str, int] = {}
    for text in texts:
        words = re.findall(r"[a-z']+", text.lower())
        for g in {" ".join(words[i:i + TRAIT_NGRAM]) for i in range(len(words) - TRAIT_NGRAM + 1)}:
            counts[g] = counts.get(g, 0) + 1
    return counts


def _distinct_traits(traits: list[dict], limit: int = 5) -> list[dict]:
    """The top `limit` traits, leaving out a 3-gram that overlaps (shares two words with) one kept already:
    one sign-off is one trait, not its three 3-grams."""
    kept: list[dict] = []
    for t in traits:
        words = set(t["trait"].split())
        if all(len(words & set(k["trait"].split())) < 2 for k in kept):
            kept.append(t)
        if len(kept) == limit:
            break
    return kept
