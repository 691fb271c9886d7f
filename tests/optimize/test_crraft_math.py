"""CRRAFT's math on hand-made numbers: calibrated reward, combined reward, sequence KL, selection, loss."""

import math

import numpy as np
import pytest
import torch

from rluf.optimize import (
    FALLBACK,
    SKIP,
    calibrated_reward,
    combined_reward,
    reward_weighted_sft_loss,
    select_responses,
    sequence_kl,
)


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_calibrated_reward_hand_computed():
    r = np.array([[1.0, 3.0], [0.0, -2.0]])  # (B=2, K=2)
    r_base = np.array([1.0, -1.0])
    R = calibrated_reward(r, r_base)
    # sigmoid(0) = 0.5, sigmoid(2) = 0.8807971, sigmoid(1) = 0.7310586, sigmoid(-1) = 0.2689414
    np.testing.assert_allclose(R, [[0.5, 0.8807971], [0.7310586, 0.2689414]], atol=1e-7)
    # a constant logit shift (e.g. from upsampling positives) cancels
    np.testing.assert_allclose(calibrated_reward(r + 5.3, r_base + 5.3), R, atol=1e-12)
    # bounded and stable for huge differences
    assert calibrated_reward(np.array([[1e4, -1e4]]), np.array([0.0])).tolist() == [[1.0, 0.0]]


def test_combined_reward_weights():
    R = {"helpfulness": np.array([[0.5, 1.0]]), "safety": np.array([[1.0, 0.0]]), "love": np.array([[0.2, 0.9]])}
    w = {"helpfulness": 0.7, "safety": 0.3, "love": 0.1}
    # 0.7*0.5 + 0.3*1 + 0.1*0.2 = 0.67 ; 0.7*1 + 0 + 0.1*0.9 = 0.79
    np.testing.assert_allclose(combined_reward(R, w), [[0.67, 0.79]])
    with pytest.raises(ValueError, match="no weighted objective"):
        combined_reward(R, {"other": 1.0})


def test_sequence_kl():
    np.testing.assert_allclose(sequence_kl(torch.tensor([-3.0, -10.0]), torch.tensor([-5.0, -9.0])), [2.0, -1.0])


