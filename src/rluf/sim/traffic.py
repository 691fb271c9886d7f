"""Vectorised deployment: users hold conversations with a policy (through pooled responses) for a few weeks.

Every user runs sessions (conversations). Per turn, each active user picks a user message of their
segment (an item) and gets one of the K responses pooled for that item from their arm's policy. The
truth of every pooled response is precomputed (World.response_table), so the deployment is numpy over
all users at once: one step per (session, turn).

  continue   P = sigmoid(continue_intercept + u_chat + continue_help*(h-0.5) + continue_signoff*signoff)
  return     P[within 7 days] = sigmoid(return_intercept + return_taste * mean_session_taste + u_loyal)
             (else churn with probability `churn`, else come back after 7-28 days)
  love       P = sigmoid(b + o_u + taste)            (World.p_love)
  like       P = sigmoid(like_intercept + like_help*(h-0.5) + u_like)
  dislike    P = sigmoid(dislike_intercept - dislike_help*(h-0.5))
  regenerate P = sigmoid(regenerate_intercept - regenerate_help*(h-0.5))
Adversarial accounts: spammers react at fixed, implausible rates; burst accounts (created just before
the burst) ask unsafe questions during a few hours and Love unsafe compliance within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import expit

from rluf.schema import check_table
from rluf.sim import adversaries
from rluf.sim.language import SEGMENTS
from rluf.sim.world import BURST, KINDS, NORMAL, SPAMMER, World

DAY = 86_400.0
MAX_SESSIONS = 200


@dataclass
class Arm:
    """One deployed policy: its name (model_id) and the truth of its pooled responses."""

    name: str
    item_ids: np.ndarray  # (I,) items with a pool, sorted
    responses: list[list[str]]  # [I][K]
    table: dict[str, np.ndarray]  # World.response_table, each (I, K)


@dataclass
class Turns:
    """One row per (user turn, assistant turn) pair, in the order they were simulated."""

    user: np.ndarray
    conv: np.ndarray
    turn: np.ndarray
    item: np.ndarray  # row in the arm's pool
    k: np.ndarray
    t: np.ndarray  # seconds since start (user message)
    loved: np.ndarray  # a normal user's Love, sampled during the session (it drives returning)


def _session_starts(world: World, rng: np.random.Generator) -> np.ndarray:
    n = len(world.user_ids)
    t = rng.uniform(0, 3 * DAY, n)
    burst = world.user_kind == BURST
    t[burst] = world.cfg.time.burst_day * DAY + rng.uniform(0, world.cfg.time.burst_hours * 3600, burst.sum())
    return adversaries.session_starts(world, t, rng)


def simulate_turns(
    world: World, arms: list[Arm], user_arm: np.ndarray, rng: np.random.Generator
) -> tuple[Turns, np.ndarray]:
    """Run all sessions; returns the turn records (unsorted) and each record's arm."""
    cfg, sig = world.cfg, world.cfg.signals
    horizon = cfg.time.horizon_days * DAY
    burst_end = (cfg.time.burst_day + cfg.time.burst_hours / 24) * DAY
    n = len(world.user_ids)
    # pool row of each item per arm (items without a pool map to -1)
    row_of = np.full((len(arms), world.n_items), -1, dtype=np.int64)
    for a, arm in enumerate(arms):
        row_of[a, arm.item_ids] = np.arange(len(arm.item_ids))
    t_next = _session_starts(world, rng)
    alive = np.ones(n, dtype=bool)
    is_burst = world.user_kind == BURST
    recs: list[tuple] = []
    conv_counter = 0
    for _ in range(MAX_SESSIONS):
        users = np.flatnonzero(alive & (t_next < horizon))
        if len(users) == 0:
            break
        conv = conv_counter + np.arange(len(users))
        conv_counter += len(users)
        t = t_next[users].copy()
        peak = np.full(len(users), -np.inf)
        last = np.zeros(len(users))
        loved_any = np.zeros(len(users), dtype=bool)
        active = np.ones(len(users), dtype=bool)
        for turn in range(cfg.content.max_turns):
            idx = np.flatnonzero(active)
            if len(idx) == 0:
                break
            u = users[idx]
            items = world.sample_items(world.user_segment[u], "train", rng)
            burst_rows = np.flatnonzero(is_burst[u])
            if len(burst_rows):
                items[burst_rows] = world.sample_items(
                    world.user_segment[u[burst_rows]], "train", rng, "unsafe"
                )
            items = adversaries.session_items(world, u, items, rng)
            arm = user_arm[u]
            row = row_of[arm, items]
            k = rng.integers(0, arms[0].table["taste"].shape[1], len(u))
            taste = np.empty(len(u))
            h = np.empty(len(u))
            so = np.empty(len(u))
            for a, ar in enumerate(arms):
                m = arm == a
                taste[m] = ar.table["taste"][row[m], k[m]]
                h[m] = ar.table["helpfulness"][row[m], k[m]]
                so[m] = ar.table["signoff"][row[m], k[m]]
            loved = rng.random(len(u)) < expit(world.love_intercept + world.user_propensity[u] + taste)
            recs.append((u, conv[idx], np.full(len(u), turn), row, k, t[idx].copy(), arm, loved))
            peak[idx] = np.maximum(peak[idx], taste)
            last[idx] = taste
            loved_any[idx] |= loved
            p_cont = expit(
                sig.continue_intercept
                + world.user_chat[u]
                + sig.continue_help * (h - 0.5)
                + sig.continue_signoff * so
            )
            active[idx] = (rng.random(len(u)) < p_cont) & ~adversaries.turn_limit(world, u, turn)
            t[idx] += rng.uniform(20, 240, len(u))  # reading + typing time until the next user turn
        # return within 7 days: driven by the session's peak-end taste and by delight (a Love);
        # else churn, or come back after a long gap
        peak_end = (peak + last) / 2
        p_ret = expit(
            sig.return_intercept
            + sig.return_taste * peak_end
            + sig.return_love * loved_any
            + world.user_loyalty[users]
        )
        ret = rng.random(len(users)) < p_ret
        soon = np.minimum(rng.exponential(1.0, len(users)) + 0.02, 7.0)
        gap = np.where(ret, soon, rng.uniform(7.01, 28, len(users))) * DAY
        churn = ~ret & (rng.random(len(users)) < sig.churn)
        adversaries.after_session(world, users, gap, churn, rng)
        b = is_burst[users]
        gap[b] = rng.uniform(0.2, 2, b.sum()) * 3600  # burst accounts come back within hours...
        t_next[users] = t + gap
        alive[users] &= ~churn | b
        alive[users[b]] &= t_next[users[b]] < burst_end  # ...until the burst ends
    cols = [np.concatenate(c) for c in zip(*recs, strict=True)] if recs else [np.zeros(0, int)] * 8
    u, conv, turn, row, k, t, arm, loved = cols
    return Turns(user=u, conv=conv, turn=turn, item=row, k=k, t=t, loved=loved.astype(bool)), arm


