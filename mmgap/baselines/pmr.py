"""PMR: prototypical modal rebalance (Fan et al., CVPR 2023).

Follows fanyunfeng-bit/Modal-Imbalance-PMR, main_Prototype_grad.py: ``calculate_prototype``, ``train_epoch``
(modulation "Proto") and ``main`` (when prototypes are refreshed). Class prototypes c^m_k are the mean
features φ^m of the class-k samples in the first ⌊N/10⌋ training batches (at least one), model in eval mode,
no gradients; they are computed before the first epoch and after every epoch (here: at the start of the next
one, the same model), smoothed as c ← (1 − μ)·c_new + μ·c_old except for the first two computations (the
authors' ``epoch <= 0`` test is true for both). Prototype logits p^m = −‖φ^m − c^m_k‖₂ (torch.cdist; the
authors' double loop) and ρ = Σ_i softmax(p^a_i)[y_i] / Σ_i softmax(p^v_i)[y_i]. Inside the modulation window
the loss is CE(f) + β_a·CE(p^a) + β_v·CE(p^v) where only the lagging modality gets the CONSTANT weight α:
β_v = α if ρ > 1, β_a = α if ρ < 1, both 0 at ρ = 1; outside it, CE(f) alone.

Defaults and their source (main_Prototype_grad.py ``get_arguments``): α = 1.0, μ (momentum_coef) = 0.2,
window [0, 100] of 150 epochs, here ``window=(0.0, 2/3)`` of this run ([0, 13] at 20 epochs; see
`PMRStrategy.schedule`); prototype batches: ``all_num // 10``.

Options and deviations: ``ratio_scaled=True`` uses BalanceBenchmark's form (balancemm/trainer/PMR_trainer.py,
``training_step``): β = α·clip(ρ − 1, 0, 1) for visual, α·clip(1/ρ − 1, 0, 1) for audio, 2-10× weaker at
usual ρ; not the default. A class absent from this epoch's prototype batches keeps its previous prototype
(the authors divide by a zero count and get NaN). PMR's optional entropy regulariser (PER) is not included:
main_Prototype_grad.py has none.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mmgap.baselines._common import (
    ce,
    check_window,
    eval_mode,
    in_window,
    run_length,
    standard_parts,
    true_class_score,
    window_epochs,
)
from mmgap.strategy import Batch, Strategy, TrainerView

EPS = 1e-8


def class_sums(feat: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ features per class [M, d], counts per class [M]) in float32."""
    feat = feat.float()
    sums = torch.zeros(num_classes, feat.shape[1], device=feat.device).index_add_(0, labels, feat)
    counts = torch.bincount(labels, minlength=num_classes).to(feat.device, torch.float32)
    return sums, counts


def update_prototypes(sums: torch.Tensor, counts: torch.Tensor, old: torch.Tensor | None,
                      momentum: float) -> torch.Tensor:
    """EMA prototypes (1 − μ)·mean + μ·old; a class with no sample this epoch keeps its old prototype."""
    mean = sums / counts.clamp_min(1.0).unsqueeze(1)
    if old is None:
        return mean
    old = old.to(mean.device)
    seen = (counts > 0).unsqueeze(1)
    return torch.where(seen, (1.0 - momentum) * mean + momentum * old, old)


