"""The modality-level rows added to Table II (MMPareto, InfoReg): each core rule against hand-computed values,
each distinctive term switched off, and smoke and resume runs through mmgap.trainer.train_baseline."""

from __future__ import annotations

import math

import pytest
import torch

from mmgap import baselines
from mmgap.baselines.inforeg import InfoRegStrategy, proximal_coefficients, trace_growth
from mmgap.baselines.mmpareto import (
    GAMMA,
    MMParetoStrategy,
    combine_gradients,
    min_norm_weights,
    pareto_weights,
)
from mmgap.config import get_preset
from tests.test_baselines import FakeTrainer, tiny_cache


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread (the shared machine has two cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _t(*values: float) -> list[torch.Tensor]:
    """One 1-element tensor per value: a 'network' of several parameter tensors."""
    return [torch.tensor([v]) for v in values]


# ---------------------------------------------------------------------------------------------- MMPareto


def test_mmpareto_weights_are_half_half_when_the_gradients_agree():
    g_mm, g_uni = _t(1.0, 0.0), _t(1.0, 1.0)  # cos = 1/√2 > 0
    k0, k1, cos = pareto_weights(g_mm, g_uni)
    assert (k0.item(), k1.item()) == (0.5, 0.5)
    assert cos.item() == pytest.approx(1 / math.sqrt(2))
    # 2(½ g_mm + ½ g_uni) is the plain sum: ratio 1, times γ = 1.5 -> [3, 1.5]
    out = combine_gradients(g_mm, g_uni, k0, k1)
    torch.testing.assert_close(torch.cat(out), torch.tensor([3.0, 1.5]))


def test_mmpareto_min_norm_weights_and_rescaling_when_they_conflict():
    # g_mm = (1, 0), g_uni = (−1, 2): ⟨g_mm, g_mm⟩ = 1, ⟨g_mm, g_uni⟩ = −1, ⟨g_uni, g_uni⟩ = 5, cos = −1/√5.
    # Min-norm: c = (5 − (−1)) / (1 + 5 + 2) = 0.75; 0.75·(1, 0) + 0.25·(−1, 2) = (0.5, 0.5), orthogonal to
    # g_mm − g_uni = (2, −2) (the min-norm point's property).
    g_mm, g_uni = _t(1.0, 0.0), _t(-1.0, 2.0)
    k0, k1, cos = pareto_weights(g_mm, g_uni)
    assert cos.item() == pytest.approx(-1 / math.sqrt(5))
    assert (k0.item(), k1.item()) == pytest.approx((0.75, 0.25))
    # Per tensor, new = 2(0.75 g_mm + 0.25 g_uni) = (1.0, 1.0); plain sums (0, 2):
    # tensor 1: ‖plain‖/‖new‖ = 0 < 1 -> 1.5·1.0; tensor 2: ratio 2 > 1 -> 1.5·2·1.0 = 3.0.
    out = combine_gradients(g_mm, g_uni, k0, k1)
    torch.testing.assert_close(torch.cat(out), torch.tensor([1.5, 3.0]))
    # Switched off, the conflict gets (½, ½) as well: the uniform sum.
    k0, k1, _ = pareto_weights(g_mm, g_uni, pareto=False)
    assert (k0.item(), k1.item()) == (0.5, 0.5)


def test_mmpareto_min_norm_solver_edge_cases():
    # MinNormSolver._min_norm_element_from2: ⟨1,2⟩ >= ⟨1,1⟩ -> 0.999; ⟨1,2⟩ >= ⟨2,2⟩ -> 0.001; else closed form.
    c, c1 = min_norm_weights(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(4.0))
    assert (c.item(), c1.item()) == pytest.approx((0.999, 0.001), abs=1e-6)
    c, _ = min_norm_weights(torch.tensor(4.0), torch.tensor(1.0), torch.tensor(1.0))
    assert c.item() == pytest.approx(0.001)
    c, _ = min_norm_weights(torch.tensor(2.0), torch.tensor(0.0), torch.tensor(6.0))
    assert c.item() == pytest.approx(6.0 / 8.0)


def _mmpareto_grads(strategy: MMParetoStrategy) -> tuple[FakeTrainer, dict[str, torch.Tensor]]:
    tr = FakeTrainer()
    strategy.setup(tr)
    tr.sgd()
    tr.optimizer.zero_grad(set_to_none=True)
    loss, _ = strategy.training_step(tr, tr._batches[0], 0)
    loss.backward()
    strategy.after_backward(tr, 0)
    return tr, {k: p.grad.clone() for k, p in tr.model.named_parameters() if p.grad is not None}


def test_mmpareto_gradients_on_a_model_match_the_rule():
    tr, got = _mmpareto_grads(MMParetoStrategy())
    model, batch = tr.model, tr._batches[0]
    out = model(batch["audio"], batch["frames"])
    y = batch["label"]
    ce = torch.nn.functional.cross_entropy
    losses = {"mm": ce(out.fused, y), "audio": ce(out.logit_a, y), "visual": ce(out.logit_v, y)}
    names = dict(model.named_parameters())
    for m in ("audio", "visual"):
        keys = [k for k in names if k.startswith(f"{m}_encoder.")]
        ps = [names[k] for k in keys]
        g_mm = list(torch.autograd.grad(losses["mm"], ps, retain_graph=True))
        g_m = list(torch.autograd.grad(losses[m], ps, retain_graph=True))
        k0, k1, _ = pareto_weights(g_mm, g_m)
        for k, want in zip(keys, combine_gradients(g_mm, g_m, k0, k1), strict=True):
            torch.testing.assert_close(got[k], want, rtol=1e-3, atol=1e-5)
    head = [k for k in names if k.startswith("head.")]
    total = losses["mm"] + losses["audio"] + losses["visual"]
    for k, want in zip(head, torch.autograd.grad(total, [names[k] for k in head]), strict=True):
        torch.testing.assert_close(got[k], want, rtol=1e-3, atol=1e-5)  # the head: the plain sum, unscaled


def test_mmpareto_switched_off_is_the_uniform_sum_and_on_changes_the_gradients():
    _, off = _mmpareto_grads(MMParetoStrategy(gamma=1.0, pareto=False))
    tr, on = _mmpareto_grads(MMParetoStrategy())
    batch = tr._batches[0]
    out = tr.model(batch["audio"], batch["frames"])
    ce = torch.nn.functional.cross_entropy
    total = ce(out.fused, batch["label"]) + ce(out.logit_a, batch["label"]) + ce(out.logit_v, batch["label"])
    names = [k for k, p in tr.model.named_parameters() if p.grad is not None]
    plain = dict(zip(names, torch.autograd.grad(total, [dict(tr.model.named_parameters())[k] for k in names]),
                     strict=True))
    for k in names:  # off: exactly the gradient of L_mm + L_a + L_v
        torch.testing.assert_close(off[k], plain[k], rtol=1e-3, atol=1e-5)
    changed = [k for k in names if k.startswith(("audio_encoder.", "visual_encoder."))
               and not torch.allclose(on[k], off[k], rtol=1e-2, atol=1e-8)]
    assert len(changed) > 0.9 * sum(k.startswith(("audio_encoder.", "visual_encoder.")) for k in names)
    assert all(torch.allclose(on[k], off[k], rtol=1e-3, atol=1e-5) for k in names if k.startswith("head."))
    assert GAMMA == 1.5


# ---------------------------------------------------------------------------------------------- InfoReg


def test_inforeg_trace_growth_hand_values():
    # main.py: tr1 = sum(list[-n:]) / n, tr2 = sum(list[-n-1:-1]) / n, k = (tr1 - tr2) / tr1; k = 1 at epoch 0.
    assert trace_growth([], 4) == 1.0
    assert trace_growth([2.0], 4) == 1.0                      # (2 - 0) / 2
    assert trace_growth([1.0, 3.0], 4) == pytest.approx(0.75)  # (4 - 1) / 4
    assert trace_growth([1, 2, 3, 4, 5, 6], 2) == pytest.approx(2 / 11)  # (11 - 9) / 11
    assert trace_growth([5.0, 5.0, 5.0, 5.0, 5.0], 4) == 0.0


def test_inforeg_beta_only_for_the_stronger_modality_inside_its_window():
    beta_a, beta_v = proximal_coefficients(torch.tensor(3.0), torch.tensor(1.0), 0.95, 0.1)
    assert beta_a.item() == pytest.approx(0.95 * math.exp(math.tanh(2.0)))
    assert beta_v.item() == 0.0
    beta_a, beta_v = proximal_coefficients(torch.tensor(1.0), torch.tensor(1.5), 0.95, 0.1)
    assert (beta_a.item(), beta_v.item()) == pytest.approx((0.0, 0.1 * math.exp(math.tanh(0.5))))
    beta_a, beta_v = proximal_coefficients(torch.tensor(3.0), torch.tensor(1.0), 0.95, 0.1, open_a=False)
    assert (beta_a.item(), beta_v.item()) == (0.0, 0.0)  # the stronger one's window is closed: nothing
    beta_a, beta_v = proximal_coefficients(torch.tensor(2.0), torch.tensor(2.0), 0.95, 0.1)
    assert (beta_a.item(), beta_v.item()) == (0.0, 0.0)  # a tie: neither is stronger


def _inforeg_step(strategy: InfoRegStrategy, scores: tuple[float, float], shift: float = 0.1):
    """One batch with both encoders moved by `shift` from their epoch-start weights and the scores forced.
    Returns (plain gradients, gradients after InfoReg) by parameter name."""
    tr = FakeTrainer()
    tr.stage_epochs = 20
    strategy.setup(tr)
    strategy.on_epoch_start(tr, 0)
    with torch.no_grad():
        for name in ("audio_encoder", "visual_encoder"):
            for p in getattr(tr.model, name).parameters():
                p.add_(shift)
    tr.model.zero_grad(set_to_none=True)
    loss, _ = strategy.training_step(tr, tr._batches[0], 0)
    strategy._scores = (torch.tensor(scores[0]), torch.tensor(scores[1]))
    loss.backward()
    plain = {k: p.grad.clone() for k, p in tr.model.named_parameters() if p.grad is not None}
    strategy.after_backward(tr, 0)
    after = {k: p.grad.clone() for k, p in tr.model.named_parameters() if p.grad is not None}
    return plain, after


def test_inforeg_proximal_term_on_the_stronger_encoder_only():
    beta = 0.95 * math.exp(math.tanh(2.0))
    plain, after = _inforeg_step(InfoRegStrategy(), (3.0, 1.0))  # audio stronger
    for k in plain:
        want = plain[k] + beta * 0.1 if k.startswith("audio_encoder.") else plain[k]
        torch.testing.assert_close(after[k], want, rtol=1e-5, atol=1e-6)
    beta_v = 0.1 * math.exp(math.tanh(2.0))
    plain, after = _inforeg_step(InfoRegStrategy(), (1.0, 3.0))  # visual stronger
    for k in plain:
        want = plain[k] + beta_v * 0.1 if k.startswith("visual_encoder.") else plain[k]
        torch.testing.assert_close(after[k], want, rtol=1e-5, atol=1e-6)


def test_inforeg_proximal_term_only_inside_the_window():
    strategy = InfoRegStrategy()
    strategy.traces = {"audio": [5.0, 5.0, 5.0, 5.0, 5.0], "visual": [1.0, 2.0, 4.0, 8.0, 16.0]}
    plain, after = _inforeg_step(strategy, (3.0, 1.0))  # audio stronger, its trace flat: k = 0 <= 0.05, closed
    assert strategy.window_open == {"audio": False, "visual": True}
    for k in plain:
        assert torch.equal(after[k], plain[k]), k


def test_inforeg_switched_off_changes_nothing_and_on_changes_the_gradients():
    plain, off = _inforeg_step(InfoRegStrategy(c_audio=0.0, c_visual=0.0), (3.0, 1.0))
    assert all(torch.equal(off[k], plain[k]) for k in plain)
    _, on = _inforeg_step(InfoRegStrategy(), (3.0, 1.0))
    assert all(not torch.equal(on[k], off[k]) for k in plain if k.startswith("audio_encoder."))


def test_inforeg_schedule_scales_with_the_run():
    assert InfoRegStrategy().schedule(50) == {"trace_window": 10}  # the authors' [-10:] over 50 epochs
    assert baselines.schedules(20, ["inforeg", "mmpareto"]) == {"inforeg": {"trace_window": 4}}
    with pytest.raises(ValueError, match="trace_window"):
        InfoRegStrategy(trace_window=0.0)
    with pytest.raises(ValueError, match="gamma"):
        MMParetoStrategy(gamma=0)


# ---------------------------------------------------------------------------------------------- the trainer


def _preset():
    return get_preset("smoke", batch_size=8, lr=0.05, warmup_epochs=2, adaptive_epochs=1, width=2,
                      num_frames=2, image_size=16)


@pytest.mark.parametrize("name", ["mmpareto", "inforeg"])
def test_trains_through_the_trainer(name, tmp_path):
    from mmgap.trainer import train_baseline

    res = train_baseline(tiny_cache(), _preset(), baselines.get(name), tmp_path / name, seed=0, epochs=3,
                         device="cpu", resume=False, progress=False)
    hist = res["history"]
    assert len(hist) == 3 and all(math.isfinite(r["train_loss"]) for r in hist)
    assert baselines.FAMILIES[name] == "modality-level"
    if name == "mmpareto":
        assert all(0.0 <= r["conflict_audio"] <= 1.0 and 0.0 <= r["conflict_visual"] <= 1.0 for r in hist)
    else:  # window open at epoch 0 (k = 1); every epoch records its Fisher traces
        assert hist[0]["window_audio"] and hist[0]["window_visual"]
        assert all(r["fisher_trace_audio"] > 0 and r["fisher_trace_visual"] > 0 for r in hist)


@pytest.mark.parametrize("name", ["mmpareto", "inforeg"])
def test_resume_is_bit_identical(name, tmp_path):
    from mmgap.trainer import TrainingInterrupted, train_baseline

    cache = tiny_cache()
    kw = dict(seed=0, epochs=3, device="cpu", progress=False, return_trainer=True)
    straight = train_baseline(cache, _preset(), baselines.get(name), tmp_path / "a", resume=False, **kw)
    with pytest.raises(TrainingInterrupted):
        train_baseline(cache, _preset(), baselines.get(name), tmp_path / "b", resume=False, interrupt_at_epoch=2,
                       **kw)
    resumed = train_baseline(cache, _preset(), baselines.get(name), tmp_path / "b", resume=True, **kw)
    a, b = straight["trainer"].model.state_dict(), resumed["trainer"].model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["train_loss"] for r in straight["history"]] == [r["train_loss"] for r in resumed["history"]]
