"""Sticky A/B assignment: a user's arm is a pure function of (experiment, user id) and the arms' shares.

u = first 8 bytes of sha256(experiment + "\\0" + user_id) read as a big-endian integer, divided by 2**64,
so u is uniform on [0, 1). The arm is the first whose cumulative share exceeds u. No state is needed, so
the assignment survives restarts and is the same on every gateway replica; the gateway still logs it.
Changing the shares or the experiment name re-draws users, so start a new experiment name instead.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from itertools import accumulate


def assignment_point(experiment: str, user_id: str) -> float:
    """u in [0, 1): the user's fixed position on the experiment's unit interval."""
    digest = hashlib.sha256(f"{experiment}\0{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ArmAssigner:
    """Maps users to arm names by cumulative share, in the configured order."""

    def __init__(self, experiment: str, arms: Sequence[tuple[str, float]]):
        self.experiment = experiment
        self.names = [name for name, _ in arms]
        total = sum(share for _, share in arms)
        self.bounds = [c / total for c in accumulate(share for _, share in arms)]
        self.bounds[-1] = 1.0  # guard against float round-off leaving a sliver unassigned

    def __call__(self, user_id: str) -> str:
        u = assignment_point(self.experiment, user_id)
        return self.names[bisect.bisect_right(self.bounds, u)]
