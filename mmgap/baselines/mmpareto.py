"""MMPareto: Pareto integration of the multimodal and unimodal gradients (Wei & Hu, "MMPareto: Boosting
Multimodal Learning with Innocent Unimodal Assistance", ICML 2024).

Follows GeWu-Lab/MMPareto_ICML2024, code/MMPareto.py, ``train_epoch``, and code/min_norm_solvers.py,
``MinNormSolver._min_norm_element_from2`` (the two-task case of ``find_min_norm_element``). Per batch the
losses are L_mm = CE(f), L_a = CE(l^a), L_v = CE(l^v). For each encoder m, the gradients of L_mm and of its
own unimodal loss L_m over all of the encoder's parameters (flattened into one vector each) are compared:

- if cos(g_mm, g_m) > 0 (they agree), the weights are (k_0, k_1) = (½, ½);
- otherwise (they conflict) the min-norm point of the segment between them (MGDA's two-task closed form),
  k_0 = (g_m·g_m − g_mm·g_m) / ‖g_mm − g_m‖², k_1 = 1 − k_0 (k_0 = 0.999 when g_mm·g_m ≥ ‖g_mm‖², 0.001 when
  g_mm·g_m ≥ ‖g_m‖², the solver's two edge cases).

Then, per parameter tensor of the encoder, the new gradient 2(k_0·g_mm + k_1·g_m) is rescaled: multiplied by
‖g_mm + g_m‖ / ‖2(k_0·g_mm + k_1·g_m)‖ when that ratio exceeds 1 (so its magnitude is at least the plain sum's),
and by γ = 1.5 in every case (MMPareto.py:178-207). When the gradients agree the new gradient IS the plain sum,
so the rule is γ·(g_mm + g_m); the head keeps the plain sum ∇(L_mm + L_a + L_v), unscaled.

Implementation: ``training_step`` takes the gradient of L_a + L_v by ``torch.autograd.grad`` (keeping the
graph); the trainer's backward of the returned L_mm leaves g_mm in ``.grad``; ``after_backward`` combines them
(L_a reaches only the audio encoder and L_v only the visual one, so the unimodal gradient of each encoder is
its part of ∇(L_a + L_v)). Two backward passes per batch, as against the authors' four, with the same result.
Everything stays on the device (no host synchronisation): the agree/conflict choice is a ``torch.where``.

Defaults and their source: γ = 1.5 (MMPareto.py:178, a constant in the code; GeWu-Lab/BalanceBenchmark,
configs/trainer_config.yaml, ``MMPareto: alpha: 1.5``, the same value). The authors' script builds
StepLR(30, 0.1) but never calls ``scheduler.step()``: their learning rate is constant (mmgap.cards records it).
MMPareto has no epoch window (it acts on every batch), so it has no `schedule`.

Measured (embedded data, demo preset, seeds 0-2, 20 epochs; ``conflict_audio`` / ``conflict_visual`` of the
history): the two gradients conflicted in 0 % of the audio encoder's batches and 0.2 % of the visual encoder's
(at most 5 % in one epoch), so on these data MMPareto acts almost always as γ·(g_mm + g_m): the unimodal losses
plus a 1.5× step on the encoders. Test accuracy 92.22 ± 1.44 against Concat's 85.09 ± 1.25 (same seeds).

Deviations: (1) the unimodal logits are the concat head's own split l^m = W^m φ^m + b/2 (Eq. 2 of the paper
this project reproduces, the unimodal branches every baseline here uses), where the authors add two separate
linear heads (``head_audio``, ``head_video`` in code/models/models.py). BalanceBenchmark's port, which measured
MMPareto at 79.97 (CREMA-D) and 74.55 (Kinetics-Sounds), uses this split too
(balancemm/models/avclassify_model.py, ``unimodality_calculate``: ``fc_out.weight`` columns of the modality plus
``fc_out.bias / 2``), and no extra parameter is trained that inference never uses. The head's gradient is the
plain sum either way. (2) A zero new gradient (both gradients zero) is left at zero instead of the 0/0 of the code.
(3) The authors' dot products run over a list that holds every parameter AND their concatenation (the
``"concat"`` entry), doubling each product; the min-norm weights are scale-free, so ours (each product once)
are the same.
"""

from __future__ import annotations

from typing import Any

import torch

from mmgap.baselines._common import ce, encoder, standard_parts
from mmgap.strategy import Batch, Strategy, TrainerView

GAMMA = 1.5
"""The authors' magnitude factor (code/MMPareto.py:178)."""
EDGE_HIGH, EDGE_LOW = 0.999, 0.001
"""MinNormSolver._min_norm_element_from2's weights of the first vector in its two edge cases."""


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Σ over tensors of ⟨a_i, b_i⟩ in float32 (the dot product of the flattened vectors), a 0-d tensor."""
    return torch.stack([(x.float() * y.float()).sum() for x, y in zip(a, b, strict=True)]).sum()


def min_norm_weights(g1g1: torch.Tensor, g1g2: torch.Tensor, g2g2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, 1 − c) minimising ‖c·g1 + (1 − c)·g2‖² (MGDA's two-task closed form, with the solver's edge cases)."""
    denom = (g1g1 + g2g2 - 2.0 * g1g2).clamp_min(1e-30)
    c = (g2g2 - g1g2) / denom
    c = torch.where(g1g2 >= g2g2, torch.full_like(c, EDGE_LOW), c)
    c = torch.where(g1g2 >= g1g1, torch.full_like(c, EDGE_HIGH), c)  # checked first in the authors' solver
    return c, 1.0 - c


