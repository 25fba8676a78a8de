"""MLA: multimodal learning with alternating unimodal adaptation (Zhang, Yoon, Bansal & Yao, CVPR 2024).

Follows Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation: main.py, ``train_epoch`` (the
``gs_flag`` branch) and ``valid`` (``--dynamic`` fusion), and utils/utils.py, ``GSPlugin.before_update``
(orthogonal weight modification, OWM). One classifier head W (Linear(d, M)) is shared by both modalities:
l^m = W φ^m + b. On EVERY batch: CE on the audio logits, backward, OWM on the head's weight gradient, an
optimizer step; then CE on the visual logits (through the just-updated head), backward, OWM, a second
optimizer step. Each encoder is therefore updated once per batch (the other encoder has no gradient in a
step and is skipped by the optimizer), the head twice. In our trainer the audio step runs inside
``training_step`` (which calls ``trainer.optimizer.step()`` itself) and the visual step is the one the
trainer completes; the logged ``train_loss`` is the mean of the two unimodal losses (the authors' ``_loss``
with av_alpha 0.5) while the returned loss's gradient is the visual CE's alone.

OWM, per step, as ``before_update``: with x̄ the step's mean feature and α_b = 0.1·0.1^(b/N) (b the batch
index in the epoch, N the batches per epoch: 0.1 decaying to 0.01 within each epoch), first
P ← P − (P x̄)(P x̄)ᵀ / (α_b + x̄ᵀ P x̄) (recursive least squares, P starts at I), then P is normalised, then the
head's weight gradient becomes G Pᵀ (P symmetric). The very first step of training neither updates nor
applies P (``train_exp_counter != 0``). The authors' released code never applies this projection (it looks
for a parameter named "module.weight" that does not exist) and divides x̄ᵀ P x̄ as an outer product k r
(a [d, d] matrix); here the scalar form runs, and the tests check that it changes the gradient.

Inference (``--dynamic``): entropy-weighted fusion per sample, e_m = −Σ_k p^m_k log p^m_k,
w_m = exp(max_m' e_m' − e_m) / Σ (the more certain modality weighs more), f = w_a l^a + w_v l^v.
`setup` swaps ``trainer.model.head`` for a `SharedHead` (whose forward is this fusion); the trainer must build
its optimizer after setup (mmgap.trainer does), otherwise the new head is added to the existing optimizer.

Defaults and their source: α 0.1 → 0.01 within each epoch (``before_update``); dynamic fusion (the README's
"MLA (dynamic fusion)" command).

Deviations: (1) the projector is normalised by its largest eigenvalue (``normalize="spectral"``), where the
authors divide by its Frobenius norm (``normalize="fro"`` reproduces that). Frobenius normalisation makes
P = I/√d at the first step, so the shared head learns ≈√d times slower than nominal from the start (8× at the
demo's d = 64, 23× at ResNet-18's 512) and stays there; the authors' published numbers come from code whose
projection never ran, i.e. a head at the nominal rate. Dividing by the largest eigenvalue keeps the same
recursion and its protection of the stored directions, keeps every eigenvalue of P in (0, 1], and leaves the
least-protected direction at the nominal rate. Without normalisation (``normalize="none"``) P shrinks toward
0 in every direction the features have visited: within a few hundred steps the head's gradient in the
discriminative directions falls to a tenth of nominal and then keeps falling (the head freezes). On CUDA the
eigenvalue costs one host sync per step. (2) The entropy is per sample, as the paper writes it; the authors'
``calculate_entropy`` applies softmax over the batch dimension (dim=0), giving one weight per batch that
depends on the batch's composition.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmgap.baselines._common import autocast, ce, encoder, head_linear, to_device
from mmgap.baselines.mmcosine import add_to_optimizer
from mmgap.models import init_weights
from mmgap.strategy import Batch, Strategy, TrainerView

NORMALIZATIONS = ("spectral", "fro", "none")


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


def owm_alpha(batch_index: int, num_batches: int, base: float = 0.1) -> float:
    """α_b = base·0.1^(b / N): the authors' OWM regulariser, decaying tenfold within each epoch."""
    return base * 0.1 ** (batch_index / max(1, num_batches))


