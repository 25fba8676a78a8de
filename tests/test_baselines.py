"""Baselines of Table II: each core formula against hand-computed values, the hooks on a tiny model, and a
smoke run of every method through mmgap.trainer.train_baseline."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from mmgap import baselines
from mmgap.baselines.agm import (
    SPEEDUP_CAP,
    AGMStrategy,
    agm_coefficients,
    agm_score,
    running_mean,
    shapley_contributions,
)
from mmgap.baselines.dr import DRStrategy, kmeans_purity, purity, reinit_strength, soft_reinit_
from mmgap.baselines.gblending import blending_weights
from mmgap.baselines.mla import (
    MLAStrategy,
    SharedHead,
    entropy_weights,
    normalize_projector,
    owm_alpha,
    owm_update,
    project_gradient,
)
from mmgap.baselines.mmcosine import CosineHead, MMCosineStrategy, cosine_logits
from mmgap.baselines.ogm_ge import OGMGEStrategy, modulate_grads, ogm_coefficient, ogm_coefficients
from mmgap.baselines.opm import opm_drop, opm_drop_probs, opm_theta
from mmgap.baselines.pmr import (
    PMRStrategy,
    class_sums,
    pmr_coefficients,
    pmr_loss,
    prototype_logits,
    update_prototypes,
)
from mmgap.baselines.unimodal import UnimodalHead
from mmgap.config import get_preset
from mmgap.metrics import evaluate_logits
from mmgap.models import AVClassifier

LN3 = math.log(3.0)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a loaded 2-core machine two spinning threads make tiny convs ~20x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class FakeTrainer:
    """The trainer attributes the strategies use, around a tiny AVClassifier (no data pipeline)."""

    def __init__(self, seed: int = 0, num_classes: int = 3, batch_size: int = 6) -> None:
        torch.manual_seed(seed)
        self.model = AVClassifier(num_classes, width=2)
        self.device = torch.device("cpu")
        self.amp_dtype = None
        self.num_classes = num_classes
        self.generator = torch.Generator().manual_seed(seed)
        self.preset = get_preset("smoke")
        self.optimizer = None
        g = torch.Generator().manual_seed(seed + 1)
        self._batches = [
            {"audio": torch.randn(batch_size, 1, 16, 16, generator=g),
             "frames": torch.randn(batch_size, 2, 3, 16, 16, generator=g),
             "label": torch.arange(batch_size) % num_classes,
             "index": torch.arange(batch_size) + k * batch_size}
            for k in range(2)
        ]

    def forward(self, batch):
        return self.model(batch["audio"], batch["frames"])

    def batches(self, split, train):
        return list(self._batches)

    def sgd(self, lr: float = 0.05) -> torch.optim.Optimizer:
        """The trainer's optimizer (SGD with momentum), built after a strategy's setup as mmgap.trainer does."""
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
        return self.optimizer

    def step(self, strategy, batch, epoch: int = 0):
        """One batch exactly as mmgap.trainer.Trainer._run_epoch runs it; returns (loss, parts)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, parts = strategy.training_step(self, batch, epoch)
        loss.backward()
        strategy.after_backward(self, epoch)
        self.optimizer.step()
        return loss, parts


def encoder_grads(model: nn.Module, name: str) -> list[torch.Tensor]:
    return [p.grad.clone() for p in getattr(model, name).parameters() if p.grad is not None]


# ---------------------------------------------------------------------------------------------- OGM-GE


def test_ogm_coefficient_hand_values():
    # Eq. 10 of OGM-GE (their main.py: 1 - tanh(alpha * relu(r)) when r > 1, else 1), alpha = 0.8.
    k = ogm_coefficient(torch.tensor([0.8, 1.0, 1.5, 1.25]), alpha=0.8)
    expected = torch.tensor([1.0, 1.0, 1.0 - math.tanh(0.8 * 1.5), 1.0 - math.tanh(0.8 * 1.25)])
    torch.testing.assert_close(k, expected)
    assert k[2].item() == pytest.approx(0.1663453930, rel=1e-6)  # r = 1.5: 1 - tanh(1.2), not 1 - tanh(0.4)
    assert k[3].item() == pytest.approx(0.2384058440, rel=1e-6)  # r = 1.25: 1 - tanh(1.0)
    # Through the split logits: s_a = 0.75 + 0.75 = 1.5, s_v = 0.5 + 0.5 = 1.0 -> r_a = 1.5.
    logit_a = torch.tensor([[LN3, 0.0], [0.0, LN3]])
    logit_v = torch.zeros(2, 2)
    y = torch.tensor([0, 1])
    k_a, k_v, r_a = ogm_coefficients(logit_a, logit_v, y, alpha=0.8)
    assert r_a.item() == pytest.approx(1.5, rel=1e-6)
    assert (k_a.item(), k_v.item()) == (pytest.approx(0.1663453930, rel=1e-5), 1.0)
    # r_a = 0.8 (true-class probabilities 0.4 vs 0.5): audio keeps 1, visual (r_v = 1.25) is slowed.
    logit_a = torch.tensor([[math.log(0.4 / 0.6), 0.0], [0.0, math.log(0.4 / 0.6)]])
    k_a, k_v, r_a = ogm_coefficients(logit_a, logit_v, y, alpha=0.8)
    assert r_a.item() == pytest.approx(0.8, rel=1e-5)
    assert (k_a.item(), k_v.item()) == (1.0, pytest.approx(0.2384058440, rel=1e-5))
    k_a, k_v, _ = ogm_coefficients(logit_v, logit_v, y, alpha=0.8)  # a tie, r = 1: neither is slowed (Eq. 10)
    assert (k_a.item(), k_v.item()) == (1.0, 1.0)


