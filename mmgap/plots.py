"""The paper's figures from a run's history, with seaborn defaults, labelled axes (with units) and PNG output.

Inputs are plain data so that every notebook and script can call these functions:
- a *history* is a list of per-epoch dicts (or a DataFrame), e.g. ``{"epoch": 3, "train_loss_a": 1.2,
  "val_acc_v": 0.41, ...}``; which columns hold which branch is an argument with a documented default;
- a *mixture* is a fitted `mmgap.mixture.MixtureFit` or its ``to_dict()`` (``family``, ``weights``,
  ``means``, ``scales``, ``dof``, ``balanced``).

Each ``plot_*`` function returns the matplotlib Figure and, when ``path`` is given, also saves it as PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import FancyArrowPatch
from matplotlib.ticker import MaxNLocator
from scipy import stats

from mmgap import atomic

BRANCH_COLORS = {"fused": "C0", "audio": "C1", "visual": "C2"}
# Column names of mmgap.trainer's history rows: training CE per branch (Eq. 4) and accuracy per split.
DEFAULT_LOSS_KEYS = {"fused": "train_fusion", "audio": "train_uni_a", "visual": "train_uni_v"}
DEFAULT_ACC_KEYS = {"fused": "val_acc", "audio": "val_acc_a", "visual": "val_acc_v"}


def acc_keys(split: str) -> dict[str, str]:
    """History columns of fused / audio / visual accuracy on ``split`` ("train" | "val" | "test")."""
    return {"fused": f"{split}_acc", "audio": f"{split}_acc_a", "visual": f"{split}_acc_v"}
GAP_LABEL = "modality gap ĝ (z-score, units of σ_g)"


def set_style() -> None:
    """Seaborn's default theme (called once on import; call again after changing rcParams)."""
    sns.set_theme(context="notebook", style="whitegrid")


set_style()


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG (parent folders created); returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_name(path.name + ".png")
    return atomic.save_figure(fig, path, dpi=dpi, bbox_inches="tight")


