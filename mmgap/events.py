"""TensorBoard event files of a run, written from its epoch history: ``tensorboard --logdir runs/`` compares a
sweep.

Every number of a history row (`mmgap.trainer`) that is a finite scalar becomes a scalar series keyed by the
global epoch: ``train/<loss part>`` (the fused and per-branch losses, λ_t as ``train/lambda_t``),
``val/<metric>`` and ``test/<metric>`` (accuracy, macro-F1 and the per-modality accuracies ``acc_a``, ``acc_v``),
``gap/<field>`` at the refits of the adaptive stage (π1, μ0, μ1 as ``gap/pi1``, ``gap/mu0_raw``,
``gap/mu1_raw``, the AUROC of w1 as ``gap/auroc_w1`` where the data has difficulty tiers) and ``run/<field>``
(learning rate, seconds). The history in ``metrics.json`` stays the source of truth: the events are a view of it.
The writer is torch's `SummaryWriter` (the tensorboard package); without it, no events are written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

EVENTS_PREFIX = "events.out.tfevents"
"""How TensorBoard's event files are named (a run folder holds one per write)."""

_SPLITS = ("train", "val", "test")
_GAP_FIELDS = ("pi1", "mu0", "mu0_raw", "mu1_raw", "auroc_w1", "gap_mean", "gap_std", "w1_mean", "frac_imbalanced",
               "bic1", "bic2")
_SKIPPED = ("epoch", "stage_epoch", "refit_epoch")


def scalar_tag(key: str) -> str | None:
    """The TensorBoard tag of a history field: ``val_acc_a`` -> ``val/acc_a``; None for a non-metric field."""
    if key in _SKIPPED:
        return None
    for split in _SPLITS:
        if key.startswith(f"{split}_") and key != "train_seconds":
            return f"{split}/{key[len(split) + 1:]}"
    return f"gap/{key}" if key in _GAP_FIELDS else f"run/{key}"


def history_scalars(history: Iterable[Mapping[str, Any]]) -> list[tuple[str, int, float]]:
    """(tag, global epoch, value) of every finite scalar in every history row, in row order."""
    out = []
    for row in history:
        step = int(row["epoch"])
        for key, value in row.items():
            tag = scalar_tag(key)
            if tag is None or isinstance(value, (bool, str)) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                out.append((tag, step, float(value)))
    return out


def write_history_events(run_dir: str | Path, history: Iterable[Mapping[str, Any]]) -> Path | None:
    """Write a run's history as TensorBoard scalars in `run_dir` (earlier event files there replaced); the file.

    None when the tensorboard package is not installed (metrics.json holds the same numbers).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    folder = Path(run_dir)
    for old in folder.glob(f"{EVENTS_PREFIX}*"):  # a run redone (fresh=True) starts its curves anew
        old.unlink(missing_ok=True)
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for tag, step, value in history_scalars(history):
            writer.add_scalar(tag, value, global_step=step)
    finally:
        writer.close()
    return next(iter(sorted(folder.glob(f"{EVENTS_PREFIX}*"))), None)


def read_events(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of a run folder's event files: tag -> [(step, value), ...] (for checks and notebooks)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
