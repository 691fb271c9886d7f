"""Stage 3: CRRAFT with a Mixture of Judges over weighted, calibrated objectives (`rluf optimize`, `rluf sweep`).

Exports load lazily (rluf.lazy), so `import rluf.optimize` does not import torch.
"""

from rluf.lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_WEIGHTS": "config", "OptimizeConfig": "config",
    "CRRAFT": "crraft", "FALLBACK": "crraft", "SKIP": "crraft", "Selection": "crraft",
    "reward_weighted_sft_loss": "crraft", "select_responses": "crraft", "sequence_kl": "crraft",
    "Objective": "objectives", "calibrated_reward": "objectives", "combined_reward": "objectives",
    "optimize": "runner", "PAPER_RUNS": "sweep", "sweep": "sweep",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
