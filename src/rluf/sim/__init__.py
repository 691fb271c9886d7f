"""The simulated deployment: a world with known ground truth, a baseline policy, and `rluf simulate`.

    from rluf.sim import WorldConfig, World, simulate, simulate_ab

See docs/simulator.md.
"""

from rluf.sim.config import WorldConfig, quick_config
from rluf.sim.deployment import expert_pairs, hash_split, load_policy, simulate, simulate_ab
from rluf.sim.world import World

__all__ = ["World", "WorldConfig", "expert_pairs", "hash_split", "load_policy", "quick_config", "simulate",
           "simulate_ab"]