def prototype_logits(feat: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """−‖φ_i − c_k‖₂ for every sample and class, [B, M] (PMR's prototype classifier)."""
    return -torch.cdist(feat.float(), prototypes.float())


def pmr_coefficients(proto_a: torch.Tensor, proto_v: torch.Tensor, y: torch.Tensor, alpha: float,
                     ratio_scaled: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(β_a, β_v, ρ): the lagging modality's prototype-CE weight, α (constant) or α·clip(ρ − 1, 0, 1) (PMR)."""
    rho = true_class_score(proto_a.detach(), y) / (true_class_score(proto_v.detach(), y) + EPS)
    if ratio_scaled:
        beta_v = alpha * (rho - 1.0).clamp(0.0, 1.0)
        beta_a = alpha * (1.0 / (rho + EPS) - 1.0).clamp(0.0, 1.0)
    else:
        beta_v = alpha * (rho > 1.0).float()
        beta_a = alpha * (rho < 1.0).float()
    return beta_a, beta_v, rho


def pmr_loss(fused: torch.Tensor, proto_a: torch.Tensor, proto_v: torch.Tensor, y: torch.Tensor, alpha: float,
             ratio_scaled: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CE(f) + β_a·CE(p^a) + β_v·CE(p^v) with β from `pmr_coefficients`; also returns β_a, β_v and ρ."""
    beta_a, beta_v, rho = pmr_coefficients(proto_a, proto_v, y, alpha, ratio_scaled)
    loss = ce(fused, y) + beta_a * ce(proto_a, y) + beta_v * ce(proto_v, y)
    return loss, {"beta_a": beta_a, "beta_v": beta_v, "rho": rho}


class PMRStrategy(Strategy):
    """CE(f) plus the lagging modality's prototype CE (constant α), with EMA class prototypes every epoch."""

    name = "pmr"
    reference_epochs = 150
    """The epoch count of the authors' default run (main_Prototype_grad.py: epochs 150, modulation_ends 100)."""

    def __init__(self, alpha: float = 1.0, momentum: float = 0.2, proto_frac: float = 0.1,
                 window: tuple[float, float] = (0.0, 2 / 3), ratio_scaled: bool = False) -> None:
        if not alpha >= 0:
            raise ValueError(f"PMR alpha must be >= 0, got {alpha!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"PMR momentum must be in [0, 1), got {momentum!r}")
        if not 0.0 < proto_frac <= 1.0:
            raise ValueError(f"PMR proto_frac must be in (0, 1], got {proto_frac!r}")
        self.alpha, self.momentum, self.proto_frac = float(alpha), float(momentum), float(proto_frac)
        self.window = check_window("PMR", "window", window)
        self.ratio_scaled = bool(ratio_scaled)
        self.proto_a: torch.Tensor | None = None
        self.proto_v: torch.Tensor | None = None
        self._sched: dict[str, int] | None = None

    def schedule(self, epochs: int) -> dict[str, int]:
        """The window of the prototype loss in epochs of a run of ``epochs``: starts <= epoch <= ends."""
        return window_epochs(self.window, epochs)

    def setup(self, trainer: TrainerView) -> None:
        """Resolve the modulation window for the run's budget."""
        self._sched = self.schedule(run_length(trainer, self.reference_epochs))

    def on_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        """Class prototypes from the first ⌊proto_frac·N⌋ training batches (at least one), EMA-smoothed."""
        model, m = trainer.model, trainer.num_classes
        batches = trainer.batches("train", True)
        limit = max(1, math.floor(self.proto_frac * len(batches))) if hasattr(batches, "__len__") else 1
        sums_a = sums_v = counts = None
        with eval_mode(model):
            for i, batch in enumerate(batches):
                if i >= limit:
                    break
                out = trainer.forward(batch)
                y = batch["label"].to(out.feat_a.device)
                sa, c = class_sums(out.feat_a, y, m)
                sv, _ = class_sums(out.feat_v, y, m)
                sums_a = sa if sums_a is None else sums_a + sa
                sums_v = sv if sums_v is None else sums_v + sv
                counts = c if counts is None else counts + c
        if counts is None:
            raise RuntimeError("PMR: the training split yielded no batch to compute prototypes from")
        # The authors' prototypes after epoch t are EMA-smoothed only for t > 0:
        # the ones used in epochs 0 and 1 are raw.
        momentum = self.momentum if epoch >= 2 else 0.0
        self.proto_a = update_prototypes(sums_a, counts, self.proto_a, momentum)
        self.proto_v = update_prototypes(sums_v, counts, self.proto_v, momentum)

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CE(f) + the lagging modality's α·CE(p^m) inside the window; CE(f) alone outside it."""
        if self.proto_a is None or self.proto_v is None or self._sched is None:
            raise RuntimeError("PMR: call setup(trainer) and on_epoch_start before training_step")
        out = trainer.forward(batch)
        y = batch["label"]
        p_a = prototype_logits(out.feat_a, self.proto_a)
        p_v = prototype_logits(out.feat_v, self.proto_v)
        loss, terms = pmr_loss(out.fused, p_a, p_v, y, self.alpha, self.ratio_scaled)
        if not in_window(epoch, self._sched["modulation_starts"], self._sched["modulation_ends"]):
            loss = ce(out.fused, y)
            terms["beta_a"], terms["beta_v"] = torch.zeros_like(terms["beta_a"]), torch.zeros_like(terms["beta_v"])
        parts = standard_parts(out.fused, out.logit_a, out.logit_v, y)
        parts.update(terms)
        return loss, parts

    def state_dict(self) -> dict[str, Any]:
        """The EMA prototypes."""
        return {"proto_a": self.proto_a, "proto_v": self.proto_v}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self.proto_a, self.proto_v = state.get("proto_a"), state.get("proto_v")