def _integer_epochs(ax: plt.Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _finish(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def history_frame(history: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A history (list of per-epoch dicts) as a DataFrame with an ``epoch`` column (1-based if absent)."""
    df = history.copy() if isinstance(history, pd.DataFrame) else pd.DataFrame(list(history))
    if df.empty:
        raise ValueError("the history is empty: train for at least one epoch before plotting")
    if "epoch" not in df.columns:
        df["epoch"] = np.arange(1, len(df) + 1)
    return df


def _require(df: pd.DataFrame, keys: Mapping[str, str], what: str) -> dict[str, str]:
    present = {branch: key for branch, key in keys.items() if key in df.columns}
    if not present:
        raise KeyError(
            f"none of the {what} columns {list(keys.values())} is in the history "
            f"(it has: {sorted(map(str, df.columns))}); pass the right column names"
        )
    return present


def _as_percent(values: pd.Series) -> pd.Series:
    """Accuracies stored as fractions are shown in percent."""
    finite = values.dropna()
    return values * 100.0 if len(finite) and finite.max() <= 1.0 + 1e-9 else values


# --------------------------------------------------------------------------------------------- Fig. 1
def plot_branch_losses(
    runs: Mapping[str, pd.DataFrame | Sequence[Mapping[str, Any]]],
    loss_keys: Mapping[str, str] = DEFAULT_LOSS_KEYS,
    acc_keys: Mapping[str, str] | None = DEFAULT_ACC_KEYS,
    acc_label: str = "accuracy (%)",
    path: str | Path | None = None,
) -> plt.Figure:
    """Fig. 1: per-branch cross-entropy (Eq. 4) over epochs, one column per run, accuracy below if given."""
    if not runs:
        raise ValueError("no runs to plot")
    rows = 2 if acc_keys else 1
    fig, axes = plt.subplots(rows, len(runs), figsize=(4.6 * len(runs), 3.4 * rows), squeeze=False, sharey="row")
    for col, (name, history) in enumerate(runs.items()):
        df = history_frame(history)
        df["epoch"] = np.arange(1, len(df) + 1)  # epochs of this run, counted from 1 (as in Fig. 6)
        ax = axes[0, col]
        for branch, key in _require(df, loss_keys, "loss").items():
            ax.plot(df["epoch"], df[key], marker="o", ms=3, color=BRANCH_COLORS.get(branch), label=branch)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training cross-entropy (nats)")
        ax.legend(title="branch")
        _integer_epochs(ax)
        if acc_keys:
            ax = axes[1, col]
            for branch, key in _require(df, acc_keys, "accuracy").items():
                ax.plot(df["epoch"], _as_percent(df[key]), marker="o", ms=3, color=BRANCH_COLORS.get(branch),
                        label=branch)
            ax.set_xlabel("epoch")
            ax.set_ylabel(acc_label)
            ax.legend(title="branch")
            _integer_epochs(ax)
    return _finish(fig, path)


# --------------------------------------------------------------------------------------------- mixtures
def _mix_get(mix: Any, name: str, default: Any = None) -> Any:
    if isinstance(mix, Mapping):
        return mix.get(name, default)
    return getattr(mix, name, default)


def mixture_params(mix: Any) -> dict[str, Any]:
    """``family``, ``weights``, ``means``, ``scales``, ``dof`` and ``balanced`` of a fit or its dict."""
    weights = np.asarray(_mix_get(mix, "weights"), dtype=float)
    means = np.asarray(_mix_get(mix, "means"), dtype=float)
    scales = np.asarray(_mix_get(mix, "scales"), dtype=float)
    if weights.shape != (2,) or means.shape != (2,) or scales.shape != (2,):
        raise ValueError(
            f"expected a 2-component mixture with weights, means and scales of length 2, got "
            f"{weights.shape}, {means.shape}, {scales.shape}"
        )
    dof = _mix_get(mix, "dof")
    family = str(_mix_get(mix, "family", "gmm"))
    balanced = _mix_get(mix, "balanced", None)
    if balanced is None:  # fall back to the paper's rule: the heavier component is the balanced one
        balanced = int(np.argmax(weights))
    return {
        "family": family,
        "weights": weights,
        "means": means,
        "scales": scales,
        "dof": None if dof is None else np.broadcast_to(np.asarray(dof, dtype=float), (2,)),
        "balanced": int(balanced),
    }


def component_densities(x: np.ndarray, mix: Any) -> np.ndarray:
    """π_k · p_k(x) of both components of Eq. 8, shape [2, len(x)] (Gaussian, Student-t or Laplace)."""
    p = mixture_params(mix)
    x = np.asarray(x, dtype=float)
    out = np.empty((2, x.size))
    for k in range(2):
        loc, scale = p["means"][k], p["scales"][k]
        if p["family"] == "gmm":
            pdf = stats.norm.pdf(x, loc, scale)
        elif p["family"] == "smm":
            if p["dof"] is None:
                raise ValueError("a Student-t mixture needs 'dof' (degrees of freedom per component)")
            pdf = stats.t.pdf(x, p["dof"][k], loc, scale)
        elif p["family"] == "lmm":
            pdf = stats.laplace.pdf(x, loc, scale)
        else:
            raise ValueError(f"unknown mixture family {p['family']!r}: expected 'gmm', 'smm' or 'lmm'")
        out[k] = p["weights"][k] * pdf
    return out


# --------------------------------------------------------------------------------------------- Fig. 3
def plot_gap_mixture(
    g_hat: np.ndarray,
    mix: Any,
    flags: np.ndarray | None = None,
    bins: int = 60,
    ax: plt.Axes | None = None,
    title: str | None = None,
    xlabel: str = GAP_LABEL,
    path: str | Path | None = None,
) -> plt.Figure:
    """Fig. 3: histogram of the gaps with both fitted components (Eq. 8) and their sum; balanced one labelled.

    With ground truth (embedded dataset: visual tiers, or bool imbalance flags) the histogram is stacked by group.
    """
    g_hat = np.asarray(g_hat, dtype=float).ravel()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
    else:
        fig = ax.figure
    p = mixture_params(mix)
    edges = np.histogram_bin_edges(g_hat, bins=bins)
    if flags is not None:
        groups = ground_truth_groups(flags, g_hat.size)
        # Densities relative to all clips so that the stacked bars integrate to one like the mixture.
        w = np.full(g_hat.size, 1.0 / (g_hat.size * np.diff(edges)[0]))
        ax.hist([g_hat[m] for m, _, _ in groups], bins=edges, weights=[w[m] for m, _, _ in groups], stacked=True,
                color=[c for _, _, c in groups], alpha=0.55, label=[f"clips: {t}" for _, t, _ in groups])
    else:
        ax.hist(g_hat, bins=edges, density=True, color="0.70", alpha=0.6, label="all clips")
    x = np.linspace(edges[0] - 0.5, edges[-1] + 0.5, 400)
    dens = component_densities(x, p)
    b = p["balanced"]
    for k in (b, 1 - b):  # the balanced component first in the legend
        role = "balanced (k=0)" if k == b else "imbalanced (k=1)"
        ax.plot(x, dens[k], lw=2, color="C0" if k == b else "C3", ls="-" if k == b else "--",
                label=f"{role}: π={p['weights'][k]:.2f}, μ={p['means'][k]:.2f}")
    ax.plot(x, dens.sum(0), lw=1.2, color="k", label=f"mixture ({p['family'].upper()})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density (per unit ĝ)")
    ax.set_title(title or "Modality gap after warm-up with the fitted 2-component mixture")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_posteriors(
    g_hat: np.ndarray,
    w1: np.ndarray,
    flags: np.ndarray | None = None,
    path: str | Path | None = None,
    w1_monotone: np.ndarray | None = None,
) -> plt.Figure:
    """Eq. 9: posterior w1 against ĝ (and, optionally, the monotone form), plus the ROC on the ground truth.

    `flags`: ground-truth imbalance flags (bool) or visual tiers (clean / hard / corrupt, embedded data);
    the ROC is computed against ``imbalanced`` (flagged, or tier != clean).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    g_hat, w1 = np.asarray(g_hat, float).ravel(), np.asarray(w1, float).ravel()
    ncols = 2 if flags is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.6 * ncols, 3.9), squeeze=False)
    ax = axes[0, 0]
    groups = ground_truth_groups(flags, g_hat.size)
    for mask, label, colour in groups:
        ax.scatter(g_hat[mask], w1[mask], s=6, alpha=0.55, color=colour, label=f"{label}: Eq. 9")
    if len(groups) > 1:  # the points share one curve, so each group also gets its own strip of ticks below it
        for i, (mask, label, colour) in enumerate(groups):
            y = -0.09 * (i + 1)
            ax.scatter(g_hat[mask], np.full(int(mask.sum()), y), s=14, marker="|", alpha=0.35, color=colour)
            ax.text(1.01, y, label, transform=ax.get_yaxis_transform(), fontsize=7, va="center", color=colour)
        ax.set_ylim(-0.09 * len(groups) - 0.06, 1.05)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    curves = {"Eq. 9": w1}
    if w1_monotone is not None:
        w1m = np.asarray(w1_monotone, float).ravel()
        order = np.argsort(g_hat, kind="stable")
        ax.plot(g_hat[order], w1m[order], color="k", lw=1.5, label="monotone form (w₁ held beyond μ₁)")
        curves["monotone"] = w1m
    ax.set_xlabel(GAP_LABEL)
    ax.set_ylabel("posterior w₁ (probability)")
    ax.set_title("Posterior of the imbalanced component (Eq. 9)")
    ax.legend(fontsize=7)
    if flags is not None:
        ax = axes[0, 1]
        truth = _imbalanced(flags)
        if truth.all() or not truth.any():
            ax.text(0.5, 0.5, "ROC undefined: all flags equal", ha="center", va="center")
        else:
            for (name, score), colour in zip(curves.items(), ("C3", "k"), strict=False):
                fpr, tpr, _ = roc_curve(truth, score)
                ax.plot(fpr, tpr, color=colour, label=f"w₁ ({name}), AUROC = {roc_auc_score(truth, score):.3f}")
            ax.plot([0, 1], [0, 1], ls=":", color="0.5", label="chance")
            ax.legend(fontsize=8)
        ax.set_xlabel("false positive rate (fraction)")
        ax.set_ylabel("true positive rate (fraction)")
        ax.set_title("Does w₁ find the imbalanced clips?")
    return _finish(fig, path)


TIER_COLOURS = {"clean": "0.55", "hard": "C1", "corrupt": "C3"}
"""Colours of the embedded data's ground-truth visual tiers in every figure."""


def _imbalanced(flags: np.ndarray) -> np.ndarray:
    """Ground-truth imbalance as bool: the flags themselves, or tier != "clean" for visual tiers."""
    arr = np.asarray(flags).ravel()
    return arr != "clean" if arr.dtype.kind in "US" else arr.astype(bool)


def ground_truth_groups(flags: np.ndarray | None, n: int) -> list[tuple[np.ndarray, str, str]]:
    """(mask, label, colour) per ground-truth group: visual tiers, imbalance flags, or all clips."""
    if flags is None:
        return [(np.ones(n, bool), "all clips", "C0")]
    arr = np.asarray(flags).ravel()
    if arr.shape != (n,):
        raise ValueError(f"flags has {arr.size} entries for {n} gaps")
    if arr.dtype.kind in "US":
        return [(arr == t, f"{t} picture", c) for t, c in TIER_COLOURS.items() if np.any(arr == t)]
    arr = arr.astype(bool)
    return [(~arr, "not imbalanced", "0.55"), (arr, "imbalanced (ground truth)", "C3")]


SCORE_STYLES = ("-", "--", "-.", ":")


def plot_score_rocs(
    scores: pd.DataFrame,
    names: Sequence[str],
    panels: Sequence[tuple[str, str, tuple[str, ...]]] = (("hard vs clean", "clean", ("hard",)),
                                                            ("corrupt vs clean", "clean", ("corrupt",))),
    path: str | Path | None = None,
) -> plt.Figure:
    """ROC curves of several per-sample scores on one axis per contrast (default: hard vs clean, corrupt vs
    clean side by side), AUROC in the legend. ``scores``: one row per clip, a ``tier`` column and one column per
    name (higher = more imbalanced; `mmgap.sample_scores.per_sample_scores`)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    tier = scores["tier"].to_numpy()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.6), squeeze=False)
    for ax, (title, neg, pos) in zip(axes[0], panels, strict=True):
        keep = (tier == neg) | np.isin(tier, pos)
        truth = np.isin(tier[keep], pos)
        if truth.all() or not truth.any():
            ax.text(0.5, 0.5, f"ROC undefined: no {'/'.join(pos)} or {neg} clips", ha="center", va="center")
        else:
            for i, name in enumerate(names):
                s = scores[name].to_numpy(dtype=float)[keep]
                fpr, tpr, _ = roc_curve(truth, s)
                ax.plot(fpr, tpr, color=f"C{i}", ls=SCORE_STYLES[i % len(SCORE_STYLES)], lw=1.6,
                        label=f"{name}: {roc_auc_score(truth, s):.3f}")
            ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1, label="chance: 0.500")
            ax.legend(fontsize=7, title="score: AUROC", title_fontsize=7, loc="lower right")
        ax.set_xlabel(f"false positive rate (of {neg} clips)")
        ax.set_ylabel(f"true positive rate (of {'/'.join(pos)} clips)")
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.suptitle("Which per-sample score finds the imbalanced clips? (ROC, AUROC in the legend)")
    fig.tight_layout()
    return _finish(fig, path)


# --------------------------------------------------------------------------------------------- Fig. 4
def tsne_embed(features: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (scikit-learn) of [N, d] features; perplexity capped below N/3 for small N."""
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    if len(x) < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {len(x)}")
    perp = float(min(perplexity, max(2.0, (len(x) - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)


def plot_tsne(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    max_points: int = 400,
    seed: int = 0,
    path: str | Path | None = None,
) -> plt.Figure:
    """Fig. 4: t-SNE of each feature set (e.g. audio, visual, fused) on the same subsample, coloured by class."""
    labels = np.asarray(labels).ravel()
    n = len(labels)
    for name, f in features.items():
        if len(f) != n:
            raise ValueError(f"features {name!r} have {len(f)} rows for {n} labels")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(max_points, n), replace=False))
    fig, axes = plt.subplots(1, len(features), figsize=(4.4 * len(features), 4.2), squeeze=False)
    palette = sns.color_palette("tab10" if labels.max() < 10 else "husl", int(labels.max()) + 1)
    for ax, (name, f) in zip(axes[0], features.items(), strict=True):
        emb = tsne_embed(np.asarray(f)[idx], seed=seed)
        for c in np.unique(labels[idx]):
            m = labels[idx] == c
            ax.scatter(emb[m, 0], emb[m, 1], s=8, color=palette[int(c)],
                       label=class_names[int(c)] if class_names is not None else str(int(c)))
        ax.set_title(f"{name} features")
        ax.set_xlabel("t-SNE dimension 1 (a.u.)")
        ax.set_ylabel("t-SNE dimension 2 (a.u.)")
    axes[0, -1].legend(title="class", fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _finish(fig, path)


# --------------------------------------------------------------------------------------------- Fig. 5
def _hist_from(value: Any, edges: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(density, edges) from raw gaps or a stored histogram ``{"counts": ..., "edges": ...}``."""
    if isinstance(value, Mapping):
        counts = np.asarray(value.get("counts", value.get("hist")), dtype=float)
        e = np.asarray(value.get("edges", value.get("bin_edges")), dtype=float)
        if counts.ndim != 1 or e.shape != (counts.size + 1,):
            raise ValueError("a stored histogram needs 'counts' [B] and 'edges' [B+1]")
        return counts / max(counts.sum(), 1.0) / np.diff(e), e
    g = np.asarray(value, dtype=float).ravel()
    dens, e = np.histogram(g, bins=edges if edges is not None else 50, density=True)
    return dens, e


def plot_gap_evolution(
    gaps: Mapping[int, Any],
    mixtures: Mapping[int, Any] | None = None,
    xlabel: str = "modality gap g (raw, probability difference)",
    path: str | Path | None = None,
) -> plt.Figure:
    """Fig. 5: gap distribution per adaptive epoch (colour = epoch) and the mixture's π, μ across epochs.

    ``gaps`` maps e -> raw gaps of the training set after e adaptive epochs (or a stored histogram);
    ``mixtures`` maps e -> the fit on those gaps (the one used to train epoch e+1). The paper expects the imbalanced
    weight π₁ to shrink and μ₁ to
    move towards zero.
    """
    if not gaps:
        raise ValueError("no epochs to plot: the adaptive history holds no gaps")
    epochs = sorted(gaps)
    raw = [np.asarray(gaps[e], float).ravel() for e in epochs if not isinstance(gaps[e], Mapping)]
    edges = np.histogram_bin_edges(np.concatenate(raw), bins=50) if raw else None
    ncols = 3 if mixtures else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.0 * ncols, 3.8), squeeze=False)
    ax = axes[0, 0]
    cmap = plt.get_cmap("viridis")
    lo, hi = np.inf, -np.inf
    for i, e in enumerate(epochs):
        dens, ed = _hist_from(gaps[e], edges)
        centers = 0.5 * (ed[:-1] + ed[1:])
        ax.plot(centers, dens, color=cmap(i / max(len(epochs) - 1, 1)), lw=1.5, label=f"after {e} epochs")
        occupied = np.flatnonzero(dens > 0)
        if occupied.size:
            lo, hi = min(lo, ed[occupied[0]]), max(hi, ed[occupied[-1] + 1])
    if np.isfinite(lo) and hi > lo:
        pad = 0.05 * (hi - lo)
        ax.set_xlim(lo - pad, hi + pad)  # stored histograms span a fixed range; show where the data are
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density (per unit g)")
    ax.set_title("Gap distribution across adaptive epochs")
    ax.legend(fontsize=7, ncol=2)
    if mixtures:
        m_epochs = sorted(mixtures)
        params = [mixture_params(mixtures[e]) for e in m_epochs]
        imb = [1 - p["balanced"] for p in params]
        bal = [p["balanced"] for p in params]
        ax = axes[0, 1]
        ax.plot(m_epochs, [p["weights"][k] for p, k in zip(params, bal, strict=True)], "o-", color="C0",
                label="π₀ balanced")
        ax.plot(m_epochs, [p["weights"][k] for p, k in zip(params, imb, strict=True)], "s--", color="C3",
                label="π₁ imbalanced")
        ax.set_xlabel("adaptive epochs completed")
        _integer_epochs(ax)
        ax.set_ylabel("mixture weight (fraction)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
        ax.set_title("Component weights")
        ax = axes[0, 2]
        ax.plot(m_epochs, [p["means"][k] for p, k in zip(params, bal, strict=True)], "o-", color="C0",
                label="μ₀ balanced")
        ax.plot(m_epochs, [p["means"][k] for p, k in zip(params, imb, strict=True)], "s--", color="C3",
                label="μ₁ imbalanced")
        ax.axhline(0.0, color="0.5", lw=0.8, ls=":")
        ax.set_xlabel("adaptive epochs completed")
        _integer_epochs(ax)
        ax.set_ylabel("component mean (units of the gap axis)")
        ax.legend(fontsize=8)
        ax.set_title("Component means")
    return _finish(fig, path)


def gap_evolution_from_history(
    history: pd.DataFrame | Sequence[Mapping[str, Any]], stage: str = "adaptive"
) -> tuple[dict[int, dict[str, np.ndarray]], dict[int, dict[str, Any]]]:
    """Per refit epoch of ``stage``: the gap histogram and the mixture, both converted to RAW gap units.

    mmgap.method stores, at each refit, the histogram of ĝ on fixed z-score bins (``gap_hist``,
    ``gap_hist_edges``), the mixture fitted on ĝ (``mixture``) and the z-score's ``gap_mean``, ``gap_std``
    (Eq. 7). Undoing Eq. 7 (g = μ_g + σ_g·ĝ) puts every epoch on one axis, so a distribution that moves
    towards zero is visible (in z-units every epoch would be centred by construction).
    Returns ``(gaps, mixtures)`` keyed by the stage's epoch (0-based), ready for `plot_gap_evolution`.
    """
    df = history_frame(history)
    if "stage" in df.columns:
        df = df[df["stage"] == stage]
    if "refitted" in df.columns:
        df = df[df["refitted"].fillna(False).astype(bool)]
    if df.empty or "gap_hist" not in df.columns:
        raise ValueError(f"the history has no refit rows of stage {stage!r} with a 'gap_hist': run the adaptive stage")
    gaps: dict[int, dict[str, np.ndarray]] = {}
    mixtures: dict[int, dict[str, Any]] = {}
    for _, row in df.iterrows():
        e = int(row["stage_epoch"]) if "stage_epoch" in row else int(row["epoch"])
        mean, std = float(row["gap_mean"]), float(row["gap_std"])
        gaps[e] = {"counts": np.asarray(row["gap_hist"], float),
                   "edges": mean + std * np.asarray(row["gap_hist_edges"], float)}
        mix = dict(row["mixture"])
        mix["means"] = [mean + std * m for m in mix["means"]]
        mix["scales"] = [std * s for s in mix["scales"]]
        mixtures[e] = mix
    return gaps, mixtures


# --------------------------------------------------------------------------------------------- Fig. 6
def plot_stage_accuracy(
    stages: Mapping[str, pd.DataFrame | Sequence[Mapping[str, Any]]],
    acc_keys: Mapping[str, str] = DEFAULT_ACC_KEYS,
    acc_label: str = "accuracy (%)",
    path: str | Path | None = None,
    title: str = "Unimodal and fused accuracy across both stages",
) -> plt.Figure:
    """Fig. 6: fused, audio and visual accuracy over consecutive stages, stage boundaries marked."""
    if not stages:
        raise ValueError("no stages to plot")
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    offset = 0
    parts = []
    for i, (stage, history) in enumerate(stages.items()):
        df = history_frame(history)
        df = df.assign(global_epoch=np.arange(offset + 1, offset + len(df) + 1), stage=stage)
        parts.append(df)
        if i > 0:
            ax.axvline(offset + 0.5, color="k", ls="--", lw=1)
        ax.text(offset + 0.5 + len(df) / 2, 1.01, stage, transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=9)
        offset += len(df)
    full = pd.concat(parts, ignore_index=True)
    for branch, key in _require(full, acc_keys, "accuracy").items():
        ax.plot(full["global_epoch"], _as_percent(full[key]), marker="o", ms=3, color=BRANCH_COLORS.get(branch),
                label=branch)
    ax.set_xlabel("epoch (both stages, consecutive)")
    ax.set_ylabel(acc_label)
    _integer_epochs(ax)
    ax.set_title(title, pad=18)
    ax.legend(title="branch")
    return _finish(fig, path)


def plot_arm_comparison(
    warmup: pd.DataFrame | Sequence[Mapping[str, Any]],
    arms: Mapping[str, pd.DataFrame | Sequence[Mapping[str, Any]]],
    panels: Mapping[str, str],
    acc_label: str = "test accuracy (%)",
    path: str | Path | None = None,
    title: str = "From one warm-up, two arms",
    warmup_shown: int | None = 3,
) -> plt.Figure:
    """One panel per metric (`panels`: title -> history key): the shared warm-up, then each arm's epochs.

    The warm-up is drawn once in grey; every arm starts from its last epoch, so a difference between the
    arms is what their losses did after the same starting point. Each panel is zoomed to the arms and the last
    `warmup_shown` warm-up epochs (None: the whole warm-up; Fig. 6 shows it all), where the differences are.
    """
    if not arms:
        raise ValueError("no arms to plot")
    warm = history_frame(warmup)
    n = len(warm)
    # each panel on its own zoomed axis: the arms differ by a few points, which a shared 0-100 scale hides
    ncol = min(3, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.6 * nrow), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (name, key) in zip(axes.flat, panels.items(), strict=False):
        if key not in warm.columns:
            raise KeyError(f"history has no {key!r} column (panel {name!r})")
        ax.plot(np.arange(1, n + 1), _as_percent(warm[key]), color="0.5", marker="o", ms=2, label="warm-up")
        for i, (arm, rows) in enumerate(arms.items()):
            df = history_frame(rows)
            x = np.arange(n, n + len(df) + 1)
            y = np.r_[_as_percent(warm[key]).iloc[-1], _as_percent(df[key])]
            ax.plot(x, y, marker="o", ms=2, color=f"C{i}", label=arm)
        ax.axvline(n + 0.5, color="k", ls="--", lw=0.8)
        if warmup_shown is not None:  # zoom: x from the last warm-up epochs, y to what is visible there
            first = max(1, n - warmup_shown + 1)
            shown = [_as_percent(warm[key]).iloc[first - 1:]]
            shown += [_as_percent(history_frame(rows)[key]) for rows in arms.values()]
            lo, hi = float(min(v.min() for v in shown)), float(max(v.max() for v in shown))
            pad = max(0.5, 0.08 * (hi - lo))
            ax.set_xlim(first - 0.4, n + max(len(history_frame(r)) for r in arms.values()) + 0.4)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(name)
        ax.set_xlabel("epoch (both stages, counted from 1)")
        ax.set_ylabel(acc_label)
        _integer_epochs(ax)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


# --------------------------------------------------------------------------------------------- clips
def show_clip(
    frames: np.ndarray,
    spectrogram: np.ndarray,
    waveform: np.ndarray | None = None,
    sample_rate: int | None = None,
    title: str = "",
    spec_label: str = "log power (a.u.)",
    hop_s: float | None = None,
    freq_label: str = "frequency bin",
    path: str | Path | None = None,
) -> tuple[plt.Figure, Any]:
    """A clip's frames (uint8 [S, H, W, 3]) and its spectrogram [F, T]; with a waveform, also an audio player.

    ``hop_s`` (seconds between spectrogram columns) puts the time axis in seconds.

    Returns ``(figure, IPython.display.Audio or None)``; display the player as a cell's last expression.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4:
        raise ValueError(f"frames must be [S, H, W, 3] (or one [H, W, 3]), got shape {frames.shape}")
    spec = np.asarray(spectrogram, dtype=float)
    spec = spec.reshape(spec.shape[-2], spec.shape[-1])
    n = frames.shape[0]
    fig, axes = plt.subplots(1, n + 1, figsize=(2.2 * n + 4.5, 2.6),
                             gridspec_kw={"width_ratios": [1] * n + [2.2]})
    for i in range(n):
        axes[i].imshow(frames[i])
        axes[i].set_title(f"frame {i}", fontsize=9)
        axes[i].axis("off")
    ax = axes[-1]
    extent = None if hop_s is None else (0.0, spec.shape[1] * hop_s, -0.5, spec.shape[0] - 0.5)
    im = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=extent)
    ax.set_xlabel("time (s)" if hop_s is not None else "time frame (hop)")
    ax.set_ylabel(freq_label)
    ax.grid(False)
    fig.colorbar(im, ax=ax, label=spec_label)
    if title:
        fig.suptitle(title, fontsize=10)
    _finish(fig, path)
    player = audio_player(waveform, sample_rate) if waveform is not None else None
    return fig, player


def audio_player(waveform: np.ndarray, sample_rate: int | None) -> Any:
    """An ``IPython.display.Audio`` player for a mono or [C, N] waveform (None outside IPython)."""
    if sample_rate is None:
        raise ValueError("an audio player needs the waveform's sample_rate in Hz")
    try:
        from IPython.display import Audio
    except ImportError:  # pragma: no cover - IPython ships with the notebooks' dependencies
        return None
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim == 2 and wave.shape[0] > wave.shape[1]:
        wave = wave.T  # IPython wants [channels, samples]
    silent = not np.any(np.abs(wave) > 0)  # IPython's normalisation divides by the peak
    return Audio(wave, rate=int(sample_rate), normalize=not silent)


# --------------------------------------------------------------------------------------------- the lesson
def plot_tier_gaps(
    ends: Mapping[str, Mapping[str, float]],
    tiers: Sequence[str] = ("clean", "hard", "corrupt"),
    ylabel: str = "mean raw gap g",
    path: str | Path | None = None,
) -> plt.Figure:
    """Mean gap per visual tier at each end point (e.g. warm-up, adaptive end, control end): a dot per end point.

    `ends` maps a name to ``{tier: mean gap}``. The y axis is zoomed to the values (the differences are small).
    """
    if not ends:
        raise ValueError("no end points to plot")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    x = np.arange(len(tiers))
    width = 0.7 / len(ends)
    for i, (name, per_tier) in enumerate(ends.items()):
        ys = [per_tier.get(t, np.nan) for t in tiers]
        ax.plot(x + (i - (len(ends) - 1) / 2) * width, ys, marker="o", ls="none", ms=8, color=f"C{i}", label=name)
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xticks(x, [f"{t} pictures" for t in tiers])
    ax.set_xlabel("visual tier (ground truth)")
    ax.set_ylabel(ylabel)
    ax.set_title("Gap per tier: where each arm ends")
    ax.legend(fontsize=8, loc="best")
    return _finish(fig, path)


def plot_method_dots(
    rows: pd.DataFrame,
    families: Mapping[str, str],
    family_order: Sequence[str],
    metrics: Mapping[str, str] | None = None,
    path: str | Path | None = None,
    title: str = "Table II on this dataset: mean ± 1 std over seeds",
) -> plt.Figure:
    """Table II as a dot plot: one panel per metric, one row per method grouped by family, seeds as faint dots.

    `rows` holds one row per (method, seed) with ``method``, ``label`` and the metric columns (fractions);
    `families` maps a method to its group, drawn in `family_order` (a method of no listed family goes last).
    Each panel's axis is zoomed to its own values; a metric absent from `rows` (or all NaN) is skipped.
    """
    metrics = dict(metrics or {"acc": "fused accuracy (%)", "acc_v_hard": "visual accuracy, hard tier (%)"})
    metrics = {k: v for k, v in metrics.items() if k in rows and pd.to_numeric(rows[k], errors="coerce").notna().any()}
    if rows.empty or not metrics:
        raise ValueError("no rows or no metric to plot")
    rank = {f: i for i, f in enumerate(family_order)}
    first = list(dict.fromkeys(rows["method"]))
    methods = sorted(first, key=lambda m: (rank.get(families.get(m, ""), len(rank)), first.index(m)))
    labels = {m: str(rows.loc[rows["method"] == m, "label"].iloc[0]) for m in methods}
    y = {m: i for i, m in enumerate(methods)}
    fam_colors = {f: f"C{i}" for i, f in enumerate([*family_order, "other"])}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics) + 1.6, 0.36 * len(methods) + 1.6),
                             squeeze=False, sharey=True)
    for ax, (col, name) in zip(axes[0], metrics.items(), strict=True):
        for m in methods:
            vals = 100.0 * pd.to_numeric(rows.loc[rows["method"] == m, col], errors="coerce").dropna()
            if vals.empty:
                continue
            color = fam_colors.get(families.get(m, "other"), "C7")
            ax.plot(vals, np.full(len(vals), y[m]), "o", ms=3, alpha=0.35, color=color)
            sd = float(vals.std()) if len(vals) > 1 else 0.0
            ax.errorbar(float(vals.mean()), y[m], xerr=sd, fmt="o", ms=7, capsize=3, color=color)
        ax.set_title(name)
        ax.set_xlabel("test accuracy (%)")
        ax.grid(axis="y", visible=False)
    ax0 = axes[0, 0]
    ax0.set_yticks(list(y.values()), [labels[m] for m in methods])
    ax0.invert_yaxis()
    prev = None
    for m in methods:  # a line between families, the family named at its first row
        fam = families.get(m, "other")
        if fam != prev:
            for ax in axes[0]:
                if prev is not None:
                    ax.axhline(y[m] - 0.5, color="0.6", lw=0.8)
            ax0.annotate(fam, xy=(0, y[m]), xycoords=("axes fraction", "data"), xytext=(-4, 9),
                         textcoords="offset points", ha="right", fontsize=8, style="italic",
                         color=fam_colors.get(fam, "C7"))
            prev = fam
    fig.suptitle(title)
    return _finish(fig, path)