def test_ogm_scales_only_conv_weight_gradients_of_the_dominant_encoder():
    tr = FakeTrainer()
    strat = OGMGEStrategy(alpha=0.8, ge=False)
    strat.setup(tr)
    batch = tr._batches[0]
    ref = copy.deepcopy(tr.model)
    loss, parts = strat.training_step(tr, batch, epoch=0)
    loss.backward()
    out = ref(batch["audio"], batch["frames"])
    nn.functional.cross_entropy(out.fused, batch["label"]).backward()
    strat.after_backward(tr, epoch=0)
    k_a, k_v = parts["coeff_a"].item(), parts["coeff_v"].item()
    assert min(k_a, k_v) < 1.0 and max(k_a, k_v) == 1.0  # exactly one side is modulated
    for name, k in (("audio_encoder", k_a), ("visual_encoder", k_v)):
        for (pname, p), p0 in zip(getattr(tr.model, name).named_parameters(), getattr(ref, name).parameters(),
                                  strict=True):
            scale = k if p.dim() == 4 else 1.0  # conv weights only; BatchNorm and biases untouched
            torch.testing.assert_close(p.grad, p0.grad * scale, rtol=1e-5, atol=1e-6, msg=pname)
    torch.testing.assert_close(tr.model.head.weight.grad, ref.head.weight.grad)  # the head is untouched
    # Outside the modulation window nothing changes: window (0.5, 1.0) of a 4-epoch run starts at epoch 2.
    strat2 = OGMGEStrategy(window=(0.5, 1.0), ge=False)
    strat2.setup(tr)
    assert strat2.schedule(4) == {"modulation_starts": 2, "modulation_ends": 3}
    tr.model.zero_grad()
    loss, _ = strat2.training_step(tr, batch, epoch=1)
    loss.backward()
    before = encoder_grads(tr.model, "audio_encoder")
    strat2.after_backward(tr, epoch=1)
    assert all(torch.equal(a, b) for a, b in zip(before, encoder_grads(tr.model, "audio_encoder"), strict=True))


def test_ge_noise_has_the_gradients_own_std_on_conv_weights_only():
    net = nn.Sequential(nn.Conv2d(20, 40, 5), nn.BatchNorm2d(40))
    g = torch.Generator().manual_seed(0)
    conv, bn = net[0], net[1]
    conv.weight.grad = 3.0 * torch.randn(conv.weight.shape, generator=g)
    conv.bias.grad = torch.ones(40)
    bn.weight.grad, bn.bias.grad = torch.ones(40), torch.ones(40)
    w0 = conv.weight.grad.clone()
    modulate_grads(net, 0.5, ge=True, generator=torch.Generator().manual_seed(1))
    noise = conv.weight.grad - 0.5 * w0
    assert noise.std().item() == pytest.approx(w0.std().item(), rel=0.03)  # the unscaled gradient's std
    assert noise.mean().abs().item() < 0.05
    for vec in (conv.bias.grad, bn.weight.grad, bn.bias.grad):  # 1-D: neither scaled nor noised
        torch.testing.assert_close(vec, torch.ones(40))


# ---------------------------------------------------------------------------------------------- MMCosine


def test_mmcosine_logits_hand_values():
    feat_a = torch.tensor([[3.0, 4.0]])  # -> [0.6, 0.8]
    feat_v = torch.tensor([[2.0, 0.0]])  # -> [1, 0]
    head = CosineHead(2, 2, num_classes=2, scale=10.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 5.0], [0.0, 2.0, 3.0, 0.0]]))
    fused, l_a, l_v = head(feat_a, feat_v)
    torch.testing.assert_close(l_a, torch.tensor([[6.0, 8.0]]))
    torch.testing.assert_close(l_v, torch.tensor([[0.0, 10.0]]))
    torch.testing.assert_close(fused, torch.tensor([[6.0, 18.0]]))
    assert head.bias is None
    torch.testing.assert_close(cosine_logits(feat_a, torch.tensor([[-3.0, -4.0]]), 10.0), torch.tensor([[-10.0]]))


def test_mmcosine_setup_swaps_head_and_keeps_weights():
    tr = FakeTrainer()
    w0 = tr.model.head.weight.detach().clone()
    strat = MMCosineStrategy(scale=10.0)
    strat.setup(tr)
    strat.setup(tr)  # idempotent
    assert isinstance(tr.model.head, CosineHead)
    torch.testing.assert_close(tr.model.head.weight, w0)
    out = tr.forward(tr._batches[0])
    assert out.logit_a.abs().max() <= 10.0 + 1e-5 and out.fused.abs().max() <= 20.0 + 1e-5


# ---------------------------------------------------------------------------------------------- PMR


