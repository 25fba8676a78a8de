"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement (Peng et al., CVPR 2022).

Follows GeWu-Lab/OGM-GE_CVPR2022, main.py, ``train_epoch`` (the paper's Eq. 10, quoted in that function).
Per batch, s_m = Σ_i softmax(l^m_i)[y_i] with l^a, l^v the split logits of Eq. (2); r_a = s_a / s_v and
r_v = 1 / r_a. The dominant modality's coefficient is k_m = 1 − tanh(α · r_m) when r_m > 1, the other
modality's is 1. After backward, the gradient of every 4-D (convolution) weight of each encoder is replaced
by k_m · g + N(0, std(g)²) (GE; std of the unscaled gradient, plus 1e-8), in both encoders; BatchNorm and
bias gradients, and the head, are left alone, as in the authors' ``len(parms.grad.size()) == 4`` test.
Modulation runs in epochs ``modulation_starts <= epoch <= modulation_ends`` (inclusive, as theirs).
Loss: joint CE on the fused logits (Eq. 1).

Defaults and their source: α = 0.8 (README, "Tips": 0.8 for CREMA-D); the window [0, 50] of a 100-epoch
run (main.py ``get_arguments``: modulation_starts 0, modulation_ends 50, epochs 100), here the fractions
``window=(0.0, 0.5)`` of this run (the end rounds half up and stays inclusive: [0, 10] at 20 epochs,
exactly [0, 50] at 100; see `OGMGEStrategy.schedule`).

Deviations: (1) at an exact tie r = 1 both coefficients are 1, as Eq. 10 states; the code's ``else`` branch
would slow audio by 1 − tanh(α) there (a measure-zero event). (2) The coefficients and the noise's std stay
on the device (the authors call ``.item()`` per parameter, a host sync each time); the values are the same.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmgap.baselines._common import (
    REFERENCE_EPOCHS,
    DeviceRng,
    ce,
    check_window,
    encoder,
    in_window,
    run_length,
    standard_parts,
    true_class_score,
    window_epochs,
)
from mmgap.strategy import Batch, Strategy, TrainerView

EPS = 1e-8


def ogm_coefficient(ratio: torch.Tensor, alpha: float) -> torch.Tensor:
    """k = 1 − tanh(α·r) if r > 1 else 1: OGM-GE's Eq. 10 for one modality's ratio r = s_m / s_other."""
    return torch.where(ratio > 1.0, 1.0 - torch.tanh(alpha * ratio), torch.ones_like(ratio))


def ogm_coefficients(logit_a: torch.Tensor, logit_v: torch.Tensor, y: torch.Tensor,
                     alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(k_a, k_v, r_a) with r_a = s_a / s_v, r_v = 1 / r_a and k_m of `ogm_coefficient` (Eq. 10)."""
    s_a = true_class_score(logit_a.detach(), y)
    s_v = true_class_score(logit_v.detach(), y)
    r_a = s_a / (s_v + EPS)
    r_v = s_v / (s_a + EPS)
    return ogm_coefficient(r_a, alpha), ogm_coefficient(r_v, alpha), r_a


@torch.no_grad()
def modulate_grads(module: nn.Module, coeff: torch.Tensor | float, ge: bool = False,
                   generator: torch.Generator | None = None) -> None:
    """On every 4-D (conv) weight gradient g of ``module``: g ← k·g (+ N(0, (std(g) + 1e-8)²) with ``ge``)."""
    for p in module.parameters():
        g = p.grad
        if g is None or g.dim() != 4:
            continue
        if ge:
            std = g.std() + EPS  # the unscaled gradient's own std, as in the authors' code
            noise = torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype)
            g.mul_(coeff).add_(noise * std)
        else:
            g.mul_(coeff)


class OGMGEStrategy(Strategy):
    """Joint CE; the dominant encoder's conv gradients scaled by 1 − tanh(α·r) (r > 1), plus GE noise."""

    name = "ogm_ge"
    reference_epochs = REFERENCE_EPOCHS

    def __init__(self, alpha: float = 0.8, window: tuple[float, float] = (0.0, 0.5), ge: bool = True) -> None:
        if not alpha >= 0:
            raise ValueError(f"OGM-GE alpha must be >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.window = check_window("OGM-GE", "window", window)
        self.ge = bool(ge)
        self._rng = DeviceRng()
        self._coeffs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._sched: dict[str, int] | None = None

    def schedule(self, epochs: int) -> dict[str, int]:
        """The modulation window in epochs of a run of ``epochs``: starts <= epoch <= ends."""
        return window_epochs(self.window, epochs)

    def setup(self, trainer: TrainerView) -> None:
        """Device generator for the GE noise; the window resolved for the run's budget."""
        self._rng.setup(trainer)
        self._sched = self.schedule(run_length(trainer, self.reference_epochs))

    def active(self, epoch: int) -> bool:
        """Whether gradients are modulated in this (0-based) epoch."""
        assert self._sched is not None, "call setup(trainer) first"
        return in_window(epoch, self._sched["modulation_starts"], self._sched["modulation_ends"])

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Joint CE on the fused logits; the batch's OGM coefficients are kept for after_backward."""
        out = trainer.forward(batch)
        y = batch["label"]
        k_a, k_v, r_a = ogm_coefficients(out.logit_a, out.logit_v, y, self.alpha)
        self._coeffs = (k_a, k_v)
        parts = standard_parts(out.fused, out.logit_a, out.logit_v, y)
        parts.update(coeff_a=k_a, coeff_v=k_v, ratio_a=r_a)
        return ce(out.fused, y), parts

    def after_backward(self, trainer: TrainerView, epoch: int) -> None:
        """Scale each encoder's conv gradients by its k_m (and add GE noise) inside the modulation window."""
        if self._coeffs is None or not self.active(epoch):
            return
        k_a, k_v = self._coeffs
        gen = self._rng.gen
        modulate_grads(encoder(trainer.model, "audio"), k_a, self.ge, gen)
        modulate_grads(encoder(trainer.model, "visual"), k_v, self.ge, gen)

    def state_dict(self) -> dict[str, Any]:
        """The noise generator's state (the window is recomputed from the run's budget at setup)."""
        return {"rng": self._rng.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self._rng.load(state.get("rng"))