def owm_update(P: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """P − (P x)(P x)ᵀ / (α + xᵀ P x): the recursive-least-squares projector update of OWM (P symmetric)."""
    x = x.reshape(-1, 1).to(P.dtype)
    k = P @ x
    return P - (k @ k.T) / (alpha + (x.T @ k))


def normalize_projector(P: torch.Tensor, how: str) -> torch.Tensor:
    """P divided by its largest eigenvalue ("spectral"), its Frobenius norm ("fro", the authors'), or as is."""
    if how == "spectral":
        return P / torch.linalg.matrix_norm(P, ord=2)
    if how == "fro":
        return P / torch.linalg.matrix_norm(P)
    return P


def project_gradient(grad: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """G Pᵀ: the weight gradient [M, d] restricted to the directions P keeps (OWM)."""
    return grad @ P.T.to(grad.dtype)


class MLAStrategy(Strategy):
    """Audio then visual CE on a shared head on every batch, each with its own step and OWM projection."""

    name = "mla"

    def __init__(self, owm_alpha: float = 0.1, alpha_decay: bool = True, normalize: str = "spectral") -> None:
        if not owm_alpha > 0:
            raise ValueError(f"MLA owm_alpha must be > 0, got {owm_alpha!r}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"MLA normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.owm_alpha = float(owm_alpha)
        self.alpha_decay = bool(alpha_decay)
        self.normalize = normalize
        self.updates = 0
        self.P: torch.Tensor | None = None
        self._x: torch.Tensor | None = None
        self._batch_index = 0
        self._num_batches = 1

    def setup(self, trainer: TrainerView) -> None:
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

    def on_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        """Count this epoch's batches for the decaying α (0.1 at the first batch, → 0.01 at the last)."""
        batches = trainer.batches("train", True)
        self._num_batches = len(batches) if hasattr(batches, "__len__") else 1
        self._batch_index = 0

    def alpha(self) -> float:
        """The OWM regulariser of the current batch."""
        if not self.alpha_decay:
            return self.owm_alpha
        return owm_alpha(self._batch_index, self._num_batches, self.owm_alpha)

    @torch.no_grad()
    def owm_step(self, weight: torch.Tensor, x_mean: torch.Tensor) -> None:
        """One OWM step (skipped at the very first step of training): update P with x̄, normalise, project."""
        assert self.P is not None, "call setup(trainer) first"
        if self.updates > 0:
            self.P = self.P.to(weight.device)
            self.P = normalize_projector(owm_update(self.P, x_mean, self.alpha()), self.normalize)
            if weight.grad is not None:
                weight.grad.copy_(project_gradient(weight.grad, self.P))
        self.updates += 1

    def _unimodal(self, trainer: TrainerView, batch: Batch, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE of one modality's logits through the shared head, its detached mean feature); one encoder runs."""
        with autocast(trainer):
            feat = encoder(trainer.model, modality)(batch["audio"] if modality == "audio" else batch["frames"])
            logits = trainer.model.head.fc(feat)
        return ce(logits, batch["label"]), feat.detach().float().mean(dim=0)

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The audio step (backward, OWM, optimizer step) here; the visual CE returned for the trainer's step."""
        batch = to_device(batch, trainer.device)
        loss_a, x_a = self._unimodal(trainer, batch, "audio")
        loss_a.backward()
        self.owm_step(trainer.model.head.fc.weight, x_a)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        loss_v, self._x = self._unimodal(trainer, batch, "visual")
        parts = {"uni_a": loss_a.detach(), "uni_v": loss_v.detach()}
        # Value: the mean of both unimodal losses (what is logged); gradient: the visual CE's alone.
        return loss_v + 0.5 * (loss_a.detach() - loss_v.detach()), parts

    def after_backward(self, trainer: TrainerView, epoch: int) -> None:
        """OWM on the visual step's head gradient; then the next batch."""
        assert self._x is not None, "training_step runs before after_backward"
        self.owm_step(trainer.model.head.fc.weight, self._x)
        self._x = None
        self._batch_index += 1

    def state_dict(self) -> dict[str, Any]:
        """Projector and the number of OWM steps taken."""
        return {"P": self.P, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self.P = state.get("P")
        self.updates = int(state.get("updates", 0))
