"""The contract between the trainer and a training method (warm-up, adaptive, each baseline).

The trainer (`mmgap.trainer.Trainer`) owns the loop, the optimizer, evaluation, checkpoints and resume. A
`Strategy` owns what differs between methods: the loss of a batch, gradient surgery after backward,
per-epoch work (mixture refits, prototypes, re-initialisation) and, where a method predicts differently,
inference. Every hook has a no-op default, so a method overrides only what it changes.

`Trainer` is the `TrainerView` below: this module names what a strategy may use of the trainer without
importing it, so the trainer can import this module and nothing imports back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import torch

Batch = dict[str, torch.Tensor]
"""A batch: ``audio`` [B, 1, F, T] float, ``frames`` [B, T, 3, H, W] float (normalised), ``label`` [B]
long, ``index`` [B] long (the sample's row in the feature cache: per-sample weights are looked up by it)."""


class TrainerView(Protocol):
    """What strategies use of `mmgap.trainer.Trainer` (attributes and methods documented there)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    preset: Any
    cache: Any
    num_classes: int
    seed: int
    run_dir: Path
    epoch: int
    stage_epochs: int
    generator: torch.Generator
    amp_dtype: torch.dtype | None

    def forward(self, batch: Batch) -> Any: ...

    def autocast(self) -> contextlib.AbstractContextManager: ...

    def batches(self, split: str, train: bool, indices: Any = None, drop_last: bool | None = None
                ) -> Iterable[Batch]: ...

    def collect_outputs(self, split: str = "train", train_mode_aug: bool = False, indices: Any = None
                        ) -> dict[str, torch.Tensor]: ...


class Strategy:
    """Base class of every training method; subclasses set `name` and override hooks."""

    name: str = "strategy"

    def setup(self, trainer: TrainerView) -> None:
        """Called once before training (and again after a resume): swap heads, register hooks."""

    def on_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        """Per-epoch work before the first batch (mixture refit, prototypes, modulation windows)."""

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar loss of one batch and detached per-branch terms to log (kept on the device)."""
        raise NotImplementedError

    def after_backward(self, trainer: TrainerView, epoch: int) -> None:
        """Gradient surgery between backward() and optimizer.step() (OGM-GE, AGM, MLA projection)."""

    def on_epoch_end(self, trainer: TrainerView, epoch: int) -> dict[str, Any]:
        """Per-epoch work after the last batch; returns extra values for the epoch's history row."""
        return {}

    def predict(self, trainer: TrainerView, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fused, audio and visual logits for evaluation; the default is the model's own (Eq. 1-2)."""
        out = trainer.model(batch["audio"], batch["frames"])
        return out.fused, out.logit_a, out.logit_v

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values needed to resume (saved inside the checkpoint, weights_only-safe)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
