"""D&R: diagnosing and re-learning (Wei, Li & Hu, "Diagnosing and re-learning for balanced multimodal
learning", ECCV 2024).

Every `reinit_epoch` epochs (at most `reinit_num` = 3 times), each encoder's learning state is diagnosed:
its features on the training and validation splits are min-max scaled to [−1, 1] (per split, scikit-learn's
MinMaxScaler) and clustered by k-means with k = number of classes (scikit-learn's KMeans); the purity of
each clustering (fraction of samples in their cluster's majority class) gives the gap
Δ_m = |purity_train − purity_val|. The encoder is then softly re-initialised,
θ_m ← w_m·θ_m^init + (1 − w_m)·θ_m with w_m = tanh(λ·Δ_m): a modality that fits the training set much
better than it generalises is pulled back toward its initial weights more. Loss: CE on the fused logits.

Defaults (the authors'): λ = 3, re-init every 20 epochs of a 100-epoch run, at most 3 times. At a shorter
budget the period is scaled to the same fraction of the run (at least 1 epoch), and no re-init happens after
the final epoch (it could only hurt the evaluated model).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics.cluster import contingency_matrix
from sklearn.preprocessing import MinMaxScaler

from mmgap.baselines._common import MODALITIES, ce, encoder, scale_epochs, standard_parts, total_epochs
from mmgap.strategy import Batch, Strategy

if TYPE_CHECKING:  # pragma: no cover
    from mmgap.train import Trainer


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Σ_clusters max_class |cluster ∩ class| / N: the fraction of samples in their cluster's majority class."""
    cm = contingency_matrix(labels, clusters)  # [classes, clusters]
    return float(cm.max(axis=0).sum() / cm.sum())


def kmeans_purity(features: np.ndarray, labels: np.ndarray, n_clusters: int, seed: int = 0) -> float:
    """Purity of k-means (k = n_clusters) on min-max-scaled features (D&R's learning-state diagnosis)."""
    x = MinMaxScaler(feature_range=(-1, 1)).fit_transform(np.asarray(features, dtype=np.float64))
    k = min(n_clusters, len(x))
    clusters = KMeans(n_clusters=k, random_state=seed, n_init="auto").fit_predict(x)
    return purity(np.asarray(labels), clusters)


def reinit_strength(purity_train: float, purity_val: float, lam: float) -> float:
    """w = tanh(λ·|purity_train − purity_val|), the share of the initial weights mixed back in (D&R)."""
    return math.tanh(lam * abs(purity_train - purity_val))


@torch.no_grad()
def soft_reinit_(module: torch.nn.Module, init_state: dict[str, torch.Tensor], w: float) -> None:
    """θ ← w·θ_init + (1 − w)·θ for every parameter of ``module``, in place."""
    for name, p in module.named_parameters():
        p.mul_(1.0 - w).add_(init_state[name].to(p.device, p.dtype), alpha=w)


class DRStrategy(Strategy):
    """Joint CE; every reinit_epoch epochs, each encoder moves toward its initial weights by tanh(λΔ)."""

    name = "dr"

    def __init__(self, lam: float = 3.0, reinit_epoch: int | None = None, reinit_num: int = 3,
                 val_split: str = "val") -> None:
        if lam < 0 or reinit_num < 0 or (reinit_epoch is not None and reinit_epoch < 1):
            raise ValueError(
                f"D&R needs lam >= 0, reinit_num >= 0, reinit_epoch >= 1; got {lam}, {reinit_num}, {reinit_epoch}"
            )
        self.lam, self.reinit_epoch, self.reinit_num = float(lam), reinit_epoch, int(reinit_num)
        self.val_split = val_split
        self.reinit_count = 0
        self.init_state: dict[str, dict[str, torch.Tensor]] | None = None
        self._total: int | None = None
        self.seed = 0

    def setup(self, trainer: "Trainer") -> None:
        """Remember each encoder's initial parameters (unless restored) and resolve the re-init period."""
        if self.init_state is None:
            self.init_state = {
                m: {k: v.detach().clone() for k, v in encoder(trainer.model, m).named_parameters()} for m in MODALITIES
            }
        self._total = total_epochs(trainer)
        if self.reinit_epoch is None:
            self.reinit_epoch = scale_epochs(20, self._total, minimum=1)
        gen = getattr(trainer, "generator", None)
        self.seed = int(gen.initial_seed() % (2**31)) if gen is not None else 0

    def training_step(self, trainer: "Trainer", batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Joint CE on the fused logits."""
        out = trainer.forward(batch)
        y = batch["label"]
        return ce(out.fused, y), standard_parts(out.fused, out.logit_a, out.logit_v, y)

    def due(self, epoch: int) -> bool:
        """Whether a re-init follows this (0-based) epoch."""
        assert self.reinit_epoch is not None, "call setup(trainer) first"
        last = self._total is not None and epoch + 1 >= self._total
        return (epoch + 1) % self.reinit_epoch == 0 and self.reinit_count < self.reinit_num and not last

    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> dict[str, Any]:
        """Diagnose both encoders and re-initialise them softly when a re-init is due."""
        if not self.due(epoch):
            return {}
        assert self.init_state is not None
        train, val = trainer.collect_outputs("train"), trainer.collect_outputs(self.val_split)
        row: dict[str, Any] = {}
        for m, key in (("audio", "feat_a"), ("visual", "feat_v")):
            p_tr = kmeans_purity(_np(train[key]), _np(train["label"]), trainer.num_classes, self.seed)
            p_va = kmeans_purity(_np(val[key]), _np(val["label"]), trainer.num_classes, self.seed)
            w = reinit_strength(p_tr, p_va, self.lam)
            soft_reinit_(encoder(trainer.model, m), self.init_state[m], w)
            row.update({f"purity_train_{m}": p_tr, f"purity_val_{m}": p_va, f"reinit_w_{m}": w})
        self.reinit_count += 1
        return row

    def state_dict(self) -> dict[str, Any]:
        """Initial encoder parameters, the re-init count and the resolved period."""
        return {"init_state": self.init_state, "reinit_count": self.reinit_count, "reinit_epoch": self.reinit_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self.init_state = state.get("init_state")
        self.reinit_count = int(state.get("reinit_count", 0))
        if state.get("reinit_epoch") is not None:
            self.reinit_epoch = int(state["reinit_epoch"])


def _np(x: Any) -> np.ndarray:
    """A NumPy view of a tensor or array (float features or integer labels)."""
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) and x.is_floating_point() else np.asarray(
        x.cpu() if torch.is_tensor(x) else x)