PIPELINE_STEPS: tuple[tuple[str, str], ...] = (
    ("clip", "frames + audio"),
    ("encoders", "$\\varphi^a, \\varphi^v$ (Eq. 1)"),
    ("branch logits", "$s^a, s^v$: true-class\nconfidences (Eq. 2, 5)"),
    ("gap", "$g = s^a - s^v$ (Eq. 5)\nor KL form (Eq. 6)"),
    ("z-score", "$\\hat g$ (Eq. 7)"),
    ("2-component\nmixture", "$\\pi_k, \\mu_k, \\sigma_k$ (Eq. 8)"),
    ("posteriors", "$w_0, w_1$ (Eq. 9)"),
    ("adaptive loss",
     "$\\alpha w_0 L_f + \\lambda_t(\\beta g^2$\n$+ \\gamma w_1 (g - \\mu_0)^2 + L_a + L_v)$\n(Eq. 11)"),
)
"""The boxes of the paper's Fig. 2 (the pipeline), in order: name and what it computes."""


def plot_pipeline(steps: Sequence[tuple[str, str]] = PIPELINE_STEPS, path: str | Path | None = None) -> plt.Figure:
    """The paper's Fig. 2 as a flow of boxes: the warm-up model's outputs to the adaptive loss, with the refit loop."""
    fig, ax = plt.subplots(figsize=(1.75 * len(steps), 2.6))
    ax.set_xlim(-0.1, len(steps) - 0.1)
    ax.set_ylim(-1.35, 0.8)
    ax.axis("off")
    for i, (name, what) in enumerate(steps):
        ax.text(i + 0.4, 0.35, name, ha="center", va="center", fontsize=9, weight="bold",
                bbox={"boxstyle": "round,pad=0.4", "fc": "#e8f0fa", "ec": "#4c72b0"})
        ax.text(i + 0.4, -0.3, what, ha="center", va="top", fontsize=7.5)
        if i < len(steps) - 1:
            ax.add_patch(FancyArrowPatch((i + 0.78, 0.35), (i + 1.02, 0.35), arrowstyle="-|>", mutation_scale=12,
                                         lw=1.2, color="0.2"))
    # the alternating refit: the loss trains the encoders, whose new gaps refit the mixture
    ax.add_patch(FancyArrowPatch((len(steps) - 0.6, -1.02), (1.4, -1.02), arrowstyle="-|>", mutation_scale=12,
                                 lw=1.0, color="0.4"))
    ax.text((len(steps) - 0.6 + 1.4) / 2, -1.1, "train the encoders, then refit the mixture on the new gaps "
            "(every refit_every epochs, an eval pass over the training set)", ha="center", va="top", fontsize=8,
            color="0.3")
    ax.set_title("The method (the paper's Fig. 2): from the branches' confidences to the adaptive loss", fontsize=10)
    return _finish(fig, path)
