"""BSS: balance-aware sequence sampling (Guan, Jiang & Yang, "Balance-aware sequence sampling makes multi-modal
learning better", IJCAI 2025), its heuristic (curriculum) scheduler.

Follows njustkmg/IJCAI25-BSS, ``CREMA-D/train-CL.py``: ``model_evaluate`` and ``normalize_min_max`` (the
difficulty), the main loop (λ_t and the easiest-first subset) and ``train`` (the loss).

Rule. Per training clip, the difficulty d = N(1 − cos(p_a, p_v)) + N(ℓ) with p_m = softmax(l^m),
ℓ = 0.9·(CE_a + CE_v) + 0.1·CE_fused, and N min-max normalisation over the training set (`difficulty`; the
code normalises the similarity, and 1 − N(s) = N(1 − s)). Each epoch t (0-based) trains on the easiest
⌊n·λ_t⌋ clips, λ_t = min(1, sqrt((1 − λ0²)/T_grow · (t + 1) + λ0²)) (`pacing`), shuffled; the loss is
0.1·CE(fused) + 0.9·(CE(audio) + CE(visual)) throughout.

Defaults and their source: λ0 = 0.1, T_grow = 40 of 120 epochs, loss weights 0.1 / 0.9 (train-CL.py), here
``grow=40/120`` of the run (`BSSStrategy.schedule`).

Deviation (the issue's note, our choice): the code scores ONCE, at epoch 0, with the untrained network in train
mode (BatchNorm on batch statistics, dropout-free but augmented inputs), so its "curriculum" orders clips by the
noise of a random initialisation. The paper's abstract says sample balance evolves as the model learns and
motivates its learning-based variant by updating the sequence at the epoch level. We score at the start of
every epoch with the current network in eval mode without augmentation (``rescore=True``): the ranking then
means what the paper says it means. ``rescore=False`` scores once, at the first epoch, as the code (but in
eval mode, so the order is reproducible on resume). The authors' separate unimodal heads are the concat head's
split (Eq. 2) here, as for every baseline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmgap.baselines._common import ce, check_fraction, epochs_of, run_length, standard_parts
from mmgap.baselines._sample import rows_of, score_pass
from mmgap.strategy import Batch, PlanGroup, SamplePlan, Strategy, TrainerView

REFERENCE_EPOCHS = 120
"""The epoch count of the authors' script (120 epochs), which their T_grow = 40 is for."""
UNI_WEIGHT, FUSED_WEIGHT = 0.9, 0.1
SPAN_TOL = 1e-9


def min_max(x: torch.Tensor) -> torch.Tensor:
    """(x − min) / (max − min) over all samples; zeros when every value is the same up to rounding (a span
    under SPAN_TOL would stretch float noise to [0, 1])."""
    x = x.double()
    span = x.max() - x.min()
    return torch.zeros_like(x) if span <= SPAN_TOL else (x - x.min()) / span


def difficulty(fused: torch.Tensor, logit_a: torch.Tensor, logit_v: torch.Tensor, labels: torch.Tensor,
               disagreement: bool = True) -> torch.Tensor:
    """BSS's per-sample difficulty N(1 − cos(p_a, p_v)) + N(0.9·(CE_a + CE_v) + 0.1·CE_f) (higher = harder).

    ``disagreement=False`` drops the cross-modal term (the loss term alone).
    """
    p_a, p_v = torch.softmax(logit_a.double(), 1), torch.softmax(logit_v.double(), 1)
    loss = UNI_WEIGHT * (F.cross_entropy(logit_a.double(), labels, reduction="none")
                         + F.cross_entropy(logit_v.double(), labels, reduction="none")) \
        + FUSED_WEIGHT * F.cross_entropy(fused.double(), labels, reduction="none")
    d = min_max(loss)
    if disagreement:
        d = d + min_max(1.0 - F.cosine_similarity(p_a, p_v, dim=1))
    return d


