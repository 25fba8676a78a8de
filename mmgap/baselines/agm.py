"""AGM: adaptive gradient modulation (Li et al., "Boosting multi-modal model performance with adaptive
gradient modulation", ICCV 2023).

Per batch, each modality's contribution is its zero-padding Shapley value over the fused logits, with the
authors' two-modality form m_a = ½[f(a, v) − f(0, v) + f(a, 0)], m_v = ½[f(a, v) − f(a, 0) + f(0, v)]
(so m_a + m_v = f(a, v)); "0" is the encoder's output for an all-zero input, computed in eval mode without
gradients as the authors do. Scores s_m = mean_i −log max(softmax(m_m,i)[y_i], 1e-8); the current ratio
r_a = exp(s_v − s_a) (r_v = 1 / r_a) is compared with the same ratio of the running averages s̄_m over all
iterations so far, r̄_a = exp(s̄_v − s̄_a), and each branch's gradient is multiplied by
k_m = exp(α · min(r̄_m − r_m, 10)). A modality that is ahead of its usual share (r_m > r̄_m) gets k_m < 1:
the dominant branch is slowed (a popular port flips this sign). The coefficients act on the gradient that
flows into each encoder, through tensor hooks on φ^a and φ^v (equivalent to scaling all encoder gradients,
which the authors' benchmark code does); the head is not scaled. As a safeguard against the exponential's
spikes, the whole gradient is clipped to norm 5 when any gradient entry exceeds 5 in magnitude (the authors
test only the head's entries, whose gradient their output hooks scale along with the encoders'; since ours
scale the encoders only, every entry is tested).

Learning-rate safeguard: k grows exponentially when a modality does worse than its running average, and
a bigger step on it can make it worse still. At the authors' learning rates (~1e-3) that loop is damped;
at the demo preset's SGD lr 0.05 it diverged within 6 epochs even with the clip (measured: k_a up to 140,
gradient norm 1,200). So when the run's lr exceeds 1e-2, ``slowdown_only`` (default: automatic) divides both
coefficients by max(1, k_a, k_v): their ratio, which sets the balance between the branches, is kept, but no
branch is pushed faster than plain SGD. Pass ``slowdown_only=False`` for the unmodified coefficients.

Default α = 1.5 (the authors' AV setting); modulation in every epoch unless a window is given.
Loss: CE on the fused logits (Eq. 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from mmgap.baselines._common import (
    autocast,
    ce,
    encoder,
    eval_mode,
    in_window,
    standard_parts,
)
from mmgap.strategy import Batch, Strategy

if TYPE_CHECKING:  # pragma: no cover
    from mmgap.train import Trainer

P_FLOOR = 1e-8
LR_STABLE = 1e-2
"""Above this learning rate (the authors train at ~1e-3) AGM's speed-ups (k up to e^15) diverge: see above."""