def test_select_argmax_fallback_and_skip():
    R = np.array([[0.2, 0.9, 0.5], [0.8, 0.3, 0.1], [0.9, 0.9, 0.9], [0.1, 0.2, 0.3]])  # (B=4, K=3)
    passed = np.array([[1, 0, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]], bool)
    kl = np.array([[0.0, 0.0, 0.0], [9.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    base_passed = np.array([True, True, True, False])
    R_base = np.full(4, 0.55)
    sel = select_responses(R, passed, kl, kl_max=5.0, base_passed=base_passed, R_base=R_base)
    # row 0: 0.9 fails a judge -> best survivor is index 2 (0.5)
    # row 1: index 0 (0.8) is over KL_max -> index 1 (0.3)
    # row 2: nothing passes, y_base passes -> fallback with R_base
    # row 3: nothing passes and y_base fails -> skip
    assert sel.index.tolist() == [2, 1, FALLBACK, SKIP]
    np.testing.assert_allclose(sel.reward[:3], [0.5, 0.3, 0.55])
    assert math.isnan(sel.reward[3])
    assert sel.kept.tolist() == [True, True, True, False]
    assert sel.survivors.sum() == 4
    no_fb = select_responses(R, passed, kl, 5.0, base_passed, R_base, fallback="skip")
    assert no_fb.index.tolist() == [2, 1, SKIP, SKIP]


def test_select_ties_go_to_lowest_index():
    sel = select_responses(np.array([[0.4, 0.7, 0.7]]), np.ones((1, 3), bool), np.zeros((1, 3)), 1.0,
                           np.array([True]), np.array([0.5]))
    assert sel.index.tolist() == [1]


def test_reward_weighted_sft_loss_hand_computed():
    logp = torch.tensor([-2.0, -4.0], requires_grad=True)
    R = torch.tensor([0.5, 0.25])
    # -(1/2) * (0.5*-2 + 0.25*-4) = -(1/2) * (-2) = 1.0
    loss = reward_weighted_sft_loss(logp, R)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    # dL/dlogp_i = -R_i / n
    torch.testing.assert_close(logp.grad, torch.tensor([-0.25, -0.125]))
    # micro-batches with the batch's n sum to the full loss
    parts = reward_weighted_sft_loss(logp[:1], R[:1], n=2) + reward_weighted_sft_loss(logp[1:], R[1:], n=2)
    assert parts.item() == pytest.approx(1.0)


def test_generate_reports_cut_off_samples_and_crraft_drops_them(tiny_policy_dir, prompt_file, tmp_path):
    from optimize.optimize_helpers import ShareOfA, tiny_config
    from rluf.judges.config import build_judges
    from rluf.optimize.runner import _accelerator, _build_trainer, _models, build_pool
    from rluf.policy import Policy, Sampling

    policy = Policy.from_pretrained(tiny_policy_dir, device="cpu")
    ctx = [[{"role": "user", "content": "hello there"}]] * 3
    texts, finished = policy.generate(ctx, n=4, sampling=Sampling(max_new_tokens=2), generator_seed=0,
                                      return_finished=True)
    assert finished.shape == (3, 4) and len(texts) == 3
    _, long_finished = policy.generate(ctx, n=4, sampling=Sampling(max_new_tokens=200), generator_seed=0,
                                       return_finished=True)
    assert long_finished.mean() > finished.mean()  # 2 tokens cut most samples off; 200 lets them end
    cfg = tiny_config(tiny_policy_dir, prompt_file, sampling=dict(max_new_tokens=2))
    pol, ref = _models(cfg, "cpu")
    objectives = {"a": ShareOfA()}
    judges = build_judges(cfg.judges, objectives)
    trainer = _build_trainer(cfg, pol, ref, objectives, judges, build_pool(cfg, None, ref), tmp_path, None,
                             _accelerator(cfg, "cpu", tmp_path))
    cand = trainer.candidates(0)
    assert cand.judge_rates["complete"] < 1.0
    assert cand.judge_rates["all"] <= cand.judge_rates["complete"]


def test_token_budget_batches_cover_every_row_once_within_the_budget():
    from rluf.policy import token_budget_batches

    lengths = [5, 300, 7, 6, 40, 5, 8, 9]
    batches = token_budget_batches(lengths, max_rows=4, new_tokens=10, budget=100)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 4
        assert len(b) == 1 or len(b) * (max(lengths[i] for i in b) + 10) <= 100
    assert [list(b) for b in batches if 1 in b] == [[1]]  # the long prompt alone
    assert [len(b) for b in token_budget_batches(lengths, 4, 10, None)] == [4, 4]  # no budget: fixed count


def test_answers_do_not_depend_on_the_batching(tiny_policy_dir):
    """Seeded per prompt, the answers are the same in one batch of 12 rows or in batches of a few."""
    from rluf.policy import GenerationEngine, Policy, Sampling

    policy = Policy.from_pretrained(tiny_policy_dir, device="cpu")
    assert isinstance(policy, GenerationEngine)  # the seam CRRAFT, evaluation and the simulator generate through
    ctx = [[{"role": "user", "content": q}] for q in ("hi", "Tell me a joke, a long one please.", "How are you?")]
    one = policy.generate(ctx, n=4, sampling=Sampling(max_new_tokens=6), seeds=[1, 2, 3])
    small = policy.generate(ctx, n=4, sampling=Sampling(max_new_tokens=6, token_budget=40), seeds=[1, 2, 3])
    alone = policy.generate(ctx[1:2], n=4, sampling=Sampling(max_new_tokens=6), seeds=[2])
    assert one == small and one[1] == alone[0]
    assert len({a for answers in one for a in answers}) > 3  # they are samples, not one greedy answer