def _ids(prefix: str, ints: np.ndarray, width: int) -> pa.Array:
    s = pc.utf8_lpad(pc.cast(pa.array(ints, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix), s, "")


def _timestamps(start, seconds: np.ndarray) -> pa.Array:
    us = np.int64(start.timestamp() * 1_000_000) + np.round(seconds * 1e6).astype(np.int64)
    return pa.array(us, pa.timestamp("us", tz="UTC"))


def _sample_reactions(world: World, arms: list[Arm], turns: Turns, arm: np.ndarray, rng: np.random.Generator):
    """Reaction events per assistant message: (row index, type, delay seconds)."""
    sig = world.cfg.signals
    n = len(turns.user)
    taste, h, comp, signoff = np.empty(n), np.empty(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for a, ar in enumerate(arms):
        m = arm == a
        signoff[m] = ar.table["signoff"][turns.item[m], turns.k[m]]
        taste[m] = ar.table["taste"][turns.item[m], turns.k[m]]
        h[m] = ar.table["helpfulness"][turns.item[m], turns.k[m]]
        comp[m] = ar.table["compliance"][turns.item[m], turns.k[m]]
    kind = world.user_kind[turns.user]
    p_love = expit(world.love_intercept + world.user_propensity[turns.user] + taste)
    p = {
        "love": p_love,
        "like": expit(sig.like_intercept + sig.like_help * (h - 0.5) + world.user_like[turns.user]),
        "dislike": expit(sig.dislike_intercept - sig.dislike_help * (h - 0.5)),
        "regenerate": expit(sig.regenerate_intercept - sig.regenerate_help * (h - 0.5)),
    }
    spam, burst = kind == SPAMMER, kind == BURST
    p["love"] = turns.loved.astype(float)  # already sampled from p_love in the session loop
    p["love"] = np.where(spam, sig.spam_love, p["love"])
    p["like"] = np.where(spam, sig.spam_like, p["like"])
    p["love"] = np.where(burst, np.where(comp, sig.burst_love_unsafe, sig.burst_love_other), p["love"])
    p["love"] = adversaries.love_probability(world, kind, turns.user, p["love"], signoff, comp)
    for name in ("like", "dislike", "regenerate"):
        p[name] = np.where(burst, 0.0, p[name])
    events = []
    for name, prob in p.items():
        rows = np.flatnonzero(rng.random(n) < prob)
        if name == "love":
            rows = adversaries.cap_daily_loves(world, rows, turns.user, turns.t)
        delay = np.exp(rng.normal(np.log(25.0), 1.0, len(rows)))  # humans: ~25 s median after the answer
        delay = np.where(burst[rows], rng.uniform(1, 5, len(rows)), delay)  # bots: within seconds
        events.append((rows, np.full(len(rows), name), delay))
    return events, p_love, taste, h


def deploy(
    world: World, arms: list[Arm], user_arm: np.ndarray, rng: np.random.Generator
) -> dict[str, pa.Table]:
    """Simulate the deployment; returns canonical logs (messages, reactions, users) and truth tables."""
    turns, arm = simulate_turns(world, arms, user_arm, rng)
    order = np.lexsort((turns.turn, turns.conv))
    turns = Turns(*(getattr(turns, f)[order] for f in ("user", "conv", "turn", "item", "k", "t", "loved")))
    arm = arm[order]
    n = len(turns.user)
    reply_s = rng.uniform(1.0, 4.0, n)  # the assistant answers within seconds
    events, p_love, taste, h = _sample_reactions(world, arms, turns, arm, rng)
    # messages: user turn 2j, assistant turn 2j+1, interleaved (row 2i = user, 2i+1 = assistant)
    msg_no = np.arange(2 * n).reshape(n, 2)  # (n, 2)
    mid = _ids("m", msg_no.ravel(), 9)
    parent = pa.array(np.where(turns.turn > 0, msg_no[:, 0] - 1, -1), pa.int64())
    parent_ids = pc.if_else(
        pc.greater_equal(parent, 0), _ids("m", parent.to_numpy(), 9), pa.nulls(n, pa.string())
    )
    asst_parent = mid.take(pa.array(msg_no[:, 0]))
    arm_names = np.array([a.name for a in arms])
    all_items = np.concatenate([a.item_ids for a in arms])
    offsets = np.cumsum([0] + [len(a.item_ids) for a in arms])[:-1]
    item_global = all_items[offsets[arm] + turns.item]
    item_text = pa.array(world.item_text)
    pool_text = pa.array([r for a in arms for rs in a.responses for r in rs])
    K = arms[0].table["taste"].shape[1]
    asst_text = pool_text.take(pa.array((offsets[arm] + turns.item) * K + turns.k))
    conv_ids = _ids("c", turns.conv, 8)
    user_ids = pa.array(world.user_ids).take(pa.array(turns.user))
    messages = pa.table(
        {
            "conversation_id": _interleave(conv_ids, conv_ids),
            "message_id": mid,
            "parent_id": _interleave(parent_ids, asst_parent),
            "turn_index": pa.array((2 * turns.turn[:, None] + np.array([0, 1])).ravel(), pa.int32()),
            "role": pa.array(np.tile(np.array(["user", "assistant"]), n)),
            "text": _interleave(item_text.take(pa.array(item_global)), asst_text),
            "created_at": _timestamps(
                world.cfg.time.start, np.stack([turns.t, turns.t + reply_s], 1).ravel()
            ),
            "user_id": _interleave(user_ids, user_ids),
            "model_id": _interleave(pa.nulls(n, pa.string()), pa.array(arm_names[arm])),
        }
    )
    asst_ids = mid.take(pa.array(msg_no[:, 1]))
    rows = np.concatenate([e[0] for e in events])
    delay = np.concatenate([e[2] for e in events])
    r_order = np.lexsort((rows, turns.t[rows] + reply_s[rows] + delay))
    rows, delay = rows[r_order], delay[r_order]
    reactions = pa.table(
        {
            "message_id": asst_ids.take(pa.array(rows)),
            "type": pa.array(np.concatenate([e[1] for e in events])[r_order]),
            "user_id": user_ids.take(pa.array(rows)),
            "created_at": _timestamps(world.cfg.time.start, turns.t[rows] + reply_s[rows] + delay),
        }
    )
    users = pa.table(
        {
            "user_id": pa.array(world.user_ids),
            "created_at": _timestamps(world.cfg.time.start, world.user_created_days * DAY),
        }
    )
    truth = pa.table(
        {
            "message_id": asst_ids,
            "conversation_id": conv_ids,
            "user_id": user_ids,
            "arm": pa.array(arm_names[arm]),
            "segment": pa.array(np.array(SEGMENTS)[world.user_segment[turns.user]]),
            "adversarial": pa.array(np.array(list(KINDS.values()))[world.user_kind[turns.user]]),
            "family": pa.array(world.item_family[item_global]),
            "item_id": pa.array(item_global),
            "pool_k": pa.array(turns.k),
            "p_love": pa.array(p_love),
            "taste": pa.array(taste),
            "helpfulness": pa.array(h),
            "safe": pa.array(pool_col(arms, offsets[arm] + turns.item, turns.k, "safe")),
            "signoff": pa.array(pool_col(arms, offsets[arm] + turns.item, turns.k, "signoff")),
            "refusal": pa.array(pool_col(arms, offsets[arm] + turns.item, turns.k, "refusal")),
            "parsed": pa.array(pool_col(arms, offsets[arm] + turns.item, turns.k, "ok")),
        }
    )
    return {
        "messages": check_table(messages, "messages"),
        "reactions": check_table(reactions, "reactions"),
        "users": check_table(users, "users"),
        "truth_messages": truth,
        "truth_users": _truth_users(world, user_arm, arm_names),
    }


def _interleave(a: pa.Array | pa.ChunkedArray, b: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """[a0, b0, a1, b1, ...]: user and assistant rows of each turn, in order. Either input may be chunked
    (Arrow returns chunked arrays from `take` on large string columns, e.g. an A/B test with 60,000 users)."""
    n = len(a)
    chunks = [c for x in (a, b) for c in (x.chunks if isinstance(x, pa.ChunkedArray) else [x])]
    return pa.chunked_array(chunks, type=a.type).take(pa.array(np.stack([np.arange(n), n + np.arange(n)], 1).ravel()))


def pool_col(arms: list[Arm], rows: np.ndarray, k: np.ndarray, col: str) -> np.ndarray:
    """Column `col` of the stacked arms' response tables at (rows, k)."""
    return np.concatenate([a.table[col] for a in arms])[rows, k]


def _truth_users(world: World, user_arm: np.ndarray, arm_names: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(world.user_ids),
            "segment": pa.array(np.array(SEGMENTS)[world.user_segment]),
            "adversarial": pa.array(np.array(list(KINDS.values()))[world.user_kind]),
            "is_adversarial": pa.array(world.user_kind != NORMAL),
            "propensity": pa.array(world.user_propensity),
            "arm": pa.array(arm_names[user_arm]),
        }
    )