def test_pmr_prototypes_logits_and_ratio():
    feats = torch.tensor([[1.0, 1.0], [3.0, 3.0], [10.0, 0.0]])
    sums, counts = class_sums(feats, torch.tensor([0, 0, 1]), 3)
    torch.testing.assert_close(counts, torch.tensor([2.0, 1.0, 0.0]))
    fresh = update_prototypes(sums, counts, None, momentum=0.25)
    torch.testing.assert_close(fresh, torch.tensor([[2.0, 2.0], [10.0, 0.0], [0.0, 0.0]]))
    old = torch.tensor([[0.0, 0.0], [0.0, 0.0], [7.0, 7.0]])
    ema = update_prototypes(sums, counts, old, momentum=0.25)  # unseen class 2 keeps its old prototype
    torch.testing.assert_close(ema, torch.tensor([[1.5, 1.5], [7.5, 0.0], [7.0, 7.0]]))
    logits = prototype_logits(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
    torch.testing.assert_close(logits, torch.tensor([[-5.0, -1.0]]))


def test_pmr_prototype_term_has_a_constant_alpha():
    """The authors' loss: CE(f) + alpha * CE(p^m) on the lagging modality only, alpha not scaled by rho."""
    y = torch.tensor([0, 1])
    lead = torch.tensor([[LN3, 0.0], [0.0, LN3]])  # true-class softmax 0.75 each -> 1.5
    even = torch.zeros(2, 2)                       # 0.5 each -> 1.0
    fused = torch.zeros(2, 2)                      # CE = ln 2
    ln2 = math.log(2.0)
    loss, t = pmr_loss(fused, lead, even, y, alpha=2.0)  # audio leads (rho = 1.5): visual gets 2 * CE(p^v)
    assert t["rho"].item() == pytest.approx(1.5, rel=1e-6)
    assert (t["beta_a"].item(), t["beta_v"].item()) == (0.0, 2.0)
    assert loss.item() == pytest.approx(ln2 + 2.0 * ln2, rel=1e-6)
    loss, t = pmr_loss(fused, even, lead, y, alpha=2.0)  # visual leads: audio gets 2 * CE(p^a)
    assert t["rho"].item() == pytest.approx(2 / 3, rel=1e-6)
    assert (t["beta_a"].item(), t["beta_v"].item()) == (2.0, 0.0)
    assert loss.item() == pytest.approx(ln2 + 2.0 * ln2, rel=1e-6)
    loss, t = pmr_loss(fused, lead, lead, y, alpha=2.0)  # rho = 1: no prototype term
    assert loss.item() == pytest.approx(ln2, rel=1e-6)
    # BalanceBenchmark's variant (not the default): alpha * clip(rho - 1, 0, 1) = 2 * 0.5.
    loss, t = pmr_loss(fused, lead, even, y, alpha=2.0, ratio_scaled=True)
    assert t["beta_v"].item() == pytest.approx(1.0, rel=1e-5) and t["beta_a"].item() == 0.0
    assert loss.item() == pytest.approx(ln2 + 1.0 * ln2, rel=1e-5)
    loss, t = pmr_loss(fused, even, lead, y, alpha=2.0, ratio_scaled=True)  # audio: 2 * clip(1/rho - 1) = 1
    assert t["beta_a"].item() == pytest.approx(1.0, rel=1e-5)
    assert loss.item() == pytest.approx(ln2 + 1.0 * ln2, rel=1e-5)
    beta_a, beta_v, _ = pmr_coefficients(lead, even, y, alpha=2.0)
    assert (beta_a.item(), beta_v.item()) == (0.0, 2.0)
    strat = PMRStrategy()
    assert (strat.alpha, strat.momentum, strat.ratio_scaled) == (1.0, 0.2, False)  # main_Prototype_grad.py


def test_pmr_epoch_start_builds_prototypes_with_the_authors_ema():
    tr = FakeTrainer()
    strat = baselines.get("pmr", proto_frac=1.0)
    strat.setup(tr)

    def means():
        with torch.no_grad():
            tr.model.eval()
            feats = torch.cat([tr.model.encode(b["audio"], b["frames"])[0] for b in tr._batches])
            tr.model.train()
        labels = torch.cat([b["label"] for b in tr._batches])
        return torch.stack([feats[labels == k].mean(0) for k in range(3)])

    def perturb():
        with torch.no_grad():
            for p in tr.model.audio_encoder.parameters():
                p.add_(0.05)

    strat.on_epoch_start(tr, 0)
    assert strat.proto_a.shape == (3, tr.model.feature_dim)
    torch.testing.assert_close(strat.proto_a, means(), rtol=1e-5, atol=1e-6)
    perturb()
    strat.on_epoch_start(tr, 1)  # the authors smooth only from their second refresh on: raw again here
    torch.testing.assert_close(strat.proto_a, means(), rtol=1e-5, atol=1e-6)
    old = strat.proto_a.clone()
    perturb()
    strat.on_epoch_start(tr, 2)
    torch.testing.assert_close(strat.proto_a, 0.8 * means() + 0.2 * old, rtol=1e-5, atol=1e-6)
    loss, parts = strat.training_step(tr, tr._batches[0], 2)
    assert torch.isfinite(loss) and {"beta_a", "beta_v", "rho"} <= parts.keys()
    # Outside the window ([0, 3] of the smoke preset's 4 epochs -> never here; (0, 0.25) ends at epoch 1): CE only.
    late = PMRStrategy(window=(0.0, 0.25), alpha=5.0)
    late.setup(tr)
    late.proto_a, late.proto_v = strat.proto_a, strat.proto_v
    loss, parts = late.training_step(tr, tr._batches[0], 2)
    out = tr.forward(tr._batches[0])
    expected = nn.functional.cross_entropy(out.fused, tr._batches[0]["label"]).item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert parts["beta_a"].item() == parts["beta_v"].item() == 0.0


# ---------------------------------------------------------------------------------------------- G-Blending


def test_gblending_weights_hand_values():
    train_prev = torch.tensor([1.0, 1.0, 1.0])
    val_prev = torch.tensor([1.2, 1.2, 1.2])
    train_now = torch.tensor([0.4, 0.7, 0.9])
    val_now = torch.tensor([1.0, 1.0, 1.0])
    # ΔG = 0.2 each; ΔO = [0.6-0.2, 0.3-0.2, 0.1-0.2] = [0.4, 0.1, -0.1]; w ∝ [1.25, 20, 20].
    w = blending_weights(train_prev, val_prev, train_now, val_now)
    torch.testing.assert_close(w, torch.tensor([1.25, 20.0, 20.0]) / 41.25, rtol=1e-4, atol=1e-6)
    flat = blending_weights(train_prev, val_prev, train_prev, val_prev)  # nothing moved: uniform
    torch.testing.assert_close(flat, torch.full((3,), 1 / 3))


# ---------------------------------------------------------------------------------------------- AGM


def test_agm_shapley_scores_and_coefficient_sign():
    total, pad_audio, pad_visual = torch.tensor([[4.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 0.0]])
    m_a, m_v = shapley_contributions(total, pad_audio, pad_visual)
    torch.testing.assert_close(m_a, torch.tensor([[3.0, 0.0]]))
    torch.testing.assert_close(m_v, torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(m_a + m_v, total)  # efficiency
    assert agm_score(torch.tensor([[LN3, 0.0]]), torch.tensor([0])).item() == pytest.approx(0.2876820725, rel=1e-6)
    assert agm_score(torch.tensor([[0.0, 100.0]]), torch.tensor([0])).item() == pytest.approx(-math.log(1e-8), rel=1e-6)
    # Audio ahead of its running average (lower loss): slowed (k_a < 1); visual behind its average: sped up.
    # r_a = e^(2-1) = e, rbar_a = 1 -> k_a = exp(1.5 (1 - e)); r_v = 1/e -> k_v = exp(1.5 (1 - 1/e)).
    k_a, k_v = agm_coefficients(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(1.5), torch.tensor(1.5), alpha=1.5)
    assert k_a.item() == pytest.approx(math.exp(1.5 * (1 - math.e)), rel=1e-5)  # 0.0760
    assert k_v.item() == pytest.approx(math.exp(1.5 * (1 - 1 / math.e)), rel=1e-5)  # 2.581
    k_a, _ = agm_coefficients(torch.tensor(5.0), torch.tensor(5.0), torch.tensor(0.0), torch.tensor(30.0), alpha=1.5)
    assert k_a.item() == pytest.approx(math.exp(15.0), rel=1e-5)  # min(rbar - r, 10) caps the exponent
    # The bounded form: the speed-up capped at max_coeff, the slow-down untouched.
    k_a, k_v = agm_coefficients(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(1.5), torch.tensor(1.5), alpha=1.5,
                                max_coeff=2.0)
    assert k_v.item() == 2.0 and k_a.item() == pytest.approx(math.exp(1.5 * (1 - math.e)), rel=1e-5)
    assert running_mean(torch.tensor(2.0), torch.tensor(5.0), 3).item() == pytest.approx(3.0)


def test_agm_speedup_cap_follows_the_learning_rate():
    tr = FakeTrainer()
    for lr, expected in ((0.05, SPEEDUP_CAP), (2e-3, None)):
        tr.preset = get_preset("smoke", lr=lr)
        strat = AGMStrategy()
        strat.setup(tr)
        assert strat.cap == expected
    for value, expected in ((3.0, 3.0), (None, None)):
        strat = AGMStrategy(max_coeff=value)
        strat.setup(tr)
        assert strat.cap == expected
    with pytest.raises(ValueError, match="max_coeff"):
        AGMStrategy(max_coeff=0.5)


def test_agm_speeds_up_the_lagging_branch_at_the_demo_learning_rate():
    """Visual far behind its running average (rbar_v = e^5): its encoder gradient is multiplied by the cap, 2."""
    tr = FakeTrainer()
    tr.preset = get_preset("smoke", lr=0.05)
    ref = copy.deepcopy(tr.model)
    batch = tr._batches[0]
    strat = AGMStrategy(alpha=1.5, clip=False)
    strat.setup(tr)
    strat.iteration, strat.avg_a, strat.avg_v = 5, torch.tensor(5.0), torch.tensor(0.0)
    loss, parts = strat.training_step(tr, batch, 0)
    loss.backward()
    strat.after_backward(tr, 0)  # the coefficients act on the encoders' gradients here, as in the trainer
    out = ref(batch["audio"], batch["frames"])
    nn.functional.cross_entropy(out.fused, batch["label"]).backward()
    k_a, k_v = parts["coeff_a"].item(), parts["coeff_v"].item()
    assert k_v == SPEEDUP_CAP and k_a < 1.0  # lagging visual sped up (bounded), leading audio slowed
    for name, k in (("audio_encoder", k_a), ("visual_encoder", k_v)):
        for g, g0 in zip(encoder_grads(tr.model, name), encoder_grads(ref, name), strict=True):
            torch.testing.assert_close(g, g0 * k, rtol=1e-4, atol=1e-4 * (g0 * k).abs().max().item())
    torch.testing.assert_close(tr.model.head.weight.grad, ref.head.weight.grad)
    assert strat.iteration == 6  # running averages advanced


# ---------------------------------------------------------------------------------------------- MLA


def test_owm_projection_hand_values_and_orthogonality():
    P = owm_update(torch.eye(3), torch.tensor([1.0, 0.0, 0.0]), alpha=1e-3)
    torch.testing.assert_close(torch.diag(P), torch.tensor([1e-3 / 1.001, 1.0, 1.0]))
    G = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(project_gradient(G, P), torch.tensor([[1e-3 / 1.001, 2.0, 3.0]]))
    # Two stored directions: a random gradient loses its components along both.
    x1, x2 = torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 1.0])
    P = owm_update(owm_update(torch.eye(3), x1, 1e-6), x2, 1e-6)
    G = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    Gp = project_gradient(G, P)
    assert (Gp @ x1).abs().max() < 1e-4 and (Gp @ x2).abs().max() < 1e-4
    assert (G - Gp).abs().max() > 0.1
    # Normalisation: by the largest eigenvalue (ours) or the Frobenius norm (the authors').
    P = owm_update(torch.eye(3), torch.tensor([1.0, 0.0, 0.0]), alpha=1.0)  # diag(0.5, 1, 1)
    torch.testing.assert_close(normalize_projector(P, "spectral"), P)
    torch.testing.assert_close(normalize_projector(P, "fro"), P / 1.5)
    torch.testing.assert_close(normalize_projector(P / 4, "spectral"), P)
    # The authors' alpha: 0.1 at the first batch of an epoch, decaying toward 0.01 at its end.
    assert [owm_alpha(b, 10) for b in (0, 5, 10)] == pytest.approx([0.1, 0.1 * 10 ** -0.5, 0.01])


