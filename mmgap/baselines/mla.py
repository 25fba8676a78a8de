"""MLA: multimodal learning with alternating unimodal adaptation (Zhang, Latham & Yao, CVPR 2024).

One classifier head W (Linear(d, M)) is shared by both modalities: l^m = W φ^m + b. Training alternates
modalities, one per trainer step (audio on even steps, visual on odd ones), with CE on that modality's
logits only. To keep the knowledge of the other modality, the head's weight gradient is projected by
orthogonal weight modification (OWM, Zeng et al. 2019): G ← G P, with the projector P updated by recursive
least squares from the mean feature x̄ of each step, P ← P − (P x̄)(P x̄)ᵀ / (α + x̄ᵀ P x̄) (P starts at I).
The step's gradient is projected with the P built from all previous steps (standard OWM: the current step's
input enters P afterwards), so it is (nearly, for small α) orthogonal to the stored feature subspace.

The authors' released code computes this projection but never applies it (it looks up a parameter named
"module.weight" that does not exist); here it runs, and the tests check that it changes the gradient.
Their code also rescales P to unit Frobenius norm, which shrinks the head's learning rate by up to √d; we
leave P unnormalised by default (``normalize_projector=True`` restores it). α = 0.1 (the authors' α
decays from 0.1 to 0.01 within an epoch; we keep it fixed).

Inference: entropy-weighted fusion, per sample: e_m = −Σ_k p^m_k log p^m_k, weights
w_m = exp(max_m' e_m' − e_m) / Σ (the more certain modality weighs more), f = w_a l^a + w_v l^v.
`setup` swaps ``trainer.model.head`` for a `SharedHead` (whose forward is this fusion); the trainer must build
its optimizer after setup (mmgap.train does), otherwise the new head is added to the existing optimizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mmgap.baselines._common import MODALITIES, autocast, ce, encoder, head_linear, standard_parts, to_device
from mmgap.baselines.mmcosine import add_to_optimizer
from mmgap.models import init_weights
from mmgap.strategy import Batch, Strategy

if TYPE_CHECKING:  # pragma: no cover
    from mmgap.train import Trainer


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy −Σ_k p_k log p_k of softmax(logits), [B] (in nats)."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def entropy_weights(logit_a: torch.Tensor, logit_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_a, w_v), [B] each: w_m = exp(max e − e_m) / Σ_m' exp(max e − e_m') (MLA's fusion weights)."""
    e = torch.stack([prediction_entropy(logit_a), prediction_entropy(logit_v)], dim=1)
    w = torch.softmax(-e, dim=1)  # identical to exp(max e − e_m) normalised
    return w[:, 0], w[:, 1]


class SharedHead(nn.Module):
    """One Linear(d, M) for both modalities; forward returns (entropy-fused, l^a, l^v)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)
        init_weights(self.fc)

    def forward(self, feat_a: torch.Tensor, feat_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(w_a·l^a + w_v·l^v, l^a, l^v) with l^m = W φ^m + b."""
        logit_a, logit_v = self.fc(feat_a), self.fc(feat_v)
        w_a, w_v = entropy_weights(logit_a, logit_v)
        fused = w_a.unsqueeze(1).to(logit_a.dtype) * logit_a + w_v.unsqueeze(1).to(logit_v.dtype) * logit_v
        return fused, logit_a, logit_v


def owm_update(P: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """P − (P x)(P x)ᵀ / (α + xᵀ P x): the recursive-least-squares projector update of OWM (P symmetric)."""
    x = x.reshape(-1, 1).to(P.dtype)
    k = P @ x
    return P - (k @ k.T) / (alpha + (x.T @ k))


def project_gradient(grad: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """G P: the weight gradient [M, d] restricted to the directions P keeps (OWM)."""
    return grad @ P.to(grad.dtype)


class MLAStrategy(Strategy):
    """Alternating unimodal CE on a shared head with OWM gradient projection; entropy-weighted inference."""

    name = "mla"

    def __init__(self, owm_alpha: float = 0.1, normalize_projector: bool = False) -> None:
        if owm_alpha <= 0:
            raise ValueError(f"MLA owm_alpha must be > 0, got {owm_alpha}")
        self.owm_alpha = float(owm_alpha)
        self.normalize_projector = bool(normalize_projector)
        self.step = 0
        self.P: torch.Tensor | None = None
        self._x: torch.Tensor | None = None

    def setup(self, trainer: "Trainer") -> None:
        """Replace the concat head by a SharedHead (idempotent) and create P = I on the device."""
        model = trainer.model
        if not isinstance(model.head, SharedHead):
            old = head_linear(model)
            dim = int(getattr(model, "feature_dim", old.in_features // 2))
            head = SharedHead(dim, old.out_features).to(device=old.weight.device, dtype=old.weight.dtype)
            model.head = head
            add_to_optimizer(trainer, head)
        dim = model.head.fc.in_features
        if self.P is None:
            self.P = torch.eye(dim, device=model.head.fc.weight.device)
        else:
            self.P = self.P.to(model.head.fc.weight.device)

    def modality(self) -> str:
        """The modality trained at the current step ("audio" on even steps, "visual" on odd ones)."""
        return MODALITIES[self.step % 2]

    def training_step(self, trainer: "Trainer", batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CE of the current modality's logits through the shared head (only that encoder runs)."""
        modality = self.modality()
        batch = to_device(batch, trainer.device)
        y = batch["label"]
        with autocast(trainer):
            feat = encoder(trainer.model, modality)(batch["audio"] if modality == "audio" else batch["frames"])
            logits = trainer.model.head.fc(feat)
        self._x = feat.detach().float().mean(dim=0)
        loss = ce(logits, y)
        # One key for both modalities: the trainer averages each key over all batches of the epoch.
        return loss, {"uni_step": loss.detach()}

    @torch.no_grad()
    def after_backward(self, trainer: "Trainer", epoch: int) -> None:
        """Project the shared head's weight gradient with P, then store this step's mean feature in P."""
        assert self.P is not None, "call setup(trainer) first"
        weight = trainer.model.head.fc.weight
        self.P = self.P.to(weight.device)  # a resumed checkpoint may hold P on the CPU
        if weight.grad is not None:
            weight.grad.copy_(project_gradient(weight.grad, self.P))
        if self._x is not None:
            self.P = owm_update(self.P, self._x, self.owm_alpha)
            if self.normalize_projector:
                self.P = self.P / torch.linalg.matrix_norm(self.P)
        self.step += 1

    def state_dict(self) -> dict[str, Any]:
        """Projector and step counter."""
        return {"P": self.P, "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self.P = state.get("P")
        self.step = int(state.get("step", 0))