def pacing(epoch: int, grow_epochs: int, lambda0: float = 0.1) -> float:
    """λ_t = min(1, sqrt((1 − λ0²)/T_grow · (t + 1) + λ0²)): the share of the easiest clips epoch t trains on."""
    return min(1.0, math.sqrt((1.0 - lambda0 ** 2) / max(1, grow_epochs) * (epoch + 1) + lambda0 ** 2))


def easiest(rows: np.ndarray, d: np.ndarray, share: float) -> np.ndarray:
    """The ⌊n·share⌋ rows of lowest difficulty (ties in row order), at least one."""
    order = np.argsort(np.asarray(d), kind="stable")
    k = max(1, int(len(order) * share))
    return np.asarray(rows, dtype=np.int64)[order[:k]]


class BSSStrategy(Strategy):
    """0.1·CE(f) + 0.9·(CE(a) + CE(v)) on a growing easiest-first subset of the training clips."""

    name = "bss"
    reference_epochs = REFERENCE_EPOCHS

    def __init__(self, lambda0: float = 0.1, grow: float = 40 / 120, rescore: bool = True,
                 curriculum: bool = True) -> None:
        self.lambda0 = check_fraction("BSS", "lambda0", lambda0, positive=True)
        self.grow = check_fraction("BSS", "grow", grow, positive=True)
        self.rescore = bool(rescore)
        self.curriculum = bool(curriculum)
        self._sched: dict[str, int] | None = None
        self._scores: dict[str, np.ndarray] | None = None
        self._last: dict[str, float] = {}

    def schedule(self, epochs: int) -> dict[str, int]:
        """T_grow in epochs of a run of ``epochs`` (λ_t reaches 1 at epoch T_grow − 1)."""
        return {"grow_epochs": max(1, epochs_of(self.grow, epochs))}

    def setup(self, trainer: TrainerView) -> None:
        """Resolve T_grow for the run's budget."""
        self._sched = self.schedule(run_length(trainer, self.reference_epochs))

    def share(self, epoch: int) -> float:
        """λ_t of this (0-based) epoch (1 without the curriculum)."""
        assert self._sched is not None, "call setup(trainer) first"
        return pacing(epoch, self._sched["grow_epochs"], self.lambda0) if self.curriculum else 1.0

    def sample_plan(self, trainer: TrainerView, epoch: int) -> SamplePlan | None:
        """The easiest λ_t share of the training clips (scored now, or kept from the first scoring)."""
        share = self.share(epoch)
        self._last = {"bss_lambda": share}
        if share >= 1.0:
            return None
        if self._scores is None or self.rescore:
            out = score_pass(trainer)
            d = difficulty(out["fused"], out["logit_a"], out["logit_v"], out["label"])
            self._scores = {"rows": rows_of(out), "d": d.numpy()}
        return SamplePlan((PlanGroup(easiest(self._scores["rows"], self._scores["d"], share)),))

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """0.1·CE(fused) + 0.9·(CE(audio) + CE(visual)) (train-CL.py's ``train``)."""
        out = trainer.forward(batch)
        y = batch["label"]
        loss = FUSED_WEIGHT * ce(out.fused, y) + UNI_WEIGHT * (ce(out.logit_a, y) + ce(out.logit_v, y))
        return loss, standard_parts(out.fused, out.logit_a, out.logit_v, y)

    def on_epoch_end(self, trainer: TrainerView, epoch: int) -> dict[str, Any]:
        """λ_t of the epoch, for the history."""
        return dict(self._last)

    def state_dict(self) -> dict[str, Any]:
        """The difficulty scores kept from the first scoring (``rescore=False``), else nothing."""
        if self.rescore or self._scores is None:
            return {}
        return {"rows": torch.from_numpy(self._scores["rows"]), "d": torch.from_numpy(self._scores["d"])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        if "rows" in state:
            self._scores = {"rows": state["rows"].numpy(), "d": state["d"].numpy()}
