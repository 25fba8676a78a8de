"""Baselines of Table II: each core formula against hand-computed values, the hooks on a tiny model, and a
smoke run of every method through mmgap.train.train_baseline."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from mmgap import baselines
from mmgap.baselines.agm import (
    AGMStrategy,
    agm_coefficients,
    agm_score,
    rescale_to_slowdown,
    running_mean,
    shapley_contributions,
)
from mmgap.baselines.dr import DRStrategy, kmeans_purity, purity, reinit_strength, soft_reinit_
from mmgap.baselines.gblending import blending_weights
from mmgap.baselines.mla import (
    MLAStrategy,
    SharedHead,
    entropy_weights,
    owm_update,
    project_gradient,
)
from mmgap.baselines.mmcosine import CosineHead, MMCosineStrategy, cosine_logits
from mmgap.baselines.ogm_ge import OGMGEStrategy, modulate_grads, ogm_coefficients
from mmgap.baselines.opm import opm_drop, opm_drop_probs, opm_theta
from mmgap.baselines.pmr import class_sums, pmr_coefficients, prototype_logits, update_prototypes
from mmgap.config import get_preset
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


def encoder_grads(model: nn.Module, name: str) -> list[torch.Tensor]:
    return [p.grad.clone() for p in getattr(model, name).parameters() if p.grad is not None]


# ---------------------------------------------------------------------------------------------- OGM-GE


def test_ogm_coefficient_hand_values():
    # s_a = 0.75 + 0.75 = 1.5, s_v = 0.5 + 0.5 = 1.0 -> r_a = 1.5, k_a = 1 - tanh(0.8 * 0.5), k_v = 1.
    logit_a = torch.tensor([[LN3, 0.0], [0.0, LN3]])
    logit_v = torch.zeros(2, 2)
    y = torch.tensor([0, 1])
    k_a, k_v, r_a = ogm_coefficients(logit_a, logit_v, y, alpha=0.8)
    assert r_a.item() == pytest.approx(1.5, rel=1e-6)
    assert k_a.item() == pytest.approx(0.6200510377, rel=1e-6)
    assert k_v.item() == pytest.approx(1.0)
    # Swapped roles: visual leads and is the one slowed; equal scores leave both at 1.
    k_a, k_v, _ = ogm_coefficients(logit_v, logit_a, y, alpha=0.8)
    assert (k_a.item(), k_v.item()) == (pytest.approx(1.0), pytest.approx(0.6200510377, rel=1e-6))
    k_a, k_v, _ = ogm_coefficients(logit_a, logit_a, y, alpha=0.8)
    assert k_a.item() == pytest.approx(1.0) and k_v.item() == pytest.approx(1.0)


def test_ogm_scales_only_the_dominant_encoder():
    tr = FakeTrainer()
    strat = OGMGEStrategy(alpha=0.8, ge=False)
    strat.setup(tr)
    batch = tr._batches[0]
    # Make audio dominant: its split logits pushed toward the labels through the head's audio block.
    ref = copy.deepcopy(tr.model)
    loss, parts = strat.training_step(tr, batch, epoch=0)
    loss.backward()
    out = ref(batch["audio"], batch["frames"])
    nn.functional.cross_entropy(out.fused, batch["label"]).backward()
    strat.after_backward(tr, epoch=0)
    k_a, k_v = parts["coeff_a"].item(), parts["coeff_v"].item()
    assert min(k_a, k_v) < 1.0 and max(k_a, k_v) == pytest.approx(1.0)  # exactly one side is modulated
    for name, k in (("audio_encoder", k_a), ("visual_encoder", k_v)):
        for g, g0 in zip(encoder_grads(tr.model, name), encoder_grads(ref, name)):
            torch.testing.assert_close(g, g0 * k, rtol=1e-5, atol=1e-5 * (g0 * k).abs().max().item())
    torch.testing.assert_close(tr.model.head.weight.grad, ref.head.weight.grad)  # the head is untouched
    # Outside the modulation window nothing changes.
    strat2 = OGMGEStrategy(modulation_starts=3, ge=False)
    strat2.setup(tr)
    tr.model.zero_grad()
    loss, _ = strat2.training_step(tr, batch, epoch=0)
    loss.backward()
    before = encoder_grads(tr.model, "audio_encoder")
    strat2.after_backward(tr, epoch=0)
    assert all(torch.equal(a, b) for a, b in zip(before, encoder_grads(tr.model, "audio_encoder")))


def test_ge_noise_has_the_gradients_own_std():
    lin = nn.Linear(200, 100, bias=True)
    g = torch.Generator().manual_seed(0)
    lin.weight.grad = 3.0 * torch.randn(100, 200, generator=g)
    lin.bias.grad = torch.ones(100)
    w0 = lin.weight.grad.clone()
    modulate_grads(lin, 0.5, ge=True, generator=torch.Generator().manual_seed(1))
    noise = lin.weight.grad - 0.5 * w0
    assert noise.std().item() == pytest.approx(w0.std().item(), rel=0.03)
    assert noise.mean().abs().item() < 0.05
    torch.testing.assert_close(lin.bias.grad, torch.full((100,), 0.5))  # vectors: scaled, no noise


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

    y = torch.tensor([0, 1])
    lead = torch.tensor([[LN3, 0.0], [0.0, LN3]])  # true-class softmax 0.75 each -> 1.5
    even = torch.zeros(2, 2)                       # 0.5 each -> 1.0
    beta_a, beta_v, rho = pmr_coefficients(lead, even, y, alpha=2.0)
    assert rho.item() == pytest.approx(1.5, rel=1e-6)
    assert beta_a.item() == pytest.approx(0.0) and beta_v.item() == pytest.approx(2.0 * 0.5, rel=1e-5)
    beta_a, beta_v, rho = pmr_coefficients(even, lead, y, alpha=2.0)  # visual leads: audio gets the term
    assert rho.item() == pytest.approx(2 / 3, rel=1e-6)
    assert beta_a.item() == pytest.approx(2.0 * 0.5, rel=1e-5) and beta_v.item() == pytest.approx(0.0)
    beta_a, beta_v, _ = pmr_coefficients(lead, even, y, alpha=2.0, ratio_scaled=False)
    assert (beta_a.item(), beta_v.item()) == (0.0, 2.0)


def test_pmr_epoch_start_builds_prototypes():
    tr = FakeTrainer()
    strat = baselines.get("pmr", proto_frac=1.0)
    strat.on_epoch_start(tr, 0)
    assert strat.proto_a.shape == (3, tr.model.feature_dim)
    with torch.no_grad():
        tr.model.eval()
        feats = torch.cat([tr.model.encode(b["audio"], b["frames"])[0] for b in tr._batches])
        labels = torch.cat([b["label"] for b in tr._batches])
    torch.testing.assert_close(strat.proto_a[1], feats[labels == 1].mean(0), rtol=1e-5, atol=1e-6)
    tr.model.train()
    loss, parts = strat.training_step(tr, tr._batches[0], 0)
    assert torch.isfinite(loss) and {"beta_a", "beta_v", "rho"} <= parts.keys()


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
    # Audio ahead of its running average (lower loss): slowed (k_a < 1); visual sped up.
    k_a, k_v = agm_coefficients(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(1.5), torch.tensor(1.5), alpha=1.5)
    assert k_a.item() == pytest.approx(0.0759695450, rel=1e-5)
    assert k_v.item() == pytest.approx(2.5810101111, rel=1e-5)
    k_a, _ = agm_coefficients(torch.tensor(5.0), torch.tensor(5.0), torch.tensor(0.0), torch.tensor(30.0), alpha=1.5)
    assert k_a.item() == pytest.approx(math.exp(15.0), rel=1e-5)  # min(r̄ − r, 10) caps the exponent
    assert running_mean(torch.tensor(2.0), torch.tensor(5.0), 3).item() == pytest.approx(3.0)
    # High-lr safeguard: ratio kept, the larger coefficient brought down to 1; nothing changes when both <= 1.
    k_a, k_v = rescale_to_slowdown(torch.tensor(0.5), torch.tensor(4.0))
    assert (k_a.item(), k_v.item()) == (pytest.approx(0.125), pytest.approx(1.0))
    k_a, k_v = rescale_to_slowdown(torch.tensor(0.5), torch.tensor(0.8))
    assert (k_a.item(), k_v.item()) == (pytest.approx(0.5), pytest.approx(0.8))


def test_agm_slowdown_only_follows_the_learning_rate():
    tr = FakeTrainer()
    for lr, expected in ((0.05, True), (2e-3, False)):
        tr.preset = get_preset("smoke", lr=lr)
        strat = AGMStrategy()
        strat.setup(tr)
        assert strat.slowdown_only is expected
    strat = AGMStrategy(slowdown_only=False)
    strat.setup(tr)
    assert strat.slowdown_only is False


def test_agm_hooks_scale_each_encoder_gradient():
    tr = FakeTrainer()
    ref = copy.deepcopy(tr.model)
    batch = tr._batches[0]
    strat = AGMStrategy(alpha=1.5, clip=False, slowdown_only=False)
    strat.setup(tr)
    strat.iteration, strat.avg_a, strat.avg_v = 5, torch.tensor(0.9), torch.tensor(1.4)
    loss, parts = strat.training_step(tr, batch, 0)
    loss.backward()
    out = ref(batch["audio"], batch["frames"])
    nn.functional.cross_entropy(out.fused, batch["label"]).backward()
    k_a, k_v = parts["coeff_a"].item(), parts["coeff_v"].item()
    assert abs(k_a - 1.0) > 1e-3 and abs(k_v - 1.0) > 1e-3
    for name, k in (("audio_encoder", k_a), ("visual_encoder", k_v)):
        for g, g0 in zip(encoder_grads(tr.model, name), encoder_grads(ref, name)):
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


def test_entropy_weights_hand_values():
    w_a, w_v = entropy_weights(torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]]))
    # e_a = ln 2, e_v = 0.5623351; w_a = e^{-e_a} / (e^{-e_a} + e^{-e_v}).
    assert w_a.item() == pytest.approx(0.4673435453, rel=1e-6) and w_v.item() == pytest.approx(1 - 0.4673435453, rel=1e-6)
    head = SharedHead(2, 2)
    fused, l_a, l_v = head(torch.randn(5, 2), torch.randn(5, 2))
    w_a, w_v = entropy_weights(l_a, l_v)
    torch.testing.assert_close(fused, w_a[:, None] * l_a + w_v[:, None] * l_v)


def test_mla_alternates_and_projection_really_runs():
    tr = FakeTrainer()
    strat = MLAStrategy(owm_alpha=1e-6)
    strat.setup(tr)
    assert isinstance(tr.model.head, SharedHead)
    batch = tr._batches[0]
    # Step 0: audio only (the visual encoder gets no gradient); P is the identity so nothing is projected.
    loss, _ = strat.training_step(tr, batch, 0)
    loss.backward()
    assert not encoder_grads(tr.model, "visual_encoder") and encoder_grads(tr.model, "audio_encoder")
    x0 = strat._x.clone()
    strat.after_backward(tr, 0)
    tr.model.zero_grad(set_to_none=True)
    # Step 1: visual; its head gradient is projected away from the stored audio feature x0.
    assert strat.modality() == "visual"
    loss, _ = strat.training_step(tr, batch, 0)
    loss.backward()
    assert not encoder_grads(tr.model, "audio_encoder")
    raw = tr.model.head.fc.weight.grad.clone()
    strat.after_backward(tr, 0)
    projected = tr.model.head.fc.weight.grad
    assert (raw - projected).abs().max() > 1e-3 * raw.abs().max()  # the projection changed the gradient
    assert (projected @ x0).abs().max() < 1e-3 * (raw @ x0).abs().max()  # ... and is orthogonal to x0
    assert strat.step == 2


# ---------------------------------------------------------------------------------------------- D&R


def test_dr_purity_and_reinit():
    assert purity(np.array([0, 0, 1, 1, 1]), np.array([0, 0, 0, 1, 1])) == pytest.approx(0.8)
    assert purity(np.array([0, 1, 2]), np.array([5, 5, 5])) == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.05, (20, 2)), rng.normal(5, 0.05, (20, 2))])
    assert kmeans_purity(x, np.repeat([0, 1], 20), 2) == pytest.approx(1.0)
    assert reinit_strength(0.9, 0.6, lam=3.0) == pytest.approx(0.7162978702)
    assert reinit_strength(0.6, 0.9, lam=3.0) == pytest.approx(0.7162978702)  # |gap|
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.fill_(2.0)
        lin.bias.fill_(-4.0)
    soft_reinit_(lin, {"weight": torch.zeros(2, 2), "bias": torch.zeros(2)}, w=0.25)
    torch.testing.assert_close(lin.weight, torch.full((2, 2), 1.5))
    torch.testing.assert_close(lin.bias, torch.full((2,), -3.0))


def test_dr_schedule_and_budget_scaling():
    tr = FakeTrainer()  # smoke preset: 2 + 2 epochs -> period round(20 * 4 / 100) -> 1
    strat = DRStrategy()
    strat.setup(tr)
    assert strat.reinit_epoch == 1
    assert [strat.due(e) for e in range(4)] == [True, True, True, False]  # never after the last epoch
    strat.reinit_count = 3
    assert not strat.due(0)  # at most reinit_num times
    explicit = DRStrategy(reinit_epoch=2)
    explicit.setup(tr)
    assert explicit.reinit_epoch == 2 and [explicit.due(e) for e in range(4)] == [False, True, False, False]


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
    assert set(baselines.NAMES) == {"concat", "g_blending", "ogm_ge", "pmr", "mmcosine", "agm", "mla", "dr",
                                    "opm", "opm_ogm"}
    assert isinstance(baselines.get("OPM&OGM"), baselines.OPMOGMStrategy)
    assert baselines.get("ogm_ge", alpha=0.3).alpha == 0.3
    with pytest.raises(ValueError, match="run_two_stage"):
        baselines.get("ours_prob")
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.get("nope")
    with pytest.raises(TypeError, match="bad arguments for baseline 'pmr'"):
        baselines.get("pmr", rho=3)
    assert set(baselines.LABELS) == set(baselines.NAMES) | set(baselines.TWO_STAGE)


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
    from mmgap.train import train_baseline

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
    if name == "mla":
        assert isinstance(model.head, SharedHead) and strategy.step > 0
        assert not torch.allclose(strategy.P, torch.eye(strategy.P.shape[0]))
    if name == "dr":  # budget 2 epochs -> period 1 -> one re-init after epoch 0, none after the last
        assert "reinit_w_audio" in hist[0] and "reinit_w_audio" not in hist[1]
    if name == "g_blending":  # super-epoch 1: weights re-estimated at the start of epoch 1
        assert hist[0]["w_fusion"] == pytest.approx(1 / 3)
        assert sum(hist[1][f"w_{k}"] for k in ("fusion", "audio", "visual")) == pytest.approx(1.0)
        assert hist[1]["w_fusion"] != pytest.approx(1 / 3)


@pytest.mark.parametrize("name", ["mla", "opm_ogm", "pmr", "agm", "dr", "g_blending"])
def test_resume_is_bit_identical(name, tmp_path):
    """An interrupted run resumed from last.pt ends with the same weights as an uninterrupted one."""
    from mmgap.train import TrainingInterrupted, train_baseline

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


def test_schedules_scale_to_the_stage_budget():
    from mmgap.baselines._common import scale_epochs, total_epochs

    assert scale_epochs(5, 10) == 1 and scale_epochs(50, 20) == 10 and scale_epochs(20, 2, minimum=1) == 1
    assert scale_epochs(20, 150) == 20 and scale_epochs(20, None) == 20 and scale_epochs(5, 4) == 0
    tr = FakeTrainer()
    assert total_epochs(tr) == 4  # no stage budget yet: the smoke preset's warm-up + adaptive epochs
    tr.stage_epochs = 10
    assert total_epochs(tr) == 10
    ogm, opm, gb, dr = OGMGEStrategy(), baselines.get("opm_ogm"), baselines.get("g_blending"), DRStrategy()
    for s in (ogm, opm, gb, dr):
        s.setup(tr)
    assert ogm.modulation_ends == 5 and opm.modulation_starts == 1 and opm.ogm_ends == 5
    assert gb.super_epoch == 1 and dr.reinit_epoch == 2
