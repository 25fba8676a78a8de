"""The paper's method, in the paper's order: open it beside the paper.

- the gaps of every training clip (Eq. 5-6, from `mmgap.gap.compute_gap`), z-scored (Eq. 7), a
  two-component mixture (Eq. 8) and the posteriors w0, w1 of each clip (Eq. 9): `fit_gaps`, `gap_snapshot`;
- stage 1, the warm-up loss (Eq. 10): `WarmupStrategy`, `run_warmup`;
- stage 2, the adaptive loss (Eq. 11) with the mixture refitted every `refit_every` epochs:
  `AdaptiveStrategy`;
- the two stages chained: `run_two_stage`;
- data purification (Table VII): `finetune` on the clips with w0 ≥ τ;
- not in the paper: `run_control`, the warm-up loss continued from the same warm-up for the adaptive
  stage's epochs, so that what Eq. 11 adds is told apart from training longer.

Elsewhere: Eq. 1-2 (logit split) `mmgap.models.AVClassifier`; Eq. 3-4 `mmgap.gap.true_class_prob`,
`mmgap.losses.per_sample_ce`; Eq. 5-7 `mmgap.gap` (`prob_gap`, `kl_gap`, `zscore`, `pick_dominant` for the
dominant modality); Eq. 8-9 `mmgap.mixture` (`fit_mixture`, `MixtureFit.balanced`: the component nearest
a raw gap of 0); Eq. 10-12 `mmgap.losses` (`warmup_loss`, `adaptive_loss`, `gap_penalty`, λ_t = ρ^epoch
`annealing`); Table III `AdaptiveLossConfig.ablation`; Tables IV-VI the preset's `optimizer` /
`reset_optimizer`, `mixture` / `gap` and `rho` (`mmgap.config.TrainConfig`).

Each stage is a `mmgap.strategy.Strategy` run by the generic `mmgap.trainer.Trainer` (loop, evaluation,
checkpoints, resume), which does not import this module.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgap.checkpoint import from_json, load_safe, to_json
from mmgap.config import Preset
from mmgap.data.manifest import TIERS
from mmgap.gap import compute_gap, pick_dominant, unzscore, zscore, zscore_point
from mmgap.history import best_row_summary, best_summary, last_row_summary, stage_timings
from mmgap.losses import AdaptiveLossConfig, adaptive_loss, warmup_loss
from mmgap.mixture import TAILS, bic_single, fit_mixture
from mmgap.strategy import Batch, Strategy, TrainerView
from mmgap.trainer import Trainer, resume_stages, split_rows

GAP_HIST_EDGES: tuple[float, ...] = tuple(float(x) for x in np.linspace(-4.0, 4.0, 41))
"""Fixed bin edges (z-score units) of the per-epoch ĝ histogram; values outside are clipped into the end bins."""


# ------------------------------------- z-scored gaps, mixture and posteriors: Eq. 7-9 (gaps: Eq. 5-6)


def fit_gaps(
    g: torch.Tensor, idx: torch.Tensor, cache: Any, family: str = "gmm", seed: int = 0, posterior: str = "eq9",
) -> tuple[Any, float, float, np.ndarray, np.ndarray, dict[str, Any]]:
    """Raw gaps of cache rows `idx` -> z-score (Eq. 7) -> mixture (Eq. 8) -> w0, w1 (Eq. 9), with a summary.

    Returns ``(fit, mean, std, w0, w1, info)``; `info` holds the fit, BIC of 1 vs 2 components, the
    ĝ histogram, the balanced mean in z-score units (``mu0``), the imbalanced component's weight (``pi1``),
    both means in raw gap units (``mu0_raw``, ``mu1_raw``), and, where the cache has ground truth, the AUROC
    of w1 and the mean gap and w1 per tier.
    """
    g_hat, mean, std = zscore(g)
    # the balanced component is the peak nearest a raw gap of 0 ("centered near zero", Section III-B)
    fit = fit_mixture(g_hat, family, seed=seed, zero_at=float(zscore_point(0.0, mean, std)))
    w0, w1 = fit.posterior(g_hat, tail=posterior)
    bic1 = bic_single(g_hat, family, seed=seed)
    clipped = np.clip(g_hat.detach().cpu().numpy(), GAP_HIST_EDGES[0], GAP_HIST_EDGES[-1])
    counts, _ = np.histogram(clipped, bins=GAP_HIST_EDGES)
    w1_np = np.asarray(w1, dtype=np.float64)
    info: dict[str, Any] = {
        "mixture": fit.to_dict(),
        "bic1": float(bic1),
        "bic2": float(fit.bic),
        "bimodal": bool(bic1 > fit.bic),
        "gap_mean": mean,
        "gap_std": std,
        "mu0": fit.balanced_mean,
        "pi1": float(fit.weights[fit.imbalanced]),
        "mu1_raw": float(unzscore(float(fit.means[fit.imbalanced]), mean, std)),
        "mu0_raw": float(unzscore(fit.balanced_mean, mean, std)),  # μ_raw = μ_g + σ_g·μ0 (Eq. 7 inverted)
        "w1_mean": float(w1_np.mean()),
        "frac_imbalanced": float((w1_np > 0.5).mean()),
        "gap_hist": counts.tolist(),
        "gap_hist_edges": list(GAP_HIST_EDGES),
        "ambiguous_balanced": bool(fit.ambiguous),
        "posterior": posterior,
    }
    rows = idx.cpu().numpy()
    flags = getattr(cache, "imbalanced", None)
    if flags is not None:
        info["auroc_w1"] = _auroc(np.asarray(flags)[rows], w1_np)
    tiers = getattr(cache, "visual_tier", None)
    if tiers is not None:  # ground truth: mean raw gap and posterior w1 of each visual tier
        groups = np.asarray(tiers)[rows]
        g_np = g.detach().double().cpu().numpy()
        for tier in TIERS:
            if np.any(groups == tier):
                info[f"gap_mean_{tier}"] = float(g_np[groups == tier].mean())
                info[f"w1_mean_{tier}"] = float(w1_np[groups == tier].mean())
    return fit, mean, std, w0, w1, info


def gap_snapshot(trainer: TrainerView, gap: str = "prob", family: str = "gmm", dominant: str = "audio",
                 seed: int = 0, posterior: str = "eq9") -> dict[str, Any]:
    """`fit_gaps` on an eval-mode pass over the training set with the trainer's current model (no side effects)."""
    out = trainer.collect_outputs("train")
    if dominant == "auto":
        dominant = pick_dominant(out["logit_a"], out["logit_v"], out["label"])
    g = compute_gap(gap, out["logit_a"], out["logit_v"], out["label"], dominant=dominant)
    *_, info = fit_gaps(g, out["index"], trainer.cache, family, seed, posterior)
    return {**info, "dominant": dominant}


