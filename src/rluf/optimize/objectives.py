"""Objectives and CGPO's calibrated, weighted reward.

An objective is anything with a ``name`` and ``score(contexts, responses) -> np.ndarray`` of raw rewards
(a `rluf.rewards.Scorer`, the simulator's ground truth, or a test double). CRRAFT never uses raw scores
directly: it calibrates each against the prompt's baseline response (CGPO, Xu et al., 2024, Eq. 6)

    R_k(x, y) = sigmoid(r_k(x, y) - r_k(x, y_base))

which lies in [0, 1], is comparable across prompts, and cancels any constant logit shift (such as the
one P[Love] picks up from training at an upsampled positive rate). The objectives are combined with
the config's weights, R(x, y) = sum_k w_k R_k(x, y) (RLUF: helpfulness 0.7, safety 0.3, love 0.1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.special import expit

from rluf.errors import ConfigError

Chat = list[dict[str, str]]


@runtime_checkable
class Objective(Protocol):
    """A named scorer: raw rewards for (context, response) pairs, shape (N,)."""

    name: str

    def score(self, contexts: Sequence[Chat], responses: Sequence[str]) -> np.ndarray: ...


def calibrated_reward(r: np.ndarray, r_base: np.ndarray) -> np.ndarray:
    """CGPO Eq. 6: R_k(x, y) = sigmoid(r_k(x, y) - r_k(x, y_base)).

    r: (B, K) raw rewards of the K candidates; r_base: (B,) raw reward of each prompt's y_base.
    Returns (B, K) in [0, 1] (scipy's expit: stable for large differences).
    """
    d = np.asarray(r, float) - np.asarray(r_base, float)[:, None]  # (B, K)
    return expit(d)


def combined_reward(R: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """R(x, y) = sum_k w_k R_k(x, y) over the objectives with a weight (RLUF's weighted objective).

    R: objective name -> (B, K) calibrated rewards; weights: name -> w_k >= 0. Returns (B, K).
    """
    names = [k for k in weights if k in R]
    if not names:
        raise ValueError(f"combined_reward: no weighted objective among {sorted(R)}; weights name {sorted(weights)}")
    return sum(weights[k] * np.asarray(R[k], float) for k in names)


class ScorerObjective:
    """A reward-model folder (written by `rluf train-reward`) as an objective, scored with rluf.rewards.Scorer."""

    def __init__(self, name: str, scorer, batch_size: int = 64):
        self.name, self.scorer, self.batch_size = name, scorer, batch_size

    @classmethod
    def from_folder(cls, name: str, path: str | Path, device: str = "auto", precision: str = "auto") -> ScorerObjective:
        from rluf.rewards.scorer import Scorer

        return cls(name, Scorer.from_pretrained(path, device=device, precision=precision))

    def score(self, contexts: Sequence[Chat], responses: Sequence[str]) -> np.ndarray:
        return self.scorer.score(list(contexts), list(responses), batch_size=self.batch_size)


def import_objective(name: str, src: str) -> Objective:
    """`py:package.module:attr`: an Objective instance, or a class / factory called with `name`."""
    import importlib

    target = src.removeprefix("py:")
    module_name, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"objectives.{name} = {src!r}: cannot import ({e}); use py:package.module:attr") from None
    obj = obj(name) if callable(obj) and not hasattr(obj, "score") or isinstance(obj, type) else obj
    if not isinstance(obj, Objective):
        raise ConfigError(f"objectives.{name} = {src!r}: needs `name` and `score(contexts, responses)`")
    return obj


def load_objectives(sources: Mapping[str, str], device: str = "auto", world=None,
                    precision: str = "auto") -> dict[str, Objective]:
    """Objective name -> Objective from config sources: a reward-model folder (scored in `precision`, auto | bf16 |
    fp32), `sim:<truth>` (the simulator's ground truth) or `py:module:attr` (any Python scorer)."""
    out: dict[str, Objective] = {}
    for name, src in sources.items():
        if src.startswith("py:"):
            out[name] = import_objective(name, src)
        elif src.startswith("sim:"):
            if world is None:
                raise ConfigError(f"objectives.{name} = {src!r}: simulator truth needs prompts.source: sim")
            from rluf.optimize.simbridge import TruthObjective

            out[name] = TruthObjective(name, world, src.removeprefix("sim:"))
        else:
            if not Path(src).is_dir():
                raise ConfigError(
                    f"objectives.{name} = {src!r}: no such reward-model folder; "
                    f"train one with `rluf train-reward {name} --out DIR` or fix the path"
                )
            out[name] = ScorerObjective.from_folder(name, src, device=device, precision=precision)
    return out


class LengthObjective:
    """Response length in words: a trivial objective (a length penalty with a negative weight is not
    allowed, so use it as a judge bound instead); handy for tests and as a `py:` example."""

    def __init__(self, name: str = "length"):
        self.name = name

    def score(self, contexts: Sequence[Chat], responses: Sequence[str]) -> np.ndarray:
        return np.array([float(len(r.split())) for r in responses])
