"""PMR: prototypical modal rebalance (Fan et al., CVPR 2023).

At the start of every epoch, class prototypes c^m_k = mean of φ^m over the class-k samples of the first
`proto_frac` (10 %) of the training batches (model in eval mode, no gradients), smoothed across epochs with
an EMA: c ← (1 − μ)·c_new + μ·c_old. In training, prototype logits p^m = −‖φ^m − c^m_k‖₂ (torch.cdist; the
authors' double loop), and ρ = Σ_i softmax(p^a_i)[y_i] / Σ_i softmax(p^v_i)[y_i]. The loss is
CE(f) + β_a·CE(p^a) + β_v·CE(p^v), where only the lagging modality gets a prototype term:
β_v = α·clip(ρ − 1, 0, 1) when audio leads (ρ > 1), β_a = α·clip(1/ρ − 1, 0, 1) when visual leads
(``ratio_scaled=False`` uses the constant α instead, as the first public code did). Prototypical entropy
regularisation (PMR's optional PER term) is not included.

Defaults: α = 1 (published 1-3), μ = 0.1 (published 0-0.2), proto_frac = 0.1.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from mmgap.baselines._common import ce, eval_mode, standard_parts, true_class_score
from mmgap.strategy import Batch, Strategy

if TYPE_CHECKING:  # pragma: no cover
    from mmgap.train import Trainer

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
                     ratio_scaled: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(β_a, β_v, ρ): the prototype-CE weights of the lagging modality from ρ = s^p_a / s^p_v (PMR)."""
    rho = true_class_score(proto_a.detach(), y) / (true_class_score(proto_v.detach(), y) + EPS)
    if ratio_scaled:
        beta_v = alpha * (rho - 1.0).clamp(0.0, 1.0)
        beta_a = alpha * (1.0 / (rho + EPS) - 1.0).clamp(0.0, 1.0)
    else:
        beta_v = alpha * (rho > 1.0).float()
        beta_a = alpha * (rho < 1.0).float()
    return beta_a, beta_v, rho


class PMRStrategy(Strategy):
    """CE(f) plus the lagging modality's prototype CE, with EMA class prototypes refreshed every epoch."""

    name = "pmr"

    def __init__(self, alpha: float = 1.0, momentum: float = 0.1, proto_frac: float = 0.1,
                 ratio_scaled: bool = True) -> None:
        if alpha < 0 or not 0.0 <= momentum < 1.0 or not 0.0 < proto_frac <= 1.0:
            raise ValueError(
                f"PMR needs alpha >= 0, momentum in [0, 1), proto_frac in (0, 1]; got {alpha}, {momentum}, {proto_frac}"
            )
        self.alpha, self.momentum, self.proto_frac = float(alpha), float(momentum), float(proto_frac)
        self.ratio_scaled = bool(ratio_scaled)
        self.proto_a: torch.Tensor | None = None
        self.proto_v: torch.Tensor | None = None

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        """Class prototypes from the first proto_frac of the training batches, EMA-smoothed."""
        model, m = trainer.model, trainer.num_classes
        batches = trainer.batches("train", True)
        limit = math.ceil(self.proto_frac * len(batches)) if hasattr(batches, "__len__") else None
        sums_a = sums_v = counts = None
        with eval_mode(model):
            for i, batch in enumerate(batches):
                if limit is not None and i >= max(1, limit):
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
        self.proto_a = update_prototypes(sums_a, counts, self.proto_a, self.momentum)
        self.proto_v = update_prototypes(sums_v, counts, self.proto_v, self.momentum)

    def training_step(self, trainer: "Trainer", batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CE(f) + β_a·CE(p^a) + β_v·CE(p^v) with the prototype logits of this epoch."""
        if self.proto_a is None or self.proto_v is None:
            raise RuntimeError("PMR: prototypes are computed in on_epoch_start; call it before training_step")
        out = trainer.forward(batch)
        y = batch["label"]
        p_a = prototype_logits(out.feat_a, self.proto_a)
        p_v = prototype_logits(out.feat_v, self.proto_v)
        beta_a, beta_v, rho = pmr_coefficients(p_a, p_v, y, self.alpha, self.ratio_scaled)
        loss = ce(out.fused, y) + beta_a * ce(p_a, y) + beta_v * ce(p_v, y)
        parts = standard_parts(out.fused, out.logit_a, out.logit_v, y)
        parts.update(beta_a=beta_a, beta_v=beta_v, rho=rho)
        return loss, parts

    def state_dict(self) -> dict[str, Any]:
        """The EMA prototypes."""
        return {"proto_a": self.proto_a, "proto_v": self.proto_v}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self.proto_a, self.proto_v = state.get("proto_a"), state.get("proto_v")
