"""Stage 2, reward models: P[Love] (BCE + prior correction), helpfulness and safety (Bradley-Terry), Scorer.

    from rluf.rewards import Scorer, train_reward
    train_reward("love", "runs/x/curated", "runs/x/rewards/love")
    p = Scorer.from_pretrained("runs/x/rewards/love").prob(contexts, responses)

Exports load lazily (rluf.lazy), so `import rluf.rewards` does not import torch or TRL.
"""

from rluf.lazy import lazy_exports

_EXPORTS = {
    "RewardConfig": "config", "Scorer": "scorer", "train_love": "train", "train_pairwise": "train",
    "train_reward": "train",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
