"""Every method's per-sample score against the embedded data's ground truth (which clips are imbalanced).

From one model (a warm-up checkpoint), an eval-mode pass over the training set gives each clip the score each
method acts on, oriented so that higher means "more imbalanced" (the visual branch lagging):

- ``w1 (Eq. 9)`` and ``w1 (monotone)``: the paper's posterior of the imbalanced component on the z-scored gap
  (Eq. 5/6-9, `mmgap.method.fit_gaps`), as printed and in its monotone form;
- ``raw gap``: the gap itself (Eq. 5 or 6), i.e. every plain threshold on it at once, and ``gap > t``: one
  plain threshold (t = 0: the dominant branch is the more confident one);
- ``SMV deficit``: φ_a − φ_v, SMV's two-player Shapley contributions (`mmgap.baselines.smv`; φ_v − φ_a
  when visual dominates);
- ``Remix → weak``: 1 when Data Remixing would train the clip's non-dominant modality (visual on the embedded
  data) because it is the less confident one (`mmgap.baselines.remix.assign`), else 0;
- ``BSS difficulty``: BSS's difficulty (`mmgap.baselines.bss.difficulty`; its curriculum trains these last).

`grade` scores each by AUROC (scikit-learn) against ``imbalanced`` (tier ≠ clean), ``hard`` vs ``clean``
(learnable clips a method could pull back) and ``corrupt`` vs ``clean`` (clips that no rebalancing can fix),
with the mean score per tier; `over_seeds` gives mean ± std over seeds' warm-ups; `mmgap.plots.plot_score_rocs`
draws the ROC curves. AUROC 0.5 is chance, 1 a perfect ranking, below 0.5 an inverted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from mmgap.baselines import bss, remix, smv
from mmgap.baselines._sample import alone_logits
from mmgap.data.manifest import TIERS
from mmgap.gap import compute_gap, pick_dominant, zscore
from mmgap.method import fit_gaps
from mmgap.trainer import with_weights

SCORES = ("w1 (Eq. 9)", "w1 (monotone)", "raw gap", "gap > t", "SMV deficit", "Remix → weak", "BSS difficulty")
"""The per-sample scores, in the order of the table and the figure."""
CONTRASTS = {"imbalanced": ("clean", ("hard", "corrupt")), "hard vs clean": ("clean", ("hard",)),
             "corrupt vs clean": ("clean", ("corrupt",))}
"""AUROC contrasts: name -> (negative tier, positive tiers)."""


def per_sample_scores(out: dict[str, torch.Tensor], model: torch.nn.Module, cache: Any, gap: str = "prob",
                      family: str = "gmm", dominant: str = "audio", seed: int = 0,
                      threshold: float = 0.0) -> pd.DataFrame:
    """One row per clip of an eval pass (`Trainer.collect_outputs`): its cache row, tier and every score.

    ``model`` gives the shared head's bias (SMV's modality-alone predictions); ``dominant="auto"`` picks the
    more confident branch, as the paper's method does.
    """
    y, la, lv, fused = out["label"], out["logit_a"], out["logit_v"], out["fused"]
    if dominant == "auto":
        dominant = pick_dominant(la, lv, y)
    g = compute_gap(gap, la, lv, y, dominant=dominant)
    fit, *_ , w1, _ = fit_gaps(g, out["index"], cache, family, seed)
    _, w1_mono = fit.posterior(zscore(g)[0], tail="monotone")
    alone_a, alone_v = alone_logits(la, lv, model)
    phi_a, phi_v = smv.contributions(fused, alone_a, alone_v, y)
    to_audio = remix.assign(la, lv, int(la.shape[1])).numpy()  # True: Remix trains the clip's audio
    to_weak = ~to_audio if dominant == "audio" else to_audio
    rows = out["index"].numpy().astype(np.int64)
    tiers = getattr(cache, "visual_tier", None)
    g_np = g.detach().double().cpu().numpy()
    return pd.DataFrame({
        "row": rows,
        "tier": np.asarray(tiers)[rows] if tiers is not None else None,
        "w1 (Eq. 9)": np.asarray(w1, dtype=np.float64),
        "w1 (monotone)": np.asarray(w1_mono, dtype=np.float64),
        "raw gap": g_np,
        "gap > t": (g_np > threshold).astype(np.float64),
        "SMV deficit": smv.visual_deficit(phi_a, phi_v).double().numpy() * (1 if dominant == "audio" else -1),
        "Remix → weak": to_weak.astype(np.float64),
        "BSS difficulty": bss.difficulty(fused, la, lv, y).numpy(),
    })


def auroc(negative: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of a score separating ``positive`` from ``negative`` samples (NaN when either is empty)."""
    if len(negative) == 0 or len(positive) == 0:
        return float("nan")
    truth = np.r_[np.zeros(len(negative)), np.ones(len(positive))]
    return float(roc_auc_score(truth, np.r_[negative, positive]))


def grade(scores: pd.DataFrame, names: tuple[str, ...] = SCORES) -> pd.DataFrame:
    """Per score: AUROC of each contrast (`CONTRASTS`) and the mean score per tier (needs the ``tier`` column)."""
    if "tier" not in scores or scores["tier"].isna().all():
        raise ValueError("these clips carry no ground-truth tier: grading needs the embedded dataset")
    tier = scores["tier"].to_numpy()
    table = []
    for name in names:
        s = scores[name].to_numpy(dtype=np.float64)
        row: dict[str, Any] = {"score": name}
        for contrast, (neg, pos) in CONTRASTS.items():
            row[f"AUROC {contrast}"] = auroc(s[tier == neg], s[np.isin(tier, pos)])
        for t in TIERS:
            row[f"mean {t}"] = float(s[tier == t].mean()) if np.any(tier == t) else float("nan")
        table.append(row)
    return pd.DataFrame(table).set_index("score")


def warmup_scores(cache: Any, preset: Any, checkpoint: str | Path, seed: int = 0,
                  device: str = "auto") -> pd.DataFrame:
    """`per_sample_scores` of a warm-up checkpoint over the training set (one eval pass), with the preset's gap,
    mixture family and dominant modality."""
    tr = with_weights(cache, preset, checkpoint, seed, device)
    out = tr.collect_outputs("train")
    t = preset.train
    return per_sample_scores(out, tr.model, cache, gap=t.gap, family=t.mixture, dominant=t.dominant, seed=seed)


def over_seeds(graded: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Mean ± std over seeds of `grade` tables (one per seed's warm-up): cells "0.812 ± 0.031"."""
    if not graded:
        raise ValueError("over_seeds needs at least one seed's graded table")
    stack = pd.concat(graded.values(), keys=list(graded), names=["seed", "score"])
    mean = stack.groupby(level="score", sort=False).mean()
    std = stack.groupby(level="score", sort=False).std(ddof=1).fillna(0.0) if len(graded) > 1 else mean * 0.0
    return mean.combine(std, lambda m, s: m.map("{:.3f}".format) + " ± " + s.map("{:.3f}".format))


def best_score(graded: pd.DataFrame, contrast: str) -> tuple[str, float]:
    """The score with the highest AUROC on ``contrast`` and that AUROC (NaN rows skipped)."""
    col = graded[f"AUROC {contrast}"].dropna()
    if col.empty:
        raise ValueError(f"no score has an AUROC for {contrast!r} (a tier is missing)")
    return str(col.idxmax()), float(col.max())
