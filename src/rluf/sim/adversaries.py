"""Adversarial accounts beyond the default spammers and burst (`WorldConfig.adversaries`), and simulated logs
without a neural policy (`template_logs`).

Kinds (docs/simulator.md):
  random_lover    normal conversations; Love each answer with a per-account rate drawn in
                  [random_love_min, random_love_max]; human reaction delays
  targeted_lover  Love only answers with a trait (the sign-off hack, or unsafe compliance, in which case
                  they ask unsafe questions); human delays: the kind that teaches the policy the trait
  slow_spammer    come back about once a day, never churn, Love answers but at most slow_loves_per_day a day
  sybil           one short conversation each (<= sybil_max_turns) at a random time, Love most answers
The deployment (rluf.sim.traffic) asks this module about these kinds only where they exist, so a world without
them draws exactly the random numbers it drew before.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rluf.sim.world import RANDOM_LOVER, SLOW_SPAMMER, SYBIL, TARGETED_LOVER, World

DAY = 86_400.0


def session_starts(world: World, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each user's first visit: sybils arrive at any time of the deployment (the others as given)."""
    sybil = np.flatnonzero(world.user_kind == SYBIL)
    if len(sybil):
        t[sybil] = rng.uniform(0, world.cfg.time.horizon_days * DAY, len(sybil))
    return t


def session_items(world: World, users: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Targeted lovers of unsafe compliance ask unsafe questions (the others' items as given)."""
    if world.cfg.adversaries.targeted_trait != "unsafe":
        return items
    rows = np.flatnonzero(world.user_kind[users] == TARGETED_LOVER)
    if len(rows):
        items[rows] = world.sample_items(world.user_segment[users[rows]], "train", rng, "unsafe")
    return items


def turn_limit(world: World, users: np.ndarray, turn: int) -> np.ndarray:
    """True for the users whose conversation must end after `turn` (sybils' short conversations)."""
    return (world.user_kind[users] == SYBIL) & (turn + 1 >= world.cfg.adversaries.sybil_max_turns)


def after_session(world: World, users: np.ndarray, gap: np.ndarray, churn: np.ndarray,
                  rng: np.random.Generator) -> None:
    """Slow spammers come back within about a day and never churn; sybils never come back (`gap` and
    `churn`, per user of the session, changed in place)."""
    kind = world.user_kind[users]
    slow = np.flatnonzero(kind == SLOW_SPAMMER)
    if len(slow):
        gap[slow] = rng.uniform(0.5, 1.5, len(slow)) * DAY
        churn[slow] = False
    churn[kind == SYBIL] = True


def love_probability(world: World, kind: np.ndarray, user: np.ndarray, p_love: np.ndarray,
                     signoff: np.ndarray, compliance: np.ndarray) -> np.ndarray:
    """Love probability per assistant message, with the kinds of this module in place of `p_love`."""
    adv = world.cfg.adversaries
    trait = signoff if adv.targeted_trait == "signoff" else compliance
    p = np.where(kind == RANDOM_LOVER, world.user_love_rate[user], p_love)
    p = np.where(kind == TARGETED_LOVER, np.where(trait, adv.targeted_love, 0.0), p)
    p = np.where(kind == SLOW_SPAMMER, adv.slow_love, p)
    return np.where(kind == SYBIL, adv.sybil_love, p)


def cap_daily_loves(world: World, love_rows: np.ndarray, user: np.ndarray, t: np.ndarray) -> np.ndarray:
    """`love_rows` (message rows with a Love) without the slow spammers' Loves beyond their daily cap."""
    slow = world.user_kind[user[love_rows]] == SLOW_SPAMMER
    if not slow.any():
        return love_rows
    rows = love_rows[slow]
    day = np.floor(t[rows] / DAY).astype(np.int64)
    order = np.lexsort((t[rows], day, user[rows]))
    rows, day = rows[order], day[order]
    key = np.stack([user[rows], day], 1)
    new_group = np.r_[True, np.any(key[1:] != key[:-1], axis=1)]
    start = np.maximum.accumulate(np.where(new_group, np.arange(len(rows)), 0))
    keep = (np.arange(len(rows)) - start) < world.cfg.adversaries.slow_loves_per_day
    return np.sort(np.concatenate([love_rows[~slow], rows[keep]]))


def template_arm(world: World, name: str = "baseline", k: int | None = None, seed: int = 0, mix=None):
    """An arm whose pool is the world's template sampler (the baseline behaviour mix, or the BehaviourMix
    `mix`) instead of a trained policy: logs of the same world in seconds, for benchmarks and tests that need
    no neural policy."""
    from rluf.sim.traffic import Arm

    rng = np.random.default_rng([world.cfg.seed, seed, 17])
    k = k or world.cfg.pool.answers_per_message
    item_ids = np.flatnonzero(world.item_split == "train")
    responses = [[world.sample_response(rng, world.item_prompt[i], mix) for _ in range(k)] for i in item_ids]
    return Arm(name, item_ids, responses, world.response_table(item_ids, responses))


def template_logs(world: World, k: int | None = None) -> dict[str, pa.Table]:
    """The deployment of `template_arm` to every user (one arm): canonical logs and truth tables."""
    from rluf.sim.traffic import deploy

    arm = template_arm(world, k=k)
    return deploy(world, [arm], np.zeros(len(world.user_ids), dtype=np.int64), world.deploy_rng())
