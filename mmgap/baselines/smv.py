"""SMV: sample-level modality valuation (Wei, Feng, Wang & Hu, "Enhancing multimodal cooperation via sample-level
modality valuation", CVPR 2024).

Follows the paper, with what we took from GeWu-Lab/Valuate-and-Enhance-Multimodal-Cooperation, whose sample-level
script does not start as published (``code/sample_level.py`` builds its dataset with a ``loader=`` keyword the
dataset rejects, and saves with undefined arguments): ``execute_modulation`` (the valuation pass),
``AV_KS_Dataset_sample_level`` in ``code/datasets/dataloader.py`` (the copy bands), ``AVClassifier.forward`` /
``exec_drop`` in ``code/models/models.py`` (where a modality is dropped) and ``train_epoch`` (the loss).

Rule. A warm-up of plain CE on the fused logits. Then, at the start of every epoch, an eval-mode pass without
gradient values each training clip with the current model: v_av = 2 if the fused prediction is right, v_a = 1 if
the prediction with the visual features zeroed before the shared head is right, v_v likewise; the two-player
Shapley contributions are φ_a = (v_a + v_av − v_v)/2 and φ_v = (v_v + v_av − v_a)/2 (`contributions`). The epoch
trains every clip once with both modalities plus, per modality m, extra copies of the clip in which the OTHER
modality's features are zeroed (so the gradient reaches m alone), as many as m's contribution band asks
(`copy_counts`): 3 for φ_m < −0.1, 2 for −0.1 < φ_m < 0.4, 1 for 0.4 < φ_m < 1, none for φ_m ≥ 1 (the code's
strict bands; φ takes the values −0.5, 0, 0.5, 1, 1.5). Originals and copies are shuffled together; the loss is
CE on the fused logits of each (masked) row. The trainer's `SamplePlan` carries the rows and masks; features are
zeroed before the head (`mmgap.models.AVClassifier.forward(keep=...)`), as the authors' ``forward(drop=...)``.

The per-clip score graded in `mmgap.sample_scores`: the visual contribution deficit φ_a − φ_v (= v_a − v_v):
1 when audio alone is right and visual alone wrong.

Defaults and their source: warm-up 5 epochs of 60 (``--warmup 5``, ``--epochs 60`` of sample_level.py), here the
fraction ``warmup=5/60`` of the run (`SMVStrategy.schedule`); band edges −0.1, 0.4 (dataloader.py) and 1 where
the dataloader writes ``0.4 < φ < 0.9``: φ takes only the values above, so both edges give the same copies.
Both modalities of a clip get copies by their own bands, as the authors' dataloader does (``drop=1`` / ``drop=2``
rows per modality); the issue's and the paper's short description names only the low-contribution modality, which
is the one that gets more.

Deviations: none in the rule. The authors value the clips after epoch e ≥ warm-up − 1 for epoch e + 1; we value
at the start of epoch e ≥ warm-up with the same model (the same thing, and what resume can recompute). Their
valuation pass is over the training loader without augmentation, as ours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmgap.baselines._common import ce, check_fraction, epochs_of, run_length, standard_parts
from mmgap.baselines._sample import rows_of, score_pass
from mmgap.strategy import Batch, PlanGroup, SamplePlan, Strategy, TrainerView

REFERENCE_EPOCHS = 60
"""The epoch count of the authors' script (``--epochs 60``), which their 5-epoch warm-up is for."""
BANDS = (-0.1, 0.4, 1.0)
"""Contribution band edges of the authors' dataloader: 3 copies below −0.1, 2 up to 0.4, 1 up to 1, then none."""


