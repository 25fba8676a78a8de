"""Concat baseline (Table II, "Baseline (Concat)"): joint cross-entropy on the fused logits only.

Follows GeWu-Lab/OGM-GE_CVPR2022, main.py, ``train_epoch`` with ``--modulation Normal`` (no modulation): the
model is mmgap.models.AVClassifier (Eq. 1); the per-modality logits of Eq. 2 are only logged and evaluated,
never trained on directly. No hyperparameters of its own; no deviation.
"""

from __future__ import annotations

import torch

from mmgap.baselines._common import ce, standard_parts
from mmgap.strategy import Batch, Strategy, TrainerView


class ConcatStrategy(Strategy):
    """L = CE(y, f) on the fused logits f of Eq. (1)."""

    name = "concat"

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Joint CE on the fused logits, Eq. (1)."""
        out = trainer.forward(batch)
        y = batch["label"]
        loss = ce(out.fused, y)
        return loss, standard_parts(out.fused, out.logit_a, out.logit_v, y)