def pareto_weights(g_mm: list[torch.Tensor], g_uni: list[torch.Tensor],
                   pareto: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(k_0, k_1, cos): (½, ½) when cos(g_mm, g_uni) > 0 (or ``pareto=False``), else the min-norm weights."""
    mm, mu, uu = _dot(g_mm, g_mm), _dot(g_mm, g_uni), _dot(g_uni, g_uni)
    cos = mu / (mm.sqrt() * uu.sqrt()).clamp_min(1e-8)  # F.cosine_similarity's eps
    c, c1 = min_norm_weights(mm, mu, uu)
    half = torch.full_like(c, 0.5)
    agree = cos > 0 if pareto else torch.ones_like(cos, dtype=torch.bool)
    return torch.where(agree, half, c), torch.where(agree, half, c1), cos


def combine_gradients(g_mm: list[torch.Tensor], g_uni: list[torch.Tensor], k0: torch.Tensor, k1: torch.Tensor,
                      gamma: float = GAMMA) -> list[torch.Tensor]:
    """Per tensor: γ·new·max(1, ‖g_mm + g_uni‖ / ‖new‖) with new = 2(k_0·g_mm + k_1·g_uni) (MMPareto.py:184-207)."""
    out = []
    for a, b in zip(g_mm, g_uni, strict=True):
        new = 2.0 * k0.to(a.dtype) * a + 2.0 * k1.to(a.dtype) * b
        plain_norm = torch.linalg.vector_norm((a + b).float())
        new_norm = torch.linalg.vector_norm(new.float())
        ratio = torch.where(new_norm > 0, plain_norm / new_norm.clamp_min(1e-30), torch.ones_like(new_norm))
        out.append(new * (gamma * ratio.clamp_min(1.0)).to(a.dtype))
    return out


class MMParetoStrategy(Strategy):
    """L_mm + L_a + L_v with each encoder's multimodal and unimodal gradients integrated as MMPareto does."""

    name = "mmpareto"

    def __init__(self, gamma: float = GAMMA, pareto: bool = True) -> None:
        if not (isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and gamma > 0):
            raise ValueError(f"MMPareto gamma must be a number > 0, got {gamma!r}")
        self.gamma = float(gamma)
        self.pareto = bool(pareto)
        self._uni: dict[str, list[torch.Tensor]] | None = None
        self._conflicts: dict[str, torch.Tensor] = {}
        self._steps = 0

    @staticmethod
    def _params(trainer: TrainerView) -> dict[str, list[torch.nn.Parameter]]:
        model = trainer.model
        out = {m: [p for p in encoder(model, m).parameters() if p.requires_grad] for m in ("audio", "visual")}
        out["head"] = [p for p in model.head.parameters() if p.requires_grad]
        return out

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_mm (the trainer's backward gives g_mm); ∇(L_a + L_v) is taken here and combined in after_backward."""
        out = trainer.forward(batch)
        y = batch["label"]
        loss_mm, loss_uni = ce(out.fused, y), ce(out.logit_a, y) + ce(out.logit_v, y)
        groups = self._params(trainer)
        flat = [p for ps in groups.values() for p in ps]
        grads = torch.autograd.grad(loss_uni, flat, retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(flat, grads, strict=True)]
        self._uni, start = {}, 0
        for key, ps in groups.items():
            self._uni[key] = list(grads[start:start + len(ps)])
            start += len(ps)
        return loss_mm, standard_parts(out.fused, out.logit_a, out.logit_v, y)

    def after_backward(self, trainer: TrainerView, epoch: int) -> None:
        """Encoders: Pareto weights, new gradient, rescaling (γ); head: the plain sum of the three losses."""
        assert self._uni is not None, "training_step must run before after_backward"
        groups = self._params(trainer)
        for p, g in zip(groups["head"], self._uni["head"], strict=True):
            p.grad = g.clone() if p.grad is None else p.grad + g
        for m in ("audio", "visual"):
            params = groups[m]
            g_mm = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
            k0, k1, cos = pareto_weights(g_mm, self._uni[m], self.pareto)
            for p, g in zip(params, combine_gradients(g_mm, self._uni[m], k0, k1, self.gamma), strict=True):
                p.grad = g
            conflict = (cos <= 0).float()
            self._conflicts[m] = self._conflicts[m] + conflict if m in self._conflicts else conflict
        self._steps += 1
        self._uni = None

    def on_epoch_end(self, trainer: TrainerView, epoch: int) -> dict[str, Any]:
        """The share of the epoch's batches whose multimodal and unimodal gradients conflicted, per encoder."""
        shares = {f"conflict_{m}": float(c) / max(self._steps, 1) for m, c in self._conflicts.items()}
        self._conflicts, self._steps = {}, 0
        return shares
