"""MMCosine: multi-modal cosine loss (Xu et al., ICASSP 2023).

Follows GeWu-Lab/MMCosine_ICASSP23, main_CD.py, ``train_epoch`` (the ``args.mmcosine`` branch). The concat
head's weight is split into W^a, W^v as in Eq. (2), but each modality's logits become s·cos(φ^m, W^m_k):
features and class weight rows are L2-normalised, there is no bias, and the fused logits are the sum
l^a + l^v; training is CE on the fused logits.

Defaults and their source: scale s = 10 (main_CD.py ``get_arguments``: ``--scaling 10``); the NCE term of
their supplementary material is off by default there (``--lam 0``) and not included.

`setup` swaps ``trainer.model.head`` for a `CosineHead` holding the same initial weights, so the model's own
forward (evaluation, feature collection) produces cosine logits too. The trainer must build its optimizer
after `setup` (mmgap.trainer does); if an optimizer already exists, the new head's weight is added to it.

Deviation (an improvement): evaluation uses the same cosine logits as training. The authors' ``valid`` scores
the fused prediction with the model's plain linear head output (``out`` of ``fc_out``, with its bias, which
training under MMCosine never optimises) and only the per-modality accuracies with cosine logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmgap.baselines._common import ce, head_linear, standard_parts
from mmgap.strategy import Batch, Strategy, TrainerView


def cosine_logits(feat: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """s·cos(φ_i, W_k) for every sample i and class k: [B, d] × [M, d] -> [B, M] (MMCosine)."""
    return scale * F.linear(F.normalize(feat, dim=1), F.normalize(weight, dim=1))


class CosineHead(nn.Linear):
    """A bias-free Linear(d_a + d_v, M) whose forward returns MMCosine's (fused, l^a, l^v)."""

    def __init__(self, dim_a: int, dim_v: int, num_classes: int, scale: float = 10.0) -> None:
        super().__init__(dim_a + dim_v, num_classes, bias=False)
        self.dim_a, self.dim_v, self.scale = dim_a, dim_v, float(scale)

    def forward(self, feat_a: torch.Tensor, feat_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """(l^a + l^v, l^a, l^v) with l^m = s·cos(φ^m, W^m)."""
        logit_a = cosine_logits(feat_a, self.weight[:, : self.dim_a], self.scale)
        logit_v = cosine_logits(feat_v, self.weight[:, self.dim_a :], self.scale)
        return logit_a + logit_v, logit_a, logit_v


def add_to_optimizer(trainer: TrainerView, module: nn.Module) -> None:
    """Add ``module``'s parameters to an already-built optimizer (no-op when none exists or they are in)."""
    opt = getattr(trainer, "optimizer", None)
    if opt is None:
        return
    known = {id(p) for group in opt.param_groups for p in group["params"]}
    new = [p for p in module.parameters() if id(p) not in known]
    if new:
        opt.add_param_group({"params": new})


class MMCosineStrategy(Strategy):
    """CE on s·cos(φ^a, W^a) + s·cos(φ^v, W^v) (MMCosine)."""

    name = "mmcosine"

    def __init__(self, scale: float = 10.0) -> None:
        if scale <= 0:
            raise ValueError(f"MMCosine scale must be > 0, got {scale}")
        self.scale = float(scale)

    def setup(self, trainer: TrainerView) -> None:
        """Replace the concat head by a CosineHead with the same initial weight (idempotent)."""
        model = trainer.model
        if isinstance(model.head, CosineHead):
            return
        old = head_linear(model)
        dim_a = getattr(old, "dim_a", old.in_features // 2)
        head = CosineHead(dim_a, old.in_features - dim_a, old.out_features, self.scale)
        head.to(device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            head.weight.copy_(old.weight)
        model.head = head
        add_to_optimizer(trainer, head)

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CE on the fused cosine logits."""
        out = trainer.forward(batch)
        y = batch["label"]
        return ce(out.fused, y), standard_parts(out.fused, out.logit_a, out.logit_v, y)