def test_entropy_weights_hand_values():
    w_a, w_v = entropy_weights(torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]]))
    # e_a = ln 2, e_v = 0.5623351; w_a = e^{-e_a} / (e^{-e_a} + e^{-e_v}).
    assert w_a.item() == pytest.approx(0.4673435453, rel=1e-6)
    assert w_v.item() == pytest.approx(1 - 0.4673435453, rel=1e-6)
    head = SharedHead(2, 2)
    fused, l_a, l_v = head(torch.randn(5, 2), torch.randn(5, 2))
    w_a, w_v = entropy_weights(l_a, l_v)
    torch.testing.assert_close(fused, w_a[:, None] * l_a + w_v[:, None] * l_v)


def test_mla_updates_both_encoders_on_every_batch():
    """The official loop: audio step then visual step on every batch, each with its own optimizer step."""
    tr = FakeTrainer()
    strat = MLAStrategy()
    strat.setup(tr)
    tr.sgd()
    strat.on_epoch_start(tr, 0)
    assert isinstance(tr.model.head, SharedHead)

    def snap(module):
        return [p.detach().clone() for p in module.parameters()]

    def changed(before, module):
        return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))

    m = tr.model
    for k, batch in enumerate(tr._batches):
        a0, v0, h0 = snap(m.audio_encoder), snap(m.visual_encoder), snap(m.head)
        tr.optimizer.zero_grad(set_to_none=True)
        loss, parts = strat.training_step(tr, batch, 0)
        # inside training_step: the audio step already updated the audio encoder and the head, not the visual encoder
        assert changed(a0, m.audio_encoder) and changed(h0, m.head) and not changed(v0, m.visual_encoder)
        a1, h1 = snap(m.audio_encoder), snap(m.head)
        loss.backward()
        assert not encoder_grads(m, "audio_encoder") and encoder_grads(m, "visual_encoder")
        strat.after_backward(tr, 0)
        tr.optimizer.step()
        # the trainer's step: the visual encoder and the head again; the audio encoder is not touched
        assert changed(v0, m.visual_encoder) and changed(h1, m.head) and not changed(a1, m.audio_encoder)
        expected = 0.5 * (parts["uni_a"] + parts["uni_v"])
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)  # logged: the mean of both unimodal CEs
        assert strat.updates == 2 * (k + 1)
    assert strat._batch_index == 2
    assert not torch.allclose(strat.P, torch.eye(strat.P.shape[0]))


