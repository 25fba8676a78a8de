"""Fused accuracy, macro-F1 and per-modality accuracy, plus on-device accumulators for evaluation loops."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score


def _to_pred(pred_or_logits: Any) -> np.ndarray:
    """Class predictions [N] from either predictions [N] or logits [N, M] (argmax)."""
    if isinstance(pred_or_logits, torch.Tensor):
        pred_or_logits = pred_or_logits.detach().cpu()
        if pred_or_logits.dim() == 2:
            pred_or_logits = pred_or_logits.argmax(dim=1)
        return pred_or_logits.numpy()
    arr = np.asarray(pred_or_logits)
    return arr.argmax(axis=1) if arr.ndim == 2 else arr


def _pair(pred_or_logits: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    pred = _to_pred(pred_or_logits)
    true = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if pred.ndim != 1 or pred.shape != true.shape:
        raise ValueError(f"predictions {pred.shape} and labels {true.shape} must both be [N] with the same N")
    if pred.size == 0:
        raise ValueError("no samples to score: the split is empty")
    return pred, true


def accuracy(pred_or_logits: Any, y: Any) -> float:
    """Fraction of samples whose prediction (or logits' argmax) equals the label."""
    pred, true = _pair(pred_or_logits, y)
    return float((pred == true).mean())


def macro_f1(pred_or_logits: Any, y: Any, num_classes: int | None = None) -> float:
    """Macro-averaged F1 (scikit-learn); with `num_classes`, classes absent from both count as F1 = 0."""
    pred, true = _pair(pred_or_logits, y)
    labels = list(range(num_classes)) if num_classes is not None else None
    return float(f1_score(true, pred, labels=labels, average="macro", zero_division=0))


def is_absent(logits: Any) -> bool:
    """Whether per-modality logits are all NaN: the branch of a modality the model does not have (a unimodal
    baseline), whose accuracy is undefined rather than a number."""
    if isinstance(logits, torch.Tensor):
        return logits.is_floating_point() and logits.numel() > 0 and bool(torch.isnan(logits).all())
    arr = np.asarray(logits)
    return arr.dtype.kind == "f" and arr.size > 0 and bool(np.isnan(arr).all())


def branch_accuracy(logits: Any, y: Any) -> float:
    """`accuracy` of one modality's logits; NaN when that modality is absent (`is_absent`)."""
    return float("nan") if is_absent(logits) else accuracy(logits, y)


def evaluate_logits(fused: Any, logit_a: Any, logit_v: Any, y: Any) -> dict[str, float]:
    """``acc`` and ``f1`` of the fused logits, ``acc_a`` and ``acc_v`` of the per-modality logits (Eq. 2);
    a modality whose logits are all NaN (absent from a unimodal model) gets a NaN accuracy."""
    return {
        "acc": accuracy(fused, y),
        "f1": macro_f1(fused, y),
        "acc_a": branch_accuracy(logit_a, y),
        "acc_v": branch_accuracy(logit_v, y),
    }


class PredictionAccumulator:
    """Collects per-batch predictions on the device (no host sync per batch); `compute` syncs once.

    ``keep_logits=True`` also keeps the logits (e.g. for gap histograms); otherwise only argmax indices are
    stored, which is what accuracy and F1 need.
    """

    def __init__(self, keep_logits: bool = False) -> None:
        self.keep_logits = keep_logits
        self._store: dict[str, list[torch.Tensor]] = {k: [] for k in ("fused", "logit_a", "logit_v", "label")}

    def add(self, fused: torch.Tensor, logit_a: torch.Tensor, logit_v: torch.Tensor, y: torch.Tensor) -> None:
        """Append one batch (detached, stays where it is)."""
        for key, t in (("fused", fused), ("logit_a", logit_a), ("logit_v", logit_v)):
            t = t.detach()
            self._store[key].append(t if self.keep_logits else t.argmax(dim=1))
        self._store["label"].append(y.detach())

    def tensors(self) -> dict[str, torch.Tensor]:
        """Concatenated tensors, still on the device: fused, logit_a, logit_v (or their argmax), label."""
        if not self._store["label"]:
            raise ValueError("PredictionAccumulator is empty: no batch was added")
        return {k: torch.cat(v) for k, v in self._store.items()}

    def compute(self) -> dict[str, float]:
        """`evaluate_logits` over everything added (one transfer to the host)."""
        t = {k: v.cpu() for k, v in self.tensors().items()}
        return evaluate_logits(t["fused"], t["logit_a"], t["logit_v"], t["label"])


class MeanAccumulator:
    """Sample-weighted running means of scalar tensors (loss parts) on the device; one sync in `compute`."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def add(self, values: dict[str, torch.Tensor | float], n: int = 1) -> None:
        """Add one batch's means, weighted by its size `n`."""
        for key, v in values.items():
            v = v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
            self._sums[key] = self._sums[key] + v * n if key in self._sums else v * n
        self._count += n

    def compute(self) -> dict[str, float]:
        """The means as floats (empty dict when nothing was added)."""
        if self._count == 0:
            return {}
        keys = list(self._sums)
        device = self._sums[keys[0]].device
        stacked = torch.stack([self._sums[k].to(device) for k in keys]).cpu() / self._count
        return dict(zip(keys, stacked.tolist(), strict=True))


def accuracy_by_group(logits: Any, y: Any, groups: Any, names: Any = None) -> dict[str, float]:
    """Accuracy of `logits` within each group label (e.g. the embedded data's visual tiers); empty groups left out.

    NaN logits (a modality the model does not have) give NaN accuracies, never a number.
    """
    t = torch.as_tensor(logits).detach().cpu()
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    groups = groups.detach().cpu().numpy() if isinstance(groups, torch.Tensor) else np.asarray(groups)
    names = list(dict.fromkeys(groups.tolist())) if names is None else list(names)
    present = [g for g in names if np.any(groups == g)]
    if torch.isnan(t).any():
        return {str(g): float("nan") for g in present}
    pred = t.argmax(dim=1).numpy()
    return {str(g): float(np.mean(pred[groups == g] == y[groups == g])) for g in present}