# ------------------------------------------------------------- stage 1, Eq. 10, and stage 2, Eq. 11


class WarmupStrategy(Strategy):
    """Stage 1: the warm-up loss L_f + L_a + L_v, Eq. (10)."""

    name = "warmup"

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. (10) on one batch; parts: fusion, uni_a, uni_v (detached, on the device)."""
        return warmup_loss(trainer.forward(batch), batch["label"])


class AdaptiveStrategy(Strategy):
    """Stage 2: the sample-level adaptive loss, Eq. (11), with the mixture refitted every `refit_every` epochs.

    At a refit (the first adaptive epoch, then every `refit_every`-th): raw gaps over the whole training set
    in an eval-mode pass (Eq. 5 or 6; the paper "aggregate[s] the modality gaps of all training samples" and
    does not say in which mode: the eval pass is this code's reading), z-scored (Eq. 7), a two-component
    mixture (Eq. 8), posteriors w0, w1 per sample stored by cache row (Eq. 9; ``posterior="monotone"`` holds
    w1 at its maximum beyond the imbalanced mean, see mmgap.mixture), and the balanced mean back in raw gap
    units, μ_raw = μ_g + σ_g·μ0, as Eq. 11's u0 (the paper does not say which units: this code's reading).
    ``gap_source="train"`` is a cheaper approximation: it refits on the gaps recorded during the previous
    epoch's training steps (free, but gaps of augmented inputs under train-mode BatchNorm, from a model that
    moved during the epoch, one epoch stale); an eval pass still serves the first refit.
    """

    name = "adaptive"

    def __init__(
        self,
        loss_cfg: AdaptiveLossConfig | None = None,
        family: str = "gmm",
        refit_every: int = 1,
        seed: int = 0,
        gap_source: str = "eval",
        posterior: str = "eq9",
    ) -> None:
        if refit_every < 1:
            raise ValueError(f"refit_every={refit_every!r} must be an integer >= 1")
        if gap_source not in ("eval", "train"):
            raise ValueError(f"gap_source={gap_source!r} must be 'eval' or 'train'")
        if posterior not in TAILS:
            raise ValueError(f"posterior={posterior!r} must be one of {TAILS}")
        self.posterior = posterior
        self.loss_cfg = loss_cfg if loss_cfg is not None else AdaptiveLossConfig()
        self.family = family
        self.refit_every = int(refit_every)
        self.seed = int(seed)
        self.gap_source = gap_source
        self.dominant = self.loss_cfg.dominant  # "auto" is resolved at the first refit
        self.w0: torch.Tensor | None = None
        self.w1: torch.Tensor | None = None
        self.mu0_raw = 0.0
        self._mu0_dev: torch.Tensor | None = None
        self.info: dict[str, Any] = {}
        self._train_gap: torch.Tensor | None = None  # raw gaps recorded in training steps (gap_source="train")
        self._seen: torch.Tensor | None = None
        self.refitted = False

    def setup(self, trainer: TrainerView) -> None:
        """Allocate per-row posteriors on the device (w0 = 1, w1 = 0 until the first refit)."""
        n = len(trainer.cache)
        if self.w0 is None:
            self.w0 = torch.ones(n, device=trainer.device)
            self.w1 = torch.zeros(n, device=trainer.device)
        self._device = trainer.device
        if self.gap_source == "train":
            self._train_gap = torch.zeros(n, device=trainer.device)
            self._seen = torch.zeros(n, dtype=torch.bool, device=trainer.device)

    def _cfg(self) -> AdaptiveLossConfig:
        """The loss config with the resolved dominant modality (rebuilt only when it changes)."""
        cached = getattr(self, "_cfg_cache", None)
        if cached is None or cached.dominant != self.dominant:
            cached = self._cfg_cache = dataclasses.replace(self.loss_cfg, dominant=self.dominant)
        return cached

    def refit(self, trainer: TrainerView, epoch: int) -> None:
        """Gaps over the training set -> z-score (Eq. 7) -> mixture (Eq. 8) -> w0, w1 per row (Eq. 9)."""
        t0 = time.perf_counter()
        rows_seen = self._seen is not None and bool(self._seen[_split_rows_t(trainer)].all())
        if self.gap_source == "train" and rows_seen and self.dominant != "auto":
            assert self._train_gap is not None
            idx = _split_rows_t(trainer)
            g = self._train_gap[idx].cpu()
            idx = idx.cpu()
        else:
            out = trainer.collect_outputs("train")
            if self.dominant == "auto":
                self.dominant = pick_dominant(out["logit_a"], out["logit_v"], out["label"])
            g = compute_gap(self.loss_cfg.gap, out["logit_a"], out["logit_v"], out["label"], dominant=self.dominant)
            idx = out["index"]
            if self._train_gap is not None and self._seen is not None:  # seed the training-step record
                self._train_gap[idx.to(self._train_gap.device)] = g.to(self._train_gap.device)
                self._seen[idx.to(self._seen.device)] = True
        *_, w0, w1, info = fit_gaps(g, idx, trainer.cache, self.family, self.seed, self.posterior)
        assert self.w0 is not None and self.w1 is not None
        self.w0[idx.to(self.w0.device)] = torch.as_tensor(w0, dtype=torch.float32).to(self.w0.device)
        self.w1[idx.to(self.w1.device)] = torch.as_tensor(w1, dtype=torch.float32).to(self.w1.device)
        self.mu0_raw = info["mu0_raw"]
        self._mu0_dev = None
        self.info = {"refit_epoch": epoch, **info, "dominant": self.dominant,
                     "gap_source": "train" if (self.gap_source == "train" and rows_seen) else "eval"}
        self.info["refit_seconds"] = time.perf_counter() - t0

    def on_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        """Refit the mixture at the first adaptive epoch and every `refit_every`-th after it."""
        self.refitted = epoch % self.refit_every == 0 or not self.info
        if self.refitted:
            self.refit(trainer, epoch)

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. (11) on one batch with the batch's w0, w1 gathered by cache row; λ_t = ρ^epoch."""
        assert self.w0 is not None and self.w1 is not None
        out = trainer.forward(batch)
        idx = batch["index"]
        if self._mu0_dev is None:  # a device copy made once per refit: a Python float would be copied every step
            self._mu0_dev = torch.tensor(self.mu0_raw, dtype=torch.float32, device=out.fused.device)
        loss, parts = adaptive_loss(out, batch["label"], self.w0[idx], self.w1[idx], self._mu0_dev, epoch, self._cfg())
        if self._train_gap is not None and self._seen is not None:
            with torch.no_grad():
                g = compute_gap(self.loss_cfg.gap, out.logit_a, out.logit_v, batch["label"], dominant=self.dominant)
                self._train_gap[idx] = g.float()
                self._seen[idx] = True
        return loss, parts

    def on_epoch_end(self, trainer: TrainerView, epoch: int) -> dict[str, Any]:
        """Mixture parameters, BIC of 1 vs 2 components, the ĝ histogram and the refit time for the history."""
        row = dict(self.info)
        row["refitted"] = self.refitted
        if not row["refitted"]:
            row["refit_seconds"] = 0.0
        return row

    def state_dict(self) -> dict[str, Any]:
        """Posteriors per row, μ_raw, the resolved dominant modality and the last refit's summary."""
        state: dict[str, Any] = {"mu0_raw": self.mu0_raw, "dominant": self.dominant, "info": to_json(self.info)}
        if self.w0 is not None and self.w1 is not None:
            state.update(w0=self.w0.detach().cpu(), w1=self.w1.detach().cpu())
        if self._train_gap is not None and self._seen is not None:
            state.update(train_gap=self._train_gap.cpu(), seen=self._seen.cpu())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (tensors go to the device given at setup)."""
        device = getattr(self, "_device", torch.device("cpu"))
        self.mu0_raw = float(state["mu0_raw"])
        self._mu0_dev = None
        self.dominant = str(state["dominant"])
        self.info = from_json(state["info"])
        if "w0" in state:
            self.w0, self.w1 = state["w0"].to(device), state["w1"].to(device)
        if "train_gap" in state and self._train_gap is not None:
            self._train_gap, self._seen = state["train_gap"].to(device), state["seen"].to(device)


# ----------------------------------------- entry points: the two stages, the control arm, Table VII


def run_warmup(
    cache: Any, preset: Preset, run_dir: str | Path, seed: int = 0, device: str = "auto", resume: bool = True,
    trainer: Trainer | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Stage 1 only (Eq. 10) for `preset.train.warmup_epochs`; writes run_dir/warmup.pt; returns its summary."""
    tr = trainer or Trainer(cache, preset, run_dir, seed, device, progress=progress)
    if trainer is None:
        resume_stages(tr, resume, ("warmup",))
    res = tr.fit(WarmupStrategy(), preset.train.warmup_epochs, "warmup", reset_optimizer=True)
    tr.save_checkpoint("warmup.pt", None, complete=True)
    return {**best_summary(res), "history": tr.history, "timings": stage_timings(tr.history, "warmup"),
            "warmup_ckpt": str(tr.run_dir / "warmup.pt")}


