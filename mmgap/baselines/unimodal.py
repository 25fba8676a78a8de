"""Unimodal baselines: one encoder and its own linear head trained alone ("Audio only", "Visual only").

The field's reference points for modality imbalance: OGM-GE_CVPR2022's models/basic_model.py (``AClassifier``,
``VClassifier``: one ResNet-18 and ``nn.Linear(512, n_classes)``) and BalanceBenchmark's
balancemm/trainer/unimodal_trainer.py. The imbalance margin of the design notes is the visual-only model's
accuracy minus the visual branch's accuracy inside concat training. Loss: plain CE on the modality's logits
l = W φ^m + b, with W, b a fresh Linear(d, M) (xavier weights, zero bias: mmgap.models.init_weights) that
replaces ``trainer.model.head``; the encoder starts from the same seeded initialisation as in every other
method. Budget, optimizer and validation-only checkpoint selection are the trainer's, as for every baseline.

Only the one encoder runs, in training and in evaluation (``predict``); the other encoder's parameters get
no gradient and are skipped by the optimizer. Evaluation reports the modality's logits as the fused ones and
as that modality's branch (so ``test_acc`` and ``test_acc_v`` of "visual_only" are the same number, the
visual model's accuracy); the absent modality's logits are NaN, which mmgap.metrics turns into a NaN accuracy
(shown as "–" in tables), never a number.
"""

from __future__ import annotations

import torch
from torch import nn

from mmgap.baselines._common import MODALITIES, autocast, ce, encoder, head_linear, to_device
from mmgap.baselines.mmcosine import add_to_optimizer
from mmgap.models import init_weights
from mmgap.strategy import Batch, Strategy, TrainerView


def absent_logits(like: torch.Tensor) -> torch.Tensor:
    """NaN logits shaped like ``like``: the prediction of a modality the model does not have."""
    return torch.full_like(like, float("nan"))


class UnimodalHead(nn.Module):
    """A Linear(d, M) on one modality's features; forward(φ^a, φ^v) returns (l, l^a, l^v)
    with NaN for the absent one."""

    def __init__(self, modality: str, dim: int, num_classes: int) -> None:
        super().__init__()
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        self.modality = modality
        self.fc = nn.Linear(dim, num_classes)
        init_weights(self.fc)

    def branches(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fused, l^a, l^v) for this modality's logits: the logits themselves, and NaN for the other branch."""
        missing = absent_logits(logits)
        return (logits, logits, missing) if self.modality == "audio" else (logits, missing, logits)

    def forward(self, feat_a: torch.Tensor, feat_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model's own forward (both encoders ran): only this modality's features are used."""
        return self.branches(self.fc(feat_a if self.modality == "audio" else feat_v))


class UnimodalStrategy(Strategy):
    """CE on one modality's logits from its encoder and its own linear head; the other encoder never runs."""

    def __init__(self, modality: str) -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        self.modality = modality
        self.name = f"{modality}_only"

    def setup(self, trainer: TrainerView) -> None:
        """Replace the concat head by a UnimodalHead for this modality (idempotent)."""
        model = trainer.model
        if isinstance(model.head, UnimodalHead) and model.head.modality == self.modality:
            return
        old = head_linear(model)
        dim = int(getattr(model, "feature_dim", old.in_features // 2))
        head = UnimodalHead(self.modality, dim, old.out_features).to(device=old.weight.device, dtype=old.weight.dtype)
        model.head = head
        add_to_optimizer(trainer, head)

    def logits(self, trainer: TrainerView, batch: Batch) -> torch.Tensor:
        """This modality's logits (float32); only its encoder runs."""
        batch = to_device(batch, trainer.device)
        with autocast(trainer):
            inputs = batch["audio"] if self.modality == "audio" else batch["frames"]
            feat = encoder(trainer.model, self.modality)(inputs)
            out = trainer.model.head.fc(feat)
        return out.float()

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Plain CE on this modality's logits."""
        loss = ce(self.logits(trainer, batch), batch["label"].to(trainer.device))
        return loss, {f"uni_{self.modality[0]}": loss.detach()}

    def predict(self, trainer: TrainerView, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(l, l^a, l^v): this modality's logits as the fused and its own branch, NaN for the absent branch."""
        return trainer.model.head.branches(self.logits(trainer, batch))


class AudioOnlyStrategy(UnimodalStrategy):
    """The audio encoder and its own linear head trained alone (Table II, "Audio only")."""

    name = "audio_only"

    def __init__(self) -> None:
        super().__init__("audio")


class VisualOnlyStrategy(UnimodalStrategy):
    """The visual encoder and its own linear head trained alone (Table II, "Visual only")."""

    name = "visual_only"

    def __init__(self) -> None:
        super().__init__("visual")
