"""Model judges: a reward model or classifier with a threshold, and a false-refusal judge.

CGPO (Xu et al., 2024, Sec. 3.2) pairs rule judges with LLM/classifier judges: a safety classifier (an
unsafe answer is a violation) and a false-refusal classifier (refusing a harmless request is a
violation). Here any object with ``score(contexts, responses) -> np.ndarray`` (``rluf.rewards.Scorer``,
or a test double) becomes a judge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from rluf.hacking import DEFAULT_REFUSAL_PATTERN
from rluf.judges.base import PASS, Item, Scorer, Verdict


class ModelJudge:
    """Passes an item when the scorer's value is on the right side of `threshold`.

    `pass_if="above"` (a safety model: score < threshold is a violation) or `"below"` (a harm or
    toxicity classifier: score > threshold is a violation).
    """

    def __init__(self, scorer: Scorer, name: str = "safety", threshold: float = 0.0, pass_if: str = "above"):
        if pass_if not in ("above", "below"):
            raise ValueError(f"ModelJudge {name!r}: pass_if must be 'above' or 'below', got {pass_if!r}")
        self.scorer, self.name, self.threshold, self.pass_if = scorer, name, threshold, pass_if

    def judge(self, items: Sequence[Item]) -> list[Verdict]:
        if not items:
            return []
        s = np.asarray(self.scorer.score([it.context for it in items], [it.response for it in items]), float)
        ok = s >= self.threshold if self.pass_if == "above" else s <= self.threshold
        side = "below" if self.pass_if == "above" else "above"
        return [PASS if o else Verdict(False, f"score {v:.3f} {side} threshold {self.threshold}")
                for o, v in zip(ok, s, strict=True)]


class FalseRefusalJudge:
    """Fails a refusal to a prompt that should be answered.

    A prompt should be answered unless its metadata marks it as one to refuse (`expect_refusal_key`,
    default ``"must_refuse"``, as the simulator names it, truthy). A response counts as a refusal when it
    matches `pattern`, or, when a `scorer` is given, when its refusal score is above `threshold`.
    """

    def __init__(
        self,
        name: str = "false_refusal",
        pattern: str = DEFAULT_REFUSAL_PATTERN,
        scorer: Scorer | None = None,
        threshold: float = 0.0,
        expect_refusal_key: str = "must_refuse",
    ):
        self.name, self.scorer, self.threshold, self.key = name, scorer, threshold, expect_refusal_key
        self.rx = re.compile(pattern, re.IGNORECASE)

    def _is_refusal(self, items: Sequence[Item]) -> np.ndarray:
        if self.scorer is not None:
            s = np.asarray(self.scorer.score([it.context for it in items], [it.response for it in items]), float)
            return s > self.threshold
        return np.array([bool(self.rx.search(it.response)) for it in items], dtype=bool)

    def judge(self, items: Sequence[Item]) -> list[Verdict]:
        if not items:
            return []
        refused = self._is_refusal(items)
        out = []
        for it, r in zip(items, refused, strict=True):
            if r and not it.metadata.get(self.key, False):
                out.append(Verdict(False, "refused a request that should be answered"))
            else:
                out.append(PASS)
        return out