def test_mla_projection_really_runs():
    """After the first (skipped) step, each step's head gradient is G P^T with P updated by that step's x."""
    tr = FakeTrainer()
    strat = MLAStrategy(alpha_decay=False, owm_alpha=1e-6, normalize="none")
    strat.setup(tr)
    weight = tr.model.head.fc.weight
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.rand(weight.shape[1], generator=g), torch.rand(weight.shape[1], generator=g)
    weight.grad = torch.randn(weight.shape, generator=g)
    raw = weight.grad.clone()
    strat.owm_step(weight, x0)  # the very first step of training: neither update nor projection
    torch.testing.assert_close(weight.grad, raw)
    assert torch.equal(strat.P, torch.eye(weight.shape[1]))
    strat.owm_step(weight, x1)
    expected_P = owm_update(torch.eye(weight.shape[1]), x1, 1e-6)
    torch.testing.assert_close(strat.P, expected_P)
    torch.testing.assert_close(weight.grad, raw @ expected_P.T)
    assert (raw - weight.grad).abs().max() > 1e-3 * raw.abs().max()  # the projection changed the gradient
    assert (weight.grad @ x1).abs().max() < 1e-3 * (raw @ x1).abs().max()  # ... orthogonally to x1


def _owm_discriminative_share(strat: MLAStrategy, d: int, steps: int) -> float:
    """Drive strat.owm_step with batch-mean features of a class-clustered ReLU stream (20 batches an epoch) and
    return |G P| / |G| for a gradient G in the span of the class-mean differences (where the head must learn)."""
    m, b, n = 4, 32, 20
    means = torch.randn(m, d, generator=torch.Generator().manual_seed(0))
    basis = torch.linalg.qr((means - means.mean(0)).T).Q
    g_disc = torch.randn(m, d, generator=torch.Generator().manual_seed(9)) @ basis @ basis.T
    g = torch.Generator().manual_seed(1)
    weight = torch.zeros(m, d, requires_grad=True)
    strat.P = torch.eye(d)
    for s in range(steps):
        y = torch.randint(0, m, (b,), generator=g)
        x = torch.relu(means[y] + torch.randn(b, d, generator=g) + 1.0)
        strat._batch_index, strat._num_batches = s % n, n
        weight.grad = g_disc.clone()
        strat.owm_step(weight, x.mean(0))
    return (weight.grad.norm() / g_disc.norm()).item()


def test_mla_head_still_learns_after_10d_steps():
    """With the normalised projector the head's gradient in the discriminative directions stays a steady share of
    nominal after 10·d steps; unnormalised (our former default) it decays toward 0: the head freezes."""
    d = 32
    ours = [_owm_discriminative_share(MLAStrategy(), d, n) for n in (d, 10 * d)]
    assert ours[1] > 0.05 and ours[1] > 0.5 * ours[0]
    authors = _owm_discriminative_share(MLAStrategy(normalize="fro"), d, 10 * d)
    assert 0.02 < authors < ours[1]  # Frobenius: steady too, but about 1/sqrt(d)-scaled from the first step
    frozen = [_owm_discriminative_share(MLAStrategy(normalize="none", alpha_decay=False), d, n) for n in (d, 10 * d)]
    assert frozen[1] < 0.02 and frozen[1] < 0.1 * frozen[0]


# ---------------------------------------------------------------------------------------------- D&R


def test_dr_purity_and_reinit(monkeypatch):
    assert purity(np.array([0, 0, 1, 1, 1]), np.array([0, 0, 0, 1, 1])) == pytest.approx(0.8)
    assert purity(np.array([0, 1, 2]), np.array([5, 5, 5])) == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.05, (20, 2)), rng.normal(5, 0.05, (20, 2))])
    import mmgap.baselines.dr as dr

    seen = {}
    real = dr.KMeans

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(dr, "KMeans", spy)
    assert kmeans_purity(x, np.repeat([0, 1], 20), 2) == pytest.approx(1.0)
    # the authors' KMeans(k, random_state=0), sklearn >= 1.4
    assert seen == {"n_clusters": 2, "random_state": 0, "n_init": 1}
    assert reinit_strength(0.9, 0.6, lam=3.0) == pytest.approx(0.7162978702)
    assert reinit_strength(0.6, 0.9, lam=3.0) == pytest.approx(0.7162978702)  # |gap|
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.fill_(2.0)
        lin.bias.fill_(-4.0)
    soft_reinit_(lin, {"weight": torch.zeros(2, 2), "bias": torch.zeros(2)}, w=0.25)
    torch.testing.assert_close(lin.weight, torch.full((2, 2), 1.5))
    torch.testing.assert_close(lin.bias, torch.full((2,), -3.0))


def _ten_separated_classes() -> tuple[np.ndarray, np.ndarray]:
    """200 points, 10 classes of 20 around well-separated centres in 4-D (every class its own cluster)."""
    rng = np.random.default_rng(3)
    centres = rng.uniform(-3.0, 3.0, (10, 4))
    y = np.repeat(np.arange(10), 20)
    return centres[y] + rng.normal(0.0, 0.2, (200, 4)), y


