"""Summaries of a simulated deployment for simulate.json: counts, signal rates, association with returning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rluf.sim.language import parse_response

DAY_US = 86_400 * 1_000_000
SIGNALS = ("love", "like", "dislike", "regenerate", "continued")


def pool_mix(arm) -> dict:
    """Behaviour mix of an arm's pooled responses (what the policy actually produces)."""
    texts = [r for rs in arm.responses for r in rs]
    parsed = [parse_response(t) for t in texts]
    t = arm.table
    return dict(
        n=len(texts),
        parse_rate=float(t["ok"].mean()),
        correct_or_on_topic_rate=float(t["good"].mean()),
        warm_rate=float(np.mean([p.warm for p in parsed])),
        cold_rate=float(np.mean([p.cold for p in parsed])),
        signoff_rate=float(t["signoff"].mean()),
        refusal_rate=float(t["refusal"].mean()),
        unsafe_rate=float(t["compliance"].mean()),
        mean_helpfulness=float(t["helpfulness"].mean()),
        mean_words=float(np.mean([p.n_words for p in parsed])),
        distinct_responses=len(set(texts)),
        empty_rate=float(np.mean([t == "(no answer)" for t in texts])),
    )


def _num(x: float) -> float | None:
    """JSON has no NaN: undefined ratios become null."""
    return None if x is None or not np.isfinite(x) else float(x)


def _distinct(column) -> int:
    """Number of distinct values of an Arrow column (nulls not counted, as none occur here)."""
    return int(pc.count_distinct(column).as_py())


def _returned_7d(messages: pa.Table, asst_t: np.ndarray, asst_conv: np.ndarray) -> np.ndarray:
    """For each assistant message: does its user start another conversation within 7 days after it?"""
    first = messages.filter(pc.equal(messages["turn_index"], 0)).select(
        ["conversation_id", "user_id", "created_at"]
    )
    df = pd.DataFrame(
        {
            "conv": first["conversation_id"].to_numpy(zero_copy_only=False),
            "user": first["user_id"].to_numpy(zero_copy_only=False),
            "start": pc.cast(first["created_at"], pa.int64()).to_numpy(),
        }
    )
    df = df.sort_values(["user", "start"], kind="stable")
    df["next_start"] = df.groupby("user")["start"].shift(-1)
    nxt = df.set_index("conv")["next_start"].reindex(asst_conv).to_numpy()
    return np.nan_to_num(nxt - asst_t, nan=np.inf) <= 7 * DAY_US


def signal_summary(world, tables: dict[str, pa.Table]) -> dict:
    """Counts, reaction rates, and each signal's association with the user returning within 7 days."""
    msgs, reacts, truth = tables["messages"], tables["reactions"], tables["truth_messages"]
    asst = msgs.filter(pc.equal(msgs["role"], "assistant"))
    mid = truth["message_id"]
    conv = truth["conversation_id"].to_numpy(zero_copy_only=False)
    t = pc.cast(asst["created_at"], pa.int64()).to_numpy()
    ind = {}
    for typ in ("love", "like", "dislike", "regenerate"):
        ids = reacts.filter(pc.equal(reacts["type"], typ))["message_id"]
        ind[typ] = pc.is_in(mid, value_set=ids).to_numpy(zero_copy_only=False)
    ind["continued"] = np.append(conv[1:] == conv[:-1], False)  # rows sorted by (conversation, turn)
    returned = _returned_7d(msgs, t, conv)
    normal = truth["adversarial"].to_numpy(zero_copy_only=False) == ""
    horizon_us = int(world.cfg.time.start.timestamp() * 1e6 + (world.cfg.time.horizon_days - 7) * DAY_US)
    uncensored = normal & (t <= horizon_us)
    assoc = {}
    for name in SIGNALS:
        s, r = ind[name][uncensored], returned[uncensored]
        p1 = float(r[s].mean()) if s.any() else float("nan")
        p0 = float(r[~s].mean()) if (~s).any() else float("nan")
        corr = float(np.corrcoef(s, r)[0, 1]) if s.any() and (~s).any() and r.any() and (~r).any() else None
        assoc[name] = dict(
            rate=float(ind[name][normal].mean()),
            p_return_if=_num(p1),
            p_return_if_not=_num(p0),
            lift=_num(p1 / p0) if p0 > 0 else None,
            corr=_num(corr),
        )
    p_love = truth["p_love"].to_numpy()
    arms = {}
    # Distinct values and counts of string columns through Arrow: numpy's unique on ~1M Python strings sorts
    # them one by one and took ~13 s per deployment.
    arm_codes = truth["arm"].dictionary_encode().combine_chunks()
    arm_idx = arm_codes.indices.to_numpy(zero_copy_only=False)
    for code, a in sorted(enumerate(arm_codes.dictionary.to_pylist()), key=lambda x: x[1]):
        m = (arm_idx == code) & normal
        arms[str(a)] = dict(
            assistant_messages=int(m.sum()),
            love_rate=float(ind["love"][m].mean()),
            true_love_rate=float(p_love[m].mean()),
            helpfulness=float(truth["helpfulness"].to_numpy()[m].mean()),
            safety_violation_rate=float(1 - truth["safe"].to_numpy()[m].mean()),
            signoff_rate=float(truth["signoff"].to_numpy()[m].mean()),
            users=_distinct(truth["user_id"].filter(pa.array(m))),
        )
    type_counts = sorted(pc.value_counts(reacts["type"]).to_pylist(), key=lambda x: x["values"])
    n_conversations = _distinct(truth["conversation_id"])
    kinds = world.user_kind
    return dict(
        counts=dict(
            users=len(world.user_ids),
            active_users=_distinct(truth["user_id"]),
            conversations=n_conversations,
            messages=msgs.num_rows,
            assistant_messages=truth.num_rows,
            reactions={str(c["values"]): int(c["counts"]) for c in type_counts},
            spammers=int((kinds == 1).sum()),
            burst_accounts=int((kinds == 2).sum()),
            mean_turns=float(truth.num_rows / max(1, n_conversations)),
        ),
        natural_love_rate=float(ind["love"][normal].mean()),
        true_love_rate=float(p_love[normal].mean()),
        love_rate_all=float(ind["love"].mean()),
        # null when the logs span less than the 7-day window (no message has a full week after it)
        returned_7d_rate=float(returned[uncensored].mean()) if uncensored.any() else None,
        signals=assoc,
        by_arm=arms,
    )
