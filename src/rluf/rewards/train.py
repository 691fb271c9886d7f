"""`train_reward`: one entry point for the three objectives (what `rluf train-reward` and `rluf run` call)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rluf.errors import ConfigError
from rluf.rewards.config import RewardConfig
from rluf.rewards.love import train_love
from rluf.rewards.pairwise import train_pairwise

__all__ = ["train_love", "train_pairwise", "train_reward"]


def train_reward(objective: str, data: str | Path, out: str | Path, config: RewardConfig | None = None, *,
                 truth: str | Path | None = None, progress: bool = False, resume: bool = False) -> dict[str, Any]:
    """Train the `objective` reward model ("love", "helpfulness" or "safety"); returns its eval report.

    `config.objective` is set to `objective` (a copy; the caller's config is not changed).
    `truth` (the simulator's truth/ folder) only applies to love.
    """
    if objective not in ("love", "helpfulness", "safety"):
        raise ConfigError(f"objective = {objective!r}; choose love, helpfulness or safety")
    cfg = (config or RewardConfig()).model_copy(update={"objective": objective})
    if objective == "love":
        return train_love(data, out, cfg, truth=truth, progress=progress, resume=resume)
    return train_pairwise(data, out, cfg, progress=progress, resume=resume)
