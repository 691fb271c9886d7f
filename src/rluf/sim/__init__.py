"""The simulated deployment: a world with known ground truth, a baseline policy, and `rluf simulate`.

    from rluf.sim import WorldConfig, World, simulate, simulate_ab

See docs/simulator.md. Exports load lazily (rluf.lazy).
"""

from rluf.lazy import lazy_exports

_EXPORTS = {
    "WorldConfig": "config", "quick_config": "config", "World": "world",
    "expert_pairs": "simulate", "hash_split": "simulate", "load_policy": "simulate", "simulate": "simulate",
    "simulate_ab": "simulate",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
