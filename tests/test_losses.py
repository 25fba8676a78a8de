"""Eq. 4, 10, 11 against hand computations; Eq. 14's gradient; the Table III ablation switches."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from mmgap.config import TrainConfig
from mmgap.gap import kl_gap
from mmgap.losses import (
    ABLATIONS,
    AdaptiveLossConfig,
    adaptive_loss,
    annealing,
    gap_penalty,
    per_sample_ce,
    warmup_loss,
)
from mmgap.models import ModelOutput

# Two samples, three classes; logits = log-probabilities. Fused = l^a + l^v (Eq. 2), so s^f ∝ s^a · s^v.
P_A = [[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]]
P_V = [[1 / 3, 1 / 3, 1 / 3], [0.1, 0.8, 0.1]]
Y = torch.tensor([0, 2])
# s^a_y = [0.5, 0.6], s^v_y = [1/3, 0.1]  ->  g = [1/6, 0.5]
# s^f row 0 ∝ [.5, .25, .25]/3 -> s^f_y = 0.5;  row 1 ∝ [.02, .16, .06] -> s^f_y = .06 / .24 = 0.25
CE_A = [-math.log(0.5), -math.log(0.6)]
CE_V = [-math.log(1 / 3), -math.log(0.1)]
CE_F = [math.log(2.0), math.log(4.0)]
G = [1 / 6, 0.5]


def _out(requires_grad: bool = False) -> ModelOutput:
    la = torch.tensor(P_A, dtype=torch.float64).log().requires_grad_(requires_grad)
    lv = torch.tensor(P_V, dtype=torch.float64).log().requires_grad_(requires_grad)
    feat = torch.zeros(2, 4, dtype=torch.float64)
    return ModelOutput(la + lv, la, lv, feat, feat)


def test_per_sample_ce_eq4() -> None:
    assert torch.allclose(per_sample_ce(_out().logit_a, Y), torch.tensor(CE_A, dtype=torch.float64))
    assert torch.allclose(per_sample_ce(_out().fused, Y), torch.tensor(CE_F, dtype=torch.float64))


def test_warmup_loss_eq10() -> None:
    loss, parts = warmup_loss(_out(), Y)
    expected = sum(CE_F) / 2 + sum(CE_A) / 2 + sum(CE_V) / 2
    assert loss.item() == pytest.approx(expected)
    assert parts["fusion"].item() == pytest.approx(sum(CE_F) / 2)
    assert parts["uni_v"].item() == pytest.approx(sum(CE_V) / 2)
    assert not parts["fusion"].requires_grad


def test_adaptive_loss_eq11_hand_computation() -> None:
    alpha, beta, gamma, rho, epoch, mu0 = 0.7, 0.1, 2.0, 0.5, 2, 0.05
    lam = rho**epoch  # 0.25
    w0, w1 = [0.9, 0.2], [0.1, 0.8]
    cfg = AdaptiveLossConfig(alpha=alpha, beta=beta, gamma=gamma, rho=rho)
    loss, parts = adaptive_loss(_out(), Y, torch.tensor(w0), torch.tensor(w1), mu0, epoch, cfg)
    per_sample = [
        alpha * w0[i] * CE_F[i]
        + lam * (beta * G[i] ** 2 + gamma * w1[i] * (G[i] - mu0) ** 2 + CE_A[i] + CE_V[i])
        for i in range(2)
    ]
    assert loss.item() == pytest.approx(sum(per_sample) / 2, rel=1e-6)
    align = lam * gamma * (w1[0] * (G[0] - mu0) ** 2 + w1[1] * (G[1] - mu0) ** 2) / 2
    assert parts["align"].item() == pytest.approx(align)
    assert parts["lambda_t"].item() == pytest.approx(0.25)
    assert parts["gap"].item() == pytest.approx(sum(G) / 2)
    terms = sum(parts[k] for k in ("fusion", "gap_reg", "align", "uni_a", "uni_v"))
    assert terms.item() == pytest.approx(loss.item())


def test_adaptive_loss_kl_gap_term() -> None:
    cfg = AdaptiveLossConfig(beta=0.3, gamma=0.0, rho=1.0, gap="kl")
    out = _out()
    _, parts = adaptive_loss(out, Y, 0.5, 0.5, 0.0, 4, cfg)
    g = kl_gap(out.logit_a, out.logit_v)
    assert parts["gap_reg"].item() == pytest.approx(0.3 * (g**2).mean().item())
    assert parts["gap"].item() != pytest.approx(sum(G) / 2)  # the KL gap, not the prob gap


def test_eq14_gradient_wrt_weaker_confidence() -> None:
    beta, gamma, mu0 = 0.1, 2.0, 0.05
    w1 = torch.tensor([0.1, 0.8], dtype=torch.float64)
    s_a = torch.tensor([0.5, 0.6], dtype=torch.float64)
    s_v = torch.tensor([1 / 3, 0.1], dtype=torch.float64, requires_grad=True)
    gap_penalty(s_a - s_v, w1, mu0, beta, gamma).sum().backward()
    g = (s_a - s_v).detach()
    correct = -2 * gamma * w1 * (g - mu0) - 2 * beta * g
    assert torch.allclose(s_v.grad, correct)
    printed = -2 * w1 * (g - mu0) - 2 * beta * g  # the paper's Eq. 14 as printed drops γ
    assert not torch.allclose(s_v.grad, printed)


def test_eq14_through_adaptive_loss_wrt_visual_logits() -> None:
    beta, gamma, rho, epoch, mu0 = 0.1, 2.0, 0.5, 1, 0.05
    w1 = torch.tensor([0.1, 0.8])
    cfg = AdaptiveLossConfig(alpha=0.0, beta=beta, gamma=gamma, rho=rho, use_unimodal=False)
    out = _out(requires_grad=True)
    la, lv = out.logit_a, out.logit_v
    out = ModelOutput(la.detach() + lv.detach(), la, lv, out.feat_a, out.feat_v)
    loss, _ = adaptive_loss(out, Y, 0.0, w1, mu0, epoch, cfg)
    loss.backward()
    # loss = λ/B Σ L_gap,i ; dL_gap/ds^v = −2γ w1 (g − μ0) − 2β g ; ds^v_y/dl^v_j = s^v_y (δ_yj − s^v_j)
    s_v = torch.tensor(P_V, dtype=torch.float64)
    g = torch.tensor(G, dtype=torch.float64)
    dl_ds = -2 * gamma * w1.double() * (g - mu0) - 2 * beta * g
    onehot = torch.nn.functional.one_hot(Y, 3).double()
    ds_dl = s_v.gather(1, Y[:, None]) * (onehot - s_v)
    expected = rho**epoch / 2 * dl_ds[:, None] * ds_dl
    assert torch.allclose(lv.grad, expected, atol=1e-10)


PARTS = ("fusion", "gap_reg", "align", "uni_a", "uni_v")


@pytest.mark.parametrize(
    "name,changed",
    [
        ("full", set()),
        ("no_fusion", {"fusion"}),
        ("no_gap_reg", {"gap_reg"}),
        ("no_align", {"align"}),
        ("no_weights", {"fusion", "align"}),  # the terms that carry w0 and w1
        ("no_unimodal", {"uni_a", "uni_v"}),
    ],
)
def test_each_ablation_changes_exactly_its_term(name: str, changed: set[str]) -> None:
    base = AdaptiveLossConfig(alpha=1.0, beta=0.1, gamma=1.0, rho=0.9)
    w0, w1 = torch.tensor([0.9, 0.2]), torch.tensor([0.1, 0.8])
    _, ref = adaptive_loss(_out(), Y, w0, w1, -0.1, 1, base)
    _, abl = adaptive_loss(_out(), Y, w0, w1, -0.1, 1, base.ablation(name))
    for key in ref:
        differs = not torch.allclose(ref[key].double(), abl[key].double())
        assert differs == (key in changed), f"{name}: term {key} changed={differs}"
    if name == "no_weights":  # w0 = w1 = 1
        assert abl["fusion"].item() == pytest.approx(sum(CE_F) / 2)
        assert abl["align"].item() == pytest.approx(0.9 * ((G[0] + 0.1) ** 2 + (G[1] + 0.1) ** 2) / 2)
    elif changed:
        assert all(abl[k].item() == 0.0 for k in changed)


def test_ablation_names_and_config_validation() -> None:
    assert set(ABLATIONS) == {"full", "no_fusion", "no_gap_reg", "no_align", "no_weights", "no_unimodal"}
    with pytest.raises(ValueError, match="unknown ablation"):
        AdaptiveLossConfig().ablation("no_beta")
    with pytest.raises(ValueError, match="rho"):
        AdaptiveLossConfig(rho=0.0)
    with pytest.raises(ValueError, match="gap"):
        AdaptiveLossConfig(gap="l1")


def test_from_train_config_and_auto_dominant() -> None:
    train = TrainConfig(alpha=0.5, beta=0.2, gamma=3.0, rho=0.8, gap="kl", dominant="auto")
    cfg = AdaptiveLossConfig.from_train_config(train)
    got = (cfg.alpha, cfg.beta, cfg.gamma, cfg.rho, cfg.gap, cfg.dominant)
    assert got == (0.5, 0.2, 3.0, 0.8, "kl", "auto")
    with pytest.raises(ValueError, match="pick_dominant"):
        adaptive_loss(_out(), Y, 1.0, 0.0, 0.0, 0, cfg)
    assert AdaptiveLossConfig.from_train_config(train, dominant="visual").dominant == "visual"
    vis = dataclasses.replace(cfg, dominant="visual", gap="prob", gamma=0.0)
    _, parts = adaptive_loss(_out(), Y, 1.0, 0.0, 0.0, 0, vis)
    assert parts["gap"].item() == pytest.approx(-sum(G) / 2)


def test_annealing_and_weight_shapes() -> None:
    assert annealing(0.5, 0) == 1.0 and annealing(0.5, 3) == 0.125 and annealing(1.0, 50) == 1.0
    with pytest.raises(ValueError, match="first adaptive epoch"):
        annealing(0.9, -1)
    with pytest.raises(ValueError, match="one per sample"):
        adaptive_loss(_out(), Y, torch.ones(3), torch.zeros(3), 0.0, 0, AdaptiveLossConfig())
