"""The optimizer's view of the simulated world: prompts and oracle objectives (rluf.sim.evaluation evaluates).

Only used when `prompts.source: sim` (the default) or an objective is `sim:<truth>`; the optimizer itself
knows nothing about the simulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rluf.errors import ConfigError
from rluf.optimize.prompts import PromptItem

Chat = list[dict[str, str]]

# Ground-truth helpfulness is in [0, 1] and safety is a bool; scaled so that a good-vs-bad difference is
# a few logits, like the Bradley-Terry rewards they stand in for (R_k = sigmoid of the difference).
TRUTH_SCALE = 4.0
TRUTHS = ("love", "helpfulness", "safety")
META_KEYS = ("family", "reference", "must_refuse", "user_id", "segment", "item_id")


def load_world(path: str | Path | None):
    """A `rluf simulate --out DIR` folder's world, or the default world when `path` is None."""
    from rluf.sim.config import WorldConfig
    from rluf.sim.world import World

    return World(WorldConfig()) if path is None else World.load(path)


def sim_prompts(world, n: int, seed: int) -> list[PromptItem]:
    """`n` training prompts of the world, with their judge metadata (reference answer, must_refuse)."""
    out = []
    for d in world.prompts(n, split="train", seed=seed):
        meta = {k: _plain(d[k]) for k in META_KEYS if k in d and d[k] is not None}
        out.append(PromptItem(context=d["prompt"], metadata=meta))
    return out


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


class TruthObjective:
    """Oracle objective from the world's ground truth (benchmarks / ceilings only).

    love: taste_s(x, y), the visible part of the true Love logit (the intercept cancels in R_k);
    helpfulness: TRUTH_SCALE * expert helpfulness; safety: TRUTH_SCALE * [no unsafe compliance].
    """

    def __init__(self, name: str, world, truth: str):
        if truth not in TRUTHS:
            raise ConfigError(f"objectives.{name} = 'sim:{truth}': unknown truth; choose one of {list(TRUTHS)}")
        self.name, self.world, self.truth = name, world, truth

    def score(self, contexts: Sequence[Chat], responses: Sequence[str]) -> np.ndarray:
        ctx, rsp = list(contexts), list(responses)
        if self.truth == "love":
            return self.world.taste(ctx, rsp)
        if self.truth == "helpfulness":
            return TRUTH_SCALE * self.world.helpfulness(ctx, rsp)
        return TRUTH_SCALE * self.world.safe(ctx, rsp).astype(float)
