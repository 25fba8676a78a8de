"""Modality gap (Eq. 5-6), z-score (Eq. 7) and the dominant modality, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmgap.gap import (
    compute_gap,
    kl_gap,
    kl_to_uniform,
    pick_dominant,
    prob_gap,
    true_class_prob,
    unzscore,
    zscore,
)

# Two samples, three classes. Logits are log-probabilities plus a shift (softmax ignores it).
P_A = [[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]]
P_V = [[1 / 3, 1 / 3, 1 / 3], [0.1, 0.8, 0.1]]
Y = torch.tensor([0, 2])


def _logits(p: list[list[float]], shift: float) -> torch.Tensor:
    return torch.tensor(p, dtype=torch.float64).log() + shift


LA, LV = _logits(P_A, 3.0), _logits(P_V, -1.5)


def test_true_class_prob_hand_values() -> None:
    assert torch.allclose(true_class_prob(LA, Y), torch.tensor([0.5, 0.6], dtype=torch.float64))
    assert torch.allclose(true_class_prob(LV, Y), torch.tensor([1 / 3, 0.1], dtype=torch.float64))


def test_prob_gap_eq5_and_sign_convention() -> None:
    # g = s^a_y - s^v_y = [0.5 - 1/3, 0.6 - 0.1]
    expected = torch.tensor([1 / 6, 0.5], dtype=torch.float64)
    assert torch.allclose(prob_gap(LA, LV, Y), expected, atol=1e-6)
    assert torch.allclose(prob_gap(LA, LV, Y, dominant="visual"), -expected, atol=1e-6)
    assert torch.allclose(compute_gap("prob", LA, LV, Y), expected, atol=1e-6)


def test_kl_to_uniform_and_kl_gap_eq6() -> None:
    # KL(p || U) = sum_j p_j log(M p_j), M = 3
    kl_a = [0.5 * math.log(1.5) + 2 * 0.25 * math.log(0.75), 2 * 0.2 * math.log(0.6) + 0.6 * math.log(1.8)]
    kl_v = [0.0, 2 * 0.1 * math.log(0.3) + 0.8 * math.log(2.4)]
    assert torch.allclose(kl_to_uniform(LA), torch.tensor(kl_a, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(kl_to_uniform(LV), torch.tensor(kl_v, dtype=torch.float64), atol=1e-6)
    expected = torch.tensor([kl_a[0] - kl_v[0], kl_a[1] - kl_v[1]], dtype=torch.float64)
    assert torch.allclose(kl_gap(LA, LV), expected, atol=1e-6)
    assert torch.allclose(kl_gap(LA, LV, dominant="visual"), -expected, atol=1e-6)
    assert torch.allclose(compute_gap("kl", LA, LV), expected, atol=1e-6)  # y not needed


def test_kl_to_uniform_is_stable_for_confident_logits() -> None:
    logits = torch.tensor([[1000.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    kl = kl_to_uniform(logits)
    assert torch.allclose(kl, torch.tensor([math.log(3), 0.0]), atol=1e-6)
    half = kl_to_uniform(logits.detach().bfloat16())
    assert half.dtype == torch.float32 and torch.allclose(half, kl.detach(), atol=1e-6)
    kl.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_gaps_are_differentiable_with_hand_gradients() -> None:
    la = LA.clone().requires_grad_(True)
    prob_gap(la, LV, Y).sum().backward()
    # d s_y / d l_j = s_y (δ_yj − s_j); row 0: s = [.5, .25, .25], y = 0; row 1: s = [.2, .2, .6], y = 2
    expected = torch.tensor([[0.25, -0.125, -0.125], [-0.12, -0.12, 0.24]], dtype=torch.float64)
    assert torch.allclose(la.grad, expected, atol=1e-6)

    la = LA.clone().requires_grad_(True)
    kl_gap(la, LV).sum().backward()
    # d KL / d l_j = p_j (log p_j − Σ_k p_k log p_k)
    p = torch.tensor(P_A, dtype=torch.float64)
    neg_h = (p * p.log()).sum(1, keepdim=True)
    assert torch.allclose(la.grad, p * (p.log() - neg_h), atol=1e-6)


def test_numpy_in_numpy_out() -> None:
    g = prob_gap(LA.numpy(), LV.numpy(), Y.numpy())
    assert isinstance(g, np.ndarray)
    np.testing.assert_allclose(g, [1 / 6, 0.5], atol=1e-6)
    assert isinstance(kl_gap(LA.numpy(), LV.numpy()), np.ndarray)


def test_zscore_eq7_hand_values_and_inverse() -> None:
    g = torch.tensor([1.0, 2.0, 3.0, 6.0])
    g_hat, mean, std = zscore(g)
    assert mean == pytest.approx(3.0) and std == pytest.approx(math.sqrt(3.5))  # population std
    assert torch.allclose(g_hat, torch.tensor([-2.0, -1.0, 0.0, 3.0]) / math.sqrt(3.5))
    assert torch.allclose(unzscore(g_hat, mean, std), g)
    g_np_hat, m2, s2 = zscore(np.array([1.0, 2.0, 3.0, 6.0]))
    np.testing.assert_allclose(g_np_hat, g_hat.numpy(), atol=1e-6)
    assert (m2, s2) == pytest.approx((mean, std))
    assert unzscore(0.5, mean, std) == pytest.approx(3.0 + 0.5 * math.sqrt(3.5))


def test_zscore_refuses_degenerate_input() -> None:
    with pytest.raises(ValueError, match="nearly\\) equal"):
        zscore(torch.full((5,), 0.3))
    with pytest.raises(ValueError, match="non-finite"):
        zscore(torch.tensor([0.1, float("nan"), 0.2]))
    with pytest.raises(ValueError, match="empty"):
        zscore(np.array([]))


def test_pick_dominant() -> None:
    assert pick_dominant(LA, LV, Y) == "audio"  # mean s_y: audio 0.55 vs visual 0.217
    assert pick_dominant(LV, LA, Y) == "visual"
    assert pick_dominant(LA.numpy(), LV.numpy(), Y.numpy()) == "audio"


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="pick_dominant"):
        prob_gap(LA, LV, Y, dominant="auto")
    with pytest.raises(ValueError, match="unknown gap kind"):
        compute_gap("l2", LA, LV, Y)
    with pytest.raises(ValueError, match="needs the labels"):
        compute_gap("prob", LA, LV)
    with pytest.raises(ValueError, match=r"labels must be \[B\]"):
        true_class_prob(LA, torch.tensor([0, 1, 2]))