def run_two_stage(
    cache: Any,
    preset: Preset,
    run_dir: str | Path,
    seed: int = 0,
    device: str = "auto",
    loss_cfg: AdaptiveLossConfig | None = None,
    resume: bool = True,
    warmup_ckpt: str | Path | None = None,
    gap_source: str | None = None,
    interrupt_at_epoch: int | None = None,
    progress: bool = True,
    return_trainer: bool = False,
) -> dict[str, Any]:
    """Warm-up (Eq. 10; or load `warmup_ckpt`) then adaptive training (Eq. 11); returns val-selected metrics.

    The optimizer is reset between the stages unless ``preset.train.reset_optimizer`` is False (Table IV).
    `loss_cfg` defaults to the preset's (``AdaptiveLossConfig.from_train_config``). With `resume`, an
    interrupted run continues from run_dir/last.pt and ends bit-identical (CPU); a finished run is reloaded
    without training. The result holds ``val_*``/``test_*`` of the best-val adaptive epoch, ``warmup`` (the
    warm-up stage's own summary), ``history`` and ``timings`` (incl. the refit overhead, issue 7).
    """
    t = preset.train
    cfg = loss_cfg if loss_cfg is not None else AdaptiveLossConfig.from_train_config(t)
    tr = Trainer(cache, preset, run_dir, seed, device, progress=progress)
    tr.interrupt_at_epoch = interrupt_at_epoch
    resumed = resume_stages(tr, resume, ("warmup", "adaptive"))
    if not (resumed and tr.stage == "adaptive"):
        if warmup_ckpt is not None and not (resumed and tr.stage == "warmup"):
            _start_from_warmup(tr, warmup_ckpt)
        else:
            run_warmup(cache, preset, run_dir, seed, device, trainer=tr)
    source = gap_source if gap_source is not None else t.gap_source
    strategy = AdaptiveStrategy(cfg, family=t.mixture, refit_every=t.refit_every, seed=seed, gap_source=source,
                                posterior=t.posterior)
    res = tr.fit(strategy, t.adaptive_epochs, "adaptive", reset_optimizer=t.reset_optimizer)
    return _second_stage_result(tr, res, cfg.gap, strategy.dominant, seed, return_trainer)


