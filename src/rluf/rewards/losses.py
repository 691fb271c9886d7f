"""Reward-model losses as small pure tensor functions. Metrics and logging live elsewhere."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def love_bce_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted binary cross-entropy for P[Love] (RLUF, Han et al. 2025, Sec. 3.2: "binary cross-entropy").

    loss = sum_i w_i * -[y_i log sigmoid(z_i) + (1 - y_i) log(1 - sigmoid(z_i))] / sum_i w_i

    Args:
        logits: (B,) raw scores z_i.
        labels: (B,) 0/1 Love labels y_i.
        weights: (B,) per-example weights w_i (config `train.sample_weights`); None means all 1.
    Returns:
        scalar loss.
    """
    per_example = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")  # (B,)
    if weights is None:
        return per_example.mean()
    weights = weights.float()
    return (weights * per_example).sum() / weights.sum()


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry pairwise loss (Bradley & Terry 1952; InstructGPT, Ouyang et al. 2022, Eq. 1).

    loss = -mean_i log sigmoid(r(x_i, y_c,i) - r(x_i, y_r,i))

    Args:
        r_chosen: (B,) rewards of the preferred responses.
        r_rejected: (B,) rewards of the dispreferred responses.
    Returns:
        scalar loss.
    """
    return -F.logsigmoid(r_chosen.float() - r_rejected.float()).mean()
