"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement (Peng et al., CVPR 2022).

Per batch, s_m = Σ_i softmax(l^m_i)[y_i] with l^a, l^v the split logits of Eq. (2); the ratio
r_a = s_a / s_v (and r_v = 1 / r_a) gives each encoder's coefficient k_m = 1 − tanh(α · relu(r_m − 1)):
the dominant modality (r_m > 1) is slowed, the other keeps k = 1. After backward, every encoder gradient is
multiplied by its k_m and, for GE, Gaussian noise with the gradient's own standard deviation is added to
both encoders' weight gradients (as the authors' code does; bias/BN vectors are scaled but get no noise).

Defaults (the authors' CREMA-D setting): α = 0.8, modulation in epochs [0, 50] of a 100-epoch run; at a
shorter budget the window end is scaled to the same half of the run. The authors' code uses relu(r) where
their text reads "r > 1"; we use relu(r − 1) so that k is continuous (k = 1 at r = 1), as the issue asks.
Loss: joint CE on the fused logits (Eq. 1). Coefficients stay on the device (no host sync per batch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mmgap.baselines._common import (
    DeviceRng,
    ce,
    encoder,
    in_window,
    scale_epochs,
    standard_parts,
    total_epochs,
    true_class_score,
)
from mmgap.strategy import Batch, Strategy

if TYPE_CHECKING:  # pragma: no cover
    from mmgap.train import Trainer

EPS = 1e-8


def ogm_coefficients(logit_a: torch.Tensor, logit_v: torch.Tensor, y: torch.Tensor,
                     alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(k_a, k_v, r_a): k_m = 1 − tanh(α·relu(r_m − 1)) with r_a = s_a / s_v, r_v = s_v / s_a (OGM-GE)."""
    s_a = true_class_score(logit_a.detach(), y)
    s_v = true_class_score(logit_v.detach(), y)
    r_a = s_a / (s_v + EPS)
    r_v = s_v / (s_a + EPS)
    k_a = 1.0 - torch.tanh(alpha * torch.relu(r_a - 1.0))
    k_v = 1.0 - torch.tanh(alpha * torch.relu(r_v - 1.0))
    return k_a, k_v, r_a


@torch.no_grad()
def modulate_grads(module: nn.Module, coeff: torch.Tensor | float, ge: bool = False,
                   generator: torch.Generator | None = None) -> None:
    """g ← k·g (+ N(0, std(g)²) on weight tensors when ``ge``), in place on every parameter's gradient."""
    for p in module.parameters():
        g = p.grad
        if g is None:
            continue
        if ge and g.dim() >= 2:
            std = g.std() + EPS  # the unscaled gradient's own std, as in the authors' code
            noise = torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype)
            g.mul_(coeff).add_(noise * std)
        else:
            g.mul_(coeff)


class OGMGEStrategy(Strategy):
    """Joint CE; the dominant encoder's gradients scaled by 1 − tanh(α·relu(r − 1)), plus GE noise."""

    name = "ogm_ge"

    def __init__(self, alpha: float = 0.8, modulation_starts: int = 0, modulation_ends: int | None = None,
                 ge: bool = True) -> None:
        if alpha < 0:
            raise ValueError(f"OGM-GE alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.modulation_starts = int(modulation_starts)
        self.modulation_ends = modulation_ends
        self.ge = bool(ge)
        self._rng = DeviceRng()
        self._coeffs: tuple[torch.Tensor, torch.Tensor] | None = None

    def setup(self, trainer: "Trainer") -> None:
        """Device generator for the GE noise; the window end defaults to half of the run (50 of 100)."""
        self._rng.setup(trainer)
        if self.modulation_ends is None:
            self.modulation_ends = scale_epochs(50, total_epochs(trainer))

    def training_step(self, trainer: "Trainer", batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Joint CE on the fused logits; the batch's OGM coefficients are kept for after_backward."""
        out = trainer.forward(batch)
        y = batch["label"]
        k_a, k_v, r_a = ogm_coefficients(out.logit_a, out.logit_v, y, self.alpha)
        self._coeffs = (k_a, k_v)
        parts = standard_parts(out.fused, out.logit_a, out.logit_v, y)
        parts.update(coeff_a=k_a, coeff_v=k_v, ratio_a=r_a)
        return ce(out.fused, y), parts

    def after_backward(self, trainer: "Trainer", epoch: int) -> None:
        """Scale each encoder's gradients by its k_m (and add GE noise) inside the modulation window."""
        if self._coeffs is None or not in_window(epoch, self.modulation_starts, self.modulation_ends):
            return
        k_a, k_v = self._coeffs
        gen = self._rng.gen
        modulate_grads(encoder(trainer.model, "audio"), k_a, self.ge, gen)
        modulate_grads(encoder(trainer.model, "visual"), k_v, self.ge, gen)

    def state_dict(self) -> dict[str, Any]:
        """The noise generator's state and the resolved window."""
        return {"rng": self._rng.state(), "modulation_ends": self.modulation_ends}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self._rng.load(state.get("rng"))
        if state.get("modulation_ends") is not None:
            self.modulation_ends = int(state["modulation_ends"])
