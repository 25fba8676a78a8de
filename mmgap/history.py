"""A run's history rows (one per epoch, as `mmgap.trainer.Trainer` records them) turned into summaries.

The selected (best-validation) epoch, the last epoch of a stage and a stage's timings: what the method, the
baselines and the sweeps report from a finished run.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def best_summary(fit_result: dict[str, Any]) -> dict[str, Any]:
    """Flat val_*/test_* metrics of a stage's best (val-selected) epoch, from `Trainer.fit`'s result."""
    best = fit_result["best"] or {}
    out: dict[str, Any] = {"best_epoch": best.get("epoch"), "best_stage_epoch": best.get("stage_epoch")}
    for split in ("val", "test"):
        for k, v in (best.get(split) or {}).items():
            out[f"{split}_{k}"] = v
    return out


def best_row_summary(history: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    """val_*/test_* of a stage's best-val row in the history (first maximum, as `Trainer.fit` selects)."""
    rows = [r for r in history if r["stage"] == stage]
    if not rows:
        return {}
    best = max(rows, key=lambda r: r["val_acc"])
    return {"best_epoch": best["epoch"], **{k: v for k, v in best.items() if k.startswith(("val_", "test_"))}}


def last_row_summary(history: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    """val_*/test_* of a stage's last epoch (the model the next stage starts from, or the stage's end)."""
    rows = [r for r in history if r["stage"] == stage]
    if not rows:
        return {}
    last = rows[-1]
    return {"epoch": last["epoch"], **{k: v for k, v in last.items() if k.startswith(("val_", "test_"))}}


def stage_timings(history: list[dict[str, Any]], stage: str) -> dict[str, float]:
    """Seconds of a stage, per-epoch train and eval seconds, and the refit overhead where it refits."""
    rows = [r for r in history if r["stage"] == stage]
    if not rows:
        return {}
    t = {
        f"{stage}_seconds": float(sum(r["seconds"] for r in rows)),
        f"{stage}_train_seconds_per_epoch": float(np.mean([r["train_seconds"] for r in rows])),
        f"{stage}_eval_seconds_per_epoch": float(np.mean([r["eval_seconds"] for r in rows])),
    }
    refits = [r["refit_seconds"] for r in rows if r.get("refitted")]
    if refits:
        t["refit_seconds_mean"] = float(np.mean(refits))
        t["refit_overhead"] = t["refit_seconds_mean"] / t[f"{stage}_train_seconds_per_epoch"]
    return t
