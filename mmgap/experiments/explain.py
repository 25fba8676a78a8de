"""Why the adaptive loss (Eq. 11) does or does not help on a dataset: the numbers, assembled from one warm-up.

Notebook 04 (one seed) and 05 (over seeds) print these numbers and the reading they imply; nothing here is
typed in: every sentence is chosen by a threshold on a measured value.

- `branch_confidence`: the true-class confidences s^a, s^v (Eq. 5) per visual tier; a saturated audio branch
  (s^a near 1) makes the prob gap almost 1 - s^v;
- `posterior_by_tier`: where the mixture's weight w1 (Eq. 9) lands: on clips a pull can help (`hard`) or on
  clips nothing can rebalance (`corrupt`, no digit);
- `balanced_location`: where the balanced component sits (μ0, Eq. 8) against the peak of the z-scored
  gaps nearest a raw gap of 0 (Eq. 7), and the pull target μ0 in raw units (Eq. 11);
- `penalty_sides`: both sides of the penalty's gradient (Eq. 12 differentiated), measured on a batch;
- `accuracy_noise`: the binomial standard error of one test accuracy;
- `why_not_here`: all of it on a warm-up model, with `Explanation.lines()` the reading.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import gaussian_kde

from mmgap.config import Preset
from mmgap.data.manifest import TIERS
from mmgap.experiments.runs import ensure_warmup
from mmgap.experiments.settings import AdaptiveSetting, setting_warmup_preset
from mmgap.gap import compute_gap, pick_dominant, true_class_prob, zscore_point
from mmgap.losses import gap_penalty
from mmgap.method import fit_gaps
from mmgap.trainer import Trainer, with_weights

SATURATED = 0.99
"""A true-class confidence above this is saturated: its softmax has (almost) no gradient left (Eq. 5)."""


def accuracy_noise(acc: float, n: int) -> float:
    """Binomial standard error of a test accuracy `acc` (a fraction) measured on `n` clips, in points."""
    if n < 1:
        raise ValueError(f"n={n}: an accuracy needs at least one test clip")
    if not 0.0 <= acc <= 1.0:
        raise ValueError(f"acc={acc} must be a fraction in [0, 1]")
    return 100.0 * math.sqrt(acc * (1.0 - acc) / n)


def _groups(tiers: np.ndarray | None, n: int) -> list[tuple[str, np.ndarray]]:
    """('all', every row) then one (tier, mask) per ground-truth tier present."""
    out = [("all", np.ones(n, dtype=bool))]
    if tiers is not None:
        tiers = np.asarray(tiers)
        out += [(t, tiers == t) for t in TIERS if np.any(tiers == t)]
    return out


def branch_confidence(logit_a: torch.Tensor, logit_v: torch.Tensor, label: torch.Tensor,
                      tiers: np.ndarray | None = None, threshold: float = SATURATED) -> pd.DataFrame:
    """Per tier: clips, median s^a and s^v (Eq. 5's true-class confidences), share with s^a > `threshold`."""
    s_a = true_class_prob(logit_a, label).double().numpy()
    s_v = true_class_prob(logit_v, label).double().numpy()
    rows = [{"tier": name, "clips": int(m.sum()), "median s^a": float(np.median(s_a[m])),
             "median s^v": float(np.median(s_v[m])), f"share s^a > {threshold}": float((s_a[m] > threshold).mean()),
             "median 1 − s^v": float(np.median(1.0 - s_v[m])),
             "median gap s^a − s^v": float(np.median(s_a[m] - s_v[m]))}
            for name, m in _groups(tiers, len(s_a))]
    return pd.DataFrame(rows)


def posterior_by_tier(w1: np.ndarray, tiers: np.ndarray | None = None) -> pd.DataFrame:
    """Per tier: clips, share flagged imbalanced (w1 > 0.5, Eq. 9), mean w1, and its share of all w1 mass."""
    w1 = np.asarray(w1, dtype=np.float64)
    total = float(w1.sum()) or 1.0
    return pd.DataFrame([{"tier": name, "clips": int(m.sum()), "share flagged (w1 > 0.5)": float((w1[m] > 0.5).mean()),
                          "mean w1": float(w1[m].mean()), "share of all w1": float(w1[m].sum() / total)}
                         for name, m in _groups(tiers, len(w1))])


def balanced_peak(g_hat: np.ndarray, zero_at: float, grid: int = 801, min_height: float = 0.05) -> float:
    """The mode of the z-scored gaps nearest `zero_at` (a raw gap of 0): the peak the balanced clips form.

    Modes are the local maxima of a Gaussian KDE (Scott's bandwidth) on a grid, at least `min_height` of the
    highest; the one nearest a raw gap of 0 is the balanced peak, as the mixture names its balanced component.
    """
    x = np.asarray(g_hat, dtype=np.float64)
    if x.size < 3 or np.ptp(x) == 0:
        return float(np.median(x))
    xs = np.linspace(x.min(), x.max(), grid)
    dens = gaussian_kde(x)(xs)
    inner = (dens[1:-1] >= dens[:-2]) & (dens[1:-1] >= dens[2:]) & (dens[1:-1] >= min_height * dens.max())
    modes = xs[1:-1][inner]
    if modes.size == 0:
        modes = xs[[int(np.argmax(dens))]]
    return float(modes[np.argmin(np.abs(modes - zero_at))])


def balanced_location(g_hat: np.ndarray, fit: Any, mean: float, std: float,
                      tiers: np.ndarray | None = None) -> dict[str, float]:
    """Where the balanced component sits (z and raw units, Eq. 7-8) against the balanced clips' peak and 0."""
    g_hat = np.asarray(g_hat, dtype=np.float64)
    out = {"mu0_z": float(fit.balanced_mean), "mu1_z": float(fit.means[fit.imbalanced]),
           "pi1": float(fit.weights[fit.imbalanced]),
           "balanced_peak_z": balanced_peak(g_hat, float(zscore_point(0.0, mean, std))),
           "zero_z": float(zscore_point(0.0, mean, std)), "mu0_raw": float(mean + std * fit.balanced_mean),
           "gap_mean_raw": float(mean), "gap_std_raw": float(std)}
    if tiers is not None and np.any(np.asarray(tiers) == "clean"):
        out["clean_median_z"] = float(np.median(g_hat[np.asarray(tiers) == "clean"]))
    return out


def penalty_sides(logit_a: torch.Tensor, logit_v: torch.Tensor, label: torch.Tensor, w1: Any, mu0_raw: float,
                  beta: float, gamma: float, dominant: str = "audio") -> dict[str, float]:
    """Both sides of the prob-gap penalty's gradient (Eq. 12 differentiated), measured on a batch.

    With g = s^a − s^v, ∂L/∂s^a = 2[γ w1 (g − μ0) + β g] = −∂L/∂s^v: a descent step lowers s^a wherever it
    raises s^v. How far each confidence actually moves is that times |∇_z s|² (the softmax's own slope), which
    vanishes on a saturated branch; a first-order step of size 1 on the logits moves s^m by −∂L/∂s^m·|∇_z s^m|².
    """
    za = logit_a.detach().double().clone().requires_grad_(True)
    zv = logit_v.detach().double().clone().requires_grad_(True)
    s_a, s_v = true_class_prob(za, label), true_class_prob(zv, label)
    g = (s_a - s_v) if dominant == "audio" else (s_v - s_a)
    w1_t = torch.as_tensor(np.asarray(w1, dtype=np.float64))
    dl_ds = 2.0 * (gamma * w1_t * (g.detach() - mu0_raw) + beta * g.detach())  # ∂L/∂g, per sample
    loss = gap_penalty(g, w1_t, mu0_raw, beta, gamma).sum()
    grad_a, grad_v = torch.autograd.grad(loss, (za, zv))
    slope_a, slope_v = _softmax_slope(za.detach(), label), _softmax_slope(zv.detach(), label)
    move_a = -(grad_a * slope_a).sum(1)  # first-order change of s^a under a unit descent step on the logits
    move_v = -(grad_v * slope_v).sum(1)
    above = (g.detach() > mu0_raw).numpy()
    sign = 1.0 if dominant == "audio" else -1.0
    return {"clips": int(len(g)), "share g > μ0": float(above.mean()),
            "mean ∂L/∂s^a, g > μ0": float(sign * dl_ds[above].mean()) if above.any() else float("nan"),
            "mean ∂L/∂s^v, g > μ0": float(-sign * dl_ds[above].mean()) if above.any() else float("nan"),
            "mean |∇z s^a|²": float((slope_a**2).sum(1).mean()), "mean |∇z s^v|²": float((slope_v**2).sum(1).mean()),
            "mean Δs^a per unit step, g > μ0": float(move_a[above].mean()) if above.any() else float("nan"),
            "mean Δs^v per unit step, g > μ0": float(move_v[above].mean()) if above.any() else float("nan")}


def _softmax_slope(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """∇_z s_y of the true-class softmax probability, per sample: s_y (e_y − p), the Jacobian's row y."""
    p = torch.softmax(logits, dim=1)
    onehot = torch.nn.functional.one_hot(label.long(), logits.shape[1]).to(p.dtype)
    return p.gather(1, label.long().view(-1, 1)) * (onehot - p)


@dataclasses.dataclass
class Explanation:
    """The numbers of `why_not_here` and the reading they imply (`lines`)."""

    confidence: pd.DataFrame
    posterior: pd.DataFrame
    location: dict[str, float]
    gradient: dict[str, float]
    noise_points: float
    n_test: int
    test_acc: float

    def _tier(self, table: pd.DataFrame, tier: str, col: str) -> float | None:
        row = table[table["tier"] == tier]
        return None if row.empty else float(row[col].iloc[0])

    def findings(self) -> dict[str, Any]:
        """The facts the reading rests on, as booleans and numbers (tested; the answer keys read them too)."""
        sat_col = f"share s^a > {SATURATED}"
        conf = self.confidence.set_index("tier")
        tiers = [t for t in conf.index if t != "all"] or ["all"]
        flagged = {t: self._tier(self.posterior, t, "share flagged (w1 > 0.5)") for t in TIERS}
        loc = self.location
        return {
            "audio_saturated": bool(all(conf.loc[t, "median s^a"] > SATURATED for t in tiers)),
            "audio_saturated_share": float(conf.loc["all", sat_col]),
            "w1_on_corrupt_more_than_hard": bool(flagged["corrupt"] is not None and flagged["hard"] is not None
                                                 and flagged["corrupt"] > flagged["hard"]),
            "balanced_off_peak": bool(abs(loc["mu0_z"] - loc["balanced_peak_z"]) > 0.25),
            "pull_target_off_zero": bool(abs(loc["mu0_raw"]) > 0.05),
            "audio_side_frozen": bool(self.gradient["mean |∇z s^a|²"] < 0.1 * self.gradient["mean |∇z s^v|²"]),
            "audio_slope_ratio": float(self.gradient["mean |∇z s^v|²"] / max(self.gradient["mean |∇z s^a|²"], 1e-12)),
            "noise_points": self.noise_points,
        }

    def lines(self) -> list[str]:
        """The reading, one sentence per fact, each chosen by the measured value."""
        f = self.findings()
        conf = self.confidence.set_index("tier")
        post = self.posterior.set_index("tier")
        loc, grad = self.location, self.gradient
        tiers = [t for t in conf.index if t != "all"]
        per_tier = (", ".join(f"{t} {conf.loc[t, 'median s^a']:.3f}" for t in tiers)
                    or f"{conf.loc['all', 'median s^a']:.3f}")
        out = [f"1. Audio: median true-class confidence s^a {per_tier}; "
               f"{100 * f['audio_saturated_share']:.0f} % of training clips above {SATURATED}. "
               + ("The audio branch is saturated, so the prob gap is almost 1 − s^v: it measures the visual branch "
                  "alone." if f["audio_saturated"] else "The audio branch is not saturated: the gap measures both.")]
        if {"hard", "corrupt"} <= set(post.index):
            h, c = post.loc["hard"], post.loc["corrupt"]
            flagged = "; ".join(f"{100 * post.loc[t, 'share flagged (w1 > 0.5)']:.0f} % of `{t}` clips "
                                f"(mean w1 {post.loc[t, 'mean w1']:.2f})"
                                for t in ("corrupt", "hard", "clean") if t in post.index)
            shares = (f"Of all the weight w1, {100 * c['share of all w1']:.0f} % lands on `corrupt` clips (pictures "
                      f"with no digit, which nothing can rebalance) and {100 * h['share of all w1']:.0f} % on `hard` "
                      "ones (the only clips a pull could help)")
            out.append(f"2. The mixture's weight: flagged (w1 > 0.5) {flagged}. {shares}: "
                       + ("the pull favours the clips it cannot help over those it could."
                          if f["w1_on_corrupt_more_than_hard"]
                          else "the pull lands on the hard clips at least as much as on the corrupt ones."))
        else:
            out.append(f"2. The mixture's weight: {100 * post.loc['all', 'share flagged (w1 > 0.5)']:.0f} % of "
                       "training clips flagged (no ground-truth tiers on this dataset).")
        where = (f"3. The balanced component sits at ẑ = {loc['mu0_z']:.2f}, the peak of the gaps nearest a raw "
                 f"gap of 0 at ẑ = {loc['balanced_peak_z']:.2f}"
                 + (f" (clean clips' median ẑ {loc['clean_median_z']:.2f})" if "clean_median_z" in loc else "")
                 + f"; the pull target μ0 is {loc['mu0_raw']:+.2f} in raw units"
                 + (", not 0. " if f["pull_target_off_zero"] else ", near 0. "))
        where += ("The balanced component is not on that peak: it sits between the peaks, so the pull drags "
                  "imbalanced clips towards a point few balanced clips occupy." if f["balanced_off_peak"]
                  else "The balanced component sits on that peak.")
        out.append(where)
        out.append(f"4. The penalty's gradient (Eq. 12, on the training clips with g > μ0, "
                   f"{100 * grad['share g > μ0']:.0f} % of them): ∂L/∂s^a = {grad['mean ∂L/∂s^a, g > μ0']:+.3f} "
                   f"and ∂L/∂s^v = {grad['mean ∂L/∂s^v, g > μ0']:+.3f}, so a descent step lowers s^a as it raises "
                   f"s^v; how far each moves scales with the softmax slope |∇z s|², "
                   f"{grad['mean |∇z s^a|²']:.2g} for audio against {grad['mean |∇z s^v|²']:.2g} for visual: "
                   + ("the audio side hardly moves, and the visual side must do all the work."
                      if f["audio_side_frozen"] else
                      f"the audio side moves about {f['audio_slope_ratio']:.0f} times less than the visual one."
                      if f["audio_slope_ratio"] > 2 else "both sides move alike."))
        out.append(f"5. Noise floor: one test accuracy on {self.n_test} clips has a binomial standard error of "
                   f"±{self.noise_points:.1f} points (at {100 * self.test_acc:.1f} %); a difference between two "
                   f"runs below about {2 * self.noise_points:.1f} points is within it.")
        need = []
        if f["audio_saturated"]:
            need.append("a gap that is not saturated (an audio branch below ceiling, so the gap measures both sides)")
        if f["w1_on_corrupt_more_than_hard"]:
            need.append("imbalanced clips whose visual branch can recover (hard pictures, not missing ones)")
        if f["balanced_off_peak"]:
            need.append("a balanced component on the clean peak (a better separated or differently shaped mixture)")
        out.append("What would have to change for the method to help: " + ("; ".join(need) + "."
                                                                             if need else "nothing measured here "
                                                                             "stands in its way."))
        return out


def why_not_here(out: dict[str, torch.Tensor], cache: Any, gap: str = "prob", family: str = "gmm",
                 posterior: str = "eq9", seed: int = 0, beta: float = 0.1, gamma: float = 1.0,
                 test_acc: float = 0.5, n_test: int = 1, dominant: str = "audio",
                 gradient_clips: int = 256) -> Explanation:
    """The numbers of "why it does not help here" from a warm-up model's training-set outputs (`collect_outputs`).

    `out` holds ``logit_a``, ``logit_v``, ``label`` and ``index`` (cache rows); the mixture is fitted as the
    first adaptive refit does (Eq. 7-9). `test_acc` and `n_test` give the noise floor of one test accuracy.
    The penalty's gradient is measured on the first `gradient_clips` clips, for the prob gap (Eq. 12-14).
    """
    if dominant == "auto":
        dominant = pick_dominant(out["logit_a"], out["logit_v"], out["label"])
    g = compute_gap(gap, out["logit_a"], out["logit_v"], out["label"], dominant=dominant)
    fit, mean, std, _w0, w1, _info = fit_gaps(g, out["index"], cache, family, seed, posterior)
    tier_all = getattr(cache, "visual_tier", None)
    tiers = None if tier_all is None else np.asarray(tier_all)[out["index"].numpy()]
    g_hat = (g.double().numpy() - mean) / std
    k = min(gradient_clips, len(g))
    if gap == "prob":
        w1_p, mu0_p = np.asarray(w1), float(mean + std * fit.balanced_mean)
    else:  # the gradient is measured for the prob gap (Eq. 12-14), so its own mixture gives w1 and μ0
        g_p = compute_gap("prob", out["logit_a"], out["logit_v"], out["label"], dominant=dominant)
        fit_p, mean_p, std_p, _, w1_p, _ = fit_gaps(g_p, out["index"], cache, family, seed, posterior)
        w1_p, mu0_p = np.asarray(w1_p), float(mean_p + std_p * fit_p.balanced_mean)
    grad = penalty_sides(out["logit_a"][:k], out["logit_v"][:k], out["label"][:k], w1_p[:k], mu0_p, beta, gamma,
                         dominant)
    return Explanation(confidence=branch_confidence(out["logit_a"], out["logit_v"], out["label"], tiers),
                       posterior=posterior_by_tier(np.asarray(w1), tiers),
                       location=balanced_location(g_hat, fit, mean, std, tiers), gradient=grad,
                       noise_points=accuracy_noise(test_acc, n_test), n_test=n_test, test_acc=test_acc)


def over_seeds(explanations: Mapping[int, Explanation]) -> pd.DataFrame:
    """One row per seed (the mapping's keys) of the facts `why_not_here` rests on (notebook 05's over-seeds form)."""
    rows = []
    for seed, e in explanations.items():
        conf, post = e.confidence.set_index("tier"), e.posterior.set_index("tier")
        row = {"seed": seed, "median s^a": float(conf.loc["all", "median s^a"]),
               f"share s^a > {SATURATED}": float(conf.loc["all", f"share s^a > {SATURATED}"])}
        for t in ("hard", "corrupt"):
            if t in post.index:
                row[f"flagged, {t}"] = float(post.loc[t, "share flagged (w1 > 0.5)"])
                row[f"mean w1, {t}"] = float(post.loc[t, "mean w1"])
        row.update({"μ0 (ẑ)": e.location["mu0_z"], "balanced peak (ẑ)": e.location["balanced_peak_z"],
                    "μ0 (raw)": e.location["mu0_raw"], "test acc. noise (± points)": e.noise_points})
        rows.append(row)
    return pd.DataFrame(rows)


def warmup_trainer(cache: Any, preset: Preset, setting: AdaptiveSetting, seed: int, device: str = "auto",
                   adam_lr: float | None = None) -> Trainer:
    """A Trainer holding the warm-up checkpoint `setting` starts from (its last warm-up epoch; trained if missing)."""
    ckpt = ensure_warmup(cache, setting_warmup_preset(preset, setting, adam_lr), seed, device, log=lambda *_: None)
    return with_weights(cache, preset, ckpt, seed, device)


def explain_setting(cache: Any, preset: Preset, setting: AdaptiveSetting, seed: int, test_acc: float,
                    device: str = "auto", adam_lr: float | None = None) -> Explanation:
    """`why_not_here` on the warm-up `setting` starts from (reused; trained when missing), for one seed.

    `test_acc` is the accuracy whose noise floor is reported (e.g. the last warm-up epoch's).
    """
    out = warmup_trainer(cache, preset, setting, seed, device, adam_lr).collect_outputs("train")
    t = preset.train
    return why_not_here(out, cache, gap=setting.gap, family=setting.mixture, posterior=setting.posterior, seed=seed,
                        beta=t.beta, gamma=t.gamma, test_acc=test_acc, n_test=int(cache.counts()["test"]),
                        dominant=t.dominant)
