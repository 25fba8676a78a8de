"""G-Blending: gradient blending (Wang, Tran & Feiszli, "What makes training multi-modal classification
networks hard?", CVPR 2020).

The authors' code is not public; we follow GeWu-Lab/BalanceBenchmark, balancemm/trainer/GBlending_trainer.py
(``GBlendingTrainer.fit``, ``super_epoch_origin``, ``training_step``). Three branches share the encoders:
audio (l^a), visual (l^v) and fused (f), the logits of Eq. (1-2). At the start of every super-epoch, each
branch's overfitting-to-generalisation ratio is measured from its mean CE on the training and validation
splits at the super-epoch's start (n) and end (n + N): ΔG_k = L^val_k(n) − L^val_k(n+N),
ΔO_k = O_k(n+N) − O_k(n) with O = L^val − L^train, and w_k ∝ |ΔG_k| / ΔO_k², normalised to sum 1 (the
paper's online G-Blending). Training minimises Σ_k w_k·CE_k. Weights start uniform (1/3 each) until the first
estimate.

Defaults and their source: a super-epoch of 10 epochs in a 70-epoch run (configs/trainer_config.yaml:
GBlending super_epoch 10, base max_epochs 70), here ``super_epoch=1/7`` of this run (3 epochs at 20; see
`GBlendingStrategy.schedule`).

Deviation, for a CPU budget: the losses come from the jointly trained model's own branches rather than from
a copy of the model trained per branch for a super-epoch (``super_epoch_origin``, the paper's Algorithm 1);
the formula is unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mmgap.baselines._common import ce, check_fraction, epochs_of, run_length, standard_parts
from mmgap.strategy import Batch, Strategy, TrainerView

BRANCHES = ("fusion", "audio", "visual")
EPS = 1e-12


def blending_weights(train_prev: torch.Tensor, val_prev: torch.Tensor, train_now: torch.Tensor,
                     val_now: torch.Tensor) -> torch.Tensor:
    """w_k ∝ |ΔG_k| / ΔO_k² over branches [K], normalised (uniform when every ratio is 0 or undefined)."""
    delta_g = val_prev - val_now
    delta_o = (val_now - train_now) - (val_prev - train_prev)
    w = delta_g.abs() / (delta_o.pow(2) + EPS)
    total = w.sum()
    if not torch.isfinite(total) or total <= 0:
        return torch.full_like(w, 1.0 / w.numel())
    return w / total


def branch_losses(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean CE of (fused, audio, visual) logits over a split's collected outputs, [3] float32 on the CPU."""
    y = torch.as_tensor(outputs["label"]).long().cpu()
    return torch.stack([
        F.cross_entropy(torch.as_tensor(outputs[key]).float().cpu(), y) for key in ("fused", "logit_a", "logit_v")
    ])


class GBlendingStrategy(Strategy):
    """Σ_k w_k·CE_k over fused, audio and visual logits, w re-estimated every super-epoch (G-Blending)."""

    name = "g_blending"
    reference_epochs = 70

    def __init__(self, super_epoch: float = 1 / 7, val_split: str = "val") -> None:
        self.super_epoch = check_fraction("G-Blending", "super_epoch", super_epoch, positive=True)
        self.val_split = val_split
        self.weights = torch.full((3,), 1.0 / 3.0)
        self._prev: tuple[torch.Tensor, torch.Tensor] | None = None
        self._w_dev: torch.Tensor | None = None
        self._sched: dict[str, int] | None = None

    def schedule(self, epochs: int) -> dict[str, int]:
        """The super-epoch length in epochs of a run of ``epochs`` (weights re-estimated at its multiples)."""
        return {"super_epoch": max(1, epochs_of(self.super_epoch, epochs))}

    def setup(self, trainer: TrainerView) -> None:
        """Resolve the super-epoch length from the run's budget."""
        self._sched = self.schedule(run_length(trainer, self.reference_epochs))

    def on_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        """At each super-epoch boundary: measure branch losses on train and val, update the weights."""
        assert self._sched is not None, "call setup(trainer) first"
        if epoch % self._sched["super_epoch"] == 0:
            now = (branch_losses(trainer.collect_outputs("train")),
                   branch_losses(trainer.collect_outputs(self.val_split)))
            if self._prev is not None:
                self.weights = blending_weights(self._prev[0], self._prev[1], now[0], now[1])
            self._prev = now
        self._w_dev = self.weights.to(trainer.device)

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """w_f·CE(f) + w_a·CE(l^a) + w_v·CE(l^v)."""
        out = trainer.forward(batch)
        y = batch["label"]
        w = self._w_dev if self._w_dev is not None else self.weights.to(out.fused.device)
        loss = w[0] * ce(out.fused, y) + w[1] * ce(out.logit_a, y) + w[2] * ce(out.logit_v, y)
        return loss, standard_parts(out.fused, out.logit_a, out.logit_v, y)

    def on_epoch_end(self, trainer: TrainerView, epoch: int) -> dict[str, Any]:
        """The blending weights used this epoch."""
        return {f"w_{k}": float(v) for k, v in zip(BRANCHES, self.weights.tolist(), strict=True)}

    def state_dict(self) -> dict[str, Any]:
        """Weights and the last super-epoch's losses."""
        prev = None if self._prev is None else torch.stack(self._prev)
        return {"weights": self.weights, "prev": prev}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self.weights = state["weights"].float().cpu()
        prev = state.get("prev")
        self._prev = None if prev is None else (prev[0].cpu(), prev[1].cpu())
