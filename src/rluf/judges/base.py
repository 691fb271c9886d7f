"""The judge interface: a batch of (context, response, metadata) items in, one (passed, reason) per item out.

A judge is CGPO's J_h(x, y) in {0, 1} (Xu et al., 2024, Sec. 3): a constraint a response must satisfy.
Judges are plain objects with a ``name`` and a ``judge(items)`` method (a ``Protocol``, no base class), so
a rule, a reward model with a threshold and a remote LLM all plug into the same Mixture of Judges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

Chat = list[dict[str, str]]


@dataclass(frozen=True)
class Item:
    """One response to judge. `metadata` carries per-prompt facts, e.g. ``{"reference": "Paris"}``."""

    context: Chat
    response: str
    metadata: dict[str, Any] = field(default_factory=dict)


class Verdict(NamedTuple):
    """A judge's decision on one item; `reason` says why it failed (empty when it passed)."""

    passed: bool
    reason: str = ""


PASS = Verdict(True, "")


@runtime_checkable
class Judge(Protocol):
    """Anything with a name and a batched `judge` method."""

    name: str

    def judge(self, items: Sequence[Item]) -> list[Verdict]: ...


@runtime_checkable
class Scorer(Protocol):
    """What a model judge needs from a reward model: raw scores for (context, response) pairs, shape (N,)."""

    def score(self, contexts: Sequence[Chat], responses: Sequence[str]) -> np.ndarray: ...


def make_items(
    contexts: Sequence[Chat], responses: Sequence[str], metadata: Sequence[dict[str, Any]] | None = None
) -> list[Item]:
    """Zip parallel lists into items (metadata defaults to empty dicts)."""
    if len(contexts) != len(responses):
        raise ValueError(f"make_items: {len(contexts)} contexts but {len(responses)} responses; pass one each")
    metas = metadata if metadata is not None else [{}] * len(contexts)
    if len(metas) != len(contexts):
        raise ValueError(f"make_items: {len(contexts)} contexts but {len(metas)} metadata dicts; pass one each")
    return [Item(c, r, dict(m or {})) for c, r, m in zip(contexts, responses, metas, strict=True)]