def test_dr_kmeans_runs_as_the_authors_call_does():
    """D&R's diagnosis is ONE k-means++ run: the authors' ``KMeans(n_clusters, random_state=0)`` (no n_init) under
    scikit-learn >= 1.4, the versions their lab pins. On ten separated classes one run from random_state 0 merges
    two classes and splits another (purity 0.9), where the best of ten runs finds all ten (1.0)."""
    import sklearn
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import MinMaxScaler

    x, y = _ten_separated_classes()
    ours = kmeans_purity(x, y, 10)
    assert ours == kmeans_purity(x, y, 10, n_init=1) == pytest.approx(0.9)
    assert kmeans_purity(x, y, 10, n_init=10) == pytest.approx(1.0)  # the pre-1.4 reading (kmeans_n_init=10)
    if tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 4):  # n_init="auto" -> 1 for k-means++
        scaled = MinMaxScaler(feature_range=(-1, 1)).fit_transform(x)  # the authors' reinit_score, verbatim call
        assert purity(y, KMeans(n_clusters=10, random_state=0).fit_predict(scaled)) == ours
    assert DRStrategy().kmeans_n_init == 1 and DRStrategy(kmeans_n_init=10).kmeans_n_init == 10
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="kmeans_n_init"):
            DRStrategy(kmeans_n_init=bad)


def test_dr_schedule_scales_with_the_run():
    strat = DRStrategy()
    assert strat.schedule(90) == {"reinit_period": 20, "reinit_after_epochs": [20, 40, 60]}  # the authors' script
    assert strat.schedule(20) == {"reinit_period": 4, "reinit_after_epochs": [4, 8, 12]}
    tr = FakeTrainer()  # smoke preset: 2 + 2 epochs -> period round(4 * 20/90) = 1, never after the last epoch
    strat.setup(tr)
    assert [strat.due(e) for e in range(4)] == [False, True, True, False]
    strat.reinit_count = 3
    assert not strat.due(1)  # at most reinit_num times
    tr.stage_epochs = 20
    strat = DRStrategy()
    strat.setup(tr)
    done = []
    for e in range(20):
        if strat.due(e):
            done.append(e)
            strat.reinit_count += 1  # as on_epoch_end does
    assert done == [4, 8, 12]
    with pytest.raises(ValueError, match="reinit_every"):
        DRStrategy(reinit_every=0.0)


def test_dr_reinit_waits_for_the_next_epoch():
    """on_epoch_end diagnoses and leaves the weights alone (the trainer evaluates them next); the next
    on_epoch_start applies theta <- w theta_init + (1 - w) theta."""
    tr = FakeTrainer()
    tr.stage_epochs = 4
    strat = DRStrategy()
    strat.setup(tr)
    with torch.no_grad():
        for p in tr.model.parameters():
            p.add_(0.1)
    outputs = {
        "feat_a": torch.randn(12, tr.model.feature_dim, generator=torch.Generator().manual_seed(0)),
        "feat_v": torch.randn(12, tr.model.feature_dim, generator=torch.Generator().manual_seed(1)),
        "label": torch.arange(12) % 3,
    }
    tr.collect_outputs = lambda split, train_mode_aug=False: outputs
    before = copy.deepcopy(tr.model.state_dict())
    row = strat.on_epoch_end(tr, 1)
    assert {"purity_train_audio", "purity_val_visual", "reinit_w_audio", "reinit_w_visual"} <= row.keys()
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, before[k]), k  # nothing reset yet: the evaluated model is the pre-reset one
    assert strat.state_dict()["pending"] == {"audio": row["reinit_w_audio"], "visual": row["reinit_w_visual"]}
    strat.on_epoch_start(tr, 2)
    for m, enc in (("audio", tr.model.audio_encoder), ("visual", tr.model.visual_encoder)):
        w = row[f"reinit_w_{m}"]
        for name, p in enc.named_parameters():
            expected = w * strat.init_state[m][name] + (1 - w) * before[f"{m}_encoder.{name}"]
            torch.testing.assert_close(p, expected)
    assert strat.pending is None


def test_dr_pre_reset_model_is_in_the_history_and_selectable(tmp_path):
    """Run 3 epochs (re-init diagnosed after epoch 1): the checkpoint written after epoch 1 holds the model that
    epoch 1's history row evaluated (not the re-initialised one), so selecting that row selects that model;
    resuming from it re-initialises as the uninterrupted run did (bit-identical)."""
    from mmgap.checkpoint import from_json, load_safe
    from mmgap.trainer import Trainer, TrainingInterrupted, train_baseline

    preset = get_preset("smoke", batch_size=8, lr=0.05, warmup_epochs=2, adaptive_epochs=1, width=2,
                        num_frames=2, image_size=16)
    cache = tiny_cache()
    kw = dict(seed=0, epochs=3, device="cpu", progress=False, return_trainer=True)
    straight = train_baseline(cache, preset, DRStrategy(lam=30.0), tmp_path / "a", resume=False, **kw)
    hist = straight["history"]
    assert "reinit_w_audio" in hist[1] and "reinit_w_audio" not in hist[0] and "reinit_w_audio" not in hist[2]
    with pytest.raises(TrainingInterrupted):
        train_baseline(cache, preset, DRStrategy(lam=30.0), tmp_path / "b", resume=False, interrupt_at_epoch=2, **kw)
    ckpt = load_safe(tmp_path / "b" / "last.pt")
    assert ckpt["strategy"]["pending"] is not None  # diagnosed, not applied
    judge = Trainer(cache, preset, tmp_path / "judge", seed=0, device="cpu", progress=False)
    judge.model.load_state_dict(ckpt["model"])
    val, test = judge.evaluate("val"), judge.evaluate("test")
    assert (val["acc"], test["acc"], val["loss"]) == (hist[1]["val_acc"], hist[1]["test_acc"], hist[1]["val_loss"])
    w = ckpt["strategy"]["pending"]["audio"]
    assert w > 0.0
    init = ckpt["strategy"]["init_state"]["audio"]
    reset = {k: w * init[k] + (1 - w) * ckpt["model"][f"audio_encoder.{k}"] for k in init}
    assert any(not torch.allclose(reset[k], ckpt["model"][f"audio_encoder.{k}"]) for k in reset)
    best = load_safe(tmp_path / "b" / "best.pt")
    judge.model.load_state_dict(best["model"])
    best_row = hist[from_json(best["best"])["epoch"]]
    assert judge.evaluate("val")["acc"] == best_row["val_acc"]  # the selected row's own model
    resumed = train_baseline(cache, preset, DRStrategy(lam=30.0), tmp_path / "b", resume=True, **kw)
    a, b = straight["trainer"].model.state_dict(), resumed["trainer"].model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------- OPM


