import math

import pytest
import torch

from rluf.rewards.losses import bradley_terry_loss, love_bce_loss


def test_love_bce_loss_hand_computed():
    z = torch.tensor([0.0, 2.0])
    y = torch.tensor([1.0, 0.0])
    # example 1: -log sigmoid(0) = log 2; example 2: -log(1 - sigmoid(2)) = log(1 + e^2)
    l1, l2 = math.log(2), math.log(1 + math.e**2)
    assert love_bce_loss(z, y).item() == pytest.approx((l1 + l2) / 2, rel=1e-6)
    w = torch.tensor([3.0, 1.0])
    assert love_bce_loss(z, y, w).item() == pytest.approx((3 * l1 + l2) / 4, rel=1e-6)


def test_love_bce_loss_weights_scale_free():
    z, y = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([1.0, 0.0, 1.0])
    w = torch.tensor([1.0, 2.0, 0.5])
    assert love_bce_loss(z, y, w).item() == pytest.approx(love_bce_loss(z, y, 10 * w).item(), rel=1e-6)


def test_bradley_terry_loss_hand_computed():
    r_c, r_r = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    # -log sigmoid(1) = log(1 + e^-1); -log sigmoid(0) = log 2
    expected = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert bradley_terry_loss(r_c, r_r).item() == pytest.approx(expected, rel=1e-6)


def test_bradley_terry_loss_gradient_pushes_chosen_up():
    r_c = torch.tensor([0.0], requires_grad=True)
    r_r = torch.tensor([0.5], requires_grad=True)
    bradley_terry_loss(r_c, r_r).backward()
    # d/d r_c = -(1 - sigmoid(r_c - r_r)) = -sigmoid(0.5)
    assert r_c.grad.item() == pytest.approx(-1 / (1 + math.exp(-0.5)), rel=1e-6)
    assert r_r.grad.item() == pytest.approx(1 / (1 + math.exp(-0.5)), rel=1e-6)
