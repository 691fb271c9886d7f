"""Stage 3: CRRAFT with a Mixture of Judges over weighted, calibrated objectives (`rluf optimize`, `rluf sweep`)."""

from rluf.optimize.config import DEFAULT_WEIGHTS, PAPER_SWEEP, OptimizeConfig, SweepRun
from rluf.optimize.crraft import (
    CRRAFT,
    FALLBACK,
    SKIP,
    Selection,
    reward_weighted_sft_loss,
    select_responses,
    sequence_kl,
)
from rluf.optimize.objectives import Objective, calibrated_reward, combined_reward
from rluf.optimize.runner import optimize
from rluf.optimize.weight_sweep import sweep

__all__ = [
    "DEFAULT_WEIGHTS", "OptimizeConfig", "CRRAFT", "FALLBACK", "SKIP", "Selection", "reward_weighted_sft_loss",
    "select_responses", "sequence_kl", "Objective", "calibrated_reward", "combined_reward", "optimize",
    "PAPER_SWEEP", "SweepRun", "sweep",
]
