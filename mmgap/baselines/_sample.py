"""Helpers of the sample-level baselines (SMV, Remix, BSS): the eval-mode scoring pass over the training set
and the logits of one modality alone through the shared head. Small tensor glue that no library provides."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmgap.baselines._common import head_linear
from mmgap.strategy import TrainerView


def alone_logits(logit_a: torch.Tensor, logit_v: torch.Tensor,
                 model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused logits with the other modality's features zeroed before the shared head: (W^a φa + b, W^v φv + b).

    With the concat head's split (Eq. 2, l^m = W^m φm + b/2) this is l^m + b/2: what SMV's ``exec_drop`` and
    Remix's masked forward feed the head.
    """
    half_b = head_linear(model).bias.detach().float().cpu() / 2
    return logit_a + half_b, logit_v + half_b


def score_pass(trainer: TrainerView) -> dict[str, torch.Tensor]:
    """Fused, unimodal and modality-alone logits, labels and cache rows of the whole training split, the model
    in eval mode without augmentation (the authors' scoring passes: no gradient, centre frames)."""
    out = trainer.collect_outputs("train")
    out["alone_a"], out["alone_v"] = alone_logits(out["logit_a"], out["logit_v"], trainer.model)
    return out


def rows_of(out: dict[str, torch.Tensor]) -> np.ndarray:
    """The cache rows of a scoring pass, as int64."""
    return out["index"].numpy().astype(np.int64)
