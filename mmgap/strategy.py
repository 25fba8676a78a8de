"""The contract between the trainer and a training method (warm-up, adaptive, each baseline).

The trainer (`mmgap.trainer.Trainer`) owns the loop, the optimizer, evaluation, checkpoints and resume. A
`Strategy` owns what differs between methods: the loss of a batch, gradient surgery after backward,
per-epoch work (mixture refits, prototypes, re-initialisation), where a method chooses its samples the
epoch's `SamplePlan` (which cache rows, in which groups, with which modalities kept), and, where a method
predicts differently, inference. Every hook has a no-op default, so a method overrides only what it changes.

`Trainer` is the `TrainerView` below: this module names what a strategy may use of the trainer without
importing it, so the trainer can import this module and nothing imports back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

Batch = dict[str, torch.Tensor]
"""A batch: ``audio`` [B, 1, F, T] float, ``frames`` [B, T, 3, H, W] float (normalised), ``label`` [B]
long, ``index`` [B] long (the sample's row in the feature cache: per-sample weights are looked up by it).
Batches of a `SamplePlan` also carry ``keep`` [B, 2] float: 1 where the audio (column 0) or visual (column 1)
modality is kept, 0 where its features are zeroed before the shared head (`mmgap.models.AVClassifier`)."""


@dataclass(frozen=True)
class PlanGroup:
    """Cache rows trained one after another in batches of their own (rows may repeat: extra copies).

    ``keep_audio`` / ``keep_visual``: per row (or one value for all rows) whether that modality is kept; a
    dropped modality's features are zeroed before the shared head, as the sample-level methods' code does
    (SMV's ``AVClassifier.forward(drop=...)``, Remix's ``forward(mode=...)``). ``shuffle``: the trainer
    shuffles the group's rows with a generator of (seed, global epoch, group), so a plan needs no RNG of its
    own to be reproducible.
    """

    rows: np.ndarray
    keep_audio: Any = True
    keep_visual: Any = True
    shuffle: bool = True

    def keep(self) -> np.ndarray:
        """The [n, 2] float32 mask (audio, visual) of the group's rows, 1 = kept."""
        n = len(self.rows)
        a = np.broadcast_to(np.asarray(self.keep_audio, dtype=bool), (n,))
        v = np.broadcast_to(np.asarray(self.keep_visual, dtype=bool), (n,))
        return np.stack([a, v], axis=1).astype(np.float32)


@dataclass(frozen=True)
class SamplePlan:
    """One epoch's training data chosen by a strategy: groups trained in order, each in batches of its own."""

    groups: Sequence[PlanGroup] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for g in self.groups:
            rows = np.asarray(g.rows)
            if rows.ndim != 1 or (len(rows) and not np.issubdtype(rows.dtype, np.integer)):
                raise ValueError(f"a PlanGroup's rows must be a 1-D integer array of cache rows, got {rows!r}")
            for name in ("keep_audio", "keep_visual"):
                value = np.asarray(getattr(g, name))
                if value.ndim not in (0, 1) or (value.ndim == 1 and len(value) != len(rows)):
                    raise ValueError(f"PlanGroup.{name} must be one bool or one per row ({len(rows)}), got shape "
                                     f"{value.shape}")

    @property
    def num_rows(self) -> int:
        """Rows over all groups (copies counted)."""
        return sum(len(g.rows) for g in self.groups)


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

    def sample_plan(self, trainer: TrainerView, epoch: int) -> SamplePlan | None:
        """The epoch's training rows (after ``on_epoch_start``); None, the default, trains the normal epoch.

        A plan must follow from what a checkpoint restores (the model, this strategy's `state_dict`,
        ``trainer.generator``), so that a resumed run trains the same rows; the trainer shuffles and augments
        each group itself (`mmgap.trainer.Trainer.plan_batches`).
        """
        return None

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