def run_control(
    cache: Any,
    preset: Preset,
    run_dir: str | Path,
    warmup_ckpt: str | Path,
    seed: int = 0,
    device: str = "auto",
    resume: bool = True,
    interrupt_at_epoch: int | None = None,
    progress: bool = True,
    return_trainer: bool = False,
) -> dict[str, Any]:
    """The adaptive stage's control arm: the warm-up loss (Eq. 10) continued from the same warm-up checkpoint.

    Same epochs (``adaptive_epochs``), optimizer handling (``reset_optimizer``) and validation-only selection
    as `run_two_stage`'s adaptive stage, so a difference between the two is due to Eq. 11, not to training
    longer. The result has the same keys as `run_two_stage`'s.
    """
    t = preset.train
    tr = Trainer(cache, preset, run_dir, seed, device, progress=progress)
    tr.interrupt_at_epoch = interrupt_at_epoch
    if not resume_stages(tr, resume, ("control",)):
        _start_from_warmup(tr, warmup_ckpt)
    res = tr.fit(WarmupStrategy(), t.adaptive_epochs, "control", reset_optimizer=t.reset_optimizer)
    return _second_stage_result(tr, res, t.gap, t.dominant, seed, return_trainer)


def finetune(
    cache: Any,
    preset: Preset,
    run_dir: str | Path,
    warmup_ckpt: str | Path,
    tau: float,
    seed: int = 0,
    epochs: int | None = None,
    device: str = "auto",
    family: str | None = None,
    gap: str | None = None,
    dominant: str | None = None,
    resume: bool = True,
    progress: bool = True,
    test_every_epoch: bool = True,
) -> dict[str, Any]:
    """Table VII: from a warm-up checkpoint, fine-tune with the warm-up loss (Eq. 10) on rows with w0 ≥ τ.

    w0 comes from a mixture (Eq. 8-9) fitted on the warmed-up model's gaps over the whole training set.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau={tau!r} must be a posterior threshold in [0, 1]")
    t = preset.train
    n = epochs if epochs is not None else t.finetune_epochs
    tr = Trainer(cache, preset, run_dir, seed, device, progress=progress)
    tr.test_every_epoch = test_every_epoch
    resumed = resume_stages(tr, resume, ("finetune",))
    if not resumed:
        _start_from_warmup(tr, warmup_ckpt)
        tr.apply_resumed(WarmupStrategy(), same_stage=False, load_optimizer=False)
    else:
        # The subset depends on the warm-up model only: select it with the warm-up weights; fit() then loads
        # the resumed run's own weights from last.pt.
        tr.model.load_state_dict(load_safe(warmup_ckpt)["model"])
    cfg = AdaptiveLossConfig.from_train_config(t)
    if gap is not None or dominant is not None:
        cfg = dataclasses.replace(cfg, gap=gap or cfg.gap, dominant=dominant or cfg.dominant)
    sel = AdaptiveStrategy(cfg, family=family or t.mixture, seed=seed, posterior=t.posterior)
    sel.setup(tr)
    sel.refit(tr, 0)
    assert sel.w0 is not None
    train_rows = split_rows(cache, "train")
    w0 = sel.w0.cpu().numpy()[train_rows]
    subset = train_rows[w0 >= tau]
    if subset.size < t.batch_size:
        raise ValueError(
            f"only {subset.size} training clips have w0 >= tau={tau}: fewer than one batch ({t.batch_size}); lower tau"
        )
    res = tr.fit(WarmupStrategy(), n, "finetune", reset_optimizer=True, train_indices=subset)
    kept: dict[str, float] = {}
    tiers = getattr(cache, "visual_tier", None)
    if tiers is not None:  # ground truth: the share of each visual tier's training clips the threshold keeps
        all_t, kept_t = np.asarray(tiers)[train_rows], np.asarray(tiers)[subset]
        kept = {f"kept_{t}": float((kept_t == t).sum() / (all_t == t).sum()) if np.any(all_t == t) else float("nan")
                for t in TIERS}
    return {**best_summary(res), **kept, "tau": tau, "subset_size": int(subset.size),
            "train_size": int(train_rows.size),
            "mixture": sel.info.get("mixture"), "history": tr.history, "run_dir": str(tr.run_dir), "seed": seed}


# ------------------------------------------------------------------------------------------ helpers


def _split_rows_t(trainer: TrainerView) -> torch.Tensor:
    """Training rows of the cache as a tensor on the trainer's device."""
    return torch.as_tensor(split_rows(trainer.cache, "train"), device=trainer.device)


