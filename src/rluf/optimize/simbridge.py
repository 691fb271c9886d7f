"""The optimizer's view of the simulated world: prompts, a true-metric evaluator and oracle objectives.

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
from rluf.policy import Policy, Sampling

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


class WorldEvaluator:
    """True Love rate, helpfulness, safety violations, sign-off rate... of a policy on a fixed eval sample."""

    def __init__(self, world, n_prompts: int, sampling: Sampling, seed: int = 0, items: str = "held_out"):
        self.world, self.sampling, self.seed = world, sampling, seed
        self.items = world.eval_set(items)[:n_prompts]

    def __call__(self, policy: Policy) -> dict[str, float]:
        responses = self.responses(policy)
        return self.metrics(responses)

    def responses(self, policy: Policy) -> list[str]:
        gens = policy.generate([it["prompt"] for it in self.items], n=1, sampling=self.sampling,
                               generator_seed=self.seed)
        return [g[0] for g in gens]

    def metrics(self, responses: list[str]) -> dict[str, float]:
        m = self.world.true_metrics(self.items, responses)
        return {k: float(v) for k, v in m.items() if k != "n"}