def shapley_contributions(total: torch.Tensor, pad_audio: torch.Tensor,
                          pad_visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(m_a, m_v) = (½[f(a,v) − f(0,v) + f(a,0)], ½[f(a,v) − f(a,0) + f(0,v)]); pad_audio = f(0, v)."""
    m_a = 0.5 * (total - pad_audio + pad_visual)
    m_v = 0.5 * (total - pad_visual + pad_audio)
    return m_a, m_v


def agm_score(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean_i −log max(softmax(m_i)[y_i], 1e-8), AGM's per-modality score (a 0-d float32 tensor)."""
    p = torch.softmax(logits.detach().float(), dim=1).gather(1, y.view(-1, 1))
    return -torch.log(p.clamp_min(P_FLOOR)).mean()


def agm_coefficients(score_a: torch.Tensor, score_v: torch.Tensor, avg_a: torch.Tensor, avg_v: torch.Tensor,
                     alpha: float, cap: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(k_a, k_v) with k_m = exp(α·min(r̄_m − r_m, cap)), r_a = exp(s_v − s_a), r̄_a = exp(s̄_v − s̄_a)."""
    r_a, r_v = torch.exp(score_v - score_a), torch.exp(score_a - score_v)
    rbar_a, rbar_v = torch.exp(avg_v - avg_a), torch.exp(avg_a - avg_v)
    k_a = torch.exp(alpha * torch.clamp(rbar_a - r_a, max=cap))
    k_v = torch.exp(alpha * torch.clamp(rbar_v - r_v, max=cap))
    return k_a, k_v


def rescale_to_slowdown(k_a: torch.Tensor, k_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(k_a, k_v) / max(1, k_a, k_v): the same ratio k_a / k_v, but no branch ever sped up beyond plain SGD."""
    top = torch.maximum(torch.maximum(k_a, k_v), torch.ones_like(k_a))
    return k_a / top, k_v / top


def running_mean(avg: torch.Tensor, value: torch.Tensor, iteration: int) -> torch.Tensor:
    """avg·(t − 1)/t + value/t for the t-th value (t counted from 1): the cumulative mean."""
    return avg * (iteration - 1) / iteration + value / iteration


@torch.no_grad()
def clip_if_large(model: torch.nn.Module, threshold: float = 5.0, max_norm: float = 5.0) -> None:
    """Clip all gradients to total norm ``max_norm`` when any gradient entry exceeds ``threshold`` (no sync)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    large = torch.stack([g.abs().amax().float() for g in grads]).amax() > threshold
    coef = torch.where(large, (max_norm / (norm + 1e-6)).clamp(max=1.0), torch.ones_like(norm))
    torch._foreach_mul_(grads, coef)


class AGMStrategy(Strategy):
    """Joint CE with Shapley-based exponential coefficients on each encoder's gradient (AGM)."""

    name = "agm"

    def __init__(self, alpha: float = 1.5, modulation_starts: int = 0, modulation_ends: int | None = None,
                 clip: bool = True, slowdown_only: bool | None = None) -> None:
        if alpha < 0:
            raise ValueError(f"AGM alpha must be >= 0, got {alpha}")
        self.slowdown_only = slowdown_only
        self.alpha = float(alpha)
        self.modulation_starts, self.modulation_ends = int(modulation_starts), modulation_ends
        self.clip = bool(clip)
        self.iteration = 0
        self.avg_a: torch.Tensor | None = None
        self.avg_v: torch.Tensor | None = None

    def setup(self, trainer: "Trainer") -> None:
        """Resolve ``slowdown_only``: on when the run's learning rate is far above the authors' (> 1e-2)."""
        if self.slowdown_only is None:
            lr = float(getattr(getattr(getattr(trainer, "preset", None), "train", None), "lr", 0.0))
            self.slowdown_only = lr > LR_STABLE

    def _padded_features(self, trainer: "Trainer", batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder outputs (eval mode, no grad) of one all-zero audio input and one all-zero clip, [1, d] each."""
        model = trainer.model
        audio = batch["audio"][:1].to(trainer.device)
        frames = batch["frames"][:1].to(trainer.device)
        with eval_mode(model), autocast(trainer):
            z_a = encoder(model, "audio")(torch.zeros_like(audio))
            z_v = encoder(model, "visual")(torch.zeros(frames.shape, device=frames.device))  # float 0 = the mean image
        return z_a, z_v

    def training_step(self, trainer: "Trainer", batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CE(f); Shapley scores set k_a, k_v, registered as gradient hooks on φ^a and φ^v."""
        out = trainer.forward(batch)
        y = batch["label"]
        z_a, z_v = self._padded_features(trainer, batch)
        with torch.no_grad(), autocast(trainer):
            fa, fv = out.feat_a.detach(), out.feat_v.detach()
            pad_audio = trainer.model.head(z_a.to(fv.dtype).expand_as(fv), fv)[0]   # f(0, v)
            pad_visual = trainer.model.head(fa, z_v.to(fa.dtype).expand_as(fa))[0]  # f(a, 0)
        m_a, m_v = shapley_contributions(out.fused.detach(), pad_audio, pad_visual)
        s_a, s_v = agm_score(m_a, y), agm_score(m_v, y)
        if self.avg_a is None or self.avg_v is None:
            self.avg_a, self.avg_v = torch.zeros_like(s_a), torch.zeros_like(s_v)
        k_a, k_v = agm_coefficients(s_a, s_v, self.avg_a, self.avg_v, self.alpha)
        if self.slowdown_only:
            k_a, k_v = rescale_to_slowdown(k_a, k_v)
        self.iteration += 1
        self.avg_a = running_mean(self.avg_a, s_a, self.iteration)
        self.avg_v = running_mean(self.avg_v, s_v, self.iteration)
        if in_window(epoch, self.modulation_starts, self.modulation_ends) and out.feat_a.requires_grad:
            out.feat_a.register_hook(lambda g, k=k_a: g * k.to(g.dtype))
            out.feat_v.register_hook(lambda g, k=k_v: g * k.to(g.dtype))
        parts = standard_parts(out.fused, out.logit_a, out.logit_v, y)
        parts.update(coeff_a=k_a, coeff_v=k_v, score_a=s_a, score_v=s_v)
        return ce(out.fused, y), parts

    def after_backward(self, trainer: "Trainer", epoch: int) -> None:
        """The authors' safeguard: clip to total norm 5 when a gradient entry exceeds 5."""
        if self.clip:
            clip_if_large(trainer.model)

    def state_dict(self) -> dict[str, Any]:
        """Iteration count and running average scores."""
        return {"iteration": self.iteration, "avg_a": self.avg_a, "avg_v": self.avg_v}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self.iteration = int(state.get("iteration", 0))
        self.avg_a, self.avg_v = state.get("avg_a"), state.get("avg_v")