def contributions(fused: torch.Tensor, alone_a: torch.Tensor, alone_v: torch.Tensor,
                  labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-player Shapley contributions (φ_a, φ_v) per sample from the fused and modality-alone logits (SMV).

    v_av = 2·[argmax fused = y], v_a = [argmax alone_a = y], v_v = [argmax alone_v = y];
    φ_a = (v_a + v_av − v_v)/2, φ_v = (v_v + v_av − v_a)/2.
    """
    v_av = 2.0 * (fused.argmax(1) == labels).float()
    v_a = (alone_a.argmax(1) == labels).float()
    v_v = (alone_v.argmax(1) == labels).float()
    return (v_a + v_av - v_v) / 2, (v_v + v_av - v_a) / 2


def visual_deficit(phi_a: torch.Tensor, phi_v: torch.Tensor) -> torch.Tensor:
    """φ_a − φ_v: how much less the visual modality contributes to the clip's prediction than the audio."""
    return phi_a - phi_v


def copy_counts(phi: np.ndarray | torch.Tensor, bands: tuple[float, float, float] = BANDS) -> np.ndarray:
    """Extra copies of a modality per sample from its contribution φ: 3 / 2 / 1 / 0 by the authors' strict bands."""
    phi = np.asarray(phi, dtype=np.float64)
    low, mid, high = bands
    return np.select([phi < low, (phi > low) & (phi < mid), (phi > mid) & (phi < high)], [3, 2, 1], 0).astype(int)


def smv_plan(rows: np.ndarray, phi_a: np.ndarray, phi_v: np.ndarray, copies: bool = True) -> SamplePlan:
    """One shuffled group: every row with both modalities, then (with ``copies``) each row repeated
    copy_counts(φ_a) times with the visual features zeroed and copy_counts(φ_v) times with the audio zeroed."""
    rows = np.asarray(rows, dtype=np.int64)
    parts_rows, keep_a, keep_v = [rows], [np.ones(len(rows), bool)], [np.ones(len(rows), bool)]
    if copies:
        for counts, audio_kept in ((copy_counts(phi_a), True), (copy_counts(phi_v), False)):
            extra = np.repeat(rows, counts)
            parts_rows.append(extra)
            keep_a.append(np.full(len(extra), audio_kept))
            keep_v.append(np.full(len(extra), not audio_kept))
    group = PlanGroup(np.concatenate(parts_rows), np.concatenate(keep_a), np.concatenate(keep_v))
    return SamplePlan((group,))


class SMVStrategy(Strategy):
    """Plain CE; after the warm-up each epoch adds Shapley-banded single-modality copies of every clip."""

    name = "smv"
    reference_epochs = REFERENCE_EPOCHS

    def __init__(self, warmup: float = 5 / 60, copies: bool = True) -> None:
        self.warmup = check_fraction("SMV", "warmup", warmup)
        self.copies = bool(copies)
        self._sched: dict[str, int] | None = None
        self._last: dict[str, float] = {}

    def schedule(self, epochs: int) -> dict[str, int]:
        """The warm-up in epochs of a run of ``epochs`` (valuation and copies from this epoch on)."""
        return {"warmup_epochs": epochs_of(self.warmup, epochs)}

    def setup(self, trainer: TrainerView) -> None:
        """Resolve the warm-up for the run's budget."""
        self._sched = self.schedule(run_length(trainer, self.reference_epochs))

    def sample_plan(self, trainer: TrainerView, epoch: int) -> SamplePlan | None:
        """After the warm-up: value every training clip with the current model and add its copies."""
        assert self._sched is not None, "call setup(trainer) first"
        self._last = {}
        if epoch < self._sched["warmup_epochs"]:
            return None
        out = score_pass(trainer)
        phi_a, phi_v = contributions(out["fused"], out["alone_a"], out["alone_v"], out["label"])
        plan = smv_plan(rows_of(out), phi_a.numpy(), phi_v.numpy(), self.copies)
        self._last = {"smv_phi_a": float(phi_a.mean()), "smv_phi_v": float(phi_v.mean()),
                      "smv_rows": float(plan.num_rows)}
        return plan

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CE on the fused logits of each row (a copy's dropped modality is zeroed before the head)."""
        out = trainer.forward(batch)
        y = batch["label"]
        return ce(out.fused, y), standard_parts(out.fused, out.logit_a, out.logit_v, y)

    def on_epoch_end(self, trainer: TrainerView, epoch: int) -> dict[str, Any]:
        """The epoch's mean contributions and its row count (with copies), for the history."""
        return dict(self._last)
