"""Stage 2, reward models: P[Love] (BCE + prior correction), helpfulness and safety (Bradley-Terry), Scorer.

    from rluf.rewards import Scorer, train_reward
    train_reward("love", "runs/x/curated", "runs/x/rewards/love")
    p = Scorer.from_pretrained("runs/x/rewards/love").prob(contexts, responses)
"""

from rluf.rewards.config import RewardConfig
from rluf.rewards.scorer import Scorer
from rluf.rewards.train import train_love, train_pairwise, train_reward

__all__ = ["RewardConfig", "Scorer", "train_love", "train_pairwise", "train_reward"]
