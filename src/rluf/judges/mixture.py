"""Mixture of Judges: a response passes only if every judge passes (CGPO, Xu et al., 2024, Sec. 3.2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rluf.judges.base import Item, Judge, Verdict


@dataclass
class MixtureResult:
    """Verdicts of every judge on one batch.

    passed: (N,) bool, True where every judge passed.
    verdicts: judge name -> its N verdicts, in judge order.
    """

    passed: np.ndarray
    verdicts: dict[str, list[Verdict]]

    def pass_rates(self) -> dict[str, float]:
        """Share of items each judge passed, plus ``all`` for the mixture (1.0 on an empty batch)."""
        n = len(self.passed)
        rates = {name: (sum(v.passed for v in vs) / n if n else 1.0) for name, vs in self.verdicts.items()}
        rates["all"] = float(self.passed.mean()) if n else 1.0
        return rates

    def reasons(self, i: int) -> list[str]:
        """'judge: reason' for every judge that failed item `i`."""
        return [f"{name}: {vs[i].reason}" for name, vs in self.verdicts.items() if not vs[i].passed]


class MixtureOfJudges:
    """J(x, y) = prod_h J_h(x, y): all judges must pass. With no judges every response passes."""

    def __init__(self, judges: Sequence[Judge] = ()):
        names = [j.name for j in judges]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"MixtureOfJudges: judge names must be unique, {dupes} appear more than once")
        self.judges = list(judges)

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.judges]

    def judge(self, items: Sequence[Item]) -> MixtureResult:
        passed = np.ones(len(items), dtype=bool)
        verdicts: dict[str, list[Verdict]] = {}
        for j in self.judges:
            vs = list(j.judge(items))
            if len(vs) != len(items):
                raise RuntimeError(f"judge {j.name!r} returned {len(vs)} verdicts for {len(items)} items")
            verdicts[j.name] = vs
            passed &= np.array([v.passed for v in vs], dtype=bool)
        return MixtureResult(passed=passed, verdicts=verdicts)