def _auroc(flags: np.ndarray, score: np.ndarray) -> float | None:
    """AUROC of `score` against ground-truth imbalance flags (None when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    flags = flags.astype(bool)
    if flags.all() or not flags.any():
        return None
    return float(roc_auc_score(flags, score))


def _second_stage_result(tr: Trainer, res: dict[str, Any], gap: str, dominant: str, seed: int,
                         return_trainer: bool) -> dict[str, Any]:
    """What `run_two_stage` and `run_control` return: the selected epoch, the warm-up's best and last
    epochs, the stage's last epoch, the mixture of the last model, history and timings."""
    t, stage = tr.preset.train, res["stage"]
    result = {
        **best_summary(res),
        "warmup": best_row_summary(tr.history, "warmup"),
        "warmup_last": last_row_summary(tr.history, "warmup"),
        "last": last_row_summary(tr.history, stage),
        "gaps_end": gap_snapshot(tr, gap, t.mixture, dominant, seed, t.posterior),
        "history": tr.history,
        "timings": {**stage_timings(tr.history, "warmup"), **stage_timings(tr.history, stage)},
        "run_dir": str(tr.run_dir),
        "seed": seed,
        "device": str(tr.device),
    }
    if return_trainer:
        result["trainer"] = tr
    return result


def _start_from_warmup(tr: Trainer, warmup_ckpt: str | Path) -> None:
    """Load a completed warm-up checkpoint into a fresh trainer (weights, counters, warm-up history)."""
    tr.resume(warmup_ckpt, check_preset="model")
    tr.history = [r for r in tr.history if r["stage"] == "warmup"]
    if tr.stage != "warmup" or not tr.stage_complete():
        raise ValueError(f"{warmup_ckpt} is not a completed warm-up checkpoint (stage {tr.stage!r})")
