"""Cross-entropies (Eq. 4), the warm-up loss (Eq. 10) and the sample-level adaptive loss (Eq. 11-12)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from mmgap.gap import DOMINANT_CHOICES, GAP_KINDS, compute_gap
from mmgap.models import ModelOutput

if TYPE_CHECKING:  # pragma: no cover
    from mmgap.config import TrainConfig

ABLATIONS = ("full", "no_fusion", "no_gap_reg", "no_align", "no_weights", "no_unimodal")
"""Table III rows: α=0, β=0, γ=0, w0=w1=1, and L_a, L_v off."""


def per_sample_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy CE(y_i, s_i) in nats, [B] (the summand of Eq. 4)."""
    return F.cross_entropy(logits, y, reduction="none")


def warmup_loss(out: ModelOutput, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Warm-up loss L_f + L_a + L_v, Eq. (10); parts: detached means ``fusion``, ``uni_a``, ``uni_v``."""
    ce_f = per_sample_ce(out.fused, y).mean()
    ce_a = per_sample_ce(out.logit_a, y).mean()
    ce_v = per_sample_ce(out.logit_v, y).mean()
    parts = {"fusion": ce_f.detach(), "uni_a": ce_a.detach(), "uni_v": ce_v.detach()}
    return ce_f + ce_a + ce_v, parts


@dataclass(frozen=True)
class AdaptiveLossConfig:
    """Hyperparameters of Eq. 11 plus the Table III switches.

    ``dominant`` may be ``"auto"`` here, but must be resolved to ``"audio"``/``"visual"`` (with
    `mmgap.gap.pick_dominant`) before `adaptive_loss` is called:
    ``dataclasses.replace(cfg, dominant=...)``.
    """

    alpha: float = 1.0
    beta: float = 0.1
    gamma: float = 1.0
    rho: float = 0.95
    gap: str = "prob"
    dominant: str = "audio"
    use_weights: bool = True
    use_unimodal: bool = True

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a non-negative weight")
        if not 0.0 < self.rho <= 1.0:
            raise ValueError(f"rho={self.rho!r} must be a decay rate in (0, 1]")
        if self.gap not in GAP_KINDS:
            raise ValueError(f"gap={self.gap!r} must be one of {GAP_KINDS}")
        if self.dominant not in (*DOMINANT_CHOICES, "auto"):
            raise ValueError(f"dominant={self.dominant!r} must be one of {(*DOMINANT_CHOICES, 'auto')}")

    @classmethod
    def from_train_config(cls, train: TrainConfig, dominant: str | None = None) -> AdaptiveLossConfig:
        """The loss settings of a TrainConfig; `dominant` overrides ``train.dominant``."""
        return cls(
            alpha=train.alpha, beta=train.beta, gamma=train.gamma, rho=train.rho, gap=train.gap,
            dominant=dominant if dominant is not None else train.dominant,
        )

    def ablation(self, name: str) -> AdaptiveLossConfig:
        """A copy with one Table III row applied (one of `ABLATIONS`)."""
        changes = {
            "full": {},
            "no_fusion": {"alpha": 0.0},
            "no_gap_reg": {"beta": 0.0},
            "no_align": {"gamma": 0.0},
            "no_weights": {"use_weights": False},
            "no_unimodal": {"use_unimodal": False},
        }
        if name not in changes:
            raise ValueError(f"unknown ablation {name!r}; choose one of {ABLATIONS}")
        return dataclasses.replace(self, **changes[name])


def annealing(rho: float, epoch: int) -> float:
    """λ_t = ρ^epoch (Eq. 11), with epoch = 0 at the FIRST ADAPTIVE epoch (warm-up epochs are not counted)."""
    if epoch < 0:
        raise ValueError(f"epoch={epoch} must be >= 0 (counted from the first adaptive epoch)")
    return float(rho) ** int(epoch)


def gap_penalty(
    g: torch.Tensor, w1: torch.Tensor | float, mu0_raw: torch.Tensor | float, beta: float, gamma: float
) -> torch.Tensor:
    """Per-sample L_gap = γ·w1·(g − μ0)² + β·g², Eq. (12), in squared raw-gap units.

    Its gradient w.r.t. the weaker modality's confidence s^v (with g = s^a − s^v, Eq. 13) is
    ∂L_gap/∂s^v = −2γ·w1·(g − μ0) − 2β·g. The paper's printed Eq. 14 drops the factor γ on the first
    term; the form here is the correct derivative of Eq. 12 and is what the tests check.
    """
    return gamma * w1 * (g - mu0_raw) ** 2 + beta * g**2


def _as_weights(w: torch.Tensor | float, batch: int, ref: torch.Tensor, name: str) -> torch.Tensor:
    w = torch.as_tensor(w, dtype=torch.float32, device=ref.device)
    if w.dim() == 0:
        return w.expand(batch)
    if w.shape != (batch,):
        raise ValueError(
            f"{name} must be a scalar or have shape [{batch}] (one per sample); got {tuple(w.shape)}"
        )
    return w


def adaptive_loss(
    out: ModelOutput,
    y: torch.Tensor,
    w0: torch.Tensor | float,
    w1: torch.Tensor | float,
    mu0_raw: torch.Tensor | float,
    epoch: int,
    cfg: AdaptiveLossConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sample-level adaptive loss, Eq. (11), averaged over the batch.

    Per sample i:  α·w0_i·CE_f,i + λ_t·(β·g_i² + γ·w1_i·(g_i − μ0)² + CE_a,i + CE_v,i),  λ_t = ρ^epoch.

    Units: CE_f, CE_a, CE_v are cross-entropies in nats. g_i is the RAW gap of this batch, computed with
    gradients from the current logits (``cfg.gap``: "prob" -> a probability difference in [-1, 1], Eq. 5;
    "kl" -> a KL difference in nats, Eq. 6; sign per ``cfg.dominant``). ``mu0_raw`` is the balanced
    component's mean in the SAME raw units, i.e. μ_g + σ_g·μ0 for a mixture fitted on z-scores (use
    `mmgap.gap.unzscore`). β·g² and γ·w1·(g − μ0)² are therefore in squared raw-gap units. w0, w1 (Eq. 9) are
    dimensionless posteriors in [0, 1], scalars or one per sample [B]; they are treated as constants.
    ``epoch`` counts from 0 at the first adaptive epoch.

    Returns (loss, parts). ``parts`` holds detached batch means of each weighted term as it enters the loss
    (``fusion`` = α·w0·CE_f, ``gap_reg`` = λβg², ``align`` = λγw1(g−μ0)², ``uni_a`` = λ·CE_a,
    ``uni_v`` = λ·CE_v; they sum to the loss) plus ``lambda_t`` and, for logging, the unweighted ``ce_f``,
    ``ce_a``, ``ce_v`` and the mean raw ``gap``. Table III switches: α=0, β=0, γ=0,
    ``use_weights=False`` (w0 = w1 = 1), ``use_unimodal=False`` (no CE_a, CE_v).
    """
    if cfg.dominant not in DOMINANT_CHOICES:
        raise ValueError(
            f"AdaptiveLossConfig.dominant={cfg.dominant!r}: resolve 'auto' to 'audio' or 'visual' with "
            "mmgap.gap.pick_dominant on the training set before computing the adaptive loss"
        )
    batch = y.shape[0]
    if cfg.use_weights:
        w0_t = _as_weights(w0, batch, out.fused, "w0").detach()
        w1_t = _as_weights(w1, batch, out.fused, "w1").detach()
    else:
        w0_t = w1_t = torch.ones(batch, device=out.fused.device)
    lam = annealing(cfg.rho, epoch)

    ce_f = per_sample_ce(out.fused, y)
    ce_a = per_sample_ce(out.logit_a, y)
    ce_v = per_sample_ce(out.logit_v, y)
    g = compute_gap(cfg.gap, out.logit_a, out.logit_v, y, dominant=cfg.dominant)  # >= float32, differentiable
    mu0 = torch.as_tensor(mu0_raw, dtype=g.dtype, device=g.device).detach()
    if mu0.dim() != 0:
        raise ValueError(
            f"mu0_raw must be a scalar (the balanced component's mean in raw units); got {tuple(mu0.shape)}"
        )

    fusion = cfg.alpha * w0_t * ce_f
    gap_reg = lam * cfg.beta * g**2
    align = lam * cfg.gamma * w1_t * (g - mu0) ** 2
    if cfg.use_unimodal:
        uni_a, uni_v = lam * ce_a, lam * ce_v
    else:
        uni_a = uni_v = torch.zeros_like(ce_a)
    terms = {"fusion": fusion, "gap_reg": gap_reg, "align": align, "uni_a": uni_a, "uni_v": uni_v}
    loss = (fusion + gap_reg + align + uni_a + uni_v).mean()
    parts = {k: v.detach().mean() for k, v in terms.items()}
    parts["lambda_t"] = ce_f.detach().new_full((), lam)  # a fill on the device, no host-to-device copy
    for key, value in (("ce_f", ce_f), ("ce_a", ce_a), ("ce_v", ce_v), ("gap", g)):
        parts[key] = value.detach().mean()
    return loss, parts