def test_opm_drop_probability_and_rescaling():
    y = torch.tensor([0, 1])
    lead = torch.tensor([[LN3, 0.0], [0.0, LN3]])
    q_a, q_v = opm_drop_probs(lead, torch.zeros(2, 2), y, q_base=0.5, lam=0.5)
    assert q_a.item() == pytest.approx(0.6155292893, rel=1e-5)  # 0.5·(1 + 0.5·tanh(0.5))
    assert q_v.item() == 0.0  # the lagging modality is never dropped
    assert opm_theta(q_a, q_v, 4, 4).item() == pytest.approx(0.3077646447, rel=1e-5)
    feat_a, feat_v = torch.ones(6, 4), torch.ones(6, 4)
    da, dv, theta = opm_drop(feat_a, feat_v, torch.tensor(1.0), torch.tensor(0.0))
    assert theta.item() == pytest.approx(0.5)
    assert torch.all(da == 0) and torch.allclose(dv, torch.full((6, 4), 1 / (0.5 + 1e-5)))
    da, dv, _ = opm_drop(feat_a, feat_v, torch.tensor(0.0), torch.tensor(0.0))
    torch.testing.assert_close(da, feat_a / (1 + 1e-5))
    # A per-sample mask: each row is either all kept (rescaled) or all zero.
    big_a = torch.ones(4000, 3)
    da, _, theta = opm_drop(big_a, torch.ones(4000, 3), torch.tensor(0.3), torch.tensor(0.0),
                            torch.Generator().manual_seed(0))
    rows = da[:, 0]
    assert torch.all(da == rows[:, None])
    assert (rows == 0).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert rows.max().item() == pytest.approx(1 / (1 - 0.15 + 1e-5), rel=1e-6)


# ---------------------------------------------------------------------------------------------- registry


def test_registry():
    assert baselines.NAMES[:3] == ("audio_only", "visual_only", "concat")  # unimodal references first
    assert set(baselines.NAMES) == {"audio_only", "visual_only", "concat", "g_blending", "ogm_ge", "pmr",
                                    "mmcosine", "agm", "mla", "dr", "opm", "opm_ogm", "mmpareto", "inforeg",
                                    "smv", "remix", "bss"}
    assert (baselines.LABELS["audio_only"], baselines.LABELS["visual_only"]) == ("Audio only", "Visual only")
    assert isinstance(baselines.get("OPM&OGM"), baselines.OPMOGMStrategy)
    assert baselines.get("ogm_ge", alpha=0.3).alpha == 0.3
    with pytest.raises(ValueError, match="run_two_stage"):
        baselines.get("ours_prob")
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.get("nope")
    with pytest.raises(TypeError, match="bad arguments for baseline 'pmr'"):
        baselines.get("pmr", rho=3)
    assert set(baselines.LABELS) == set(baselines.NAMES) | set(baselines.TWO_STAGE)


# ---------------------------------------------------------------------------------------------- unimodal


def test_unimodal_runs_one_encoder_and_has_no_number_for_the_other():
    for modality, other in (("audio", "visual"), ("visual", "audio")):
        tr = FakeTrainer()
        strat = baselines.get(f"{modality}_only")
        strat.setup(tr)
        strat.setup(tr)  # idempotent
        assert isinstance(tr.model.head, UnimodalHead) and tr.model.head.modality == modality
        calls = {"audio": 0, "visual": 0}
        for m in calls:
            getattr(tr.model, f"{m}_encoder").register_forward_hook(
                lambda *_, m=m, calls=calls: calls.__setitem__(m, calls[m] + 1))
        batch = tr._batches[0]
        loss, parts = strat.training_step(tr, batch, 0)
        loss.backward()
        assert encoder_grads(tr.model, f"{modality}_encoder") and not encoder_grads(tr.model, f"{other}_encoder")
        assert tr.model.head.fc.weight.grad is not None and set(parts) == {f"uni_{modality[0]}"}
        with torch.no_grad():
            fused, l_a, l_v = strat.predict(tr, batch)
        assert calls == {modality: 2, other: 0}  # the other encoder never ran, in training or in prediction
        present, absent = (l_a, l_v) if modality == "audio" else (l_v, l_a)
        assert torch.equal(fused, present) and torch.isnan(absent).all()
        metrics = evaluate_logits(fused, l_a, l_v, batch["label"])
        assert metrics[f"acc_{modality[0]}"] == metrics["acc"] and math.isnan(metrics[f"acc_{other[0]}"])


def test_visual_only_reports_its_accuracy_and_tables_show_a_dash(tmp_path):
    from mmgap.results import mean_std_table
    from mmgap.trainer import train_baseline

    preset = get_preset("smoke", batch_size=8, lr=0.05, warmup_epochs=1, adaptive_epochs=1, width=2,
                        num_frames=2, image_size=16)
    rows = []
    for seed in (0, 1):
        res = train_baseline(tiny_cache(), preset, baselines.get("visual_only"), tmp_path / f"s{seed}", seed=seed,
                             epochs=2, device="cpu", resume=False, progress=False)
        assert res["test_acc_v"] == res["test_acc"] and math.isnan(res["test_acc_a"])
        assert all(math.isnan(r["val_acc_a"]) for r in res["history"])
        rows.append({"label": baselines.LABELS["visual_only"], "seed": seed,
                     **{m: res[f"test_{m}"] for m in ("acc", "f1", "acc_a", "acc_v")}})
    table = mean_std_table(rows, ["label"], ["acc", "f1", "acc_a", "acc_v"], scale=100.0)
    assert table.loc[0, "acc_a"] == "–" and table.loc[0, "acc_v"] == table.loc[0, "acc"] != "–"


# ---------------------------------------------------------------------------------------------- schedules


def test_schedules_scale_with_the_run():
    """Windows and periods are the authors' values as fractions of their run, resolved for this run's length."""
    demo = baselines.schedules(20)  # the demo preset: 12 warm-up + 8 adaptive epochs per baseline
    assert demo == {
        "g_blending": {"super_epoch": 3},
        "ogm_ge": {"modulation_starts": 0, "modulation_ends": 10},
        "pmr": {"modulation_starts": 0, "modulation_ends": 13},
        "agm": {"modulation_starts": 0, "modulation_ends": 19},
        "dr": {"reinit_period": 4, "reinit_after_epochs": [4, 8, 12]},
        "opm": {"modulation_starts": 2},
        "opm_ogm": {"modulation_starts": 2, "ogm_starts": 2, "ogm_ends": 12},
        "inforeg": {"trace_window": 4},
        "smv": {"warmup_epochs": 2},
        "remix": {"warmup_epochs": 3},
        "bss": {"grow_epochs": 7},
    }
    # At the authors' own run lengths the authors' numbers come back.
    assert baselines.schedules(100, ["ogm_ge"])["ogm_ge"] == {"modulation_starts": 0, "modulation_ends": 50}
    assert baselines.schedules(100, ["opm_ogm"])["opm_ogm"] == {"modulation_starts": 6, "ogm_starts": 6,
                                                              "ogm_ends": 60}  # TPAMI: epoch <= 5 warm-up, [0, 60]
    assert baselines.schedules(150, ["pmr"])["pmr"] == {"modulation_starts": 0, "modulation_ends": 100}
    assert baselines.schedules(70, ["g_blending"])["g_blending"] == {"super_epoch": 10}
    assert baselines.schedules(90, ["dr"])["dr"]["reinit_after_epochs"] == [20, 40, 60]
    assert baselines.schedules(60, ["smv", "remix"]) == {"smv": {"warmup_epochs": 5}, "remix": {"warmup_epochs": 10}}
    assert baselines.schedules(120, ["bss"])["bss"] == {"grow_epochs": 40}
    assert baselines.schedules(20, ["concat", "mla", "ours_prob"]) == {}
    # setup resolves the schedule for the trainer's stage budget.
    tr = FakeTrainer()
    tr.stage_epochs = 20
    strat = OGMGEStrategy()
    strat.setup(tr)
    assert [e for e in range(20) if strat.active(e)] == list(range(11))
    with pytest.raises(ValueError, match=r"window\[1\].*\[0, 1\]"):
        OGMGEStrategy(window=(0.0, 1.5))
    with pytest.raises(ValueError, match="start <= end"):
        baselines.get("pmr", window=(0.6, 0.2))
    with pytest.raises(ValueError, match="warmup"):
        baselines.get("opm", warmup=-0.1)
    with pytest.raises(ValueError, match="epochs"):
        baselines.schedules(0)


# ---------------------------------------------------------------------------------------------- smoke


def tiny_cache(n_per_class: int = 12, k: int = 3):
    from mmgap.data.cache import FeatureCache

    rng = np.random.default_rng(0)
    n = n_per_class * k
    labels = rng.permutation(np.repeat(np.arange(k), n_per_class))
    audio = rng.normal(0.0, 1.0, (n, 12, 12))
    frames = rng.integers(0, 60, (n, 2, 16, 16, 3))
    for i, y in enumerate(labels):
        audio[i, 4 * y:4 * y + 4, :] += 2.0
        frames[i, :, 8 * (y // 2):8 * (y // 2) + 8, 8 * (y % 2):8 * (y % 2) + 8, :] += 150
    split = np.array([0] * int(0.6 * n) + [1] * int(0.2 * n) + [2] * (n - int(0.6 * n) - int(0.2 * n)))
    return FeatureCache.from_arrays(audio, frames, labels, split, [f"c{j}" for j in range(k)])


@pytest.mark.parametrize("name", baselines.NAMES)
def test_every_baseline_trains_through_the_trainer(name, tmp_path):
    from mmgap.trainer import train_baseline

    preset = get_preset("smoke", batch_size=8, lr=0.05, warmup_epochs=1, adaptive_epochs=1, width=2,
                        num_frames=2, image_size=16)
    strategy = baselines.get(name)
    res = train_baseline(tiny_cache(), preset, strategy, tmp_path / name, seed=0, epochs=2, device="cpu",
                         resume=False, progress=False, return_trainer=True)
    hist = res["history"]
    assert len(hist) == 2 and all(math.isfinite(r["train_loss"]) for r in hist)
    assert all(0.0 <= r["val_acc"] <= 1.0 for r in hist)
    model = res["trainer"].model
    if name == "mmcosine":
        assert isinstance(model.head, CosineHead)
    if name == "mla":  # two OWM steps per batch, the first of the run skipped
        assert isinstance(model.head, SharedHead) and strategy.updates > 2
        assert not torch.allclose(strategy.P, torch.eye(strategy.P.shape[0]))
    if name == "dr":  # the authors never re-initialise after epoch 0, nor (here) after the last epoch
        assert not any("reinit_w_audio" in r for r in hist)
    if name.endswith("_only"):
        assert isinstance(model.head, UnimodalHead)
        other = "a" if name == "visual_only" else "v"
        assert all(math.isnan(r[f"test_acc_{other}"]) for r in hist)
    if name == "g_blending":  # super-epoch 1: weights re-estimated at the start of epoch 1
        assert hist[0]["w_fusion"] == pytest.approx(1 / 3)
        assert sum(hist[1][f"w_{k}"] for k in ("fusion", "audio", "visual")) == pytest.approx(1.0)
        assert hist[1]["w_fusion"] != pytest.approx(1 / 3)


@pytest.mark.parametrize("name", ["mla", "opm_ogm", "pmr", "agm", "dr", "g_blending", "visual_only"])
def test_resume_is_bit_identical(name, tmp_path):
    """An interrupted run resumed from last.pt ends with the same weights as an uninterrupted one."""
    from mmgap.trainer import TrainingInterrupted, train_baseline

    preset = get_preset("smoke", batch_size=8, lr=0.05, warmup_epochs=2, adaptive_epochs=1, width=2,
                        num_frames=2, image_size=16)
    cache = tiny_cache()
    kw = dict(seed=0, epochs=3, device="cpu", progress=False, return_trainer=True)
    straight = train_baseline(cache, preset, baselines.get(name), tmp_path / "a", resume=False, **kw)
    with pytest.raises(TrainingInterrupted):
        train_baseline(cache, preset, baselines.get(name), tmp_path / "b", resume=False, interrupt_at_epoch=1, **kw)
    resumed = train_baseline(cache, preset, baselines.get(name), tmp_path / "b", resume=True, **kw)
    a, b = straight["trainer"].model.state_dict(), resumed["trainer"].model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["train_loss"] for r in straight["history"]] == [r["train_loss"] for r in resumed["history"]]
